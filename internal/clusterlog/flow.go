package clusterlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"chat/internal/jetstream"
	"chat/internal/nats"
	"chat/internal/roomlog"
)

// publish publishes f's record until the stream acknowledges it, then
// waits for the consumer to read it back (readBackWait), and settles f if
// nobody else has: ErrUnavailable if no attempt can have stored it,
// ErrFateUnknown if one may have, or if the record did not come back in
// time.
func (s *Store) publish(f *flight) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.PublishWait)
	defer cancel()
	ack, sent, err := s.publishAck(ctx, f.msg)
	switch {
	case err != nil && sent:
		s.fail(f, fmt.Errorf("%w (%w)", roomlog.ErrFateUnknown, err))
		return
	case err != nil:
		s.fail(f, fmt.Errorf("%w: %w", roomlog.ErrUnavailable, err))
		return
	}
	s.acked(f, ack)
	t := time.NewTimer(readBackWait)
	defer t.Stop()
	select {
	case <-f.done:
	case <-t.C:
		s.fail(f, fmt.Errorf("%w (stored as sequence %d, not yet read back)", roomlog.ErrFateUnknown, ack.Seq))
	case <-s.ctx.Done():
	}
}

// publishAck publishes m, again with the same Nats-Msg-Id after an attempt
// that went unanswered or was not stored, until the stream acknowledges it
// or ctx ends. sent reports whether an attempt may have stored it. While
// the connection is down it waits for it only if an earlier attempt was
// sent: otherwise the node answers at once that nothing was stored.
func (s *Store) publishAck(ctx context.Context, m *nats.Msg) (ack *jetstream.PubAck, sent bool, err error) {
	for {
		actx, cancel := context.WithTimeout(ctx, attemptWait)
		ack, err = s.js.PublishMsg(actx, m)
		cancel()
		var apiErr *jetstream.APIError
		switch {
		case err == nil:
			return ack, sent, nil
		case errors.Is(err, nats.ErrNoReply), errors.Is(err, nats.ErrConnectionLost):
			sent = true
		case errors.Is(err, nats.ErrNotConnected):
			if !sent {
				return nil, false, err
			}
		case errors.Is(err, jetstream.ErrNoStream), errors.As(err, &apiErr) && apiErr.Code >= 500:
			// Not stored this time: no stream leader, or JetStream
			// unavailable for now.
		default:
			return nil, sent, err // refused: not stored by this attempt
		}
		if !s.pause(ctx) {
			return nil, sent, err
		}
	}
}

// pause waits before the next attempt of a publish: until the connection
// is back if it is down, else retryPause. It reports false if ctx ended
// first.
func (s *Store) pause(ctx context.Context) bool {
	nc := s.js.Conn()
	changed := nc.StatusChanged()
	var wait <-chan time.Time
	if nc.Status().Connected {
		t := time.NewTimer(retryPause)
		defer t.Stop()
		wait = t.C
	}
	select {
	case <-wait:
	case <-changed:
	case <-ctx.Done():
		return false
	}
	return ctx.Err() == nil
}

// acked notes the stream's acknowledgement of f. A new record is settled
// when the consumer reads it back (by its origin). A duplicate of a record
// already read is settled now as a duplicate; one of a record not yet read
// waits for it (it may be this node's own earlier attempt).
func (s *Store) acked(f *flight, ack *jetstream.PubAck) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[f.origin] != f {
		return
	}
	switch {
	case ack.Seq > s.delivered && ack.Duplicate:
		s.dupWait[ack.Seq] = append(s.dupWait[ack.Seq], f)
	case ack.Seq > s.delivered:
	case ack.Duplicate:
		s.take(f)
		s.push(item{f: f, dupOf: ack.Seq})
	default:
		// Stored at a sequence already read, which did not carry this
		// publish's origin: it cannot be told what the post became.
		s.take(f)
		s.push(item{f: f, err: fmt.Errorf("%w (sequence %d read back without it)", roomlog.ErrFateUnknown, ack.Seq)})
	}
}

// read hands the hub every record the consumer reads, until Shutdown.
// After the consumer was made again (a gap, a reconnect) it checks that the
// stream is still the one of the node's epoch before it takes a record.
func (s *Store) read() {
	resets := s.cons.Resets()
	for {
		m, err := s.cons.Next(s.ctx)
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, jetstream.ErrConsumerStopped) {
				return
			}
			s.setReadErr(err)
			if !s.sleep(consumerPause) {
				return
			}
			continue
		}
		if r := s.cons.Resets(); r != resets {
			resets = r
			if err := s.checkEpoch(); err != nil {
				s.stopFor(err)
				return
			}
		}
		s.setReadErr(nil)
		s.deliver(m)
	}
}

// checkEpoch asks for the stream's creation time until it is answered and
// returns an error if the stream is not the one of the node's epoch (it
// was deleted and made again: its sequence numbers start over).
func (s *Store) checkEpoch() error {
	for {
		info, err := s.js.StreamInfo(s.ctx, s.cfg.Stream)
		if err == nil {
			if e := info.Created.UnixMilli(); e != s.epoch {
				return fmt.Errorf("stream %s was made again (epoch %d, the node's is %d): restart the node", s.cfg.Stream, e, s.epoch)
			}
			return nil
		}
		if s.ctx.Err() != nil || !s.sleep(consumerPause) {
			return err
		}
	}
}

// sleep waits d, or less if the store shuts down; it reports false then.
func (s *Store) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// deliver hands the hub the record m holds, with the local proposal it
// settles (by its origin), and then the proposals that were found to
// duplicate it or a record before it.
func (s *Store) deliver(m *jetstream.Msg) {
	r := s.decode(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delivered = m.Seq
	if s.advanced != nil {
		close(s.advanced)
		s.advanced = nil
	}
	it := item{rec: &r}
	if f := s.pending[origin(m)]; f != nil && s.take(f) {
		if r.Void {
			s.push(item{f: f, err: fmt.Errorf("%w (stored as sequence %d, which the room cannot read)", roomlog.ErrFateUnknown, m.Seq)})
		} else {
			it.f = f
		}
	}
	s.push(it)
	for seq, fs := range s.dupWait {
		if seq > m.Seq {
			continue
		}
		delete(s.dupWait, seq)
		for _, f := range fs {
			if s.take(f) {
				s.push(item{f: f, dupOf: seq})
			}
		}
	}
}

// setReadErr records why the consumer cannot read (nil: it reads), and
// logs a change.
func (s *Store) setReadErr(err error) {
	s.mu.Lock()
	was := s.readErr
	s.readErr = err
	s.mu.Unlock()
	switch {
	case err != nil && was == nil:
		s.log.Error("cannot read the room's stream", "stream", s.cfg.Stream, "error", err)
	case err == nil && was != nil:
		s.log.Info("reading the room's stream again", "stream", s.cfg.Stream)
	}
}

// stopFor stops the store for good with err: every proposal from now on is
// refused, and Health reports err.
func (s *Store) stopFor(err error) {
	s.mu.Lock()
	s.failed = err
	s.mu.Unlock()
	s.log.Error("the room's stream is gone", "error", err)
}

// WaitDelivered waits until the consumer has read the record with
// sequence seq, and settled it with the hub's next SettleReady, or ctx
// ends.
func (s *Store) WaitDelivered(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		if s.delivered >= seq {
			s.mu.Unlock()
			return nil
		}
		if s.advanced == nil {
			s.advanced = make(chan struct{})
		}
		ch := s.advanced
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Reach waits, for at most ReachWait, until the node has read the record p
// names, if p is of the stream's epoch: a client may name a record another
// node served a moment before this node read it (a stream resuming here, a
// history page after it). If it does not come, the room answers as for any
// id it does not know.
func (s *Store) Reach(ctx context.Context, p *roomlog.Position) {
	if p.Epoch != s.epoch {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, ReachWait)
	defer cancel()
	_ = s.WaitDelivered(ctx, p.Seq)
}
