package config

import (
	"net"
	"time"
)

// Server timeouts and shutdown bounds.
const (
	// ReadHeaderTimeout cuts clients that dribble their request headers.
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout = 15 * time.Second
	// IdleTimeout closes idle keep-alive connections: long enough for a
	// page's next post, short enough that idle connections do not pile up
	// (each holds a file descriptor and about 15 KiB).
	IdleTimeout = 30 * time.Second
	// MaxHeaderBytes bounds request headers (net/http allows 4 KiB more
	// for the request line). Browsers send 1-2 KiB.
	MaxHeaderBytes = 16 << 10
	// MaxHeaderFields bounds the header fields of a request (431 beyond):
	// browsers send about 20, and each field costs the server far more
	// than its bytes.
	MaxHeaderFields = 100
	// StreamDrain is how long shutdown lets streams finish their queued
	// writes before it cuts them.
	StreamDrain = 2 * time.Second
	// JournalDrain is how long shutdown waits for the journal to write and
	// sync what it holds, while the room still answers the posts it
	// commits.
	JournalDrain = 5 * time.Second
	// ShutdownTimeout bounds the rest of shutdown (requests in flight).
	ShutdownTimeout = 2 * time.Second
)

// Cluster mode (-nats).
const (
	// NatsOpenTimeout bounds a node's start: connecting, making or
	// checking the stream and loading history from it.
	NatsOpenTimeout = 30 * time.Second
)

// The login throttle (see internal/auth).
const (
	// LoginFailures is how many wrong keys (at POST /login or as Bearer
	// keys) one address may send per LoginWindow before it gets 429; a
	// login waiting for its body counts as one until its key is known.
	// An IPv6 /56 may send 4 times as many, a /48 16 times.
	LoginFailures = 5
	// LoginWindow is the window LoginFailures counts in.
	LoginWindow = time.Minute
)

// DisplayAddr returns addr in a form a browser accepts ("localhost:6969"
// for a wildcard address).
func DisplayAddr(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
