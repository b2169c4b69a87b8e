package clusterstate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"chat/internal/ban"
	"chat/internal/jetstream"
)

// Kicker is the room's hub as the bans see it.
type Kicker interface {
	// Kick closes the streams whose address (their per-address key)
	// match reports true, and returns how many.
	Kick(ctx context.Context, match func(addr string) bool) (int, error)
}

// Bans is the room's ban list shared by every node: kept in the bans
// bucket, one key per banned prefix, and mirrored in a ban.List (List)
// that the node's handlers read. Add and Remove change the bucket and
// wait (a moment at most) until the mirror has the change; every node
// applies every change in the bucket's order, closes the streams of an
// address as its ban arrives, and so shows the same list. Its goroutine
// runs until Stop; its methods are safe for concurrent use.
type Bans struct {
	kv   *jetstream.KV
	list *ban.List
	room Kicker
	log  *slog.Logger
	// origin marks the bans this node stores: their streams are closed
	// by the handler that stored them, which counts them.
	origin string
	// cancel ends the goroutine, and wg waits for it.
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// applied is the revision of the last entry the mirror applied;
	// advanced is closed (and replaced) when the mirror changes.
	applied  uint64
	advanced chan struct{}
}

// banValue is a ban as the bucket keeps it: the address or prefix, the
// ban's end (null: none), and a token of the node that stored it.
type banValue struct {
	Addr   string     `json:"addr"`
	Until  *time.Time `json:"until"`
	Origin string     `json:"origin,omitempty"`
}

// OpenBans opens the bans bucket and loads it into a new mirror, within
// ctx, and then keeps the mirror up to date, closing the streams of each
// address another node bans from then on (room's Kick), until Stop. The
// streams of an address this node bans are for its caller to close.
func OpenBans(ctx context.Context, cfg Config, room Kicker) (*Bans, error) {
	b := &Bans{list: ban.New(), room: room, log: cfg.logger(), origin: rand.Text(), advanced: make(chan struct{})}
	var w *jetstream.KVWatcher
	var err error
	if b.kv, w, err = openLoaded(ctx, cfg, "bans", func(e *jetstream.KVEntry) { b.apply(ctx, e, false) }); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.wg.Go(func() {
		defer w.Stop()
		for {
			e, err := w.Next(rctx)
			switch {
			case rctx.Err() != nil:
				return
			case err != nil:
				b.log.Warn("could not read the room's bans; trying again", "error", err)
				if !pause(rctx, retryPause) {
					return
				}
				continue
			}
			b.apply(rctx, e, true)
		}
	})
	return b, nil
}

// Stop stops keeping the mirror up to date.
func (b *Bans) Stop() {
	b.cancel()
	b.wg.Wait()
}

// List returns the mirror, which the handlers read.
func (b *Bans) List() *ban.List { return b.list }

// All returns the bans in force at now, in the order of their last change
// in the bucket (the same on every node).
func (b *Bans) All(now time.Time) []ban.Ban { return b.list.All(now) }

// Add bans p until the given time (zero: for ever) on every node, replacing
// any ban on the same prefix, and returns the ban as stored. It fails with
// ban.ErrFull when the list holds ban.MaxBans bans, and with
// ban.ErrUnavailable when the bucket cannot be reached (the ban may or may
// not be stored: adding it again settles it).
func (b *Bans) Add(p netip.Prefix, until, now time.Time) (ban.Ban, error) {
	bn := ban.Ban{Prefix: p.Masked(), Until: until}
	all := b.list.All(now)
	if len(all) >= ban.MaxBans && !containsPrefix(all, bn.Prefix) {
		return ban.Ban{}, ban.ErrFull
	}
	v := banValue{Addr: bn.String(), Origin: b.origin}
	var ttl time.Duration
	if !until.IsZero() {
		u := until.UTC()
		v.Until, ttl = &u, until.Sub(now)+time.Second
	}
	data, _ := json.Marshal(v) // cannot fail: strings and times
	ctx, cancel := context.WithTimeout(context.Background(), putWait)
	defer cancel()
	var rev uint64
	var err error
	if ttl > 0 {
		rev, err = b.kv.PutTTL(ctx, banKey(bn.Prefix), data, ttl)
	} else {
		rev, err = b.kv.Put(ctx, banKey(bn.Prefix), data)
	}
	if err != nil {
		return ban.Ban{}, fmt.Errorf("%w: %w", ban.ErrUnavailable, err)
	}
	b.waitApplied(func() bool { return b.applied >= rev })
	return bn, nil
}

// Remove lifts the ban on exactly p on every node, and reports whether
// there was one. It fails with ban.ErrUnavailable when the bucket cannot
// be reached.
func (b *Bans) Remove(p netip.Prefix, now time.Time) (bool, error) {
	p = p.Masked()
	if !containsPrefix(b.list.All(now), p) {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), putWait)
	defer cancel()
	if err := b.kv.Delete(ctx, banKey(p)); err != nil {
		return false, fmt.Errorf("%w: %w", ban.ErrUnavailable, err)
	}
	b.waitApplied(func() bool { return !containsPrefix(b.list.All(time.Now()), p) })
	return true, nil
}

// waitApplied waits until done (called with b.mu held) holds, or applyWait
// has passed.
func (b *Bans) waitApplied(done func() bool) {
	t := time.NewTimer(applyWait)
	defer t.Stop()
	for {
		b.mu.Lock()
		ok, advanced := done(), b.advanced
		b.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-advanced:
		case <-t.C:
			return
		}
	}
}

// apply applies one entry of the bucket to the mirror: a ban, or its
// removal (also of a ban that has ended). With kick, a ban another node
// stored closes the matching streams. An entry whose key and value do not
// make a ban this node would make is skipped and logged.
func (b *Bans) apply(ctx context.Context, e *jetstream.KVEntry, kick bool) {
	defer b.advance(e.Revision)
	now := time.Now()
	p, err := keyPrefix(e.Key)
	var bn ban.Ban
	var origin string
	if err == nil && e.Op == jetstream.KVPut {
		bn, origin, err = decodeBan(e.Value, p)
	}
	switch {
	case err != nil:
		b.log.Warn("a ban in the room's bucket refused", "key", e.Key, "error", err)
		return
	case e.Op != jetstream.KVPut || (!bn.Until.IsZero() && !bn.Until.After(now)):
		_, _ = b.list.Remove(p, now) // a list in memory: no error
		return
	}
	_, _ = b.list.Remove(p, now) // the newest change last
	if _, err := b.list.Add(p, bn.Until, now); err != nil {
		b.log.Warn("a ban in the room's bucket not applied", "addr", bn.String(), "error", err)
		return
	}
	if kick && origin != b.origin {
		if _, err := b.room.Kick(ctx, func(addr string) bool { return ban.Covers(bn, addr) }); err != nil && ctx.Err() == nil {
			b.log.Warn("could not close the streams of a banned address", "addr", bn.String(), "error", err)
		}
	}
}

// advance records that the mirror applied the entry at rev.
func (b *Bans) advance(rev uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.applied = max(b.applied, rev)
	close(b.advanced)
	b.advanced = make(chan struct{})
}

// decodeBan reads a ban, and the origin of the node that stored it, from
// a value, which must name the prefix p of its key.
func decodeBan(data []byte, p netip.Prefix) (ban.Ban, string, error) {
	var v banValue
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return ban.Ban{}, "", fmt.Errorf("value: %w", err)
	}
	q, err := ban.Parse(v.Addr)
	switch {
	case err != nil:
		return ban.Ban{}, "", err
	case q != p:
		return ban.Ban{}, "", fmt.Errorf("value names %s, not the key's %s", ban.Format(q), ban.Format(p))
	}
	bn := ban.Ban{Prefix: q}
	if v.Until != nil {
		bn.Until = *v.Until
	}
	return bn, v.Origin, nil
}

// banKey returns the bucket's key of a banned prefix: its text, with the
// colons of IPv6 (which keys may not hold) made underscores.
func banKey(p netip.Prefix) string { return strings.ReplaceAll(ban.Format(p), ":", "_") }

// keyPrefix returns the prefix a bucket key names (banKey's inverse), or
// an error for a key banKey would not make.
func keyPrefix(key string) (netip.Prefix, error) {
	p, err := ban.Parse(strings.ReplaceAll(key, "_", ":"))
	if err == nil && banKey(p) != key {
		err = fmt.Errorf("key %q is not the key of %s", key, ban.Format(p))
	}
	return p, err
}

// containsPrefix reports whether bans holds a ban on exactly p.
func containsPrefix(bans []ban.Ban, p netip.Prefix) bool {
	for _, b := range bans {
		if b.Prefix == p {
			return true
		}
	}
	return false
}
