package nats

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options and fixed tuning values.
const (
	// defaultDialTimeout bounds one TCP connect plus handshake.
	defaultDialTimeout = 2 * time.Second
	// defaultPingInterval is how often the client PINGs the server.
	defaultPingInterval = 10 * time.Second
	// defaultMaxPingsOut is how many PINGs may go unanswered before the
	// connection counts as dead.
	defaultMaxPingsOut = 2
	// defaultReconnectWait is the first pause after every URL of the list
	// failed once; it doubles up to maxReconnectWait.
	defaultReconnectWait = 100 * time.Millisecond
	// maxReconnectWait caps the pause between two rounds of the URL list.
	maxReconnectWait = 2 * time.Second
	// writeTimeout bounds one write to the socket; a write that takes
	// longer means the connection is dead.
	writeTimeout = 5 * time.Second
	// writeBuffer is the size of the buffered writer in front of the
	// socket; the flusher empties it.
	writeBuffer = 32 << 10
	// clientVersion is the version this client sends in CONNECT.
	clientVersion = "0.1.0"
)

// The errors callers tell apart: whether a message surely was not sent, or
// was sent and its fate is unknown.
var (
	// ErrNotConnected means the connection is down (it is reconnecting):
	// the message was not sent, so sending it again is safe.
	ErrNotConnected = errors.New("not connected to NATS: message not sent")
	// ErrNoResponders means the server found nobody subscribed to a
	// request's subject: the request was not delivered to anyone.
	ErrNoResponders = errors.New("no responders: message not delivered")
	// ErrNoReply means a request was sent but no reply came (its context
	// ended or the connection was lost): it may or may not have been
	// processed.
	ErrNoReply = errors.New("no reply: fate unknown")
	// ErrConnectionLost is wrapped with ErrNoReply when the connection
	// dropped while a request waited, and returned by a publish whose
	// write to the socket failed (it may have been sent).
	ErrConnectionLost = errors.New("NATS connection lost")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("NATS connection closed")
	// ErrAuthorization means the server refused the credentials.
	ErrAuthorization = errors.New("authorization violation (wrong or missing user, password or token)")
	// ErrMaxPayload means a message is larger than the server accepts.
	ErrMaxPayload = errors.New("message larger than the server's max_payload")
	// ErrBadSubject means a subject, reply subject or queue name is empty
	// or holds whitespace, control characters or empty tokens.
	ErrBadSubject = errors.New("invalid NATS subject")
)

// Options tune a connection; the zero value uses the defaults.
type Options struct {
	// Name is the client name the server shows for this connection.
	Name string
	// TLSConfig is used for tls:// URLs and servers that require TLS;
	// nil means the system roots, verifying the URL's host.
	TLSConfig *tls.Config
	// DialTimeout bounds one connect and handshake (default 2s).
	DialTimeout time.Duration
	// PingInterval is how often the client PINGs the server (default 10s).
	PingInterval time.Duration
	// MaxPingsOut is how many PINGs may go unanswered before the
	// connection is dropped and reconnected (default 2).
	MaxPingsOut int
	// ReconnectWait is the first pause between two rounds of the URL list
	// (default 100ms); it doubles up to 2s.
	ReconnectWait time.Duration
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.DialTimeout <= 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.PingInterval <= 0 {
		o.PingInterval = defaultPingInterval
	}
	if o.MaxPingsOut <= 0 {
		o.MaxPingsOut = defaultMaxPingsOut
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = defaultReconnectWait
	}
	return o
}

// Msg is a message: what PUB/HPUB send and MSG/HMSG deliver.
type Msg struct {
	// Subject is where the message is published.
	Subject string
	// Reply is the subject a reply goes to, if any.
	Reply string
	// Header is the header block; nil means none (PUB rather than HPUB).
	Header Header
	// Status and Description are the status line of a delivered header
	// block ("NATS/1.0 503" is 503, "NATS/1.0 100 Idle Heartbeat" is 100
	// and "Idle Heartbeat"); 0 and "" when there is none.
	Status      int
	Description string
	// Data is the payload.
	Data []byte
}

// Status is the state of a connection, for health checks and statistics.
type Status struct {
	// Connected is true while a server connection is up.
	Connected bool
	// Closed is true after Close.
	Closed bool
	// URL is the server connected to, or the last one lost or tried, with
	// any credentials redacted.
	URL string
	// Err says why the connection is down (the loss, or the last failed
	// attempt to reconnect); nil while connected.
	Err error
	// Since is when Connected last changed.
	Since time.Time
	// Reconnects counts the connections made after the first.
	Reconnects uint64
	// ServerError is the last -ERR the server sent that left the
	// connection open, such as a permissions violation.
	ServerError string
}

// serverInfo is the part of the server's INFO the client uses.
type serverInfo struct {
	ServerName   string `json:"server_name"`
	Version      string `json:"version"`
	MaxPayload   int    `json:"max_payload"`
	Headers      bool   `json:"headers"`
	TLSRequired  bool   `json:"tls_required"`
	TLSAvailable bool   `json:"tls_available"`
}

// Conn is a client connection to one of a list of NATS servers, which it
// keeps up by reconnecting until Close. Its methods are safe for
// concurrent use.
type Conn struct {
	opts    Options
	servers []*server
	// respPrefix is the prefix of request reply subjects; the one
	// wildcard subscription respPrefix+"*" receives every reply.
	respPrefix string
	// badHeaders counts delivered messages dropped for a bad header block.
	badHeaders atomic.Uint64
	// done is closed by Close.
	done chan struct{}
	// wg counts the goroutines Close waits for.
	wg sync.WaitGroup

	mu sync.Mutex
	// link is the live server connection, nil while disconnected.
	link *link
	// next is the index of the server connected to or last lost.
	next   int
	status Status
	// changed is closed, and replaced, at every change of Connected or
	// Closed.
	changed chan struct{}
	closed  bool
	// subs are the subscriptions by sid, replayed on every reconnect;
	// lastSID is the last sid given out.
	subs    map[uint64]*Subscription
	lastSID uint64
	// respSub is the reply subscription, nil until the first request;
	// resps maps a request's token to the channel its reply goes to.
	respSub *Subscription
	resps   map[string]chan *Msg
	lastTok uint64
}

// Connect connects to the first server of urls that accepts the
// connection, trying each in turn, and returns a Conn that stays connected
// (reconnecting to the servers of urls in turn) until Close. Its error is
// one line, without credentials: a malformed URL, every server
// unreachable, or the credentials refused (errors.Is ErrAuthorization).
func Connect(ctx context.Context, urls []string, opts Options) (*Conn, error) {
	servers, err := parseURLs(urls)
	if err != nil {
		return nil, err
	}
	c := &Conn{
		opts:       opts.withDefaults(),
		servers:    servers,
		respPrefix: "_INBOX." + rand.Text() + ".",
		done:       make(chan struct{}),
		changed:    make(chan struct{}),
		subs:       map[uint64]*Subscription{},
		resps:      map[string]chan *Msg{},
	}
	var errs []error
	for i, s := range servers {
		l, err := c.dial(ctx, s)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		c.mu.Lock()
		c.next = i
		c.install(l, false)
		c.mu.Unlock()
		return c, nil
	}
	if len(errs) == 1 {
		return nil, fmt.Errorf("connect to %w", errs[0])
	}
	return nil, &connectError{errs: errs}
}

// connectError reports that no server of a list accepted a connection.
type connectError struct{ errs []error }

// Error lists every server's error on one line.
func (e *connectError) Error() string {
	parts := make([]string, len(e.errs))
	for i, err := range e.errs {
		parts[i] = err.Error()
	}
	return "connect to NATS: " + strings.Join(parts, "; ")
}

// Unwrap returns every server's error.
func (e *connectError) Unwrap() []error { return e.errs }

// serverError is an error of one server, named by its redacted URL.
type serverError struct {
	url string
	err error
}

// Error returns the URL and the error.
func (e *serverError) Error() string { return e.url + ": " + e.err.Error() }

// Unwrap returns the error.
func (e *serverError) Unwrap() error { return e.err }

// dial connects to s and performs the handshake, within the dial timeout
// and ctx.
func (c *Conn) dial(ctx context.Context, s *server) (*link, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, &serverError{s.redacted, err}
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline) // fails only on a closed conn, which the handshake reports
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	l, err := c.handshake(conn, s)
	stop()
	if err != nil {
		conn.Close()
		return nil, &serverError{s.redacted, err}
	}
	_ = l.conn.SetDeadline(time.Time{})
	return l, nil
}

// handshake reads the server's INFO, upgrades to TLS when asked, sends
// CONNECT and a PING, and waits for the PONG (or the -ERR refusing us).
func (c *Conn) handshake(conn net.Conn, s *server) (*link, error) {
	p := newParser(conn)
	f, err := p.next()
	if err != nil {
		return nil, fmt.Errorf("read INFO: %w", err)
	}
	if f.op != opInfo {
		return nil, protoErr("server did not start with INFO")
	}
	var info serverInfo
	if err := json.Unmarshal([]byte(f.text), &info); err != nil {
		return nil, protoErr("bad INFO: %v", err)
	}
	if s.tls || info.TLSRequired {
		if !info.TLSRequired && !info.TLSAvailable {
			return nil, errors.New("server does not offer TLS")
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.opts.TLSConfig != nil {
			cfg = c.opts.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = s.host
		}
		tc := tls.Client(conn, cfg)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		conn, p = tc, newParser(tc)
	}
	if !info.Headers {
		return nil, errors.New("server does not support headers (NATS 2.2 or newer needed)")
	}
	p.maxPayload = clampPayload(info.MaxPayload)
	l := newLink(conn, s, p, info)
	if err := l.writeConnect(c.opts.Name, s); err != nil {
		return nil, err
	}
	for {
		f, err := p.next()
		if err != nil {
			return nil, fmt.Errorf("wait for PONG: %w", err)
		}
		switch f.op {
		case opPong:
			return l, nil
		case opErr:
			if isAuthError(f.text) {
				return nil, ErrAuthorization
			}
			return nil, fmt.Errorf("server error: %s", f.text)
		case opPing:
			if _, err := l.bw.WriteString("PONG\r\n"); err != nil {
				return nil, err
			}
			if err := l.bw.Flush(); err != nil {
				return nil, err
			}
		case opMsg:
			return nil, protoErr("message before the handshake ended")
		}
	}
}

// writeConnect sends CONNECT, then PING, and flushes them.
func (l *link) writeConnect(name string, s *server) error {
	msg := struct {
		Verbose      bool   `json:"verbose"`
		Pedantic     bool   `json:"pedantic"`
		TLSRequired  bool   `json:"tls_required"`
		Name         string `json:"name,omitempty"`
		Lang         string `json:"lang"`
		Version      string `json:"version"`
		Protocol     int    `json:"protocol"`
		Echo         bool   `json:"echo"`
		Headers      bool   `json:"headers"`
		NoResponders bool   `json:"no_responders"`
		User         string `json:"user,omitempty"`
		Pass         string `json:"pass,omitempty"`
		Token        string `json:"auth_token,omitempty"`
	}{
		TLSRequired: s.tls, Name: name, Lang: "go", Version: clientVersion,
		Protocol: 1, Echo: true, Headers: true, NoResponders: true,
		User: s.user, Pass: s.pass, Token: s.token,
	}
	js, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	l.bw.WriteString("CONNECT ")
	l.bw.Write(js)
	l.bw.WriteString("\r\nPING\r\n")
	return l.bw.Flush()
}

// isAuthError reports whether an -ERR text refuses the credentials.
func isAuthError(text string) bool {
	t := strings.ToLower(text)
	return strings.Contains(t, "authorization violation") || strings.Contains(t, "authentication")
}

// clampPayload returns the inbound limit for a server's max_payload.
func clampPayload(n int) int {
	if n <= 0 {
		return defaultMaxPayload
	}
	return min(n, hardMaxPayload)
}

// Status returns the connection's state now.
func (c *Conn) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// StatusChanged returns a channel that is closed at the next change of
// Status().Connected or Status().Closed.
func (c *Conn) StatusChanged() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// setStatus replaces the status and wakes the watchers. c.mu is held.
func (c *Conn) setStatus(s Status) {
	s.Since = time.Now()
	s.Reconnects = c.status.Reconnects
	s.ServerError = c.status.ServerError
	c.status = s
	close(c.changed)
	c.changed = make(chan struct{})
}

// MaxPayload is the largest message (header block and data) the server
// connected to, or last connected to, accepts.
func (c *Conn) MaxPayload() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.link == nil {
		return defaultMaxPayload
	}
	return c.link.maxPayload
}

// BadHeaders counts delivered messages dropped because their header block
// was malformed.
func (c *Conn) BadHeaders() uint64 { return c.badHeaders.Load() }

// NewInbox returns a new subject that no one else uses, for replies or a
// consumer's deliveries.
func (c *Conn) NewInbox() string { return "_INBOX." + rand.Text() }

// Close ends the connection for good: pending writes are flushed (best
// effort), waiting requests fail with ErrNoReply, subscriptions end, and
// every goroutine of the connection has returned when Close returns.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	if l := c.link; l != nil {
		_ = l.bw.Flush() // best effort: the connection ends either way
		c.drop(l)
	}
	for _, s := range c.subs {
		s.close()
	}
	c.subs = nil
	c.setStatus(Status{Closed: true, URL: c.status.URL, Err: ErrClosed})
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// newBufWriter returns the buffered writer in front of conn, each of whose
// socket writes has writeTimeout to finish.
func newBufWriter(conn net.Conn) *bufio.Writer {
	return bufio.NewWriterSize(deadlineWriter{conn}, writeBuffer)
}

// deadlineWriter sets a write deadline before each write to its conn.
type deadlineWriter struct{ conn net.Conn }

// Write writes p with a deadline of writeTimeout from now.
func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.conn.SetWriteDeadline(time.Now().Add(writeTimeout)) // a closed conn fails the write
	return w.conn.Write(p)
}
