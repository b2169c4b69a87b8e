package clusterlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"chat/internal/jetstream"
	"chat/internal/nats"
	"chat/internal/record"
	"chat/internal/roomlog"
)

// TestOpenMakesStream checks the stream a first node makes (the room's
// subject alone, file storage, the replicas, History records with the
// oldest discarded, the duplicate window, no deletions or purges) and
// that the ids' epoch is its creation time; a second node uses it.
func TestOpenMakesStream(t *testing.T) {
	s := startServer(t)
	a := openNode(t, testConfig([]string{s.URL()}, 7))
	info, err := client(t, []string{s.URL()}).StreamInfo(context.Background(), testStream)
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if !slices.Equal(c.Subjects, []string{"chat.ROOM.log"}) || c.Storage != "file" || c.Retention != "limits" ||
		c.Replicas != 1 || c.MaxMsgs != 7 || c.Discard != "old" || c.Duplicates != 2*time.Minute ||
		c.MaxAge != 0 || !c.DenyDelete || !c.DenyPurge {
		t.Errorf("stream configuration = %+v", c)
	}
	if got, want := a.store.Epoch(), info.Created.UnixMilli(); got != want {
		t.Errorf("epoch = %d, want the stream's creation time %d", got, want)
	}
	b := openNode(t, testConfig([]string{s.URL()}, 7))
	if b.store.Epoch() != a.store.Epoch() {
		t.Errorf("the second node's epoch %d differs from the first's %d", b.store.Epoch(), a.store.Epoch())
	}
	if st := b.store.Status(); !st.Connected || st.Stream != testStream || st.Epoch != a.store.Epoch() || st.Error != "" || strings.Contains(st.URL, "@") {
		t.Errorf("Status() = %+v", st)
	}
}

// TestOpenRefusesConflictingStream makes a stream the room cannot use,
// one way at a time, and checks that Open names the field that differs;
// a stream that differs only where the room does not care is used.
func TestOpenRefusesConflictingStream(t *testing.T) {
	s := startServer(t)
	js := client(t, []string{s.URL()})
	want := streamConfig(Config{Stream: testStream, Replicas: 1, History: 100, Duplicates: DefaultDuplicates})
	for _, tt := range []struct {
		name   string
		change func(c *jetstream.StreamConfig)
		cfg    func(c *Config)
		field  string
	}{
		{name: "fewer messages", change: func(c *jetstream.StreamConfig) { c.MaxMsgs = 50 }, field: "max_msgs"},
		{name: "memory", change: func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage }, field: "storage"},
		{name: "more subjects", change: func(c *jetstream.StreamConfig) { c.Subjects = append(c.Subjects, "other") }, field: "subjects"},
		{name: "discard new", change: func(c *jetstream.StreamConfig) { c.Discard = jetstream.DiscardNew }, field: "discard"},
		{name: "max age", change: func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour }, field: "max_age"},
		{name: "max bytes", change: func(c *jetstream.StreamConfig) { c.MaxBytes = 1 << 20 }, field: "max_bytes"},
		{name: "short duplicate window", change: func(c *jetstream.StreamConfig) { c.Duplicates = time.Second }, field: "duplicate_window"},
		{name: "other replicas", cfg: func(c *Config) { c.Replicas = 3 }, field: "num_replicas"},
		{name: "longer duplicate window is fine", change: func(c *jetstream.StreamConfig) { c.Duplicates = 10 * time.Minute }},
		{name: "deletes allowed is fine", change: func(c *jetstream.StreamConfig) { c.DenyDelete, c.DenyPurge = false, false }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc := want
			if tt.change != nil {
				tt.change(&sc)
			}
			if _, err := js.CreateStream(context.Background(), sc); err != nil {
				t.Fatalf("make the stream: %v", err)
			}
			t.Cleanup(func() { _ = js.DeleteStream(context.Background(), testStream) })
			cfg := testConfig([]string{s.URL()}, 100)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			st, _, err := Open(ctx, cfg)
			var ce *ConflictError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Open: %v, want the stream used", err)
			case tt.field == "":
				st.Shutdown()
			case !errors.As(err, &ce) || ce.Field != tt.field:
				if err == nil {
					st.Shutdown()
				}
				t.Fatalf("Open: %v, want a conflict on %s", err, tt.field)
			case !strings.Contains(err.Error(), tt.field) || !strings.Contains(err.Error(), testStream):
				t.Errorf("error %q does not name the stream and the field", err)
			}
		})
	}
}

// TestTwoNodesOneOrder posts on two nodes at once and checks that both
// commit every record in the same order with the same bytes, that each
// post's answer is its own record, and that time follows order.
func TestTwoNodesOneOrder(t *testing.T) {
	s := startServer(t)
	a := openNode(t, testConfig([]string{s.URL()}, 100))
	b := openNode(t, testConfig([]string{s.URL()}, 100))
	const each = 15
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered := map[string]*roomlog.Proposal{}
	for _, n := range []*node{a, b} {
		wg.Go(func() {
			for i := range each {
				p := message("u", fmt.Sprintf("%p-%d", n, i), "")
				n.propose(p)
				if err := answer(t, p); err != nil {
					t.Errorf("post %s: %v", p.Content, err)
					return
				}
				mu.Lock()
				answered[p.Content] = p
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	a.waitSeq(2 * each)
	b.waitSeq(2 * each)
	ra, ea := a.seen()
	rb, eb := b.seen()
	if !slices.Equal(summary(ra), summary(rb)) || !slices.EqualFunc(ea, eb, bytes.Equal) {
		t.Fatalf("the nodes committed differently:\na %v\nb %v", summary(ra), summary(rb))
	}
	if len(ra) != 2*each {
		t.Fatalf("%d records committed, want %d", len(ra), 2*each)
	}
	for i, r := range ra {
		p := answered[r.Content]
		if r.Seq != uint64(i+1) || p == nil || p.Message != r.Message {
			t.Errorf("record %d = %+v, its post was answered %+v", i+1, r.Message, p)
		}
		if i > 0 && r.Time.Before(ra[i-1].Time) {
			t.Errorf("record %d has time %v, before record %d's %v", i+1, r.Time, i, ra[i-1].Time)
		}
		if want := record.FormatID(a.store.Epoch(), r.Seq); r.ID != want {
			t.Errorf("record %d has id %s, want %s", i+1, r.ID, want)
		}
	}
}

// TestKeysAcrossNodes checks Idempotency-Keys across two nodes: a retry on
// the other node gets the original message; other content under the key a
// conflict; posts with one key on both nodes at once store one record,
// and both are answered with it (or a conflict for other content).
func TestKeysAcrossNodes(t *testing.T) {
	s := startServer(t)
	a := openNode(t, testConfig([]string{s.URL()}, 100))
	b := openNode(t, testConfig([]string{s.URL()}, 100))
	first := message("u", "hello", "k1")
	a.propose(first)
	if err := answer(t, first); err != nil || first.Repeat {
		t.Fatalf("first post: %v, repeat %v", err, first.Repeat)
	}
	b.waitSeq(first.Seq)
	retry := message("u", "hello", "k1")
	b.propose(retry)
	if err := answer(t, retry); err != nil || !retry.Repeat || retry.Message != first.Message {
		t.Errorf("retry on b: %v, repeat %v, %+v; want a repeat of %+v", err, retry.Repeat, retry.Message, first.Message)
	}
	other := message("u", "bye", "k1")
	b.propose(other)
	if err := answer(t, other); !errors.Is(err, roomlog.ErrKeyConflict) {
		t.Errorf("other content under k1 on b: %v, want ErrKeyConflict", err)
	}

	for round := range 5 {
		same := fmt.Sprintf("same-%d", round)
		diff := fmt.Sprintf("diff-%d", round)
		ps := []*roomlog.Proposal{message("u", "x", same), message("u", "x", same), message("u", "y", diff), message("u", "z", diff)}
		var wg sync.WaitGroup
		for i, p := range ps {
			n := []*node{a, b}[i%2]
			wg.Go(func() { n.propose(p) })
		}
		wg.Wait()
		errs := make([]error, len(ps))
		for i, p := range ps {
			errs[i] = answer(t, p)
		}
		if errs[0] != nil || errs[1] != nil || ps[0].Message != ps[1].Message || ps[0].Repeat == ps[1].Repeat {
			t.Errorf("round %d, one key and content on both nodes: %v/%v, %+v/%+v, repeats %v/%v; want one stored, one repeat, one message",
				round, errs[0], errs[1], ps[0].Message, ps[1].Message, ps[0].Repeat, ps[1].Repeat)
		}
		ok, conflict := 0, 0
		for i := 2; i < 4; i++ {
			switch {
			case errs[i] == nil && !ps[i].Repeat:
				ok++
			case errors.Is(errs[i], roomlog.ErrKeyConflict):
				conflict++
			}
		}
		if ok != 1 || conflict != 1 {
			t.Errorf("round %d, one key with two contents on both nodes: %v, %v; want one stored, one conflict", round, errs[2], errs[3])
		}
	}
	last := a.post("end")
	b.waitSeq(last.Seq)
	ra, _ := a.seen()
	rb, _ := b.seen()
	if !slices.Equal(summary(ra), summary(rb)) || len(ra) != 1+5*2+1 {
		t.Errorf("committed: a %v, b %v; want the same %d records", summary(ra), summary(rb), 1+5*2+1)
	}
}

// TestVoidRecords publishes, as something other than a node, records no
// node could have written, between valid ones: every node skips each in
// its place and logs it, commits the valid ones with their sequence
// numbers, and a node that starts later loads the same history.
func TestVoidRecords(t *testing.T) {
	s := startServer(t)
	a := openNode(t, testConfig([]string{s.URL()}, 100))
	b := openNode(t, testConfig([]string{s.URL()}, 100))
	js := client(t, []string{s.URL()})
	id1 := record.FormatID(a.store.Epoch(), 1)
	for _, m := range []struct {
		h    nats.Header
		data string
	}{
		{nil, `{"username":"ann","content":"valid, from elsewhere"}`},
		{nil, `not json`},
		{nil, `{"username":"ann"}`},
		{nil, `{"username":"ann","content":"hi","extra":1}`},
		{nil, `{"username":"ann","content":"hi"} {}`},
		{nil, `{"username":"ann","content":"hi","delete":"` + id1 + `"}`},
		{nil, `{"delete":"nope"}`},
		{nil, "{\"username\":\"ann\",\"content\":\"\xff\"}"},
		{nil, `{"username":"bad","content":"refused by the room's rules"}`},
		{nats.Header{KeyHeader: {"has space"}}, `{"username":"ann","content":"bad key"}`},
		{nats.Header{KeyHeader: {"k"}}, `{"username":"ann","content":"keyed, from elsewhere"}`},
	} {
		publishRaw(t, js, m.h, m.data)
	}
	p := a.post("after")
	if p.Seq != 12 {
		t.Fatalf("the post after 11 records has sequence %d", p.Seq)
	}
	b.waitSeq(12)
	want := []string{"1:ann:valid, from elsewhere", "11:ann:keyed, from elsewhere", "12:u:after"}
	for name, n := range map[string]*node{"a": a, "b": b} {
		recs, _ := n.seen()
		if got := summary(recs); !slices.Equal(got, want) {
			t.Errorf("node %s committed %v, want %v", name, got, want)
		}
		for seq := 2; seq <= 10; seq++ {
			if !strings.Contains(n.logs.String(), fmt.Sprintf("seq=%d ", seq)) {
				t.Errorf("node %s did not log void record %d:\n%s", name, seq, n.logs)
			}
		}
	}
	retry := message("ann", "keyed, from elsewhere", "k")
	b.propose(retry)
	if err := answer(t, retry); err != nil || !retry.Repeat || retry.Seq != 11 {
		t.Errorf("retry of the key the foreign record carries: %v, repeat %v, seq %d", err, retry.Repeat, retry.Seq)
	}
	c := openNode(t, testConfig([]string{s.URL()}, 100))
	if got, want := summary(c.recovered), []string{"1:ann:valid, from elsewhere", "2:void", "3:void", "4:void", "5:void", "6:void", "7:void", "8:void", "9:void", "10:void", "11:ann:keyed, from elsewhere", "12:u:after"}; !slices.Equal(got, want) {
		t.Errorf("a node started later loaded %v, want %v", got, want)
	}
	if pa, pc := a.page(), c.page(); !slices.EqualFunc(pa.Msgs, pc.Msgs, bytes.Equal) {
		t.Errorf("pages differ:\n%q\n%q", pa.Msgs, pc.Msgs)
	}
}

// TestLoadHistory checks a node's start: it loads the last History
// records of a stream that holds more, deletions included, and then serves
// the same pages and replays as a node that ran all along, reading on
// from there.
func TestLoadHistory(t *testing.T) {
	s := startServer(t)
	a := openNode(t, testConfig([]string{s.URL()}, 5))
	var ids []string
	for i := range 8 {
		ids = append(ids, a.post(fmt.Sprintf("m%d", i)).ID)
	}
	d := deletion(ids[6])
	a.propose(d)
	if err := answer(t, d); err != nil {
		t.Fatal(err)
	}
	c := openNode(t, testConfig([]string{s.URL()}, 5))
	if got, want := summary(c.recovered), []string{"5:u:m4", "6:u:m5", "7:u:m6", "8:u:m7", "9:delete:" + ids[6]}; !slices.Equal(got, want) {
		t.Fatalf("loaded %v, want %v", got, want)
	}
	for _, from := range []uint64{0, 3, 4, 6, 9} {
		pos := &roomlog.Position{ID: record.FormatID(a.store.Epoch(), from), Epoch: a.store.Epoch(), Seq: from}
		var ra, rc roomlog.Replay
		a.do(func() { ra = a.log.Replay(pos, 50) })
		c.do(func() { rc = c.log.Replay(pos, 50) })
		if ra.ID != rc.ID || ra.Reset != rc.Reset || !slices.EqualFunc(ra.Events, rc.Events, bytes.Equal) {
			t.Errorf("replay after %d: a %s %q %q, c %s %q %q", from, ra.ID, ra.Reset, ra.Events, rc.ID, rc.Reset, rc.Events)
		}
	}
	p := c.post("from c")
	a.waitSeq(p.Seq)
	if p.Seq != 10 {
		t.Errorf("c's first post has sequence %d, want 10", p.Seq)
	}
	if pa, pc := a.page(), c.page(); !slices.EqualFunc(pa.Msgs, pc.Msgs, bytes.Equal) {
		t.Errorf("pages differ:\n%q\n%q", pa.Msgs, pc.Msgs)
	}
}

// TestDeleteTwiceAcrossNodes deletes one message on two nodes at once:
// one deletion is done, the other does nothing and is answered
// ErrNoSuchMessage, on both nodes the same.
func TestDeleteTwiceAcrossNodes(t *testing.T) {
	s := startServer(t)
	a := openNode(t, testConfig([]string{s.URL()}, 100))
	b := openNode(t, testConfig([]string{s.URL()}, 100))
	m := a.post("to delete")
	b.waitSeq(m.Seq)
	da, db := deletion(m.ID), deletion(m.ID)
	var wg sync.WaitGroup
	wg.Go(func() { a.propose(da) })
	wg.Go(func() { b.propose(db) })
	wg.Wait()
	ea, eb := answer(t, da), answer(t, db)
	if (ea == nil) == (eb == nil) || !errors.Is(errors.Join(ea, eb), roomlog.ErrNoSuchMessage) {
		t.Fatalf("deletions on a and b: %v, %v; want one done and one ErrNoSuchMessage", ea, eb)
	}
	next := a.post("next")
	b.waitSeq(next.Seq)
	// The second deletion takes a sequence number (and does nothing) when
	// both went out before either came back; when its node had already
	// read the first, it refused it at once without publishing it.
	if next.Seq != 3 && next.Seq != 4 {
		t.Errorf("the post after two deletions has sequence %d, want 3 or 4", next.Seq)
	}
	ra, eva := a.seen()
	rb, evb := b.seen()
	if !slices.Equal(summary(ra), summary(rb)) || !slices.EqualFunc(eva, evb, bytes.Equal) || len(ra) != 3 {
		t.Errorf("committed: a %v, b %v; want the message, one deletion and the next post on both", summary(ra), summary(rb))
	}
}

// TestDisconnected stops the NATS server under a node: a post is refused
// at once with ErrUnavailable and Health says why; when the server is back
// the node reconnects by itself, reads on from where it was (no gap, no
// duplicate) and takes posts again.
func TestDisconnected(t *testing.T) {
	s := startServer(t)
	a := openNode(t, testConfig([]string{s.URL()}, 100))
	b := openNode(t, testConfig([]string{s.URL()}, 100))
	first := a.post("before")
	b.waitSeq(first.Seq)
	s.Stop()
	deadline := time.Now().Add(waitTimeout)
	for a.store.Health() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // bounded poll: the loss is seen when the socket closes
	}
	if err := a.store.Health(); err == nil || !strings.Contains(err.Error(), "disconnected") {
		t.Fatalf("Health() with the server stopped = %v", err)
	}
	p := message("u", "while down", "k")
	start := time.Now()
	a.propose(p)
	if err := answer(t, p); !errors.Is(err, roomlog.ErrUnavailable) || time.Since(start) > time.Second {
		t.Errorf("post while disconnected: %v after %v; want ErrUnavailable at once", err, time.Since(start))
	}
	if st := a.store.Status(); st.Connected || st.Error == "" || st.LastSeq != first.Seq {
		t.Errorf("Status() while down = %+v", st)
	}
	s.Restart()
	deadline = time.Now().Add(waitTimeout)
	for a.store.Health() != nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // bounded poll: the client reconnects with a backoff
	}
	retry := message("u", "while down", "k")
	b.propose(retry) // b may still be reconnecting: retry until it takes it
	for err := answer(t, retry); err != nil; err = answer(t, retry) {
		if !errors.Is(err, roomlog.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("post after the server came back: %v", err)
		}
		retry = message("u", "while down", "k")
		time.Sleep(10 * time.Millisecond) // bounded poll until b has reconnected
		b.propose(retry)
	}
	a.waitSeq(retry.Seq)
	if retry.Seq != first.Seq+1 || retry.Repeat {
		t.Errorf("the post after the outage has sequence %d (repeat %v), want %d", retry.Seq, retry.Repeat, first.Seq+1)
	}
	ra, _ := a.seen()
	rb, _ := b.seen()
	if want := []string{"1:u:before", "2:u:while down"}; !slices.Equal(summary(ra), want) || !slices.Equal(summary(rb), want) {
		t.Errorf("committed: a %v, b %v; want %v", summary(ra), summary(rb), want)
	}
	if st := a.store.Status(); !st.Connected || st.Reconnects == 0 || st.Error != "" {
		t.Errorf("Status() after the outage = %+v", st)
	}
}

// TestFateUnknown freezes the NATS server while a post is published: the
// post is answered ErrFateUnknown within the publish bound; once the
// server runs on it stores the record, which every node commits, and a
// retry with the post's key is answered with it, stored once.
func TestFateUnknown(t *testing.T) {
	s := startServer(t)
	cfg := testConfig([]string{s.URL()}, 100)
	cfg.PublishWait = 500 * time.Millisecond
	a := openNode(t, cfg)
	b := openNode(t, cfg)
	s.Pause()
	p := message("u", "in the dark", "k")
	start := time.Now()
	a.propose(p)
	err := answer(t, p)
	s.Resume()
	if !errors.Is(err, roomlog.ErrFateUnknown) || time.Since(start) > 5*time.Second {
		t.Fatalf("post to a frozen server: %v after %v; want ErrFateUnknown within the bound", err, time.Since(start))
	}
	a.waitSeq(1)
	retry := message("u", "in the dark", "k")
	a.propose(retry)
	if err := answer(t, retry); err != nil || !retry.Repeat || retry.Seq != 1 {
		t.Errorf("retry with the key: %v, repeat %v, seq %d; want a repeat of record 1", err, retry.Repeat, retry.Seq)
	}
	b.waitSeq(1)
	last := b.post("after")
	a.waitSeq(last.Seq)
	ra, _ := a.seen()
	if want := []string{"1:u:in the dark", "2:u:after"}; !slices.Equal(summary(ra), want) {
		t.Errorf("committed %v, want %v", summary(ra), want)
	}
}

// TestCloseFailsInFlight stops a node while a post is on its way to a
// frozen server: the post is answered ErrFateUnknown, and the node stops.
func TestCloseFailsInFlight(t *testing.T) {
	s := startServer(t)
	a := openNode(t, testConfig([]string{s.URL()}, 100))
	s.Pause()
	defer s.Resume()
	p := message("u", "x", "")
	a.propose(p)
	if a.store.Drain(100 * time.Millisecond) {
		t.Error("Drain reported nothing in flight")
	}
	late := message("u", "y", "")
	a.propose(late)
	if err := answer(t, late); !errors.Is(err, roomlog.ErrUnavailable) {
		t.Errorf("post while draining: %v, want ErrUnavailable", err)
	}
	a.close()
	if err := answer(t, p); !errors.Is(err, roomlog.ErrFateUnknown) {
		t.Errorf("post in flight at close: %v, want ErrFateUnknown", err)
	}
}

// TestStreamMadeAgain deletes the room's stream under a node and makes it
// again (a new epoch, its sequence numbers starting over): once the node's
// reader is made again (here after a reconnect) and reads a record of the
// new stream, the node stops taking posts and Health says to restart it,
// rather than serve the new stream's records under the old epoch.
func TestStreamMadeAgain(t *testing.T) {
	s := startServer(t)
	a := openNode(t, testConfig([]string{s.URL()}, 100))
	first := a.post("old epoch")
	js := client(t, []string{s.URL()})
	if err := js.DeleteStream(context.Background(), testStream); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(context.Background(), streamConfig(Config{Stream: testStream, Replicas: 1, History: 100, Duplicates: DefaultDuplicates})); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		publishRaw(t, js, nil, fmt.Sprintf(`{"username":"ann","content":"new epoch %d"}`, i))
	}
	s.Restart()
	deadline := time.Now().Add(waitTimeout)
	for a.store.Health() == nil || !strings.Contains(a.store.Health().Error(), "made again") {
		if time.Now().After(deadline) {
			t.Fatalf("Health() = %v %v after the stream was made again, want it to say so", a.store.Health(), waitTimeout)
		}
		time.Sleep(10 * time.Millisecond) // bounded poll: the node reconnects with a backoff
	}
	p := message("u", "after", "")
	a.propose(p)
	if err := answer(t, p); !errors.Is(err, roomlog.ErrUnavailable) {
		t.Errorf("post after the stream was made again: %v, want ErrUnavailable", err)
	}
	if recs, _ := a.seen(); len(recs) != 1 || recs[0].ID != first.ID {
		t.Errorf("the node committed %v, want only %s of its own epoch", summary(recs), first.ID)
	}
}
