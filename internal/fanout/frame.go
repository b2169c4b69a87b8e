// Package fanout holds what the room's hub hands to every stream writer at
// once: the frame, one or more encoded events whose bytes all writers
// share, and the count by which the hub learns that a frame has been
// written; and the batching rule (Pacer) that, from when frames left and
// were written, says when the next one may leave.
package fanout

import (
	"sync/atomic"
	"time"
)

// StragglerShare sets how many writers a frame in flight may still wait
// for and count as written: one in StragglerShare of the queues it went to
// (none below that many). The slowest few writers then batch on their own,
// from their queues, instead of holding back the room.
const StragglerShare = 64

// Frame is one or more encoded events that the hub hands to every client
// at once. Its bytes are shared by all clients and never change after the
// hub queues it. Whoever receives a frame from a client's queue (the stream
// writer, or the code that empties the queue of a client that left) calls
// Release once it is done with it.
type Frame struct {
	// Data holds the events exactly as they go on the wire.
	Data []byte
	// N is the number of chat messages in Data.
	N int
	// At is when the oldest message in Data was accepted.
	At time.Time
	// Tick marks the hub's tick (Tick): no bytes, it asks the writer to
	// probe its peer and write a heartbeat when one is due.
	Tick bool
	// Sent is when the hub queued the frame (set and read by the hub
	// alone).
	Sent time.Time

	// left counts the queues the frame is in whose reader has not
	// released it yet, plus one while the hub is still queueing it.
	left atomic.Int32
	// slack is how many writers may still hold the frame when it counts
	// as written (StragglerShare); set by Arm.
	slack int32
	// written is the room's signal that a frame has come down to its
	// slack; set by Arm.
	written chan<- struct{}
}

// Tick is the frame the hub queues for every client once a tick. It is
// shared and never changes.
var Tick = &Frame{Tick: true}

// Arm prepares f to be queued for queues readers: it counts them, plus one
// for the hub until its own Release, and makes the Release that brings f
// down to its stragglers send on written (without blocking: one pending
// signal is enough, since the hub reads the count itself). A frame that is
// never armed is not counted (presence and typing events).
func (f *Frame) Arm(queues int, written chan<- struct{}) {
	f.left.Store(int32(queues) + 1)
	f.slack = int32(queues / StragglerShare)
	f.written = written
}

// Release records that one reader is done with f: it has written it, or
// copied it into a write, or discarded it because its client left. The
// release that brings f down to its stragglers signals the hub.
func (f *Frame) Release() {
	if f.written == nil {
		return
	}
	if f.left.Add(-1) == f.slack {
		select {
		case f.written <- struct{}{}:
		default: // a signal is pending already; the hub reads the count
		}
	}
}

// Written reports whether every reader of f but its stragglers has
// released it.
func (f *Frame) Written() bool { return f.left.Load() <= f.slack }
