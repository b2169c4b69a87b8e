package jetstream

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"chat/internal/nats"
)

// Tuning of the ordered consumer.
const (
	// DefaultHeartbeat is the idle heartbeat the server sends a consumer
	// that has nothing to deliver.
	DefaultHeartbeat = 5 * time.Second
	// missedHeartbeats is how many heartbeat intervals may pass without
	// anything from the server before the consumer is made again.
	missedHeartbeats = 3
	// inactiveThreshold is how long the server keeps a consumer nobody
	// listens to (one left behind by a lost connection).
	inactiveThreshold = 30 * time.Second
	// resetWait is the first pause between two failed attempts to make the
	// consumer again; it doubles up to maxResetWait.
	resetWait    = 100 * time.Millisecond
	maxResetWait = 2 * time.Second
	// resetAttempt bounds one attempt to make the consumer again: while a
	// cluster elects a new leader requests go unanswered, and a new
	// attempt after the election succeeds at once.
	resetAttempt = 2 * time.Second
)

// Deliver policies: where an ordered consumer starts.
const (
	// DeliverAll starts at the stream's first message.
	DeliverAll = "all"
	// DeliverByStartSequence starts at ConsumerConfig.StartSeq.
	DeliverByStartSequence = "by_start_sequence"
	// DeliverLastPerSubject starts with the last message of each subject
	// (a key/value bucket's current values).
	DeliverLastPerSubject = "last_per_subject"
	// DeliverNew starts with the next message stored.
	DeliverNew = "new"
)

// ErrConsumerStopped is returned by Next after Stop.
var ErrConsumerStopped = errors.New("consumer stopped")

// ConsumerConfig says what an ordered consumer delivers.
type ConsumerConfig struct {
	// DeliverPolicy is one of the Deliver constants (default DeliverAll).
	DeliverPolicy string
	// StartSeq is the first sequence for DeliverByStartSequence.
	StartSeq uint64
	// FilterSubjects limits the messages to these subjects (wildcards
	// allowed); none means every subject of the stream.
	FilterSubjects []string
	// Heartbeat is the idle heartbeat interval (default DefaultHeartbeat).
	Heartbeat time.Duration
}

// Msg is a message an ordered consumer delivers.
type Msg struct {
	Subject string
	// Seq is the message's sequence in the stream.
	Seq uint64
	// Time is when the stream stored it.
	Time   time.Time
	Header nats.Header
	Data   []byte
	// Pending is how many messages were left to deliver after this one.
	Pending uint64
}

// Consumer is an ordered consumer: an ephemeral push consumer, in memory
// with one replica, without acknowledgements, with flow control and idle
// heartbeats, which delivers a stream's messages strictly in order. When
// it sees a gap (a delivery out of sequence, or a heartbeat naming one it
// did not get), misses heartbeats, or its connection comes back after a
// loss, it makes itself again from the last stream sequence it delivered
// plus one, so its caller sees no gap and no duplicate. Next is for one
// goroutine; Stop may be called from any.
type Consumer struct {
	js     *JS
	stream string
	cfg    ConsumerConfig
	// stop is closed by Stop.
	stop     chan struct{}
	stopOnce sync.Once
	// caughtUp is closed once the consumer has delivered everything the
	// stream held when it was made.
	caughtUp     chan struct{}
	caughtUpOnce sync.Once

	mu sync.Mutex
	// sub is the subscription to the current consumer's deliver subject
	// and name its name; both change at every reset.
	sub  *nats.Subscription
	name string
	// gen is the connection's reconnect count when the consumer was made.
	gen uint64
	// lastSeq is the stream sequence of the last message delivered to the
	// caller; lastCSeq the current consumer's sequence of the last
	// delivery received.
	lastSeq, lastCSeq uint64
	// lastSeen is when anything last came from the server.
	lastSeen time.Time
	// needReset says the consumer must be made again before reading on.
	needReset bool
	// floor is, for DeliverNew, the stream's last sequence when the
	// consumer was first made, so a reset before any delivery misses
	// nothing stored since.
	floor uint64
	// prefix and serial make the names of the server consumers; resets
	// counts the consumers made after the first.
	prefix string
	serial int
	resets uint64
}

// OrderedConsumer makes an ordered consumer of stream. Its error is the
// first attempt's: for example ErrStreamNotFound, or ErrNoJetStream.
func (js *JS) OrderedConsumer(ctx context.Context, stream string, cfg ConsumerConfig) (*Consumer, error) {
	if !validName(stream) {
		return nil, fmt.Errorf("invalid stream name %q", stream)
	}
	if cfg.DeliverPolicy == "" {
		cfg.DeliverPolicy = DeliverAll
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	c := &Consumer{
		js: js, stream: stream, cfg: cfg, prefix: "oc_" + rand.Text() + "_",
		stop: make(chan struct{}), caughtUp: make(chan struct{}),
	}
	if err := c.create(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// CaughtUp returns a channel closed once the consumer has delivered every
// message the stream held (for its filter) when the consumer was made.
func (c *Consumer) CaughtUp() <-chan struct{} { return c.caughtUp }

// LastSeq returns the stream sequence of the last message Next returned.
func (c *Consumer) LastSeq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastSeq
}

// Resets counts how often the consumer was made again (after a gap,
// missed heartbeats or a reconnect).
func (c *Consumer) Resets() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resets
}

// Next returns the next message in stream order, waiting until ctx ends.
// It makes the consumer again by itself after a gap, missed heartbeats or
// a reconnect, retrying while the error is transient; it returns a
// permanent error (such as ErrStreamNotFound) and tries again at the next
// call.
func (c *Consumer) Next(ctx context.Context) (*Msg, error) {
	for {
		select {
		case <-c.stop:
			return nil, ErrConsumerStopped
		default:
		}
		c.mu.Lock()
		reset, sub := c.needReset, c.sub
		c.mu.Unlock()
		if sub == nil && !reset {
			return nil, ErrConsumerStopped
		}
		if reset {
			if err := c.reset(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if m, ok := sub.TryNext(); ok {
			if out := c.handle(m); out != nil {
				return out, nil
			}
			continue
		}
		if err := c.wait(ctx, sub); err != nil {
			return nil, err
		}
	}
}

// wait blocks until sub may have a message, the connection's state
// changes, heartbeats are missed (then the consumer is marked for reset),
// or ctx or the consumer ends.
func (c *Consumer) wait(ctx context.Context, sub *nats.Subscription) error {
	nc := c.js.nc
	changed := nc.StatusChanged()
	st := nc.Status()
	c.mu.Lock()
	if st.Connected && st.Reconnects != c.gen {
		c.needReset = true
		c.mu.Unlock()
		return nil
	}
	deadline := c.lastSeen.Add(missedHeartbeats * c.cfg.Heartbeat)
	c.mu.Unlock()
	var missed <-chan time.Time
	if st.Connected { // while disconnected only a reconnect helps
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		missed = t.C
	}
	select {
	case <-sub.Ready():
	case <-changed:
	case <-missed:
		c.mu.Lock()
		c.needReset = true
		c.mu.Unlock()
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stop:
		return ErrConsumerStopped
	}
	return nil
}

// handle processes one delivery: it answers flow control, checks
// heartbeats and sequences, and returns the message for the caller, or nil
// when there is none to hand out.
func (c *Consumer) handle(m *nats.Msg) *Msg {
	nc := c.js.nc
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastSeen = time.Now()
	if m.Status == 100 {
		if m.Reply != "" { // a flow control request: everything before it is read
			_ = nc.Publish(m.Reply, nil) // if it fails, the reconnect resets the consumer
			return nil
		}
		if stalled := m.Header.Get("Nats-Consumer-Stalled"); stalled != "" {
			_ = nc.Publish(stalled, nil)
		}
		if last, ok := parseUint(m.Header.Get("Nats-Last-Consumer")); ok && last != c.lastCSeq {
			c.needReset = true // a heartbeat naming a delivery we did not get
		}
		return nil
	}
	if m.Status != 0 { // such as 409 Consumer Deleted
		c.needReset = true
		return nil
	}
	meta, err := parseAckReply(m.Reply)
	if err != nil || meta.consumer != c.name {
		return nil // not this consumer's delivery
	}
	if meta.consumerSeq != c.lastCSeq+1 {
		c.needReset = true
		return nil
	}
	c.lastCSeq = meta.consumerSeq
	if meta.streamSeq <= c.lastSeq {
		return nil
	}
	c.lastSeq = meta.streamSeq
	if meta.pending == 0 {
		c.markCaughtUp()
	}
	return &Msg{Subject: m.Subject, Seq: meta.streamSeq, Time: meta.time, Header: m.Header, Data: m.Data, Pending: meta.pending}
}

// markCaughtUp closes the caught-up channel once.
func (c *Consumer) markCaughtUp() {
	c.caughtUpOnce.Do(func() { close(c.caughtUp) })
}

// reset drops the current consumer and makes a new one from the last
// sequence delivered plus one, retrying transient errors with a growing
// pause until ctx or the consumer ends, each attempt within resetAttempt.
func (c *Consumer) reset(ctx context.Context) error {
	wait := resetWait
	for {
		actx, cancel := context.WithTimeout(ctx, resetAttempt)
		err := c.create(actx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil || !transient(err) {
			return err
		}
		changed := c.js.nc.StatusChanged()
		var pause <-chan time.Time // nil while disconnected: wait for the connection
		if c.js.nc.Status().Connected {
			pause = time.After(wait) // an unstopped timer is collected (Go 1.23)
		}
		select {
		case <-pause:
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.stop:
			return ErrConsumerStopped
		}
		wait = min(2*wait, maxResetWait)
	}
}

// create makes the consumer (again): a new deliver subject, subscribed
// before the consumer is made, and a new consumer starting after the last
// message delivered. The previous consumer is unsubscribed and deleted.
func (c *Consumer) create(ctx context.Context) error {
	nc := c.js.nc
	c.mu.Lock()
	oldSub, oldName := c.sub, c.name
	c.sub, c.name, c.needReset = nil, "", true
	c.serial++
	name := c.prefix + strconv.Itoa(c.serial)
	policy, start := c.cfg.DeliverPolicy, c.cfg.StartSeq
	if c.lastSeq > 0 || c.floor > 0 {
		policy, start = DeliverByStartSequence, max(c.lastSeq, c.floor)+1
	}
	gen := nc.Status().Reconnects
	c.mu.Unlock()
	if oldSub != nil {
		_ = oldSub.Unsubscribe() // always nil
		c.js.deleteLater(c.stream, oldName)
	}
	inbox := nc.NewInbox()
	sub, err := nc.Subscribe(inbox)
	if err != nil {
		return err
	}
	cfg := consumerConfig{
		Name: name, DeliverPolicy: policy, AckPolicy: "none", ReplayPolicy: "instant",
		FlowControl: true, Heartbeat: c.cfg.Heartbeat, DeliverSubject: inbox,
		InactiveThreshold: inactiveThreshold, Replicas: 1, MemoryStorage: true,
	}
	if policy == DeliverByStartSequence {
		cfg.OptStartSeq = max(start, 1)
	}
	if len(c.cfg.FilterSubjects) == 1 {
		cfg.FilterSubject = c.cfg.FilterSubjects[0]
	} else {
		cfg.FilterSubjects = c.cfg.FilterSubjects
	}
	info, err := c.js.createConsumer(ctx, c.stream, cfg)
	if err != nil {
		_ = sub.Unsubscribe()
		if errors.Is(err, nats.ErrNoReply) {
			c.js.deleteLater(c.stream, name) // it may have been made
		}
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.stop:
		_ = sub.Unsubscribe()
		c.js.deleteLater(c.stream, name)
		return ErrConsumerStopped
	default:
	}
	c.sub, c.name, c.gen, c.lastCSeq, c.lastSeen, c.needReset = sub, name, gen, 0, time.Now(), false
	if c.serial > 1 {
		c.resets++
	}
	if policy == DeliverNew {
		c.floor = info.Delivered.StreamSeq
	}
	if info.NumPending == 0 {
		c.markCaughtUp()
	}
	return nil
}

// Stop ends the consumer: Next returns ErrConsumerStopped, and the
// consumer is unsubscribed and deleted from the server (best effort).
func (c *Consumer) Stop() {
	c.stopOnce.Do(func() {
		close(c.stop)
		c.mu.Lock()
		sub, name := c.sub, c.name
		c.sub, c.name = nil, ""
		c.mu.Unlock()
		if sub != nil {
			_ = sub.Unsubscribe() // always nil
			c.js.deleteLater(c.stream, name)
		}
	})
}

// consumerConfig is the configuration of an ordered consumer, as the
// CONSUMER.CREATE request carries it.
type consumerConfig struct {
	Name              string        `json:"name"`
	DeliverPolicy     string        `json:"deliver_policy"`
	OptStartSeq       uint64        `json:"opt_start_seq,omitempty"`
	AckPolicy         string        `json:"ack_policy"`
	ReplayPolicy      string        `json:"replay_policy"`
	FilterSubject     string        `json:"filter_subject,omitempty"`
	FilterSubjects    []string      `json:"filter_subjects,omitempty"`
	FlowControl       bool          `json:"flow_control"`
	Heartbeat         time.Duration `json:"idle_heartbeat"`
	DeliverSubject    string        `json:"deliver_subject"`
	InactiveThreshold time.Duration `json:"inactive_threshold"`
	Replicas          int           `json:"num_replicas"`
	MemoryStorage     bool          `json:"mem_storage"`
}

// consumerInfo is the part of a consumer's information the client uses.
type consumerInfo struct {
	Name       string `json:"name"`
	NumPending uint64 `json:"num_pending"`
	Delivered  struct {
		ConsumerSeq uint64 `json:"consumer_seq"`
		StreamSeq   uint64 `json:"stream_seq"`
	} `json:"delivered"`
}

// createConsumer makes an ephemeral consumer of stream named cfg.Name.
func (js *JS) createConsumer(ctx context.Context, stream string, cfg consumerConfig) (*consumerInfo, error) {
	req := struct {
		Stream string         `json:"stream_name"`
		Config consumerConfig `json:"config"`
	}{stream, cfg}
	var resp struct {
		apiResponse
		consumerInfo
	}
	if err := js.request(ctx, "CONSUMER.CREATE."+stream+"."+cfg.Name, req, &resp); err != nil {
		return nil, fmt.Errorf("stream %s: create consumer: %w", stream, err)
	}
	return &resp.consumerInfo, nil
}

// deleteLater deletes a consumer in the background, within
// DefaultTimeout; if that fails the server drops it after
// inactiveThreshold anyway.
func (js *JS) deleteLater(stream, name string) {
	if name == "" {
		return
	}
	go func() {
		var resp apiResponse
		_ = js.request(context.Background(), "CONSUMER.DELETE."+stream+"."+name, nil, &resp)
	}()
}
