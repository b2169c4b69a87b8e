package nats

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// These tests talk to a scripted peer on a loopback listener: it writes
// exact server bytes and reads the client's, to check the client's side of
// the framing where a real server would never misbehave.

// peerInfo is the INFO a scripted peer sends.
const peerInfo = `INFO {"server_id":"peer","version":"2.15.3","headers":true,"max_payload":100,"proto":1}` + "\r\n"

// peer is a scripted server: a loopback listener.
type peer struct{ ln net.Listener }

// peerConn is one client connection the peer accepted.
type peerConn struct {
	c net.Conn
	r *bufio.Reader
}

// newPeer listens on a loopback port until the test ends.
func newPeer(t *testing.T) *peer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &peer{ln: ln}
}

// url is the peer's client URL.
func (p *peer) url() string { return "nats://" + p.ln.Addr().String() }

// accept accepts a connection within waitTimeout and sends INFO.
func (p *peer) accept(t *testing.T) *peerConn {
	t.Helper()
	_ = p.ln.(*net.TCPListener).SetDeadline(time.Now().Add(waitTimeout))
	c, err := p.ln.Accept()
	if err != nil {
		t.Fatalf("peer accept: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	pc := &peerConn{c: c, r: bufio.NewReader(c)}
	pc.send(t, peerInfo)
	return pc
}

// handshake accepts a connection and completes the client's handshake.
func (p *peer) handshake(t *testing.T) *peerConn {
	t.Helper()
	pc := p.accept(t)
	if l := pc.line(t); !strings.HasPrefix(l, "CONNECT {") || !strings.Contains(l, `"headers":true`) ||
		!strings.Contains(l, `"no_responders":true`) || !strings.Contains(l, `"verbose":false`) {
		t.Fatalf("client sent %q, want CONNECT with headers, no_responders, verbose false", l)
	}
	pc.expect(t, "PING")
	pc.send(t, "PONG\r\n")
	return pc
}

// send writes s to the client.
func (pc *peerConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := pc.c.Write([]byte(s)); err != nil {
		t.Fatalf("peer write: %v", err)
	}
}

// line reads the client's next line, without CRLF.
func (pc *peerConn) line(t *testing.T) string {
	t.Helper()
	l, err := pc.r.ReadString('\n')
	if err != nil {
		t.Fatalf("peer read: %v", err)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// expect reads the client's next line and wants it to be want.
func (pc *peerConn) expect(t *testing.T, want string) {
	t.Helper()
	if got := pc.line(t); got != want {
		t.Fatalf("client sent %q, want %q", got, want)
	}
}

// connectPeer connects a client to p while the test plays the server's
// part of the handshake, and returns both ends.
func connectPeer(t *testing.T, p *peer, opts Options) (*Conn, *peerConn) {
	t.Helper()
	type result struct {
		c   *Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		c, err := Connect(ctx, []string{p.url()}, opts)
		done <- result{c, err}
	}()
	pc := p.handshake(t)
	r := <-done
	if r.err != nil {
		t.Fatalf("Connect to the peer: %v", r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c, pc
}

// TestServerPingAnswered answers the server's PING with PONG, also when
// the PING arrives split over several writes.
func TestServerPingAnswered(t *testing.T) {
	_, pc := connectPeer(t, newPeer(t), Options{})
	pc.send(t, "PING\r\n")
	pc.expect(t, "PONG")
	for _, b := range []string{"P", "I", "N", "G", "\r", "\n"} {
		pc.send(t, b)
	}
	pc.expect(t, "PONG")
}

// TestConnectRefused gets ErrAuthorization when the server answers
// CONNECT with -ERR 'Authorization Violation', and the server's other
// refusals as one-line errors.
func TestConnectRefused(t *testing.T) {
	for _, tt := range []struct{ errLine, want string }{
		{"-ERR 'Authorization Violation'\r\n", "authorization violation"},
		{"-ERR 'Maximum Connections Exceeded'\r\n", "Maximum Connections Exceeded"},
	} {
		p := newPeer(t)
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			_, err := Connect(ctx, []string{"nats://user:secret@" + p.ln.Addr().String()}, Options{})
			done <- err
		}()
		pc := p.accept(t)
		pc.line(t) // CONNECT
		pc.expect(t, "PING")
		pc.send(t, tt.errLine)
		err := <-done
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("Connect refused with %q: %v, want an error saying %q without the secret", tt.errLine, err, tt.want)
		}
		if isAuth := errors.Is(err, ErrAuthorization); isAuth != strings.Contains(tt.errLine, "Authorization") {
			t.Errorf("Connect refused with %q: errors.Is(ErrAuthorization) = %v", tt.errLine, isAuth)
		}
	}
}

// TestServerErrors keeps the connection after a permissions violation and
// reconnects after an error the server closes the connection for.
func TestServerErrors(t *testing.T) {
	p := newPeer(t)
	c, pc := connectPeer(t, p, Options{ReconnectWait: 10 * time.Millisecond})
	pc.send(t, "-ERR 'Permissions Violation for Publish to \"x\"'\r\nPING\r\n")
	pc.expect(t, "PONG")
	if st := c.Status(); !st.Connected || !strings.Contains(st.ServerError, "Permissions Violation") {
		t.Errorf("Status() after a permissions violation = %+v, want connected with the error noted", st)
	}
	pc.send(t, "-ERR 'Slow Consumer'\r\n")
	st := waitStatus(t, c, "disconnected", func(st Status) bool { return !st.Connected })
	if st.Err == nil || !strings.Contains(st.Err.Error(), "Slow Consumer") {
		t.Errorf("Status().Err = %v, want the server's error", st.Err)
	}
	p.handshake(t)
	waitStatus(t, c, "reconnected", func(st Status) bool { return st.Connected && st.Reconnects == 1 })
}

// TestStaleConnection drops a connection whose server stops answering
// PINGs, after MaxPingsOut of them.
func TestStaleConnection(t *testing.T) {
	c, pc := connectPeer(t, newPeer(t), Options{PingInterval: 20 * time.Millisecond, MaxPingsOut: 2})
	pc.expect(t, "PING")
	pc.send(t, "PONG\r\n") // one answered PING keeps it up
	pc.expect(t, "PING")
	pc.expect(t, "PING")
	st := waitStatus(t, c, "disconnected", func(st Status) bool { return !st.Connected })
	if st.Err == nil || !strings.Contains(st.Err.Error(), "stale connection: 2 PINGs unanswered") {
		t.Errorf("Status().Err = %v, want a stale connection", st.Err)
	}
}

// TestHostileFrames drops the connection, without a panic or a large
// allocation, for frames a server must never send; the subscription the
// frame names gets nothing.
func TestHostileFrames(t *testing.T) {
	for _, frame := range []string{
		"MSG a 1 70000\r\n",                                  // over max_payload (100) plus slack
		"MSG a 1 -5\r\nxxxxx\r\n",                            // negative size
		"MSG a 1 5x\r\nxxxxx\r\n",                            // non-numeric size
		"MSG a 1 99999999999999999999\r\n",                   // size that overflows
		"HMSG a 1 50 10\r\n0123456789\r\n",                   // header size over total size
		"MSG a 1 3\r\nabcdef\r\n",                            // payload longer than its size
		"BOGUS\r\n",                                          // unknown operation
		"MSG " + strings.Repeat("a", 5000) + " 1 1\r\nx\r\n", // control line too long
	} {
		c, pc := connectPeer(t, newPeer(t), Options{ReconnectWait: time.Hour})
		sub, _ := c.Subscribe("a")
		pc.expect(t, "SUB a 1")
		pc.send(t, frame)
		st := waitStatus(t, c, "disconnected", func(st Status) bool { return !st.Connected })
		if !errors.Is(st.Err, ErrProtocol) {
			t.Errorf("frame %.40q: Status().Err = %v, want a protocol error", frame, st.Err)
		}
		if m, ok := sub.TryNext(); ok {
			t.Errorf("frame %.40q delivered %+v", frame, m)
		}
	}
}

// TestBadHeaderDropped drops a delivered message whose header block is
// malformed, counts it, and keeps the connection and later messages.
func TestBadHeaderDropped(t *testing.T) {
	c, pc := connectPeer(t, newPeer(t), Options{})
	sub, _ := c.Subscribe("h")
	pc.expect(t, "SUB h 1")
	pc.send(t, "HMSG h 1 11 13\r\nBAD/1.0\r\n\r\nhi\r\n")
	for _, b := range []byte("HMSG h 1 16 18\r\nNATS/1.0 503\r\n\r\nok\r\n") { // split at every byte
		pc.send(t, string(b))
	}
	m := next(t, sub)
	if string(m.Data) != "ok" || m.Status != 503 {
		t.Errorf("received %+v, want the good message after the bad one", m)
	}
	if n := c.BadHeaders(); n != 1 {
		t.Errorf("BadHeaders() = %d, want 1", n)
	}
	if !c.Status().Connected {
		t.Error("a bad header block dropped the connection")
	}
}
