package stream

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// conn is where one stream writer sends its bytes.
type conn interface {
	// setWriteDeadline sets the deadline for the writes that follow.
	setWriteDeadline(t time.Time) error
	// write writes p and flushes it to the client.
	write(p []byte) error
	// writeBuffers writes the buffers in order, flushing once.
	writeBuffers(bufs [][]byte) error
	// alive reports false once the peer is known to have gone.
	alive() bool
	// close releases the connection.
	close()
	// abort releases the connection of a stream that was cut (a write
	// timed out or failed, the client was too slow, or it went away):
	// a hijacked socket is reset, so that the kernel drops its unsent data
	// at once instead of holding it as an orphan for minutes.
	abort()
}

// rawConn is a hijacked HTTP/1.x connection.
type rawConn struct {
	net.Conn
	// probe receives what alive reads.
	probe [1]byte
}

// setWriteDeadline sets the connection's write deadline.
func (c *rawConn) setWriteDeadline(t time.Time) error { return c.SetWriteDeadline(t) }

// write writes p.
func (c *rawConn) write(p []byte) error {
	_, err := c.Write(p)
	return err
}

// writeBuffers writes bufs with one writev call where the system has it.
func (c *rawConn) writeBuffers(bufs [][]byte) error {
	nb := net.Buffers(bufs)
	_, err := nb.WriteTo(c.Conn)
	return err
}

// alive reports whether the peer is still there: a reader never sends
// anything after its request, so an end-of-file, a reset or any byte
// means it has gone. On a TCP socket it peeks without waiting (peerGone);
// elsewhere it reads with a deadline of probeWindow, which, on a loaded
// machine, may pass before the read looks at the connection at all.
func (c *rawConn) alive() bool {
	if gone, ok := peerGone(c.Conn); ok {
		return !gone
	}
	if err := c.SetReadDeadline(time.Now().Add(probeWindow)); err != nil {
		return false
	}
	_, err := c.Read(c.probe[:])
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// close closes the connection.
func (c *rawConn) close() { _ = c.Close() }

// abort closes the connection with a reset (SO_LINGER 0).
func (c *rawConn) abort() {
	if tc := tcpConn(c.Conn); tc != nil {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// tcpConn returns the TCP connection beneath c (which may be a TLS
// connection, or the listener's counted connection), or nil.
func tcpConn(c net.Conn) *net.TCPConn {
	for c != nil {
		if tc, ok := c.(*net.TCPConn); ok {
			return tc
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
	return nil
}

// netConnKey is the context key under which WithNetConn stores a
// request's connection.
type netConnKey struct{}

// WithNetConn is an http.Server ConnContext hook: it stores the connection
// in ctx, so that an HTTP/2 stream can bound its socket's send buffer.
func WithNetConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, netConnKey{}, c)
}

// boundSendBuffer sets the send buffer of the TCP connection beneath c to
// sendBuffer.
func boundSendBuffer(c net.Conn) {
	if tc := tcpConn(c); tc != nil {
		_ = tc.SetWriteBuffer(sendBuffer)
	}
}

// responseHead returns the status line and headers of a stream response
// on a hijacked HTTP/1.1 connection. The body then runs until the
// connection closes.
func responseHead(h http.Header) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&b)
	b.WriteString("Connection: close\r\n\r\n")
	return b.Bytes()
}

// responseConn is a stream written through net/http (HTTP/2).
//
// Its write deadline is armed only while a write is in progress: on HTTP/2
// a write deadline is a timer that resets the stream (INTERNAL_ERROR) when
// it fires, even when nothing is being written, so a deadline left armed
// between writes would cut every idle stream after the write timeout.
type responseConn struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	// deadline is the deadline the stream set for its writes; each write
	// arms it and clears it again once the write is through.
	deadline time.Time
}

// setWriteDeadline sets the deadline of the writes that follow.
func (c *responseConn) setWriteDeadline(t time.Time) error {
	c.deadline = t
	return nil
}

// arm sets the response's write deadline to t (zero: none).
func (c *responseConn) arm(t time.Time) error {
	if err := c.rc.SetWriteDeadline(t); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// write writes and flushes p within the deadline.
func (c *responseConn) write(p []byte) error {
	if err := c.arm(c.deadline); err != nil {
		return err
	}
	if _, err := c.w.Write(p); err != nil {
		return err
	}
	if err := c.rc.Flush(); err != nil {
		return err
	}
	return c.arm(time.Time{})
}

// writeBuffers writes the buffers and flushes once, within the deadline.
func (c *responseConn) writeBuffers(bufs [][]byte) error {
	if err := c.arm(c.deadline); err != nil {
		return err
	}
	for _, b := range bufs {
		if _, err := c.w.Write(b); err != nil {
			return err
		}
	}
	if err := c.rc.Flush(); err != nil {
		return err
	}
	return c.arm(time.Time{})
}

// alive reports true: net/http tells the handler when the peer goes.
func (c *responseConn) alive() bool { return true }

// close does nothing: net/http owns the connection.
func (c *responseConn) close() {}

// abort does nothing: the connection is shared with other streams, and
// net/http resets this stream when the handler returns.
func (c *responseConn) abort() {}
