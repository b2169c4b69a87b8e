package main

import (
	"math/bits"
	"sync/atomic"
)

// Histogram layout: values below 2*histSub are counted exactly; above that
// each power of two is split into histSub buckets, so a bucket is at most
// 1/histSub (0.8 %) of its values wide. Values are microseconds.
const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histMaxExp  = 29 // largest exponent: values up to 2^37 µs (38 hours)
	histBuckets = (histMaxExp + 2) * histSub
	histMaxVal  = 1<<(histMaxExp+histSubBits+1) - 1
)

// hist is a fixed log-linear histogram safe for concurrent adds. It never
// allocates after creation.
type hist struct {
	counts [histBuckets]atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Uint64
}

// histIndex returns the bucket of v.
func histIndex(v uint64) int {
	if v > histMaxVal {
		v = histMaxVal
	}
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(v) - (histSubBits + 1)
	return e*histSub + int(v>>e)
}

// histBounds returns the smallest and largest value counted in bucket i.
func histBounds(i int) (lo, hi uint64) {
	if i < 2*histSub {
		return uint64(i), uint64(i)
	}
	e := i/histSub - 1
	m := uint64(i - e*histSub)
	return m << e, (m+1)<<e - 1
}

// add records one value.
func (h *hist) add(v uint64) {
	h.counts[histIndex(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// merge adds all of o's counts to h.
func (h *hist) merge(o *hist) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.total.Add(o.total.Load())
	h.sum.Add(o.sum.Load())
	if m := o.max.Load(); m > h.max.Load() {
		h.max.Store(m)
	}
}

// quantile returns the value at quantile q (0 < q <= 1): the middle of the
// bucket holding the ceil(q*n)-th smallest value, capped at the maximum.
func (h *hist) quantile(q float64) uint64 {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q * float64(n))
	if float64(rank) < q*float64(n) {
		rank++
	}
	rank = max(rank, 1)
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if cum >= rank {
			lo, hi := histBounds(i)
			return min(lo+(hi-lo)/2, h.max.Load())
		}
	}
	return h.max.Load()
}

// mean returns the average value.
func (h *hist) mean() float64 {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	return float64(h.sum.Load()) / float64(n)
}

// shardedHist spreads concurrent adds over several histograms so that
// subscribers on different cores rarely touch the same cache lines.
type shardedHist struct {
	shards []hist
}

// newShardedHist returns a histogram with n shards.
func newShardedHist(n int) *shardedHist {
	return &shardedHist{shards: make([]hist, n)}
}

// shard returns the histogram for the given key (e.g. a subscriber index).
func (s *shardedHist) shard(key int) *hist { return &s.shards[key%len(s.shards)] }

// merged returns one histogram holding every shard's counts.
func (s *shardedHist) merged() *hist {
	h := new(hist)
	for i := range s.shards {
		h.merge(&s.shards[i])
	}
	return h
}

// snapshot copies the merged counts of all shards into dst (allocated if nil).
func (s *shardedHist) snapshot(dst *hist) *hist {
	if dst == nil {
		dst = new(hist)
	}
	for i := range dst.counts {
		var c uint64
		for j := range s.shards {
			c += s.shards[j].counts[i].Load()
		}
		dst.counts[i].Store(c)
	}
	var total, sum, mx uint64
	for j := range s.shards {
		total += s.shards[j].total.Load()
		sum += s.shards[j].sum.Load()
		mx = max(mx, s.shards[j].max.Load())
	}
	dst.total.Store(total)
	dst.sum.Store(sum)
	dst.max.Store(mx)
	return dst
}

// diff sets d to the counts in cur that are not in prev (a later and an
// earlier snapshot). The max of the difference is the highest non-empty
// bucket's upper bound, capped by cur's max.
func (d *hist) diff(cur, prev *hist) {
	var top int = -1
	for i := range d.counts {
		c := cur.counts[i].Load() - prev.counts[i].Load()
		d.counts[i].Store(c)
		if c != 0 {
			top = i
		}
	}
	d.total.Store(cur.total.Load() - prev.total.Load())
	d.sum.Store(cur.sum.Load() - prev.sum.Load())
	d.max.Store(0)
	if top >= 0 {
		_, hi := histBounds(top)
		d.max.Store(min(hi, cur.max.Load()))
	}
}
