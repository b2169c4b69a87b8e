package main

import (
	"bytes"
	"sync"
	"testing"
	"testing/synctest"

	"chat/internal/record"
	"chat/internal/roomlog"
)

// feedEpoch is the epoch of feedStore's records.
const feedEpoch = 1700000000000

// feedStore is a store whose records all come from elsewhere, as a log
// shared by several nodes delivers them: the test feeds them one at a
// time, and the hub commits each when it settles the store's report.
type feedStore struct {
	reports chan record.Commit
	mu      sync.Mutex
	queue   []roomlog.Record
}

// Epoch implements roomlog.Store.
func (s *feedStore) Epoch() int64 { return feedEpoch }

// Append implements roomlog.Store: this node proposes nothing.
func (s *feedStore) Append(*roomlog.Proposal) (bool, error) { return false, roomlog.ErrUnavailable }

// Reports implements roomlog.Store.
func (s *feedStore) Reports() <-chan record.Commit { return s.reports }

// Settle implements roomlog.Store: it commits what was fed.
func (s *feedStore) Settle(_ record.Commit, to roomlog.Settler) {
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.mu.Unlock()
	for i := range q {
		to.Commit(&q[i], nil)
	}
}

// Close implements roomlog.Store.
func (s *feedStore) Close(roomlog.Settler) {}

// feed delivers the message with sequence seq and reports it.
func (s *feedStore) feed(seq uint64) {
	s.mu.Lock()
	s.queue = append(s.queue, roomlog.Record{Message: Message{Username: "u", Content: "fed"}, Seq: seq})
	s.mu.Unlock()
	s.reports <- record.Commit{N: 1}
}

// TestHubCatchesUpBeforeAPosition checks that a stream resuming at, and a
// history page after, a record the store has just delivered (another node
// served it a moment before) find it, although the hub has not settled the
// store's report yet: the question and the report wait together while the
// hub is busy, and the hub settles the report first whichever it takes.
func TestHubCatchesUpBeforeAPosition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &feedStore{reports: make(chan record.Commit, 64)}
		ctx, room := startRoom(t, RoomConfig{History: 100, Store: st})
		for seq := uint64(1); seq <= 40; seq++ {
			pos := &roomlog.Position{ID: record.FormatID(feedEpoch, seq), Epoch: feedEpoch, Seq: seq}
			release := make(chan struct{})
			go func() { _ = room.call(ctx, func() { <-release }, nil) }() // the hub is busy
			synctest.Wait()
			st.feed(seq)
			var head [][]byte
			var page roomlog.Page
			var err error
			done := make(chan struct{})
			go func() {
				defer close(done)
				if seq%2 == 0 {
					page, err = room.History(ctx, roomlog.Query{After: pos, Limit: 10})
					return
				}
				var c *client
				if c, head, err = room.JoinAs(ctx, "192.0.2.1", "", pos); err == nil {
					room.Leave(c)
				}
			}()
			synctest.Wait() // the question waits beside the report
			close(release)
			<-done
			switch {
			case err != nil:
				t.Fatalf("record %d: %v", seq, err)
			case seq%2 == 1 && bytes.Contains(head[0], []byte("event: reset")):
				t.Fatalf("a stream resuming at record %d, just delivered, was reset: %q", seq, head[0])
			case seq%2 == 0 && (len(page.Msgs) != 0 || page.More):
				t.Fatalf("the page after record %d, just delivered: %+v", seq, page)
			}
		}
	})
}
