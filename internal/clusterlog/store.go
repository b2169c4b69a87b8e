// Package clusterlog keeps the chat room's log in a NATS JetStream stream,
// so that any number of equal nodes serve one room: it is a roomlog.Store
// whose order comes from the stream. A node publishes each record it
// proposes to the stream and learns its sequence number only when the
// record comes back through the node's ordered consumer, in stream order,
// with every record the other nodes published; so every node commits the
// same records in the same order, and answers its posts from what it read
// (a node reads its own writes).
//
// The stream holds one record per message or deletion, on one subject
// derived from the stream's name. A record's data is its payload alone (a
// message's username and content, or the id of the message a deletion
// deletes); its id is <epoch>-<seq>, the epoch being the stream's creation
// time in milliseconds and seq the stream sequence; its time is the time
// the stream stored it, so time follows order and every node shows the
// same time. Headers carry the rest: Nats-Msg-Id (the post's
// Idempotency-Key, or an id the node made, so that the stream's duplicate
// window stores one record for concurrent retries of a key on several
// nodes, and for the node's own retries of one publish), Chat-Key (the
// Idempotency-Key) and Chat-Origin (which publish stored it). A record no
// node could have written (a payload that does not decode, or breaks the
// room's rules) is void: it keeps its sequence number, every node skips it
// the same way and logs it.
//
// What a post's answer means: a record is proposed only while the node is
// connected (ErrUnavailable otherwise, at once: surely not stored); a
// publish is retried with the same Nats-Msg-Id until the stream
// acknowledges it or the publish bound passes (ErrFateUnknown: it may be
// stored; a retry with the post's Idempotency-Key settles it); and an
// acknowledged record is committed when the consumer reads it back.
package clusterlog

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"chat/internal/jetstream"
	"chat/internal/nats"
	"chat/internal/record"
	"chat/internal/roomlog"
)

// Tuning of the store.
const (
	// DefaultDuplicates is the stream's duplicate window: JetStream's
	// default, and far longer than a node's own retries of one publish
	// (PublishWait) or a client's retry of a post after a 504.
	DefaultDuplicates = 2 * time.Minute
	// DefaultPublishWait bounds a publish, its retries included: a post
	// whose acknowledgement has not come by then is answered
	// ErrFateUnknown (504).
	DefaultPublishWait = 5 * time.Second
	// attemptWait bounds one attempt of a publish: while a cluster elects
	// a stream leader a publish goes unanswered, and one sent again after
	// the election is answered at once.
	attemptWait = 2 * time.Second
	// retryPause is the pause before publishing again after an attempt
	// that surely was not stored (no stream answered, or JetStream said
	// it is unavailable for now).
	retryPause = 100 * time.Millisecond
	// readBackWait bounds the wait, after the acknowledgement, for the
	// record to come back through the node's consumer; a post still
	// waiting then is answered ErrFateUnknown. It outlasts a JetStream
	// leader election (4 to 9 s with nats-server's defaults), during which
	// a stored record cannot be read, while a post's answer still comes
	// within the 15 s the page waits for it.
	readBackWait = 8 * time.Second
	// maxInFlight bounds the proposals published and not yet settled; a
	// proposal beyond it gets ErrBusy. Each holds a goroutine (a few KiB).
	maxInFlight = 4096
	// consumerPause is the pause after the consumer failed for a reason
	// that does not pass by itself (the stream was deleted).
	consumerPause = time.Second
	// ReachWait bounds Reach: a node reads the stream milliseconds behind
	// another.
	ReachWait = time.Second
)

// Config says which stream keeps the room's log and how.
type Config struct {
	// URLs are the NATS servers, tried in turn (credentials in the URL).
	URLs []string
	// Stream is the stream's name; the room's subject derives from it
	// (Subject).
	Stream string
	// Replicas is how many servers keep the stream.
	Replicas int
	// History is the stream's message limit and how many of the newest
	// records the node loads at start: the room's history.
	History int
	// Duplicates is the stream's duplicate window (DefaultDuplicates
	// when zero).
	Duplicates time.Duration
	// PublishWait bounds a publish (DefaultPublishWait when zero).
	PublishWait time.Duration
	// ClientName is the name the NATS servers show for the connection.
	ClientName string
	// Valid, when not nil, checks a record as decoded (a message's
	// Username and Content, an edit's Content) against the room's rules;
	// a record that fails it is void.
	Valid func(r *roomlog.Record) error
	// Logger receives the void records and the consumer's failures (nil:
	// none).
	Logger *slog.Logger
}

// Subject returns the subject the room's records are published on.
func Subject(stream string) string { return "chat." + stream + ".log" }

// Store is the room's log in a JetStream stream (see the package comment).
// Append, Settle and Close are the hub's (roomlog.Store); Status, Health,
// WaitDelivered, Drain and Shutdown may be called from any goroutine.
type Store struct {
	cfg     Config
	js      *jetstream.JS
	cons    *jetstream.Consumer
	subject string
	epoch   int64
	// token starts the origin of every publish of this node; made counts
	// them (the hub's alone).
	token string
	made  uint64
	log   *slog.Logger
	// reports signals the hub that the inbox holds items; it is a
	// wake-up, and Settle takes everything there is.
	reports chan record.Commit
	// ctx ends at Shutdown, and with it every publish and the consumer.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// draining refuses new proposals (Drain).
	draining atomic.Bool

	mu sync.Mutex
	// pending holds the proposals published and not yet settled, by
	// origin: whoever takes one out settles it, so each is settled once.
	pending map[string]*flight
	// dupWait holds the proposals whose publish was acknowledged as a
	// duplicate of a record the consumer has not read yet, by its
	// sequence number: the record decides whether it was this node's own
	// earlier attempt or another publish.
	dupWait map[uint64][]*flight
	// inbox holds what the hub has still to settle, in order; spare is
	// the slice Settle gave back, for reuse.
	inbox, spare []item
	// delivered is the sequence of the last record the consumer read.
	delivered uint64
	// advanced, when not nil, is closed when delivered grows.
	advanced chan struct{}
	// idle, when not nil, is closed when pending empties (Drain).
	idle chan struct{}
	// readErr is why the consumer cannot read now (nil while it reads);
	// failed is why the store stopped for good.
	readErr, failed error
	closed          bool
}

// flight is one proposal on its way through the stream.
type flight struct {
	p      *roomlog.Proposal
	origin string
	msg    *nats.Msg
	// done is closed once the proposal is settled.
	done chan struct{}
}

// item is one thing for the hub to settle: a record read back (with the
// local proposal it settles, if any), or the fate of a proposal: a
// duplicate of record dupOf, or a failure err.
type item struct {
	rec   *roomlog.Record
	f     *flight
	dupOf uint64
	err   error
}

// Open connects to cfg.URLs, makes the stream or checks that the existing
// one can serve the room (ConflictError otherwise), and loads the last
// cfg.History records, until its consumer has caught up with the stream,
// within ctx. It returns the store, reading on, and the records loaded, for
// roomlog.Config.Recovered. Its errors are one line, without credentials.
func Open(ctx context.Context, cfg Config) (*Store, []roomlog.Record, error) {
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = DefaultDuplicates
	}
	if cfg.PublishWait <= 0 {
		cfg.PublishWait = DefaultPublishWait
	}
	js, err := jetstream.Connect(ctx, cfg.URLs, nats.Options{Name: cfg.ClientName})
	if err != nil {
		return nil, nil, err
	}
	s, recs, err := open(ctx, js, cfg)
	if err != nil {
		js.Close()
		return nil, nil, err
	}
	return s, recs, nil
}

// open does Open's work on a connection.
func open(ctx context.Context, js *jetstream.JS, cfg Config) (*Store, []roomlog.Record, error) {
	info, err := ensureStream(ctx, js, cfg)
	if err != nil {
		return nil, nil, err
	}
	start := max(info.State.FirstSeq, 1)
	if last, h := info.State.LastSeq, uint64(max(cfg.History, 1)); last >= h {
		start = max(start, last-h+1)
	}
	cons, err := js.OrderedConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequence, StartSeq: start,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: read: %w", cfg.Stream, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		cfg: cfg, js: js, cons: cons, subject: Subject(cfg.Stream), epoch: info.Created.UnixMilli(),
		token: rand.Text()[:12], log: cfg.Logger, reports: make(chan record.Commit, 1),
		ctx: sctx, cancel: cancel, pending: make(map[string]*flight), dupWait: make(map[uint64][]*flight),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	recs, err := s.load(ctx)
	if err != nil {
		cons.Stop()
		cancel()
		return nil, nil, fmt.Errorf("stream %s: load history: %w", cfg.Stream, err)
	}
	s.wg.Go(s.read)
	s.wg.Go(s.watch)
	return s, recs, nil
}

// load reads records until the consumer has caught up with what the
// stream held when it was made, and returns them.
func (s *Store) load(ctx context.Context) ([]roomlog.Record, error) {
	var recs []roomlog.Record
	for {
		select {
		case <-s.cons.CaughtUp():
			return recs, nil
		default:
		}
		m, err := s.cons.Next(ctx)
		if err != nil {
			return nil, err
		}
		s.delivered = m.Seq
		recs = append(recs, s.decode(m))
	}
}

// decode returns the record m holds, with its id, or a void record in its
// place (logged).
func (s *Store) decode(m *jetstream.Msg) roomlog.Record {
	r, err := decodeRecord(m, s.cfg.Valid)
	if err != nil {
		s.log.Warn("void record in the room's stream: skipped", "stream", s.cfg.Stream, "seq", m.Seq, "error", err)
		r = roomlog.Record{Seq: m.Seq, Void: true}
	}
	r.ID = record.FormatID(s.epoch, m.Seq)
	return r
}

// Epoch implements roomlog.Store: the stream's creation time in
// milliseconds.
func (s *Store) Epoch() int64 { return s.epoch }

// Append implements roomlog.Store: it publishes p's record and settles it
// later. It refuses at once, with ErrUnavailable, while the node is not
// connected (or is draining, or has failed), and with ErrBusy when
// maxInFlight proposals are on their way.
func (s *Store) Append(p *roomlog.Proposal) (bool, error) {
	s.mu.Lock()
	failed, n := s.failed, len(s.pending)
	s.mu.Unlock()
	switch {
	case failed != nil:
		return false, fmt.Errorf("%w: %w", roomlog.ErrUnavailable, failed)
	case s.draining.Load():
		return false, fmt.Errorf("%w: the node is shutting down", roomlog.ErrUnavailable)
	case n >= maxInFlight:
		return false, roomlog.ErrBusy
	}
	if st := s.js.Conn().Status(); !st.Connected {
		return false, fmt.Errorf("%w: %w", roomlog.ErrUnavailable, disconnected(st))
	}
	s.made++
	origin := s.token + "." + strconv.FormatUint(s.made, 10)
	msgID := p.Key
	if msgID == "" {
		msgID = origin
	}
	f := &flight{p: p, origin: origin, msg: newMsg(s.subject, msgID, origin, &p.Record), done: make(chan struct{})}
	s.mu.Lock()
	s.pending[origin] = f
	s.mu.Unlock()
	s.wg.Go(func() { s.publish(f) })
	return false, nil
}

// Reports implements roomlog.Store.
func (s *Store) Reports() <-chan record.Commit { return s.reports }

// Settle implements roomlog.Store: it hands the hub everything the inbox
// holds, in order, whatever c counts (a report is a wake-up).
func (s *Store) Settle(_ record.Commit, to roomlog.Settler) {
	s.mu.Lock()
	items := s.inbox
	s.inbox, s.spare = s.spare[:0], nil
	s.mu.Unlock()
	settle(items, to)
	clear(items)
	s.mu.Lock()
	s.spare = items[:0]
	s.mu.Unlock()
}

// settle hands items to the hub.
func settle(items []item, to roomlog.Settler) {
	for _, it := range items {
		var p *roomlog.Proposal
		if it.f != nil {
			p = it.f.p
		}
		switch {
		case it.rec != nil:
			to.Commit(it.rec, p)
		case it.err != nil:
			to.Fail(p, it.err)
		default:
			to.Duplicate(p, it.dupOf)
		}
	}
}

// Close implements roomlog.Store: it settles what the inbox holds and
// fails the proposals still on their way with ErrFateUnknown (the stream
// may yet store them); the store takes nothing more.
func (s *Store) Close(to roomlog.Settler) {
	s.mu.Lock()
	s.closed = true
	items, pending := s.inbox, s.pending
	s.inbox, s.pending = nil, make(map[string]*flight)
	s.mu.Unlock()
	settle(items, to)
	for _, f := range pending {
		close(f.done)
		to.Fail(f.p, roomlog.ErrFateUnknown)
	}
}

// push queues it for the hub and wakes the hub. s.mu is held.
func (s *Store) push(it item) {
	if s.closed {
		return
	}
	s.inbox = append(s.inbox, it)
	select {
	case s.reports <- record.Commit{N: 1}:
	default: // a wake-up is already pending
	}
}

// take removes f from pending, if it is still there, and reports whether
// it was: the caller then settles it. s.mu is held.
func (s *Store) take(f *flight) bool {
	if s.pending[f.origin] != f {
		return false
	}
	delete(s.pending, f.origin)
	close(f.done)
	if s.idle != nil && len(s.pending) == 0 {
		close(s.idle)
		s.idle = nil
	}
	return true
}

// fail settles f with err unless it is settled already.
func (s *Store) fail(f *flight, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.take(f) {
		s.push(item{f: f, err: err})
	}
}

// disconnected returns why a connection whose status is st is down.
func disconnected(st nats.Status) error {
	if st.Closed {
		return nats.ErrClosed
	}
	if st.Err != nil {
		return fmt.Errorf("NATS disconnected: %w", st.Err)
	}
	return errors.New("NATS disconnected")
}
