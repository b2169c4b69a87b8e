// Package connlimit bounds what one client address can make the server
// hold: the TCP connections it has open, its requests in progress over
// HTTP/1 and HTTP/2 alike (from their first header byte until they are
// answered), the header fields of any one request, and what an HTTP/2
// connection buffers (HTTP2Config). It wraps a net.Listener: a connection
// over a cap is closed (with a reset) before anything is read from it, so
// refusing one costs a few microseconds and no goroutine; an HTTP/2
// request over the cap is answered 429 at once.
//
// Addresses are counted with the keys of package limit: an IPv4 address
// itself, an IPv6 address by its /64, and the /56 and /48 that contain it
// with 4 and 16 times the cap. At accept time only the socket's peer is
// known, so peers listed as exempt (trusted proxies, which carry many
// clients) are not counted at all; the proxy should cap its own clients.
package connlimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"chat/internal/httpx"
	"chat/internal/limit"
)

// Config holds the caps of a Listener.
type Config struct {
	// PerAddr caps the open connections of one address (0: no cap).
	PerAddr int
	// InProgress caps the requests of one address in progress at once
	// (0: no cap). An HTTP/1 connection counts from its accept (or, idle,
	// from the first byte of its next request) until it is idle again,
	// hijacked or closed; an HTTP/2 request counts while its handler runs.
	// A request in progress holds its parsed headers (net/http spends
	// several times the header bytes on a request of many small fields),
	// its goroutine and, waiting for its body, its buffers: this bounds
	// what one address can make the server hold however it shapes its
	// requests. A long-lived request with caps of its own (a stream)
	// leaves the count with Release.
	InProgress int
	// MaxFields caps the header fields of one request (0: no cap): a
	// request with more is answered 431 before the handler sees it.
	MaxFields int
	// Exempt lists peers that are never counted (trusted proxies).
	Exempt []netip.Prefix
}

// Connection states, as Listener tracks them.
const (
	stateBusy   int32 = iota // reading, handling or answering a request (counted)
	stateActive              // a request that no longer counts (hijacked, released)
	stateIdle                // a keep-alive connection between requests
	stateDone                // closed, or no longer tracked (HTTP/2)
)

// errBusyCap is what Read returns on an idle connection that begins a
// request while its address already has Config.InProgress requests in
// progress.
var errBusyCap = errors.New("connlimit: too many requests in progress from this address")

// Listener is a net.Listener that enforces Config. Its ConnState method
// must be the http.Server's ConnState hook, ConnContext its ConnContext,
// and Handler must wrap the server's handler, so that it learns when a
// connection has finished its headers and when it goes idle. It is safe
// for concurrent use and starts no goroutine.
type Listener struct {
	net.Listener
	cfg Config

	// mu guards open, busy and every conn's state.
	mu sync.Mutex
	// open counts the connections per scope key.
	open map[string]int
	// busy counts the requests in progress per scope key: HTTP/1
	// connections in stateBusy and HTTP/2 requests in their handlers.
	busy map[string]int

	// refused counts connections closed by a cap.
	refused atomic.Uint64
	// current counts the open connections that are counted.
	current atomic.Int64
}

// New wraps ln.
func New(ln net.Listener, cfg Config) *Listener {
	return &Listener{Listener: ln, cfg: cfg, open: make(map[string]int), busy: make(map[string]int)}
}

// Refused returns how many connections the caps have refused.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

// Open returns how many counted connections are open.
func (l *Listener) Open() int { return int(l.current.Load()) }

// conn is an accepted connection that is counted against its scopes.
type conn struct {
	net.Conn
	l *Listener
	// scopes are the keys this connection counts against.
	scopes []limit.Scope
	// state is the connection's state (guarded by l.mu; read without it
	// only as a hint on the Read path).
	state atomic.Int32
	// closed is set by the first Close.
	closed atomic.Bool
}

// NetConn returns the underlying connection.
func (c *conn) NetConn() net.Conn { return c.Conn }

// CloseWrite shuts down the writing side, as net/http does before it
// closes a connection after an error response (so that the client reads
// the response rather than a reset).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Read reads from the connection. An idle connection that receives the
// start of its next request is busy again, and is refused with an error
// when its address is at the in-progress cap.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.state.Load() == stateIdle && !c.l.setState(c, stateBusy) {
		return 0, errBusyCap
	}
	return n, err
}

// Close closes the connection and releases its counts, once.
func (c *conn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c)
	}
	return c.Conn.Close()
}

// Accept returns the next connection within the caps, closing at once
// every connection over them.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.admit(nc); c != nil {
			return c, nil
		}
		l.refused.Add(1)
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset: no FIN handshake, no TIME_WAIT here
		}
		_ = nc.Close()
	}
}

// admit returns nc wrapped and counted, nc itself if it is not counted, or
// nil if a cap refuses it.
func (l *Listener) admit(nc net.Conn) net.Conn {
	if l.cfg.PerAddr <= 0 && l.cfg.InProgress <= 0 {
		return nc
	}
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return nc
	}
	a := ap.Addr().Unmap().WithZone("")
	for _, p := range l.cfg.Exempt {
		if p.Contains(a) {
			return nc
		}
	}
	c := &conn{Conn: nc, l: l, scopes: limit.Scopes(limit.Key(a.String()))}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range c.scopes {
		if over(l.open[s.Key], l.cfg.PerAddr, s.Factor) || over(l.busy[s.Key], l.cfg.InProgress, s.Factor) {
			return nil
		}
	}
	for _, s := range c.scopes {
		l.open[s.Key]++
		l.busy[s.Key]++
	}
	c.state.Store(stateBusy)
	l.current.Add(1)
	return c
}

// over reports whether n connections reach the cap times factor (a cap of
// 0 is no cap).
func over(n, limit, factor int) bool { return limit > 0 && n >= limit*factor }

// setState moves c to state s, keeping the busy counts. It reports false,
// changing nothing, when c would become busy over the cap.
func (l *Listener) setState(c *conn, s int32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := c.state.Load()
	if old == s || old == stateDone {
		return true
	}
	if s == stateBusy && !l.take(c.scopes) {
		return false
	}
	if old == stateBusy {
		l.dec(l.busy, c.scopes)
	}
	c.state.Store(s)
	return true
}

// take counts one more request in progress in every scope, or in none if
// one is at its cap, and reports which. l.mu must be held.
func (l *Listener) take(scopes []limit.Scope) bool {
	for _, sc := range scopes {
		if over(l.busy[sc.Key], l.cfg.InProgress, sc.Factor) {
			return false
		}
	}
	for _, sc := range scopes {
		l.busy[sc.Key]++
	}
	return true
}

// release forgets c, which has been closed.
func (l *Listener) release(c *conn) {
	l.setState(c, stateDone)
	l.mu.Lock()
	l.dec(l.open, c.scopes)
	l.mu.Unlock()
	l.current.Add(-1)
}

// dec lowers scopes in m by one, forgetting keys that reach zero.
func (l *Listener) dec(m map[string]int, scopes []limit.Scope) {
	for _, s := range scopes {
		if m[s.Key]--; m[s.Key] <= 0 {
			delete(m, s.Key)
		}
	}
}

// counted returns the counted connection beneath nc (which may be a
// *tls.Conn), or nil.
func counted(nc net.Conn) *conn {
	for nc != nil {
		if c, ok := nc.(*conn); ok {
			return c
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		nc = u.NetConn()
	}
	return nil
}

// ConnState is the http.Server's ConnState hook: a hijacked HTTP/1
// connection (a stream, which has caps of its own) no longer counts as a
// request in progress, and one that goes idle waits for its next request.
// (HTTP/2 connections leave the count at their first request and count
// their requests instead, see Handler.)
func (l *Listener) ConnState(nc net.Conn, s http.ConnState) {
	c := counted(nc)
	if c == nil {
		return
	}
	switch s {
	case http.StateHijacked:
		l.setState(c, stateActive)
	case http.StateIdle:
		l.setState(c, stateIdle)
	}
}

// connKey is the context key under which ConnContext stores the counted
// connection.
type connKey struct{}

// ConnContext is the http.Server's ConnContext hook: it remembers the
// connection for Handler.
func (l *Listener) ConnContext(ctx context.Context, nc net.Conn) context.Context {
	if c := counted(nc); c != nil {
		return context.WithValue(ctx, connKey{}, c)
	}
	return ctx
}

// holdKey is the context key under which Handler stores an HTTP/2
// request's hold.
type holdKey struct{}

// hold is one HTTP/2 request's place in its address's count.
type hold struct {
	once sync.Once
	l    *Listener
	c    *conn
}

// release gives the place back, once.
func (h *hold) release() {
	h.once.Do(func() {
		h.l.mu.Lock()
		defer h.l.mu.Unlock()
		h.l.dec(h.l.busy, h.c.scopes)
	})
}

// Release ends the count of r as a request in progress early: a
// long-lived request with caps of its own (a stream, once admitted) calls
// it. An HTTP/2 request's body, which such a request does not read, is
// closed, so that nothing a client sends on it is buffered (an HTTP/1
// stream takes its connection over). It does nothing for a request that
// is not counted.
func Release(r *http.Request) {
	ctx := r.Context()
	if h, ok := ctx.Value(holdKey{}).(*hold); ok {
		_ = r.Body.Close()
		h.release()
	} else if c, ok := ctx.Value(connKey{}).(*conn); ok && r.ProtoMajor == 1 {
		c.l.setState(c, stateActive)
	}
}

// Handler wraps next: it answers 431 to a request with more than
// Config.MaxFields header fields, and keeps the count of requests in
// progress. An HTTP/1 connection stays busy until it is idle again,
// hijacked or closed (see ConnState): that covers its handler and the
// time net/http spends after it, sending the answer and reading what is
// left of an unread body (up to the read timeout). An HTTP/2 request takes
// a place in its address's count while its handler runs, or is answered
// 429 at once when there is none; the connection itself stops counting at
// its first request (its idle periods carry control frames, not requests).
func (l *Listener) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, counted := r.Context().Value(connKey{}).(*conn)
		if counted && r.ProtoMajor == 2 {
			l.setState(c, stateDone)
		}
		if n := fields(r.Header); l.cfg.MaxFields > 0 && n > l.cfg.MaxFields {
			if r.ProtoMajor == 1 {
				// Close at once rather than wait for a body to discard.
				w.Header().Set("Connection", "close")
				_ = http.NewResponseController(w).SetReadDeadline(time.Now())
			}
			httpx.WriteError(w, http.StatusRequestHeaderFieldsTooLarge,
				fmt.Sprintf("too many header fields (%d); at most %d", n, l.cfg.MaxFields))
			return
		}
		if !counted || r.ProtoMajor != 2 {
			next.ServeHTTP(w, r)
			return
		}
		l.mu.Lock()
		ok := l.take(c.scopes)
		l.mu.Unlock()
		if !ok {
			httpx.RetryAfter(w, time.Second)
			httpx.WriteError(w, http.StatusTooManyRequests, "too many requests in progress from your address")
			return
		}
		h := &hold{l: l, c: c}
		defer h.release()
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), holdKey{}, h)))
	})
}

// fields returns the number of header fields in h.
func fields(h http.Header) int {
	n := 0
	for _, v := range h {
		n += len(v)
	}
	return n
}

// HTTP/2 bounds per connection (see HTTP2Config).
const (
	// h2Streams is how many requests one HTTP/2 connection may have open
	// at once: more than a browser's streams and fetches (the streams of
	// one address are capped lower), the least RFC 9113 recommends.
	h2Streams = 100
	// h2FrameSize is the largest frame the server reads. The framer keeps
	// a read buffer as large as the largest frame it has read, for the
	// connection's life; net/http's default (1 MiB) would let a peer make
	// it hold 1 MiB per connection.
	h2FrameSize = 16 << 10
	// h2Window bounds the request body bytes the server buffers for its
	// handlers on one connection, and on one request (net/http's
	// defaults: 1 MiB each). 64 KiB is the least HTTP/2 allows a
	// connection; a request's window below the initial 65 535 bytes would
	// make net/http refuse what a client sends before it has read the
	// server's settings.
	h2Window = 64 << 10
)

// HTTP2Config returns the HTTP/2 settings for a server whose listener
// this is: with them, what one HTTP/2 connection can make the server hold
// besides its requests in progress is a few tens of kilobytes, as for an
// HTTP/1 connection.
func HTTP2Config() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:          h2Streams,
		MaxReadFrameSize:              h2FrameSize,
		MaxReceiveBufferPerConnection: h2Window,
		MaxReceiveBufferPerStream:     h2Window,
	}
}
