package connlimit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 10 * time.Second

// startServer serves a handler that answers "ok" on a loopback listener
// wrapped with cfg, and returns the listener and its address.
func startServer(t *testing.T, cfg Config) (*Listener, string) {
	t.Helper()
	return serve(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
}

// serve serves handler on a loopback listener wrapped with cfg, over
// HTTP/1 and unencrypted HTTP/2 with HTTP2Config, and returns the listener
// and its address.
func serve(t *testing.T, cfg Config, handler http.Handler) (*Listener, string) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, cfg)
	srv := &http.Server{
		Handler:           l.Handler(handler),
		ConnState:         l.ConnState,
		ConnContext:       l.ConnContext,
		ReadHeaderTimeout: waitTimeout,
		HTTP2:             HTTP2Config(),
		Protocols:         new(http.Protocols),
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l, inner.Addr().String()
}

// dialFrom opens a connection to addr from the loopback address ip.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: waitTimeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", ip, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	return c
}

// get sends a keep-alive GET on c and reads the answer through r.
func get(c net.Conn, r *bufio.Reader) error {
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if string(b) != "ok" {
		return fmt.Errorf("body %q", b)
	}
	return nil
}

// served reports whether a new connection from ip is answered.
func served(t *testing.T, ip, addr string) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: waitTimeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err // a refusal may reset the connection before the dial returns
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	return get(c, bufio.NewReader(c))
}

// waitFor polls cond until it holds, failing after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitTimeout); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestPerAddrCap checks that an address at its cap has its next connection
// closed unread and counted, that other addresses are served meanwhile,
// and that closing one connection makes room again.
func TestPerAddrCap(t *testing.T) {
	l, addr := startServer(t, Config{PerAddr: 3})
	var held []net.Conn
	for range 3 {
		c := dialFrom(t, "127.0.0.2", addr)
		if err := get(c, bufio.NewReader(c)); err != nil {
			t.Fatalf("connection within the cap: %v", err)
		}
		held = append(held, c)
	}
	if err := served(t, "127.0.0.2", addr); err == nil {
		t.Fatal("fourth connection from one address was served; want it refused")
	}
	waitFor(t, "refused count", func() bool { return l.Refused() == 1 })
	if err := served(t, "127.0.0.3", addr); err != nil {
		t.Fatalf("another address while the first holds its cap: %v", err)
	}
	waitFor(t, "the other address's connection closed", func() bool { return l.Open() == 3 })
	held[0].Close()
	waitFor(t, "room after a close", func() bool { return l.Open() == 2 })
	if err := served(t, "127.0.0.2", addr); err != nil {
		t.Fatalf("after one closed: %v", err)
	}
}

// TestParsingCap checks that connections still sending their headers are
// capped per address, that finished requests do not count, and that an
// idle keep-alive connection starting its next request is cut when the
// cap is full.
func TestParsingCap(t *testing.T) {
	l, addr := startServer(t, Config{InProgress: 2})
	// One idle keep-alive connection, which has made a request.
	idle := dialFrom(t, "127.0.0.2", addr)
	idleR := bufio.NewReader(idle)
	if err := get(idle, idleR); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, l)
	// Two connections in the middle of their headers.
	for i := range 2 {
		c := dialFrom(t, "127.0.0.2", addr)
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: t\r\nX-%d: 1\r\n", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := served(t, "127.0.0.2", addr); err == nil {
		t.Fatal("third connection reading headers was served; want it refused")
	}
	if err := served(t, "127.0.0.3", addr); err != nil {
		t.Fatalf("another address: %v", err)
	}
	if err := get(idle, idleR); err == nil {
		t.Fatal("idle connection began a request over the parsing cap and was served")
	}
	if l.Refused() != 1 {
		t.Errorf("Refused() = %d, want 1 (idle connections cut mid-request are not refusals at accept)", l.Refused())
	}
}

// waitIdle waits until no request of l is in progress.
func waitIdle(t *testing.T, l *Listener) {
	t.Helper()
	waitFor(t, "no request in progress", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.busy) == 0
	})
}

// TestParsingEndsAtRequest checks that a connection leaves the count of
// requests in progress once its request is done, so sequential keep-alive
// requests on many connections never hit the cap.
func TestParsingEndsAtRequest(t *testing.T) {
	l, addr := startServer(t, Config{InProgress: 1, PerAddr: 10})
	var conns []net.Conn
	var readers []*bufio.Reader
	for i := range 5 {
		c := dialFrom(t, "127.0.0.2", addr)
		r := bufio.NewReader(c)
		if err := get(c, r); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns, readers = append(conns, c), append(readers, r)
		waitIdle(t, l) // the answer is sent just before the connection is idle
	}
	for i, c := range conns {
		if err := get(c, readers[i]); err != nil {
			t.Fatalf("second request on connection %d: %v", i, err)
		}
		waitIdle(t, l)
	}
}

// fakeConn is a connection with a chosen remote address.
type fakeConn struct {
	net.Conn
	remote net.Addr
}

// RemoteAddr returns the chosen address.
func (f fakeConn) RemoteAddr() net.Addr { return f.remote }

// fakeListener hands out the connections sent on its channel.
type fakeListener struct{ conns chan net.Conn }

func (f fakeListener) Accept() (net.Conn, error) {
	c, ok := <-f.conns
	if !ok {
		return nil, errors.New("closed")
	}
	return c, nil
}
func (f fakeListener) Close() error   { return nil }
func (f fakeListener) Addr() net.Addr { return &net.TCPAddr{} }

// newFake returns a connection from host.
func newFake(host string) net.Conn {
	a, _ := net.Pipe()
	return fakeConn{Conn: a, remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(host), 1234))}
}

// TestIPv6Aggregates checks that an IPv6 /64 is one address, and that the
// /56 and /48 around it are capped at 4 and 16 times the per-address cap.
func TestIPv6Aggregates(t *testing.T) {
	l := New(fakeListener{}, Config{PerAddr: 2})
	admit := func(host string) bool { return l.admit(newFake(host)) != nil }
	// Two hosts of one /64 share its cap.
	if !admit("2001:db8:0:1::1") || !admit("2001:db8:0:1::2") {
		t.Fatal("first two connections of a /64 refused")
	}
	if admit("2001:db8:0:1:ffff::3") {
		t.Fatal("third connection of one /64 admitted with a cap of 2")
	}
	// The /56 2001:db8::/56 holds 4 × 2 = 8: three more /64s fill it.
	for i := 2; i <= 4; i++ {
		for j := range 2 {
			if !admit(fmt.Sprintf("2001:db8:0:%x::%d", i, j+1)) {
				t.Fatalf("/64 number %d of the /56 refused", i)
			}
		}
	}
	if admit("2001:db8:0:5::1") {
		t.Fatal("ninth connection of one /56 admitted; want its cap of 8")
	}
	// The /48 2001:db8::/48 holds 16 × 2 = 32: three more /56s fill it.
	for i := 1; i <= 3; i++ {
		for j := range 8 {
			if !admit(fmt.Sprintf("2001:db8:0:%x%02x::1", i, j)) {
				t.Fatalf("/56 number %d, /64 %d of the /48 refused", i, j)
			}
		}
	}
	if admit("2001:db8:0:ff00::1") {
		t.Fatal("33rd connection of one /48 admitted; want its cap of 32")
	}
	if !admit("2001:db8:1::1") {
		t.Fatal("a connection from the next /48 refused")
	}
	// IPv4 and IPv4-mapped addresses are one key.
	if !admit("192.0.2.1") || !admit("::ffff:192.0.2.1") || admit("192.0.2.1") {
		t.Fatal("IPv4 and its mapped form are not counted as one address")
	}
}

// TestExempt checks that exempt peers (trusted proxies) are never counted.
func TestExempt(t *testing.T) {
	l := New(fakeListener{}, Config{PerAddr: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	for range 5 {
		if l.admit(newFake("10.1.2.3")) == nil {
			t.Fatal("exempt peer refused")
		}
	}
	if l.Open() != 0 {
		t.Errorf("Open() = %d for exempt peers, want 0", l.Open())
	}
}

// TestCloseReleasesOnce checks that closing a connection twice frees its
// slot once.
func TestCloseReleasesOnce(t *testing.T) {
	l := New(fakeListener{}, Config{PerAddr: 2})
	a, b := l.admit(newFake("192.0.2.1")), l.admit(newFake("192.0.2.1"))
	a.Close()
	a.Close()
	if l.Open() != 1 {
		t.Fatalf("Open() = %d after closing one of two twice, want 1", l.Open())
	}
	if l.admit(newFake("192.0.2.1")) == nil {
		t.Fatal("slot not freed")
	}
	if l.admit(newFake("192.0.2.1")) != nil {
		t.Fatal("double close freed two slots")
	}
	b.Close()
}
