package clusterstate

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"chat/internal/jetstream"
	"chat/internal/nats"
	"chat/internal/natstest"
	"chat/internal/presence"
)

// waitTimeout bounds every wait of these tests: on a loaded two-core
// machine a change through NATS takes milliseconds, so this is a failsafe.
const waitTimeout = 30 * time.Second

// testStream is the room whose buckets the tests use.
const testStream = "ROOM"

// ctx returns a context that ends after waitTimeout or with the test.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return c
}

// syncBuffer is a log buffer the goroutines may write to while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// node is what one node of the tests' room has: its own NATS connection,
// the configuration of its state with its log, and a room.
type node struct {
	cfg  Config
	logs *syncBuffer
	room *room
}

// newNode connects a node to urls (closed when the test ends).
func newNode(t *testing.T, urls ...string) *node {
	t.Helper()
	js, err := jetstream.Connect(ctx(t), urls, nats.Options{ReconnectWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("connect to %v: %v", urls, err)
	}
	t.Cleanup(func() { js.Close() })
	logs := &syncBuffer{}
	return &node{
		cfg:  Config{JS: js, Stream: testStream, Replicas: 1, Logger: slog.New(slog.NewTextHandler(logs, nil))},
		logs: logs,
		room: &room{board: presence.NewBoard(100*time.Millisecond, 100)},
	}
}

// startServer starts one nats-server for the test.
func startServer(t *testing.T) *natstest.Server {
	t.Helper()
	return natstest.Start(t, natstest.Options{})
}

// room stands for a room's hub: one lock makes it the only user of its
// presence board, as the hub's goroutine is, and it records the kicks it
// is asked for.
type room struct {
	mu    sync.Mutex
	board *presence.Board
	// kicked holds, for each kick, whether it matched the probe address.
	kicked []bool
	probe  string
	closed bool
}

// Share implements Sharer.
func (r *room) Share(_ context.Context, f func(*presence.Board)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return context.Canceled
	}
	f(r.board)
	return nil
}

// Kick implements Kicker: it records whether match covers the probe
// address.
func (r *room) Kick(_ context.Context, match func(addr string) bool) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kicked = append(r.kicked, match(r.probe))
	return 0, nil
}

// kicks returns the kicks so far.
func (r *room) kicks() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.kicked...)
}

// roster returns the board's roster as JSON.
func (r *room) roster() string {
	var s string
	r.Share(context.Background(), func(b *presence.Board) { s = string(b.Roster.JSON(-1)) })
	return s
}

// do runs f on the board.
func (r *room) do(f func(*presence.Board)) {
	r.Share(context.Background(), f)
}

// waitFor polls cond every few milliseconds until it holds, and fails the
// test after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}
