package idem

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestCheckKey checks which keys are accepted.
func TestCheckKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"0f8fad5b-d9cb-469f-a165-70867728950e", true},
		{strings.Repeat("k", MaxKeyLen), true},
		{"!~", true},
		{"", false},
		{strings.Repeat("k", MaxKeyLen+1), false},
		{"has space", false},
		{"tab\there", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"é", false},
		{"line\nbreak", false},
	}
	for _, tt := range tests {
		if err := CheckKey(tt.key); (err == nil) != tt.ok {
			t.Errorf("CheckKey(%q) = %v, want ok %v", tt.key, err, tt.ok)
		}
	}
}

// TestSum checks that fingerprints tell posts apart, including pairs that
// concatenate to the same text.
func TestSum(t *testing.T) {
	if Sum("ab", "c") == Sum("a", "bc") {
		t.Error("Sum(ab, c) == Sum(a, bc)")
	}
	if first, again := Sum("a", "b"), Sum("a", "b"); first != again {
		t.Error("Sum is not deterministic")
	}
	if Sum("a", "b") == Sum("a", "B") {
		t.Error("Sum ignores content")
	}
}

// add adds n keys k<from>..k<from+n-1> with seqs from..from+n-1 at time at.
func add(tb *Table, from, n int, at time.Time) {
	for i := from; i < from+n; i++ {
		tb.Add(Entry{Key: fmt.Sprint("k", i), Seq: uint64(i), ID: fmt.Sprint("1-", i), Time: at})
	}
}

// has reports which of keys k<from>..k<to> are remembered, as a string of
// 0s and 1s.
func has(tb *Table, from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		if _, ok := tb.Get(fmt.Sprint("k", i)); ok {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}

// TestExpireKeepsKeysInHistory checks that a key whose message is still in
// history is kept whatever its age and the table's size.
func TestExpireKeepsKeysInHistory(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tb := New(2, time.Hour)
	add(tb, 1, 5, t0)
	tb.Expire(t0.Add(48*time.Hour), 0) // nothing evicted from history
	if got := has(tb, 1, 5); got != "11111" {
		t.Errorf("keys kept = %s, want 11111", got)
	}
	// Messages 1..3 leave history: the table is over its maximum and the
	// keys are old, so they go; 4 and 5 are still in history.
	tb.Expire(t0.Add(48*time.Hour), 3)
	if got := has(tb, 1, 5); got != "00011" {
		t.Errorf("keys kept = %s, want 00011", got)
	}
}

// TestExpireTTL checks that a key out of history is kept for the TTL while
// the table is under its maximum, and forgotten after.
func TestExpireTTL(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tb := New(100, 24*time.Hour)
	add(tb, 1, 3, t0)
	add(tb, 4, 2, t0.Add(2*time.Hour))
	tb.Expire(t0.Add(23*time.Hour), 5) // all out of history, all young
	if got := has(tb, 1, 5); got != "11111" {
		t.Errorf("keys kept before the TTL = %s, want 11111", got)
	}
	tb.Expire(t0.Add(25*time.Hour), 5) // the first three are 25 h old
	if got := has(tb, 1, 5); got != "00011" {
		t.Errorf("keys kept after the TTL = %s, want 00011", got)
	}
	tb.Expire(t0.Add(27*time.Hour), 5)
	if tb.Len() != 0 {
		t.Errorf("Len = %d after every key expired, want 0", tb.Len())
	}
}

// TestExpireBound checks that keys out of history are forgotten, oldest
// first, down to the maximum even when they are young.
func TestExpireBound(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tb := New(3, 24*time.Hour)
	add(tb, 1, 5, t0)
	tb.Expire(t0, 5)
	if got := has(tb, 1, 5); got != "00111" {
		t.Errorf("keys kept = %s, want 00111", got)
	}
	if tb.Len() != 3 {
		t.Errorf("Len = %d, want 3", tb.Len())
	}
}

// TestReplacedKey checks that a key added again outlives its first entry's
// place in the queue.
func TestReplacedKey(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tb := New(1, time.Hour)
	tb.Add(Entry{Key: "a", Seq: 1, Time: t0})
	tb.Add(Entry{Key: "b", Seq: 2, Time: t0})
	tb.Add(Entry{Key: "a", Seq: 3, Time: t0})
	tb.Expire(t0, 2) // a's first slot is stale, b is over the bound
	if _, ok := tb.Get("b"); ok {
		t.Error("b kept beyond the bound")
	}
	if e, ok := tb.Get("a"); !ok || e.Seq != 3 {
		t.Errorf("Get(a) = %+v, %v; want seq 3", e, ok)
	}
}

// TestQueueCompacts checks that the queue does not grow without bound while
// keys come and go.
func TestQueueCompacts(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tb := New(10, time.Hour)
	for i := 1; i <= 100000; i++ {
		add(tb, i, 1, t0)
		tb.Expire(t0, uint64(i))
	}
	if tb.Len() != 10 {
		t.Errorf("Len = %d, want 10", tb.Len())
	}
	if n := len(tb.queue); n > 4*compactAt {
		t.Errorf("queue holds %d slots for 10 keys", n)
	}
}

// BenchmarkTableMemory reports the heap a full table costs per key, with
// 36-character keys (crypto.randomUUID's form).
func BenchmarkTableMemory(b *testing.B) {
	const n = DefaultMax
	t0 := time.Unix(1_700_000_000, 0)
	for b.Loop() {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tb := New(n, DefaultTTL)
		for i, k := range keys {
			tb.Add(Entry{Key: k, Seq: uint64(i + 1), ID: fmt.Sprintf("1764094637123-%d", i+1), Time: t0})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		// The key strings are counted too: the table holds them.
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc+uint64(n*36))/n, "bytes/key")
		runtime.KeepAlive(tb)
	}
}

// BenchmarkAddExpire measures the hub's cost per keyed post: one Add and
// one Expire that forgets one key.
func BenchmarkAddExpire(b *testing.B) {
	t0 := time.Unix(1_700_000_000, 0)
	tb := New(1000, time.Hour)
	i := 0
	for b.Loop() {
		i++
		tb.Add(Entry{Key: fmt.Sprint(i), Seq: uint64(i), Time: t0})
		tb.Expire(t0, uint64(i))
	}
}

// TestFromHeader checks the Idempotency-Key header: none, one valid key,
// one given twice, one that is not a key.
func TestFromHeader(t *testing.T) {
	for _, tt := range []struct {
		vals []string
		key  string
		err  string
	}{
		{nil, "", ""},
		{[]string{"k-1"}, "k-1", ""},
		{[]string{"k-1", "k-1"}, "", "Idempotency-Key given more than once"},
		{[]string{"has space"}, "", "no spaces"},
	} {
		h := http.Header{"Idempotency-Key": tt.vals}
		key, err := FromHeader(h)
		if key != tt.key || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("FromHeader(%q) = %q, %v; want %q, %q", tt.vals, key, err, tt.key, tt.err)
		}
	}
}
