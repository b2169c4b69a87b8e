package clusterlog

import (
	"time"

	"chat/internal/jetstream"
)

// Status is the node's view of NATS, for /stats, /metrics and /healthz.
type Status struct {
	// Connected is true while the node has a NATS connection.
	Connected bool `json:"connected"`
	// URL is the server connected to, or the last one tried, without
	// credentials.
	URL string `json:"url"`
	// Stream is the stream's name and Epoch its creation time in
	// milliseconds, the epoch of every id.
	Stream string `json:"stream"`
	Epoch  int64  `json:"epoch"`
	// Reconnects counts the connections made after the first.
	Reconnects uint64 `json:"reconnects"`
	// LastSeq is the sequence of the last record the node read.
	LastSeq uint64 `json:"last_seq"`
	// InFlight is how many proposals are published and not yet settled.
	InFlight int `json:"in_flight"`
	// Error is why the node cannot take posts now ("" when it can).
	Error string `json:"error,omitempty"`
}

// JS returns the store's JetStream connection, for the room's other
// shared state (it stays the store's: Shutdown closes it).
func (s *Store) JS() *jetstream.JS { return s.js }

// Status returns the node's view of NATS now.
func (s *Store) Status() Status {
	st := s.js.Conn().Status()
	s.mu.Lock()
	out := Status{
		Connected: st.Connected, URL: st.URL, Stream: s.cfg.Stream, Epoch: s.epoch,
		Reconnects: st.Reconnects, LastSeq: s.delivered, InFlight: len(s.pending),
	}
	s.mu.Unlock()
	if err := s.Health(); err != nil {
		out.Error = err.Error()
	}
	return out
}

// Health returns why the node cannot take posts now: the store failed for
// good, the connection is down, or the stream cannot be read; nil while
// it can.
func (s *Store) Health() error {
	s.mu.Lock()
	failed, readErr := s.failed, s.readErr
	s.mu.Unlock()
	if failed != nil {
		return failed
	}
	if st := s.js.Conn().Status(); !st.Connected {
		return disconnected(st)
	}
	return readErr
}

// watch logs every change of the NATS connection, until Shutdown: its loss
// (posts get ErrUnavailable until it is back) and its return.
func (s *Store) watch() {
	nc := s.js.Conn()
	up := true
	for {
		changed := nc.StatusChanged()
		if st := nc.Status(); st.Connected != up {
			up = st.Connected
			if up {
				s.log.Info("NATS connection back", "server", st.URL, "reconnects", st.Reconnects)
			} else {
				s.log.Warn("NATS connection lost: posts are refused until it is back", "error", disconnected(st))
			}
		}
		select {
		case <-changed:
		case <-s.ctx.Done():
			return
		}
	}
}

// Drain refuses new proposals (ErrUnavailable) and waits, for at most
// wait, until those on their way are settled; it reports whether they
// were. The hub must still run, to settle them.
func (s *Store) Drain(wait time.Duration) bool {
	s.draining.Store(true)
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return true
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

// Shutdown stops the consumer and every publish, waits for their
// goroutines, and closes the NATS connection. Call it after the hub has
// stopped (and closed the store).
func (s *Store) Shutdown() {
	s.cancel()
	s.cons.Stop()
	s.wg.Wait()
	_ = s.js.Close()
}
