package stream

import (
	"net"
	"sync"
	"time"
)

// Tracker knows the stream writers running on hijacked connections, which
// http.Server no longer tracks, so that shutdown can wait for them and cut
// short the writes of any that hang.
type Tracker struct {
	wg sync.WaitGroup
	// mu guards conns and closed, and orders wg.Add before wg.Wait.
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// closed is set once shutdown waits; no writer starts after it.
	closed bool
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{conns: make(map[net.Conn]struct{})}
}

// add tracks conn, whose writer the caller then starts, and which it must
// end with done. It reports false, and tracks nothing, once shutdown has
// begun waiting.
func (t *Tracker) add(conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[conn] = struct{}{}
	t.wg.Add(1)
	return true
}

// done stops tracking conn, whose writer has returned.
func (t *Tracker) done(conn net.Conn) {
	t.mu.Lock()
	delete(t.conns, conn)
	t.mu.Unlock()
	t.wg.Done()
}

// Interrupt makes every pending and future write on the tracked
// connections fail at once.
func (t *Tracker) Interrupt() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		_ = c.SetDeadline(time.Now())
	}
}

// Wait waits up to timeout for every tracked writer to return and reports
// whether they did. From its call on, no new writer starts.
func (t *Tracker) Wait(timeout time.Duration) bool {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
		return true
	case <-timer.C:
		return false
	}
}
