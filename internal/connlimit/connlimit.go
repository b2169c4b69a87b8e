// Package connlimit caps, at accept time, the TCP connections one client
// address holds and those of them still sending their request headers. It
// wraps a net.Listener: a connection over a cap is closed (with a reset)
// before anything is read from it, so refusing one costs a few
// microseconds and no goroutine.
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
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"chat/internal/limit"
)

// Config holds the caps of a Listener.
type Config struct {
	// PerAddr caps the open connections of one address (0: no cap).
	PerAddr int
	// Parsing caps the connections of one address that are reading
	// their request headers: newly accepted ones, and idle keep-alive ones
	// that have begun their next request (0: no cap). net/http spends
	// several times the header bytes on a request of many small fields, so
	// this bounds what one address can make the server hold.
	Parsing int
	// Exempt lists peers that are never counted (trusted proxies).
	Exempt []netip.Prefix
}

// Connection states, as Listener tracks them.
const (
	stateParsing int32 = iota // reading a request's headers
	stateActive               // a request is being handled
	stateIdle                 // a keep-alive connection between requests
	stateDone                 // closed, or no longer tracked (HTTP/2)
)

// errHeaderCap is what Read returns on an idle connection that begins a
// request while its address already has Config.Parsing others doing so.
var errHeaderCap = errors.New("connlimit: too many connections reading headers from this address")

// Listener is a net.Listener that enforces Config. Its ConnState method
// must be the http.Server's ConnState hook, ConnContext its ConnContext,
// and Handler must wrap the server's handler, so that it learns when a
// connection has finished its headers and when it goes idle. It is safe
// for concurrent use and starts no goroutine.
type Listener struct {
	net.Listener
	cfg Config

	// mu guards open, parsing and every conn's state.
	mu sync.Mutex
	// open counts the connections per scope key.
	open map[string]int
	// parsing counts the connections per scope key in stateParsing.
	parsing map[string]int

	// refused counts connections closed by a cap.
	refused atomic.Uint64
	// current counts the open connections that are counted.
	current atomic.Int64
}

// New wraps ln.
func New(ln net.Listener, cfg Config) *Listener {
	return &Listener{Listener: ln, cfg: cfg, open: make(map[string]int), parsing: make(map[string]int)}
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
// start of its next request begins parsing again, and is refused with an
// error when its address is at the parsing cap.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.state.Load() == stateIdle && !c.l.beginParsing(c) {
		return 0, errHeaderCap
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
	if l.cfg.PerAddr <= 0 && l.cfg.Parsing <= 0 {
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
		if over(l.open[s.Key], l.cfg.PerAddr, s.Factor) || over(l.parsing[s.Key], l.cfg.Parsing, s.Factor) {
			return nil
		}
	}
	for _, s := range c.scopes {
		l.open[s.Key]++
		l.parsing[s.Key]++
	}
	c.state.Store(stateParsing)
	l.current.Add(1)
	return c
}

// over reports whether n connections reach the cap times factor (a cap of
// 0 is no cap).
func over(n, limit, factor int) bool { return limit > 0 && n >= limit*factor }

// setState moves c to state s, keeping the parsing counts. It reports
// false, changing nothing, when c would begin parsing over the cap.
func (l *Listener) setState(c *conn, s int32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := c.state.Load()
	if old == s || old == stateDone {
		return true
	}
	if s == stateParsing {
		for _, sc := range c.scopes {
			if over(l.parsing[sc.Key], l.cfg.Parsing, sc.Factor) {
				return false
			}
		}
		for _, sc := range c.scopes {
			l.parsing[sc.Key]++
		}
	}
	if old == stateParsing {
		l.dec(l.parsing, c)
	}
	c.state.Store(s)
	return true
}

// beginParsing marks an idle c as reading a request's headers.
func (l *Listener) beginParsing(c *conn) bool { return l.setState(c, stateParsing) }

// release forgets c, which has been closed.
func (l *Listener) release(c *conn) {
	l.setState(c, stateDone)
	l.mu.Lock()
	l.dec(l.open, c)
	l.mu.Unlock()
	l.current.Add(-1)
}

// dec lowers c's scopes in m by one, forgetting keys that reach zero.
func (l *Listener) dec(m map[string]int, c *conn) {
	for _, s := range c.scopes {
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

// ConnState is the http.Server's ConnState hook: an HTTP/1 connection
// that has read a request's headers is no longer parsing, and one that
// goes idle waits for its next request. (HTTP/2 connections leave the
// count at their first request, see Handler.)
func (l *Listener) ConnState(nc net.Conn, s http.ConnState) {
	c := counted(nc)
	if c == nil {
		return
	}
	switch s {
	case http.StateActive, http.StateHijacked:
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

// Handler wraps next so that an HTTP/2 connection stops being counted as
// parsing at its first request: its header sizes are bounded by HTTP/2
// itself, and its idle periods carry control frames rather than requests.
func (l *Listener) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			if c, ok := r.Context().Value(connKey{}).(*conn); ok && c.state.Load() != stateDone {
				l.setState(c, stateDone)
			}
		}
		next.ServeHTTP(w, r)
	})
}
