package names

import (
	"container/list"
	"errors"
	"time"
)

// Lease is how long a shared store keeps a hold that open streams carry
// (or the hold time, if longer) after its table last wrote it: Save
// writes those holds again, so a table that shares its holds saves every
// Lease/3. A server that dies with streams open leaves its names held this
// long.
const Lease = 3 * time.Minute

// ErrUnavailable means a shared store of holds cannot be reached: the
// change was not made (or may have been: making it again is safe).
var ErrUnavailable = errors.New("the held names cannot be reached; try again")

// Shared is a store of holds that the tables of several servers share
// (the nodes of a cluster, in a key/value bucket). A table that has one
// writes each change to it, in place of a file, with the table's lock
// held and before it makes the change, and makes no change the store
// refused. Holds the other servers store reach the table through Apply.
type Shared interface {
	// Put stores rec as the hold on skeleton for ttl (at least a
	// second): a new hold, or a use of one the table has. It fails with
	// an error wrapping ErrHeld when another identity holds the name in
	// the store, and one wrapping ErrUnavailable when the store cannot be
	// reached.
	Put(skeleton string, rec Record, ttl time.Duration) error
	// Release ends the hold on skeleton as its holder gives it up (for a
	// newer name, by the table's bounds, or as its last stream closes
	// with no hold time): another server whose streams carry it takes it
	// back.
	Release(skeleton string) error
	// Free ends the hold on skeleton, whoever holds it and wherever its
	// streams are (a moderator's act).
	Free(skeleton string) error
}

// Change is what another server did to a hold, as Apply hears it.
type Change int

// The changes Apply takes.
const (
	// Stored: a hold taken or used (Shared.Put).
	Stored Change = iota
	// Released: its holder gave it up (Shared.Release).
	Released
	// Ended: a moderator freed it, or its time in the store is up.
	Ended
)

// Share makes the table write its changes to s rather than keep them in
// memory alone. Call it once, before the table is used; a table with a
// file cannot share.
func (t *Table) Share(s Shared) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.shared = s
}

// Apply makes the table hold what another server's change left in the
// shared store: rec, the hold on skeleton (Stored), or no hold (Released,
// Ended). A hold stored for another identity replaces the table's (its
// streams go on, holding nothing, as after Free). A hold released while
// this table's streams still carry it is taken back (its error, if that
// fails, is returned). Apply writes nothing else, and keeps the table's
// bounds by forgetting the holds it would otherwise evict, which the
// store keeps.
func (t *Table) Apply(skeleton string, rec *Record, change Change, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	h := t.holds[skeleton]
	switch {
	case change == Stored && h != nil && h.id == rec.ID:
		h.name, h.savedName = rec.Name, rec.Name
		if last := time.Unix(rec.Last, 0); last.After(h.last) {
			h.last, h.savedLast = last, last
		}
		if h.streams == 0 { // pinned while streams elsewhere carry it
			if h.elem != nil {
				t.idle.Remove(h.elem)
				h.elem = nil
			}
			if !rec.Streaming {
				h.elem = t.insertIdle(h)
			}
		}
	case change == Stored:
		if h != nil {
			t.remove(h)
		}
		t.applyNew(skeleton, rec, now)
	case h == nil:
	case change == Released && h.streams > 0 && t.shared != nil:
		r := h.record(now)
		r.Streaming = true
		err := t.shared.Put(skeleton, *r, t.ttl(h.streams))
		if errors.Is(err, ErrHeld) {
			t.remove(h)
		}
		return err
	default:
		t.remove(h)
	}
	return nil
}

// applyNew adds a hold another server stored, unless it has ended by now,
// making room by the bounds without writing anything. A hold that streams
// carry there is kept out of the idle list: it ends when the store says.
func (t *Table) applyNew(skeleton string, rec *Record, now time.Time) {
	last := time.Unix(rec.Last, 0)
	if !rec.Streaming && !now.Before(last.Add(t.opts.Hold)) {
		return
	}
	if mine := t.byID[rec.ID]; len(mine) >= t.opts.PerIdentity {
		if m := oldestIdle(mine); m != nil {
			t.remove(m)
		} else {
			return
		}
	} else if len(t.holds) >= t.opts.MaxHolds {
		front := t.idle.Front()
		if front == nil {
			return
		}
		t.remove(front.Value.(*hold))
	}
	h := &hold{key: skeleton, id: rec.ID, name: rec.Name, since: time.Unix(rec.Since, 0), last: last}
	h.savedName, h.savedLast = h.name, h.last
	t.holds[skeleton] = h
	t.byID[rec.ID] = append(t.byID[rec.ID], h)
	if !rec.Streaming {
		h.elem = t.insertIdle(h)
	}
}

// oldestIdle returns the least recently used of hs that no stream carries
// (here, or on another server: those are not in the idle list), or nil.
func oldestIdle(hs []*hold) *hold {
	var drop *hold
	for _, m := range hs {
		if m.elem != nil && (drop == nil || m.last.Before(drop.last)) {
			drop = m
		}
	}
	return drop
}

// insertIdle puts h in the idle list in the order of last use (a hold
// another server stored may be older than the newest here).
func (t *Table) insertIdle(h *hold) *list.Element {
	for e := t.idle.Back(); e != nil; e = e.Prev() {
		if !e.Value.(*hold).last.After(h.last) {
			return t.idle.InsertAfter(h, e)
		}
	}
	return t.idle.PushFront(h)
}

// ttl returns how long the shared store keeps a hold that streams open
// streams carry: the hold time, and at least Lease while streams carry it.
func (t *Table) ttl(streams int) time.Duration {
	d := t.opts.Hold
	if streams > 0 {
		d = max(d, Lease)
	}
	return max(d, time.Second)
}

// storeUse writes to the shared store a use of h at now with name, which
// streams carry afterwards: when the name changed, its last use moved by
// refreshGrain, or whether streams carry it changed; a hold that ends
// with its last stream (no hold time) is released. A hold another
// identity has taken in the store meanwhile is forgotten, and a
// *HeldError returned.
func (t *Table) storeUse(h *hold, name string, now time.Time, streams int) error {
	if name == h.savedName && now.Sub(h.savedLast) < refreshGrain && (streams > 0) == h.savedStreaming {
		return nil
	}
	var err error
	if streams == 0 && t.opts.Hold == 0 {
		err = t.shared.Release(h.key)
	} else {
		r := h.record(now)
		r.Name, r.Streaming = name, streams > 0
		err = t.shared.Put(h.key, *r, t.ttl(streams))
	}
	if errors.Is(err, ErrHeld) {
		t.remove(h)
		return &HeldError{Name: name}
	}
	if err == nil {
		h.savedName, h.savedLast, h.savedStreaming = name, now, streams > 0
	}
	return err
}

// storeTake writes to the shared store the new hold h, which streams
// carry, after the release of drop (if not nil) that makes room for it.
func (t *Table) storeTake(h, drop *hold, streams int) error {
	if drop != nil {
		if err := t.shared.Release(drop.key); err != nil {
			return err
		}
	}
	r := h.record(h.last)
	r.Streaming = streams > 0
	err := t.shared.Put(h.key, *r, t.ttl(streams))
	if errors.Is(err, ErrHeld) {
		return &HeldError{Name: h.name}
	}
	if err == nil {
		h.savedName, h.savedLast, h.savedStreaming = h.name, h.last, streams > 0
	}
	return err
}

// refresh writes again, as used at now, every hold that open streams
// carry, so that the shared store keeps them (see Lease); it returns the
// first error.
func (t *Table) refresh(now time.Time) error {
	var first error
	for _, h := range t.holds {
		if h.streams == 0 {
			continue
		}
		r := h.record(now)
		r.Streaming = true
		err := t.shared.Put(h.key, *r, t.ttl(h.streams))
		switch {
		case errors.Is(err, ErrHeld):
			t.remove(h)
		case err == nil:
			h.savedLast, h.savedStreaming = now, true
		case first == nil:
			first = err
		}
	}
	return first
}
