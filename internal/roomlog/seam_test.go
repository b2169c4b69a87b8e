package roomlog

// Tests of the Store seam with a store whose order comes from elsewhere:
// two nodes' logs over one shared ordered sequence, as two servers over one
// external log would be. The sequence numbers are assigned by the shared
// sequence and learnt only when a record is read back; records other nodes
// published are committed with no local proposal; a publish can fail
// surely, have an unknown fate, or be found a duplicate of a record already
// held under its key. This tests our interface, not any real log.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"chat/internal/record"
)

// sharedEpoch is the shared sequence's epoch.
const sharedEpoch = 1700000000000

// published is a record in the shared sequence, with the id it was
// published under (an Idempotency-Key, or a node-made unique id).
type published struct {
	rec   Record
	msgID string
}

// sharedSeq is one ordered sequence that several nodes publish to: it gives
// each new record the next sequence number, answers a publish under an id
// it already holds with that record's number (a duplicate), and delivers
// its records to every node, in order, when the test says.
type sharedSeq struct {
	recs    []published
	byMsgID map[string]uint64
	nodes   []*nodeStore
	// delivered is how many records every node has been sent.
	delivered int
}

// newSharedSeq returns an empty sequence with a node store for each name.
func newSharedSeq(names ...string) *sharedSeq {
	s := &sharedSeq{byMsgID: make(map[string]uint64)}
	for _, name := range names {
		s.nodes = append(s.nodes, &nodeStore{seq: s, name: name, pending: make(map[string]*Proposal), reports: make(chan record.Commit, 1024)})
	}
	return s
}

// publish appends r under msgID, or reports the record already held under
// it.
func (s *sharedSeq) publish(msgID string, r Record) (seq uint64, dup bool) {
	if seq, ok := s.byMsgID[msgID]; ok {
		return seq, true
	}
	seq = uint64(len(s.recs) + 1)
	r.Seq, r.ID, r.JSON = seq, "", nil
	s.recs = append(s.recs, published{rec: r, msgID: msgID})
	s.byMsgID[msgID] = seq
	return seq, false
}

// deliver sends every node the records published since the last delivery.
func (s *sharedSeq) deliver() {
	for _, p := range s.recs[s.delivered:] {
		for _, n := range s.nodes {
			n.push(item{rec: &p})
		}
	}
	s.delivered = len(s.recs)
}

// item is what a node store has for its reader: a record read back from
// the sequence, or the outcome of one of its publishes.
type item struct {
	rec *published
	// p is the proposal an outcome is about; dupOf the record it
	// duplicates, or err why it failed.
	p     *Proposal
	dupOf uint64
	err   error
}

// nodeStore is one node's Store over a sharedSeq.
type nodeStore struct {
	seq  *sharedSeq
	name string
	// made counts the unique ids the node made for posts without a key.
	made int
	// pending holds the node's proposals published and not yet read
	// back, by the id they were published under.
	pending map[string]*Proposal
	// inbox holds the items not yet settled, in the order they came, and
	// reports signals each one.
	inbox   []item
	reports chan record.Commit
	// fail, when set, is what the next publish meets: ErrUnavailable (it
	// is not sent) or ErrFateUnknown (it is sent, and no answer comes).
	fail error
}

// push queues it for the node's reader and signals it.
func (n *nodeStore) push(it item) {
	n.inbox = append(n.inbox, it)
	n.reports <- record.Commit{N: 1}
}

// Epoch implements Store: the sequence's.
func (n *nodeStore) Epoch() int64 { return sharedEpoch }

// Append implements Store: it publishes the record, which it learns the
// number of only when it reads it back.
func (n *nodeStore) Append(p *Proposal) (bool, error) {
	msgID := p.Key
	if msgID == "" {
		n.made++
		msgID = fmt.Sprintf("%s-%d", n.name, n.made)
	}
	fail := n.fail
	n.fail = nil
	switch fail {
	case ErrUnavailable:
		return false, ErrUnavailable
	case ErrFateUnknown:
		n.seq.publish(msgID, p.Record)
		n.push(item{p: p, err: ErrFateUnknown})
		return false, nil
	}
	if seq, dup := n.seq.publish(msgID, p.Record); dup {
		n.push(item{p: p, dupOf: seq})
		return false, nil
	}
	n.pending[msgID] = p
	return false, nil
}

// Reports implements Store.
func (n *nodeStore) Reports() <-chan record.Commit { return n.reports }

// Settle implements Store: it hands the log the next c.N items.
func (n *nodeStore) Settle(c record.Commit, to Settler) {
	for range c.N {
		it := n.inbox[0]
		n.inbox = n.inbox[1:]
		switch {
		case it.rec != nil:
			r := it.rec.rec
			p := n.pending[it.rec.msgID]
			delete(n.pending, it.rec.msgID)
			to.Commit(&r, p)
		case it.err != nil:
			to.Fail(it.p, it.err)
		default:
			to.Duplicate(it.p, it.dupOf)
		}
	}
}

// Close implements Store: what was published and not read back has an
// unknown fate.
func (n *nodeStore) Close(to Settler) {
	for id, p := range n.pending {
		to.Fail(p, ErrFateUnknown)
		delete(n.pending, id)
	}
}

// node is one node: its log and what its hub was told.
type node struct {
	l    *Log
	seen *seen
}

// newNodes returns two nodes, a and b, over one shared sequence.
func newNodes() (*sharedSeq, node, node) {
	s := newSharedSeq("a", "b")
	mk := func(st *nodeStore) node {
		sn := &seen{}
		return node{New(st, Config{History: 100, Committed: sn.committed}), sn}
	}
	return s, mk(s.nodes[0]), mk(s.nodes[1])
}

// drain settles every report the node's store has sent.
func (n node) drain() {
	for {
		select {
		case c := <-n.l.Reports():
			n.l.Settle(c)
		default:
			return
		}
	}
}

// deliverAll delivers what the sequence holds and settles it on every node.
func deliverAll(s *sharedSeq, nodes ...node) {
	s.deliver()
	for _, n := range nodes {
		n.drain()
	}
}

// sid returns the id of record seq of the shared sequence.
func sid(seq uint64) string { return record.FormatID(sharedEpoch, seq) }

// TestSeamOneOrder checks that posts on two nodes get their ids from the
// shared sequence, only once read back, and that both nodes' hubs are told
// of every record, theirs and the other's, in the same order with the same
// bytes, so their pages and replays are equal.
func TestSeamOneOrder(t *testing.T) {
	s, a, b := newNodes()
	a1 := proposal("ann", "a1", "")
	a.l.Propose(a1)
	b1 := proposal("bob", "b1", "")
	b.l.Propose(b1)
	a2 := proposal("ann", "a2", "")
	a.l.Propose(a2)
	for _, p := range []*Proposal{a1, b1, a2} {
		unanswered(t, p)
	}
	deliverAll(s, a, b)
	for i, p := range []*Proposal{a1, b1, a2} {
		if err := answer(t, p); err != nil || p.ID != sid(uint64(i+1)) || p.Repeat {
			t.Errorf("%s: %v, id %s, repeat %v; want id %s", p.Content, err, p.ID, p.Repeat, sid(uint64(i+1)))
		}
	}
	want := []string{sid(1), sid(2), sid(3)}
	if !slices.Equal(a.seen.ids, want) || !slices.Equal(b.seen.ids, want) {
		t.Fatalf("hubs told a %v, b %v; want both %v", a.seen.ids, b.seen.ids, want)
	}
	for i := range want {
		if !bytes.Equal(a.seen.events[i], b.seen.events[i]) {
			t.Errorf("event %d differs: a %q, b %q", i, a.seen.events[i], b.seen.events[i])
		}
	}
	if b.seen.records[0].Username != "ann" || b.seen.records[0].Content != "a1" {
		t.Errorf("b was told of a's post as %+v", b.seen.records[0])
	}
	pa, _ := a.l.Page(Query{Limit: 10})
	pb, _ := b.l.Page(Query{Limit: 10})
	ra, rb := a.l.Replay(&Position{Epoch: sharedEpoch, Seq: 1}, 10), b.l.Replay(&Position{Epoch: sharedEpoch, Seq: 1}, 10)
	if !slices.EqualFunc(pa.Msgs, pb.Msgs, bytes.Equal) || ra.ID != rb.ID || !slices.EqualFunc(ra.Events, rb.Events, bytes.Equal) {
		t.Errorf("the nodes serve different history: pages %q / %q, replays %q / %q", pa.Msgs, pb.Msgs, ra.Events, rb.Events)
	}

	// A record read again (a reader that reconnects and is sent it once
	// more) is not committed twice.
	s.nodes[1].push(item{rec: &s.recs[2]})
	b.drain()
	if len(b.seen.ids) != 3 {
		t.Errorf("a record read twice was committed twice: %v", b.seen.ids)
	}
}

// TestSeamKeysAcrossNodes checks Idempotency-Keys across nodes: a retry on
// the other node once it has read the record is answered at once; posts
// with one key on both nodes at once store one record, and the node whose
// publish was the duplicate answers its post once it has read that record,
// as a repeat (or ErrKeyConflict for other content), with its own retries
// waiting on it answered the same.
func TestSeamKeysAcrossNodes(t *testing.T) {
	s, a, b := newNodes()
	first := proposal("u", "hello", "k1")
	a.l.Propose(first)
	deliverAll(s, a, b)
	retry := proposal("u", "hello", "k1")
	b.l.Propose(retry)
	if err := answer(t, retry); err != nil || !retry.Repeat || retry.Message != first.Message {
		t.Errorf("retry on b: %v, repeat %v, %+v; want a repeat of %+v", err, retry.Repeat, retry.Message, first.Message)
	}
	conflict := proposal("u", "bye", "k1")
	b.l.Propose(conflict)
	if err := answer(t, conflict); !errors.Is(err, ErrKeyConflict) {
		t.Errorf("other content under k1 on b: %v, want ErrKeyConflict", err)
	}

	// At once on both nodes, before either has read anything: b's
	// publishes are duplicates of a's record, which b has not read yet.
	onA := proposal("u", "x", "k2")
	a.l.Propose(onA)
	onB := proposal("u", "x", "k2")
	b.l.Propose(onB)
	onBAgain := proposal("u", "x", "k2")
	b.l.Propose(onBAgain) // waits on onB, in flight on b
	other := proposal("u", "not x", "k3")
	a.l.Propose(other)
	otherB := proposal("u", "y", "k3")
	b.l.Propose(otherB)
	b.drain() // the duplicates' outcomes come before the records
	for _, p := range []*Proposal{onA, onB, onBAgain, otherB} {
		unanswered(t, p)
	}
	deliverAll(s, a, b)
	if err := answer(t, onA); err != nil || onA.Repeat {
		t.Errorf("k2 on a: %v, repeat %v; want stored", err, onA.Repeat)
	}
	for _, p := range []*Proposal{onB, onBAgain} {
		if err := answer(t, p); err != nil || !p.Repeat || p.Message != onA.Message {
			t.Errorf("k2 on b: %v, repeat %v, %+v; want a repeat of %+v", err, p.Repeat, p.Message, onA.Message)
		}
	}
	if err := answer(t, otherB); !errors.Is(err, ErrKeyConflict) {
		t.Errorf("k3 with other content on b at once: %v, want ErrKeyConflict", err)
	}
	if n := len(s.recs); n != 3 {
		t.Errorf("the sequence holds %d records, want 3 (k1, k2, k3 once each)", n)
	}
	if !slices.Equal(a.seen.ids, b.seen.ids) {
		t.Errorf("hubs told a %v, b %v", a.seen.ids, b.seen.ids)
	}
}

// TestSeamFailures checks a publish that surely failed (answered at once,
// nothing stored, the key free for the retry) and one whose fate is unknown
// (answered so, its record committed on every node when it is read back,
// and a retry with its key then answered as a repeat).
func TestSeamFailures(t *testing.T) {
	s, a, b := newNodes()
	s.nodes[1].fail = ErrUnavailable
	p := proposal("u", "one", "k1")
	b.l.Propose(p)
	if err := answer(t, p); !errors.Is(err, ErrUnavailable) || len(s.recs) != 0 {
		t.Errorf("unsent publish: %v with %d records stored; want ErrUnavailable, none", err, len(s.recs))
	}
	p = proposal("u", "one", "k1")
	b.l.Propose(p)
	deliverAll(s, a, b)
	if err := answer(t, p); err != nil || p.Repeat || p.ID != sid(1) {
		t.Errorf("retry after an unsent publish: %v, repeat %v, id %s; want stored as %s", err, p.Repeat, p.ID, sid(1))
	}

	s.nodes[0].fail = ErrFateUnknown
	lost := proposal("u", "two", "k2")
	a.l.Propose(lost)
	a.drain()
	if err := answer(t, lost); !errors.Is(err, ErrFateUnknown) {
		t.Errorf("unacknowledged publish: %v, want ErrFateUnknown", err)
	}
	deliverAll(s, a, b)
	if want := []string{sid(1), sid(2)}; !slices.Equal(a.seen.ids, want) || !slices.Equal(b.seen.ids, want) {
		t.Errorf("hubs told a %v, b %v; want both %v", a.seen.ids, b.seen.ids, want)
	}
	retry := proposal("u", "two", "k2")
	a.l.Propose(retry)
	if err := answer(t, retry); err != nil || !retry.Repeat || retry.ID != sid(2) {
		t.Errorf("retry of the unacknowledged post: %v, repeat %v, id %s; want a repeat of %s", err, retry.Repeat, retry.ID, sid(2))
	}
}

// TestSeamDeletionAcrossNodes checks that a deletion on one node removes
// the message on both, that the key of the deleted message then answers
// ErrDeleted on either, and that of two deletions of one message at once
// the second does nothing on either node (no event, no place in a page or
// a replay) and its poster gets ErrNoSuchMessage, while its sequence
// number is spent.
func TestSeamDeletionAcrossNodes(t *testing.T) {
	s, a, b := newNodes()
	m := proposal("u", "secret", "k1")
	a.l.Propose(m)
	keep := proposal("u", "keep", "")
	a.l.Propose(keep)
	deliverAll(s, a, b)
	d := deletion(m.ID)
	b.l.Propose(d)
	d2 := deletion(m.ID)
	a.l.Propose(d2) // at once on a: a has not read b's
	deliverAll(s, a, b)
	if err := answer(t, d); err != nil || d.ID != sid(3) {
		t.Errorf("first deletion: %v, id %s; want done as %s", err, d.ID, sid(3))
	}
	if err := answer(t, d2); !errors.Is(err, ErrNoSuchMessage) {
		t.Errorf("second deletion of the same message: %v, want ErrNoSuchMessage", err)
	}
	if want := []string{sid(1), sid(2), sid(3)}; !slices.Equal(a.seen.ids, want) || !slices.Equal(b.seen.ids, want) {
		t.Errorf("hubs told a %v, b %v; want both %v (the second deletion is no event)", a.seen.ids, b.seen.ids, want)
	}
	next := proposal("u", "next", "")
	b.l.Propose(next)
	deliverAll(s, a, b)
	if err := answer(t, next); err != nil || next.ID != sid(5) {
		t.Errorf("the post after the two deletions: %v, id %s; want %s (4 is the void deletion's)", err, next.ID, sid(5))
	}
	for name, n := range map[string]node{"a": a, "b": b} {
		r := n.l.Replay(&Position{ID: sid(2), Epoch: sharedEpoch, Seq: 2}, 10)
		if got, want := eventIDs(r.Events), []string{"delete:" + sid(3), "message:" + sid(5)}; r.Reset != "" || !slices.Equal(got, want) {
			t.Errorf("node %s replays after %s: %v (reset %q), want %v", name, sid(2), got, r.Reset, want)
		}
		r = n.l.Replay(&Position{ID: sid(4), Epoch: sharedEpoch, Seq: 4}, 10)
		if got, want := eventIDs(r.Events), []string{"message:" + sid(5)}; r.Reset != "" || !slices.Equal(got, want) {
			t.Errorf("node %s replays after the void %s: %v (reset %q), want %v", name, sid(4), got, r.Reset, want)
		}
	}
	for name, n := range map[string]node{"a": a, "b": b} {
		page, _ := n.l.Page(Query{Limit: 10})
		if got := contents(t, page.Msgs); !slices.Equal(got, []string{"keep", "next"}) {
			t.Errorf("node %s pages %v after the deletions, want [keep next]", name, got)
		}
		retry := proposal("u", "secret", "k1")
		n.l.Propose(retry)
		if err := answer(t, retry); !errors.Is(err, ErrDeleted) {
			t.Errorf("node %s: retry of the deleted message: %v, want ErrDeleted", name, err)
		}
	}
	if !slices.EqualFunc(a.seen.events, b.seen.events, bytes.Equal) {
		t.Errorf("the nodes' events differ:\n%q\n%q", a.seen.events, b.seen.events)
	}
}

// TestSeamNewNode checks a node that starts later: it loads the records
// the sequence holds (without their ids, which the log sets from the
// store's epoch) and then serves the same history and keys as a node that
// was there from the start.
func TestSeamNewNode(t *testing.T) {
	s, a, b := newNodes()
	m := proposal("u", "hello", "k1")
	a.l.Propose(m)
	b.l.Propose(proposal("u", "there", ""))
	deliverAll(s, a, b)
	var recs []Record
	for _, p := range s.recs {
		recs = append(recs, p.rec)
	}
	c := New(newSharedSeq("c").nodes[0], Config{History: 100, Recovered: recs})
	pa, _ := a.l.Page(Query{Limit: 10})
	pc, _ := c.Page(Query{Limit: 10})
	ra, rc := a.l.Replay(nil, 10), c.Replay(nil, 10)
	if !slices.EqualFunc(pa.Msgs, pc.Msgs, bytes.Equal) || ra.ID != rc.ID || !slices.EqualFunc(ra.Events, rc.Events, bytes.Equal) {
		t.Errorf("a node started from the sequence serves %q / %q, want %q / %q", pc.Msgs, rc.Events, pa.Msgs, ra.Events)
	}
	retry := proposal("u", "hello", "k1")
	c.Propose(retry)
	if err := answer(t, retry); err != nil || !retry.Repeat || retry.ID != m.ID {
		t.Errorf("retry on the new node: %v, repeat %v, id %s; want a repeat of %s", err, retry.Repeat, retry.ID, m.ID)
	}
}

// TestSeamStop checks shutdown with a publish not yet read back and a
// duplicate waiting for its record: both are answered, with an unknown
// fate.
func TestSeamStop(t *testing.T) {
	s, a, b := newNodes()
	first := proposal("u", "x", "k1")
	a.l.Propose(first)
	dup := proposal("u", "x", "k1")
	b.l.Propose(dup)
	b.drain()
	a.l.Stop()
	b.l.Stop()
	for _, p := range []*Proposal{first, dup} {
		if err := answer(t, p); !errors.Is(err, ErrFateUnknown) {
			t.Errorf("at shutdown: %v, want ErrFateUnknown", err)
		}
	}
	if len(s.recs) != 1 {
		t.Errorf("%d records published, want 1", len(s.recs))
	}
}

// TestSeamVoidRecords checks records that do nothing: a void record (one
// the store could not decode) and a deletion of a message that is not
// before it or of another epoch. Each takes its sequence number on every
// node, tells no hub, and leaves pages and replays as if it were not
// there; SettleReady settles what the store has sent, and only that.
func TestSeamVoidRecords(t *testing.T) {
	s, a, b := newNodes()
	s.publish("junk", Record{Void: true})
	s.publish("ahead", Record{Deletes: sid(3)})
	s.publish("other", Record{Deletes: record.FormatID(sharedEpoch+1, 1)})
	s.deliver()
	if !a.l.SettleReady() || a.l.SettleReady() {
		t.Error("SettleReady did not report the records sent, once")
	}
	b.drain()
	m := proposal("u", "real", "")
	a.l.Propose(m)
	deliverAll(s, a, b)
	if err := answer(t, m); err != nil || m.ID != sid(4) {
		t.Fatalf("post after three void records: %v, id %s; want %s", err, m.ID, sid(4))
	}
	for name, n := range map[string]node{"a": a, "b": b} {
		if want := []string{sid(4)}; !slices.Equal(n.seen.ids, want) {
			t.Errorf("node %s told its hub %v, want %v", name, n.seen.ids, want)
		}
		r := n.l.Replay(&Position{ID: sid(0), Epoch: sharedEpoch}, 10)
		if got, want := eventIDs(r.Events), []string{"message:" + sid(4)}; r.Reset != "" || !slices.Equal(got, want) {
			t.Errorf("node %s replays %v (reset %q), want %v", name, got, r.Reset, want)
		}
		page, _ := n.l.Page(Query{Limit: 10})
		if got := contents(t, page.Msgs); !slices.Equal(got, []string{"real"}) || page.More {
			t.Errorf("node %s pages %v (more %v), want [real]", name, got, page.More)
		}
	}
}
