//go:build unix

package stream

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestPeerGone checks the probe of a real TCP connection: a peer that is
// there and quiet is there, however often it is probed; one that sent a
// byte (which the probe leaves in place), closed its end or reset the
// connection has gone. Each answer comes without waiting.
func TestPeerGone(t *testing.T) {
	for _, tt := range []struct {
		name string
		do   func(cl net.Conn)
		gone bool
	}{
		{"quiet", func(net.Conn) {}, false},
		{"sent a byte", func(cl net.Conn) { _, _ = cl.Write([]byte("x")) }, true},
		{"closed", func(cl net.Conn) { cl.Close() }, true},
		{"reset", func(cl net.Conn) { _ = cl.(*net.TCPConn).SetLinger(0); cl.Close() }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, cl := loopbackPair(t)
			tt.do(cl)
			probe := func() bool {
				t.Helper()
				start := time.Now()
				gone, ok := peerGone(srv)
				if took := time.Since(start); !ok || took > time.Second {
					t.Fatalf("peerGone = %v, %v after %v; want an answer at once", gone, ok, took)
				}
				return gone
			}
			if !tt.gone {
				for range 3 {
					if probe() {
						t.Fatal("a quiet peer is gone")
					}
				}
				return
			}
			// The packet crosses loopback in microseconds: poll, bounded.
			for deadline := time.Now().Add(ioTimeout); !probe(); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("not gone after %v", ioTimeout)
				}
			}
			if tt.name == "sent a byte" {
				_ = srv.SetReadDeadline(time.Now().Add(ioTimeout))
				if b, err := io.ReadAll(io.LimitReader(srv, 1)); string(b) != "x" || err != nil {
					t.Errorf("after the probe the socket holds %q, %v; want the byte still there", b, err)
				}
			}
		})
	}
	// Not TCP: the caller falls back to a read with a deadline.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, ok := peerGone(a); ok {
		t.Error("peerGone looked at a pipe")
	}
}
