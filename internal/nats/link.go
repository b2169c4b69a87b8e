package nats

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// link is one server connection of a Conn: the socket, its parser (used
// only by the link's reader goroutine) and its buffered writer and PING
// accounting (guarded by the Conn's mu).
type link struct {
	conn net.Conn
	srv  *server
	p    *parser
	bw   *bufio.Writer
	// maxPayload is the server's max_payload, for outgoing messages.
	maxPayload int
	// pongs holds, in the order the PINGs went out, the channel of each
	// Flush waiting for its PONG (nil for the keep-alive PINGs).
	pongs []chan error
	// pingsOut counts keep-alive PINGs sent since the last PONG.
	pingsOut int
	// kick wakes the flusher; stop is closed when the link is dropped.
	kick chan struct{}
	stop chan struct{}
}

// newLink returns the link of a connection whose handshake succeeded.
func newLink(conn net.Conn, s *server, p *parser, info serverInfo) *link {
	return &link{
		conn: conn, srv: s, p: p, bw: newBufWriter(conn),
		maxPayload: clampPayload(info.MaxPayload),
		kick:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
	}
}

// flushSoon wakes the flusher without blocking.
func (l *link) flushSoon() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// install makes l the live link: it replays every subscription on it (in
// sid order), marks the connection up and starts the link's reader and
// flusher. c.mu is held.
func (c *Conn) install(l *link, reconnect bool) {
	sids := make([]uint64, 0, len(c.subs))
	for sid := range c.subs {
		sids = append(sids, sid)
	}
	slices.Sort(sids)
	for _, sid := range sids {
		l.bw.WriteString("SUB " + c.subs[sid].subject + " " + strconv.FormatUint(sid, 10) + "\r\n")
	}
	c.link = l
	if reconnect {
		c.status.Reconnects++
	}
	c.setStatus(Status{Connected: true, URL: l.srv.redacted})
	c.wg.Add(2)
	go c.readLoop(l)
	go c.writeLoop(l)
	l.flushSoon()
}

// readLoop is the link's reader: it parses what the server sends and acts
// on it until the link fails or is dropped.
func (c *Conn) readLoop(l *link) {
	defer c.wg.Done()
	for {
		f, err := l.p.next()
		if err != nil {
			c.lost(l, fmt.Errorf("connection to %s lost: %w", l.srv.redacted, err))
			return
		}
		switch f.op {
		case opMsg:
			c.deliver(f)
		case opPing:
			c.mu.Lock()
			if c.link == l {
				l.bw.WriteString("PONG\r\n")
				l.flushSoon()
			}
			c.mu.Unlock()
		case opPong:
			c.mu.Lock()
			l.pingsOut = 0
			if len(l.pongs) > 0 {
				if ch := l.pongs[0]; ch != nil {
					ch <- nil
				}
				l.pongs = l.pongs[1:]
			}
			c.mu.Unlock()
		case opErr:
			if !fatalServerError(f.text) {
				c.mu.Lock()
				c.status.ServerError = f.text
				c.mu.Unlock()
				continue
			}
			c.lost(l, fmt.Errorf("server %s closed the connection: %s", l.srv.redacted, f.text))
			return
		case opInfo:
			var info serverInfo
			if err := json.Unmarshal([]byte(f.text), &info); err != nil {
				c.lost(l, fmt.Errorf("connection to %s lost: %w", l.srv.redacted, protoErr("bad INFO: %v", err)))
				return
			}
			if info.MaxPayload > 0 {
				l.p.maxPayload = clampPayload(info.MaxPayload)
				c.mu.Lock()
				l.maxPayload = l.p.maxPayload
				c.mu.Unlock()
			}
		}
	}
}

// fatalServerError reports whether the server closes the connection after
// this -ERR; per the protocol only an invalid subject, a permissions
// violation and too many subscriptions leave it open.
func fatalServerError(text string) bool {
	t := strings.ToLower(text)
	return !strings.HasPrefix(t, "invalid subject") &&
		!strings.HasPrefix(t, "permissions violation") &&
		!strings.HasPrefix(t, "maximum subscriptions exceeded")
}

// deliver hands a message to its subscription, or to the request waiting
// for it. It runs on the reader, so each subscription gets its messages in
// the order the server sent them.
func (c *Conn) deliver(f frame) {
	m := f.msg
	c.mu.Lock()
	sub := c.subs[f.sid]
	var reply chan *Msg
	if sub != nil && sub == c.respSub {
		tok := strings.TrimPrefix(m.Subject, c.respPrefix)
		reply = c.resps[tok]
		delete(c.resps, tok)
	}
	c.mu.Unlock()
	if sub == nil {
		return
	}
	if f.raw != nil {
		h, status, desc, err := ParseHeader(f.raw)
		if err != nil {
			c.badHeaders.Add(1)
			return
		}
		m.Header, m.Status, m.Description = h, status, desc
	}
	if sub == c.respSub {
		if reply != nil {
			reply <- m // buffered, and each token is answered once
		}
		return
	}
	sub.push(m)
}

// writeLoop is the link's flusher and pinger: it flushes the buffered
// writer when kicked, and every PingInterval sends a PING, dropping the
// link when MaxPingsOut of them went unanswered.
func (c *Conn) writeLoop(l *link) {
	defer c.wg.Done()
	ping := time.NewTicker(c.opts.PingInterval)
	defer ping.Stop()
	for {
		var err error
		select {
		case <-l.stop:
			return
		case <-l.kick:
			c.mu.Lock()
			if c.link == l {
				err = l.bw.Flush()
			}
			c.mu.Unlock()
		case <-ping.C:
			c.mu.Lock()
			if l.pingsOut >= c.opts.MaxPingsOut {
				err = fmt.Errorf("stale connection: %d PINGs unanswered", l.pingsOut)
			} else if c.link == l {
				l.pingsOut++
				l.pongs = append(l.pongs, nil)
				l.bw.WriteString("PING\r\n")
				err = l.bw.Flush()
			}
			c.mu.Unlock()
		}
		if err != nil {
			c.lost(l, fmt.Errorf("connection to %s lost: %w", l.srv.redacted, err))
			return
		}
	}
}

// lost drops l after an error, if it is still the live link, and starts
// reconnecting unless the Conn is closed.
func (c *Conn) lost(l *link, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.link != l {
		return
	}
	c.drop(l)
	c.setStatus(Status{URL: l.srv.redacted, Err: err})
	if !c.closed {
		c.wg.Add(1)
		go c.reconnect()
	}
}

// drop tears l down: it is no longer live, its socket is closed, the
// Flushes and requests waiting on it fail. c.mu is held.
func (c *Conn) drop(l *link) {
	c.link = nil
	close(l.stop)
	l.conn.Close()
	for _, ch := range l.pongs {
		if ch != nil {
			ch <- ErrConnectionLost
		}
	}
	l.pongs = nil
	for tok, ch := range c.resps {
		close(ch)
		delete(c.resps, tok)
	}
}

// reconnect tries the servers in turn, starting after the one lost, with a
// pause that grows after each full round, until one accepts the
// connection or the Conn is closed.
func (c *Conn) reconnect() {
	defer c.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // ends the dial in progress when Close is called
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	c.mu.Lock()
	start := c.next
	c.mu.Unlock()
	wait := c.opts.ReconnectWait
	for {
		for i := 1; i <= len(c.servers); i++ {
			idx := (start + i) % len(c.servers)
			l, err := c.dial(ctx, c.servers[idx])
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				if l != nil {
					l.conn.Close()
				}
				return
			}
			if err == nil {
				c.next = idx
				c.install(l, true)
				c.mu.Unlock()
				return
			}
			c.status.Err = fmt.Errorf("reconnect to %w", err)
			c.mu.Unlock()
		}
		// Jitter of ±20% keeps many clients from returning in step.
		pause := time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		t := time.NewTimer(pause)
		select {
		case <-c.done:
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxReconnectWait)
	}
}
