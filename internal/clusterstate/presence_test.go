package clusterstate

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"chat/internal/presence"
)

// sharePresence starts sharing nd's presence, stopped when the test ends
// (unless the test stopped it).
func sharePresence(t *testing.T, nd *node) *Presence {
	t.Helper()
	p, err := SharePresence(ctx(t), nd.cfg, nd.room)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			p.Stop()
		}
	})
	return p
}

// typing returns the room's typing set as a board sends it.
func (r *room) typing() string {
	var s string
	r.do(func(b *presence.Board) {
		ev, _ := b.TypingNow(time.Now().Add(time.Hour))
		s = string(ev)
	})
	return s
}

// TestPresenceAcrossNodes shares two nodes' presence: each node's roster
// lists everyone, each name once with the streams of both nodes, and the
// anonymous streams of both; a change on one shows on the other within
// 2 s, typing too; a node that stops takes its people off the other's
// roster at once.
func TestPresenceAcrossNodes(t *testing.T) {
	srv := startServer(t)
	a, b := newNode(t, srv.URL()), newNode(t, srv.URL())
	a.room.do(func(bd *presence.Board) { bd.Join("ann"); bd.Join("") })
	pa := sharePresence(t, a)
	b.room.do(func(bd *presence.Board) { bd.Join("ann"); bd.Join("bob"); bd.Join("bob") })
	sharePresence(t, b)
	want := `{"people":[{"name":"ann","streams":2},{"name":"bob","streams":2}],"anonymous":1,"people_total":2}`
	for _, nd := range []*node{a, b} {
		waitFor(t, 2*time.Second, "both nodes' people", func() bool { return nd.room.roster() == want })
	}

	b.room.do(func(bd *presence.Board) { bd.Join("cy"); bd.Leave("bob") })
	d := waitFor(t, 2*time.Second, "cy and one bob on the other node", func() bool {
		return strings.Contains(a.room.roster(), `{"name":"bob","streams":1},{"name":"cy","streams":1}`)
	})
	t.Logf("a change reached the other node in %v", d)
	b.room.do(func(bd *presence.Board) { bd.Typing("cy", time.Now()) })
	d = waitFor(t, 2*time.Second, "cy typing on the other node", func() bool { return strings.Contains(a.room.typing(), `["cy"]`) })
	t.Logf("typing reached the other node in %v", d)

	pa.Stop()
	waitFor(t, 2*time.Second, "the stopped node's people gone", func() bool {
		return b.room.roster() == `{"people":[{"name":"ann","streams":1},{"name":"bob","streams":1},{"name":"cy","streams":1}],"anonymous":0,"people_total":3}`
	})
	waitFor(t, 2*time.Second+leaveTTL, "the stopped node's share expired", func() bool {
		var n int
		b.room.do(func(bd *presence.Board) { n = bd.Nodes() })
		return n == 1
	})
}

// TestPresenceOfADeadNode stops a node's sharing without leaving, as a
// node killed at once does: the other node drops its people when its share
// expires, within shareTTL of its last renewal and well within 20 s.
func TestPresenceOfADeadNode(t *testing.T) {
	srv := startServer(t)
	a, b := newNode(t, srv.URL()), newNode(t, srv.URL())
	a.room.do(func(bd *presence.Board) { bd.Join("ann") })
	pa := sharePresence(t, a)
	sharePresence(t, b)
	waitFor(t, 2*time.Second, "ann on the other node", func() bool { return strings.Contains(b.room.roster(), "ann") })
	pa.cancel() // dies: no leaving share, no more renewals
	pa.wg.Wait()
	start := time.Now()
	waitFor(t, 20*time.Second, "the dead node's people gone", func() bool { return !strings.Contains(b.room.roster(), "ann") })
	d := time.Since(start)
	t.Logf("the dead node's people left after %v", d)
	if d < shareTTL-shareRenew-time.Second {
		t.Errorf("the people left after %v, before their share could expire (%v after its last renewal)", d, shareTTL)
	}
}

// TestPresencePublishesAtMostOnceASecond joins 3 000 streams to a node over
// about three seconds and counts the node's publishes in the bucket: about
// one a second, not one per join; the other node has them all at the end.
func TestPresencePublishesAtMostOnceASecond(t *testing.T) {
	srv := startServer(t)
	a, b := newNode(t, srv.URL()), newNode(t, srv.URL())
	pa := sharePresence(t, a)
	sharePresence(t, b)
	sub, err := b.cfg.JS.Conn().Subscribe("$KV." + Bucket(testStream, "presence") + "." + pa.Node())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	start := time.Now()
	for i := range 3000 {
		a.room.do(func(bd *presence.Board) { bd.Join(fmt.Sprintf("p%d", i)) })
		if i%10 == 9 {
			time.Sleep(10 * time.Millisecond) // the storm's pace, not a wait for anything
		}
	}
	waitFor(t, 5*time.Second, "every join on the other node", func() bool {
		return strings.HasSuffix(b.room.roster(), `"people_total":3000}`)
	})
	elapsed := time.Since(start)
	n := 0
	for {
		if _, ok := sub.TryNext(); !ok {
			break
		}
		n++
	}
	t.Logf("%d publishes in %v for 3000 joins", n, elapsed)
	if limit := int(elapsed/shareInterval) + 2; n > limit || n < 2 {
		t.Errorf("%d publishes in %v, want 2 to %d (one a second)", n, elapsed, limit)
	}
}

// TestPresenceRefusesBadShares publishes shares no node writes: a name the
// rules refuse, a malformed share, and a share from one node more than a
// board merges. Each is refused with a warning and leaves the roster as it
// was; a node whose share turns bad loses its earlier one.
func TestPresenceRefusesBadShares(t *testing.T) {
	srv := startServer(t)
	nd := newNode(t, srv.URL())
	sharePresence(t, nd)
	kv, err := nd.cfg.JS.KV(ctx(t), Bucket(testStream, "presence"))
	if err != nil {
		t.Fatal(err)
	}
	put := func(key, value string) {
		t.Helper()
		if _, err := kv.PutTTL(ctx(t), key, []byte(value), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	put("good", `{"people":[{"name":"eve","streams":1}],"anonymous":0,"more_people":0,"more_streams":0,"typing":[]}`)
	waitFor(t, 2*time.Second, "the good share", func() bool { return strings.Contains(nd.room.roster(), "eve") })
	put("ctl", `{"people":[{"name":"a\u0000b","streams":1}],"anonymous":0,"typing":[]}`)
	put("spaced", `{"people":[{"name":" eve","streams":1}],"anonymous":0,"typing":[]}`)
	put("good", `{"people":"everyone"}`)
	waitFor(t, 2*time.Second, "the bad shares refused, and the good one's node dropped", func() bool {
		return nd.room.roster() == `{"people":[],"anonymous":0,"people_total":0}`
	})
	if !strings.Contains(nd.logs.String(), "another node's presence refused") {
		t.Errorf("no warning logged:\n%s", nd.logs)
	}
	for i := range presence.MaxNodes + 1 {
		put(fmt.Sprintf("n%d", i), `{"people":[],"anonymous":1,"more_people":0,"more_streams":0,"typing":[]}`)
	}
	put("n0", `{"people":[],"anonymous":2,"more_people":0,"more_streams":0,"typing":[]}`)
	// The watcher reads in order: once n0's second share is in, the share
	// of one node too many was read before it.
	waitFor(t, 5*time.Second, "the shares of the most nodes a board merges", func() bool {
		return strings.Contains(nd.room.roster(), fmt.Sprintf(`"anonymous":%d`, presence.MaxNodes+1))
	})
	if !strings.Contains(nd.logs.String(), "too many nodes") {
		t.Errorf("the share of one node too many was not refused:\n%s", nd.logs)
	}
}

// TestPresenceDropsStaleShares checks the safety net for a removal a node
// missed: a share neither renewed nor removed for staleAfter is dropped,
// one heard from since is kept.
func TestPresenceDropsStaleShares(t *testing.T) {
	nd := &node{room: &room{board: presence.NewBoard(time.Second, 10)}}
	p := &Presence{room: nd.room, log: slog.New(slog.DiscardHandler)}
	now := time.Now()
	nd.room.do(func(b *presence.Board) {
		b.SetRemote("old", &presence.Share{Anonymous: 1})
		b.SetRemote("new", &presence.Share{Anonymous: 2})
	})
	seen := map[string]*heard{"old": {at: now.Add(-staleAfter)}, "new": {at: now.Add(-staleAfter + time.Second)}}
	if !p.dropStale(context.Background(), seen, now) {
		t.Fatal("dropStale: room closed")
	}
	if _, ok := seen["old"]; ok || seen["new"] == nil {
		t.Errorf("seen after dropStale: %v", seen)
	}
	if got := nd.room.roster(); got != `{"people":[],"anonymous":2,"people_total":0}` {
		t.Errorf("roster %s, want the new node's alone", got)
	}
}
