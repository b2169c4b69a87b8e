package clusterstate

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"chat/internal/ban"
	"chat/internal/jetstream"
)

// openBans opens nd's bans, stopped when the test ends.
func openBans(t *testing.T, nd *node) *Bans {
	t.Helper()
	b, err := OpenBans(ctx(t), nd.cfg, nd.room)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	return b
}

// banList returns b's bans in force, as text, in order.
func banList(b *Bans) []string {
	var out []string
	for _, bn := range b.All(time.Now()) {
		out = append(out, bn.String())
	}
	return out
}

// prefix parses a ban's address or prefix.
func prefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := ban.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBansAcrossNodes bans on one node and lifts on another: each change
// is in the writer's list when Add or Remove returns and in the other's
// within 2 s; the other node closes the banned address's streams, the
// writer leaves that to its caller; both lists are the same, in the same
// order, and a node that starts later loads them.
func TestBansAcrossNodes(t *testing.T) {
	srv := startServer(t)
	a, b := newNode(t, srv.URL()), newNode(t, srv.URL())
	a.room.probe, b.room.probe = "203.0.113.7", "203.0.113.7"
	ba, bb := openBans(t, a), openBans(t, b)
	now := time.Now()

	if _, err := ba.Add(prefix(t, "203.0.113.0/24"), time.Time{}, now); err != nil {
		t.Fatal(err)
	}
	if got := banList(ba); !slices.Equal(got, []string{"203.0.113.0/24"}) {
		t.Fatalf("writer's list right after Add: %v", got)
	}
	d := waitFor(t, 2*time.Second, "the ban on the other node", func() bool { return len(banList(bb)) == 1 })
	t.Logf("a ban reached the other node in %v", d)
	waitFor(t, 2*time.Second, "the other node's kick", func() bool { return len(b.room.kicks()) == 1 })
	if k := b.room.kicks(); !k[0] {
		t.Error("the other node's kick does not match an address in the banned prefix")
	}
	if k := a.room.kicks(); len(k) != 0 {
		t.Errorf("the writer's node kicked %d times itself; its caller does", len(k))
	}

	// Interleaved changes on both nodes; a ban replaced moves last.
	if _, err := bb.Add(prefix(t, "2001:db8::1"), now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if _, err := ba.Add(prefix(t, "198.51.100.9"), time.Time{}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := bb.Add(prefix(t, "203.0.113.0/24"), now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	want := []string{"2001:db8::/64", "198.51.100.9", "203.0.113.0/24"}
	for _, bans := range []*Bans{ba, bb} {
		waitFor(t, 2*time.Second, "the same list on both nodes", func() bool { return slices.Equal(banList(bans), want) })
	}
	if ok, err := bb.Remove(prefix(t, "198.51.100.9"), now); !ok || err != nil {
		t.Fatalf("Remove: %v, %v", ok, err)
	}
	if ok, err := bb.Remove(prefix(t, "198.51.100.9"), now); ok || err != nil {
		t.Errorf("Remove of a ban no longer there: %v, %v; want false", ok, err)
	}
	want = []string{"2001:db8::/64", "203.0.113.0/24"}
	waitFor(t, 2*time.Second, "the lifted ban gone on the other node", func() bool { return slices.Equal(banList(ba), want) })

	later := openBans(t, newNode(t, srv.URL()))
	if got := banList(later); !slices.Equal(got, want) {
		t.Errorf("a node started later has %v, want %v", got, want)
	}
	if _, ok := later.List().Banned("2001:db8::77", time.Now()); !ok {
		t.Error("the later node's list does not ban an address of a banned /64")
	}
}

// TestBanEnds bans an address for two seconds: the ban leaves both
// nodes' lists when it ends, and the bucket forgets it (its value's TTL).
func TestBanEnds(t *testing.T) {
	srv := startServer(t)
	a, b := newNode(t, srv.URL()), newNode(t, srv.URL())
	ba, bb := openBans(t, a), openBans(t, b)
	now := time.Now()
	if _, err := ba.Add(prefix(t, "192.0.2.1"), now.Add(2*time.Second), now); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the ban on the other node", func() bool { return len(banList(bb)) == 1 })
	kv, err := a.cfg.JS.KV(ctx(t), Bucket(testStream, "bans"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the ban's end on both nodes and in the bucket", func() bool {
		_, err := kv.Get(ctx(t), banKey(prefix(t, "192.0.2.1")))
		return len(banList(ba)) == 0 && len(banList(bb)) == 0 && errors.Is(err, jetstream.ErrKeyNotFound)
	})
}

// TestBansRefuseBadValues writes entries no node writes into the bans
// bucket: a key that is no prefix, a value that names another prefix, a
// value that is not a ban. Each is skipped with a warning; a good ban
// after them applies.
func TestBansRefuseBadValues(t *testing.T) {
	srv := startServer(t)
	nd := newNode(t, srv.URL())
	bans := openBans(t, nd)
	kv, err := nd.cfg.JS.KV(ctx(t), Bucket(testStream, "bans"))
	if err != nil {
		t.Fatal(err)
	}
	for _, kvs := range [][2]string{
		{"not-an-address", `{"addr":"not-an-address","until":null}`},
		{"10.0.0.1", `{"addr":"10.0.0.2","until":null}`},
		{"10.0.0.3", `{"addr":"10.0.0.3","until":"soon"}`},
		{"10.0.0.4", `{"addr":"10.0.0.4","until":null,"admin":true}`},
		{"10.0.0.5/32", `{"addr":"10.0.0.5","until":null}`},
		{"10.0.0.6", `{"addr":"10.0.0.6","until":null}`},
	} {
		if _, err := kv.Put(ctx(t), kvs[0], []byte(kvs[1])); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 2*time.Second, "the good ban", func() bool { return len(banList(bans)) > 0 })
	if got := banList(bans); !slices.Equal(got, []string{"10.0.0.6"}) {
		t.Errorf("list %v, want only the good ban", got)
	}
	if n := strings.Count(nd.logs.String(), "a ban in the room's bucket refused"); n != 5 {
		t.Errorf("%d refusals logged, want 5:\n%s", n, nd.logs)
	}
}

// TestBansUnavailable adds and lifts bans while NATS is down: both fail at
// once with ban.ErrUnavailable, and the list is unchanged.
func TestBansUnavailable(t *testing.T) {
	srv := startServer(t)
	nd := newNode(t, srv.URL())
	bans := openBans(t, nd)
	if _, err := bans.Add(prefix(t, "192.0.2.7"), time.Time{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	if _, err := bans.Add(prefix(t, "192.0.2.8"), time.Time{}, time.Now()); !errors.Is(err, ban.ErrUnavailable) {
		t.Errorf("Add with NATS down: %v, want ErrUnavailable", err)
	}
	if _, err := bans.Remove(prefix(t, "192.0.2.7"), time.Now()); !errors.Is(err, ban.ErrUnavailable) {
		t.Errorf("Remove with NATS down: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*putWait+time.Second {
		t.Errorf("the failures took %v", d)
	}
	if got := banList(bans); !slices.Equal(got, []string{"192.0.2.7"}) {
		t.Errorf("list %v after the failures", got)
	}
}
