package clusterlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"chat/internal/idem"
	"chat/internal/jetstream"
	"chat/internal/nats"
	"chat/internal/natstest"
	"chat/internal/roomlog"
)

// waitTimeout bounds every wait of these tests: on a loaded two-core
// machine a post through NATS takes milliseconds, so this is a failsafe.
const waitTimeout = 20 * time.Second

// testStream is the stream the tests' nodes share.
const testStream = "ROOM"

// syncBuffer is a log buffer the store's goroutines may write to while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfig returns the configuration of a node of the tests' room on
// urls, keeping history records. Its rules refuse a username "bad".
func testConfig(urls []string, history int) Config {
	return Config{
		URLs: urls, Stream: testStream, Replicas: 1, History: history, ClientName: "clusterlog test",
		Valid: func(r *roomlog.Record) error {
			if r.Username == "bad" {
				return errors.New("username bad is not allowed")
			}
			return nil
		},
	}
}

// node is one node of a room in the tests: a store, and a log over it run
// by a goroutine of its own as the room's hub runs it.
type node struct {
	t         *testing.T
	store     *Store
	log       *roomlog.Log
	recovered []roomlog.Record
	logs      *syncBuffer
	calls     chan func()
	stop      chan struct{}
	done      chan struct{}
	// committed and events are what the log told the hub, in order
	// (the hub goroutine's; read them through do).
	committed []roomlog.Record
	events    [][]byte
}

// openNode opens a node with cfg (its Logger replaced by a buffer) and
// stops it when the test ends.
func openNode(t *testing.T, cfg Config) *node {
	t.Helper()
	n := &node{t: t, logs: &syncBuffer{}, calls: make(chan func()), stop: make(chan struct{}), done: make(chan struct{})}
	cfg.Logger = slog.New(slog.NewTextHandler(n.logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, recs, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	n.store, n.recovered = s, recs
	n.log = roomlog.New(s, roomlog.Config{History: cfg.History, Recovered: recs, Committed: func(r *roomlog.Record, ev []byte) {
		n.committed = append(n.committed, *r)
		n.events = append(n.events, ev)
	}})
	go n.run()
	t.Cleanup(n.close)
	return n
}

// run is the node's hub: it settles the store's reports and runs calls,
// until close.
func (n *node) run() {
	defer close(n.done)
	for {
		select {
		case c := <-n.log.Reports():
			n.log.Settle(c)
		case f := <-n.calls:
			f()
		case <-n.stop:
			n.log.Stop()
			n.store.Shutdown()
			return
		}
	}
}

// close stops the node (its log, then its store) once.
func (n *node) close() {
	select {
	case <-n.done:
		return
	default:
	}
	select {
	case n.stop <- struct{}{}:
	case <-n.done:
	}
	<-n.done
}

// do runs f in the node's hub goroutine.
func (n *node) do(f func()) {
	n.t.Helper()
	ran := make(chan struct{})
	select {
	case n.calls <- func() { f(); close(ran) }:
	case <-time.After(waitTimeout):
		n.t.Fatal("the node's hub did not take a call")
	}
	<-ran
}

// propose proposes p on the node and returns at once.
func (n *node) propose(p *roomlog.Proposal) { n.do(func() { n.log.Propose(p) }) }

// answer waits for p's answer.
func answer(t *testing.T, p *roomlog.Proposal) error {
	t.Helper()
	select {
	case err := <-p.Reply:
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("proposal %q/%q has no answer after %v", p.Content, p.Deletes, waitTimeout)
		return nil
	}
}

// message returns a post of content by username with key ("" for none).
func message(username, content, key string) *roomlog.Proposal {
	p := &roomlog.Proposal{Reply: make(chan error, 1)}
	p.Username, p.Content, p.Key = username, content, key
	if key != "" {
		p.FP = idem.Sum(username, content)
	}
	return p
}

// deletion returns a deletion of the message id.
func deletion(id string) *roomlog.Proposal {
	p := &roomlog.Proposal{Reply: make(chan error, 1)}
	p.Deletes = id
	return p
}

// post posts content on the node and returns the proposal, answered,
// failing the test on an error.
func (n *node) post(content string) *roomlog.Proposal {
	n.t.Helper()
	p := message("u", content, "")
	n.propose(p)
	if err := answer(n.t, p); err != nil {
		n.t.Fatalf("post %q: %v", content, err)
	}
	return p
}

// seen returns copies of the records and events the node's hub was told.
func (n *node) seen() ([]roomlog.Record, [][]byte) {
	var recs []roomlog.Record
	var evs [][]byte
	n.do(func() {
		recs = append(recs, n.committed...)
		evs = append(evs, n.events...)
	})
	return recs, evs
}

// waitSeq waits until the node has committed the record with sequence
// seq.
func (n *node) waitSeq(seq uint64) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.store.WaitDelivered(ctx, seq); err != nil {
		n.t.Fatalf("record %d not read within %v: %v", seq, waitTimeout, err)
	}
	n.do(func() { n.log.SettleReady() })
}

// page returns the newest page of the node's history.
func (n *node) page() roomlog.Page {
	var p roomlog.Page
	n.do(func() { p, _ = n.log.Page(roomlog.Query{Limit: 200}) })
	return p
}

// client returns a JetStream client of its own on urls, closed when the
// test ends.
func client(t *testing.T, urls []string) *jetstream.JS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	js, err := jetstream.Connect(ctx, urls, nats.Options{Name: "test client"})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { js.Close() })
	return js
}

// publishRaw publishes data with header h on the room's subject, as
// something other than a node might, and returns its sequence number.
func publishRaw(t *testing.T, js *jetstream.JS, h nats.Header, data string) uint64 {
	t.Helper()
	ack, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: Subject(testStream), Header: h, Data: []byte(data)})
	if err != nil {
		t.Fatalf("publish %q: %v", data, err)
	}
	return ack.Seq
}

// startServer starts one NATS server with JetStream.
func startServer(t *testing.T) *natstest.Server { return natstest.Start(t, natstest.Options{}) }

// summary returns each record as "seq:kind:text" for failure messages and
// comparisons.
func summary(recs []roomlog.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		switch {
		case r.Void:
			out[i] = fmt.Sprintf("%d:void", r.Seq)
		case r.Deletes != "":
			out[i] = fmt.Sprintf("%d:delete:%s", r.Seq, r.Deletes)
		case r.Edits != "":
			out[i] = fmt.Sprintf("%d:edit:%s:%s", r.Seq, r.Edits, r.Content)
		default:
			out[i] = fmt.Sprintf("%d:%s:%s", r.Seq, r.Username, r.Content)
		}
	}
	return out
}
