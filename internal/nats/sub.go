package nats

import (
	"context"
	"fmt"
	"strconv"
	"sync"
)

// Limits of a subscription's queue.
const (
	// maxPendingMsgs and maxPendingBytes bound the messages a subscription
	// holds that its reader has not taken yet; messages beyond are
	// dropped (and counted), so a slow reader never stalls the connection.
	maxPendingMsgs  = 1 << 16
	maxPendingBytes = 64 << 20
)

// Subscription receives the messages published to a subject. They queue
// in the order the server sent them until read with Next or TryNext.
type Subscription struct {
	c       *Conn
	sid     uint64
	subject string

	mu sync.Mutex
	// queue holds the messages not read yet; bytes is their data size.
	queue []*Msg
	bytes int
	// ready receives a value (without blocking the sender) when messages
	// were queued or the subscription ended.
	ready   chan struct{}
	closed  bool
	dropped uint64
}

// Subscribe subscribes to subject (wildcards allowed). While the
// connection is down the subscription is made when it comes back, as
// every subscription is remade after a reconnect.
func (c *Conn) Subscribe(subject string) (*Subscription, error) {
	if !validSubject(subject) {
		return nil, fmt.Errorf("subscribe to %q: %w", subject, ErrBadSubject)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subscribe(subject)
}

// subscribe registers a subscription and sends SUB if connected. c.mu is
// held.
func (c *Conn) subscribe(subject string) (*Subscription, error) {
	if c.closed {
		return nil, ErrClosed
	}
	c.lastSID++
	s := &Subscription{c: c, sid: c.lastSID, subject: subject, ready: make(chan struct{}, 1)}
	c.subs[s.sid] = s
	if l := c.link; l != nil {
		l.bw.WriteString("SUB " + subject + " " + strconv.FormatUint(s.sid, 10) + "\r\n")
		l.flushSoon()
	}
	return s, nil
}

// Subject returns the subject subscribed to.
func (s *Subscription) Subject() string { return s.subject }

// Unsubscribe ends the subscription; messages already queued can still
// be read.
func (s *Subscription) Unsubscribe() error {
	c := s.c
	c.mu.Lock()
	if c.subs[s.sid] == s {
		delete(c.subs, s.sid)
		if l := c.link; l != nil {
			l.bw.WriteString("UNSUB " + strconv.FormatUint(s.sid, 10) + "\r\n")
			l.flushSoon()
		}
	}
	c.mu.Unlock()
	s.close()
	return nil
}

// push queues m, or drops it when the queue is full.
func (s *Subscription) push(m *Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if len(s.queue) >= maxPendingMsgs || s.bytes+len(m.Data) > maxPendingBytes {
		s.dropped++
		return
	}
	s.queue = append(s.queue, m)
	s.bytes += len(m.Data)
	s.signal()
}

// signal wakes a reader waiting on Ready. s.mu is held.
func (s *Subscription) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// close ends the subscription and wakes its reader.
func (s *Subscription) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.signal()
}

// TryNext returns the next queued message without waiting.
func (s *Subscription) TryNext() (*Msg, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil, false
	}
	m := s.queue[0]
	s.queue[0] = nil
	s.queue = s.queue[1:]
	s.bytes -= len(m.Data)
	return m, true
}

// Ready returns a channel that receives a value after messages were
// queued or the subscription ended. Read with TryNext until it reports no
// message before waiting on Ready again; a value may come with nothing
// left to read.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Next returns the next message, waiting for one until ctx ends. After
// Unsubscribe or Close it returns the messages still queued, then
// ErrClosed.
func (s *Subscription) Next(ctx context.Context) (*Msg, error) {
	for {
		if m, ok := s.TryNext(); ok {
			return m, nil
		}
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Dropped counts the messages dropped because the queue was full.
func (s *Subscription) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Publish publishes data to subject. ErrNotConnected means it was not
// sent; nil means it was handed to the connection (NATS itself promises
// no delivery).
func (c *Conn) Publish(subject string, data []byte) error {
	return c.PublishMsg(&Msg{Subject: subject, Data: data})
}

// PublishMsg publishes m: its subject, its reply subject if any, its
// header block if Header is not nil, and its data.
func (c *Conn) PublishMsg(m *Msg) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return c.write(m, m.Reply)
}

// write encodes m as PUB or HPUB with reply and buffers it on the live
// link. c.mu is held.
func (c *Conn) write(m *Msg, reply string) error {
	if !validSubject(m.Subject) {
		return fmt.Errorf("publish to %q: %w", m.Subject, ErrBadSubject)
	}
	if reply != "" && !validSubject(reply) {
		return fmt.Errorf("reply subject %q: %w", reply, ErrBadSubject)
	}
	var hdr []byte
	if m.Header != nil {
		var err error
		if hdr, err = appendHeader(nil, m.Header); err != nil {
			return err
		}
	}
	l := c.link
	if l == nil {
		return ErrNotConnected
	}
	total := len(hdr) + len(m.Data)
	if total > l.maxPayload {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrMaxPayload, total, l.maxPayload)
	}
	line := make([]byte, 0, 64+len(m.Subject)+len(reply))
	if hdr != nil {
		line = append(line, "HPUB "...)
	} else {
		line = append(line, "PUB "...)
	}
	line = append(line, m.Subject...)
	line = append(line, ' ')
	if reply != "" {
		line = append(line, reply...)
		line = append(line, ' ')
	}
	if hdr != nil {
		line = strconv.AppendInt(line, int64(len(hdr)), 10)
		line = append(line, ' ')
	}
	line = strconv.AppendInt(line, int64(total), 10)
	line = append(line, "\r\n"...)
	l.bw.Write(line)
	l.bw.Write(hdr)
	l.bw.Write(m.Data)
	if _, err := l.bw.WriteString("\r\n"); err != nil {
		c.wg.Add(1)
		go func() { // lost takes c.mu, which the caller holds
			defer c.wg.Done()
			c.lost(l, fmt.Errorf("connection to %s lost: %w", l.srv.redacted, err))
		}()
		return fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	l.flushSoon()
	return nil
}

// Request publishes m with a reply subject of its own and waits for the
// reply until ctx ends. Its errors tell the caller what became of m:
// ErrNotConnected (not sent), ErrNoResponders (nobody subscribed to the
// subject, so not delivered), or ErrNoReply (sent, no reply came: its fate
// is unknown).
func (c *Conn) Request(ctx context.Context, m *Msg) (*Msg, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.link == nil {
		c.mu.Unlock()
		return nil, ErrNotConnected
	}
	if c.respSub == nil {
		var err error
		if c.respSub, err = c.subscribe(c.respPrefix + "*"); err != nil {
			c.mu.Unlock()
			return nil, err
		}
	}
	c.lastTok++
	tok := strconv.FormatUint(c.lastTok, 36)
	reply := make(chan *Msg, 1)
	c.resps[tok] = reply
	if err := c.write(m, c.respPrefix+tok); err != nil {
		delete(c.resps, tok)
		c.mu.Unlock()
		return nil, err
	}
	c.mu.Unlock()
	select {
	case r, ok := <-reply:
		if !ok {
			return nil, fmt.Errorf("%w: %w", ErrNoReply, ErrConnectionLost)
		}
		if r.Status == 503 && len(r.Data) == 0 {
			return nil, ErrNoResponders
		}
		return r, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.resps, tok)
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrNoReply, ctx.Err())
	}
}

// Flush sends a PING and waits for its PONG, so everything written before
// it has reached the server and been processed.
func (c *Conn) Flush(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	l := c.link
	if l == nil {
		c.mu.Unlock()
		return ErrNotConnected
	}
	pong := make(chan error, 1)
	l.pongs = append(l.pongs, pong)
	l.bw.WriteString("PING\r\n")
	l.flushSoon()
	c.mu.Unlock()
	select {
	case err := <-pong:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// validSubject reports whether s is a usable subject: not empty, no
// whitespace or control characters (which would break the control line),
// and no empty tokens.
func validSubject(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || (c == '.' && s[i+1] == '.') {
			return false
		}
	}
	return true
}
