package names

import (
	"cmp"
	"container/list"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Defaults of a Table.
const (
	// DefaultHold is how long a name stays held after its last use.
	DefaultHold = 24 * time.Hour
	// DefaultMaxHolds bounds how many names the table holds at once.
	DefaultMaxHolds = 100_000
	// DefaultPerIdentity bounds how many names one identity holds at once.
	DefaultPerIdentity = 3
)

// Errors of a Table, besides the *Error of a refused name.
var (
	// ErrHeld: another identity holds the name (or, for a request without
	// identity, anyone does). Returned as a *HeldError.
	ErrHeld = errors.New("name is held by someone else")
	// ErrTooMany: the identity holds as many names as it may, each with an
	// open stream. Returned as a *TooManyError.
	ErrTooMany = errors.New("too many names held")
	// ErrFull: the table is full of names held by open streams.
	ErrFull = errors.New("too many names are held; try again later")
)

// HeldError says that a name is held by someone else.
type HeldError struct {
	// Name is the name as the request wrote it.
	Name string
}

// Error returns a sentence fit for a 409 response.
func (e *HeldError) Error() string {
	return fmt.Sprintf("the name %q is in use by someone else; choose another", e.Name)
}

// Unwrap returns ErrHeld.
func (e *HeldError) Unwrap() error { return ErrHeld }

// TooManyError says that an identity holds as many names as it may, each
// with an open stream, and asked for another.
type TooManyError struct {
	// Max is how many names an identity may hold.
	Max int
}

// Error returns a sentence fit for a 409 response.
func (e *TooManyError) Error() string {
	return fmt.Sprintf("you hold %d names already, each with a stream open; close one to take another name", e.Max)
}

// Unwrap returns ErrTooMany.
func (e *TooManyError) Unwrap() error { return ErrTooMany }

// Options tune a Table.
type Options struct {
	// Hold is how long a name stays held after its last use (a post, a
	// typing notice, or the close of a stream that carried it). Zero
	// holds a name only while a stream carries it; use DefaultHold for
	// the default.
	Hold time.Duration
	// MaxHolds bounds the table; 0 means DefaultMaxHolds.
	MaxHolds int
	// PerIdentity bounds the names an identity holds; 0 means
	// DefaultPerIdentity.
	PerIdentity int
}

// Hold is one held name as List shows it. It leaves out the identity
// that holds the name: the identity is a random id, not a secret, but it
// would tell which names one person holds, and a moderator needs no more
// than the name to free it.
type Hold struct {
	// Name is the name as its holder last wrote it.
	Name string `json:"name"`
	// Skeleton is what names compare by.
	Skeleton string `json:"skeleton"`
	// Since is when the holder took the name.
	Since time.Time `json:"since"`
	// LastUsed is the holder's last use of the name.
	LastUsed time.Time `json:"last_used"`
	// Until is when the hold ends unless the name is used again; zero
	// while a stream carries the name.
	Until time.Time `json:"until,omitzero"`
	// Streams counts the holder's open streams that carry the name.
	Streams int `json:"streams"`
}

// Table is the set of held names. Its methods are safe for concurrent
// use: one mutex guards the table and, with a file, the writes to it.
// Holds expire as the table is used; nothing runs in the background.
// Methods take the time as now, which should not go backwards from call
// to call: the table keeps holds in the order of their last use.
//
// Bounds: an identity holds at most PerIdentity names. Taking one more
// releases its least recently used name that no stream carries; if a
// stream carries every one, the new name is refused (*TooManyError).
// The table holds at most MaxHolds names. Taking one more drops the hold
// used least recently (expired holds are used least recently of all) that
// no stream carries; a hold carried by a stream is never dropped, and if
// every hold is, the new name is refused (ErrFull).
type Table struct {
	// opts are the options, with defaults filled in.
	opts Options
	// mu guards everything below.
	mu sync.Mutex
	// holds finds a hold by skeleton.
	holds map[string]*hold
	// byID finds the holds of an identity.
	byID map[string][]*hold
	// idle holds the *hold values that no stream carries, least recently
	// used first: expiry and eviction take from the front.
	idle list.List
	// file is where changes are written, nil for a table in memory.
	file *logFile
	// shared is the store of holds shared with other servers, written in
	// place of a file (nil: none; see Share).
	shared Shared
}

// hold is one held name.
type hold struct {
	// key is the skeleton.
	key string
	// id is the identity that holds the name.
	id string
	// name is the name as last written.
	name string
	// since is when id took the name; last is its last use.
	since, last time.Time
	// streams counts the open streams that carry the name.
	streams int
	// elem is the hold's place in Table.idle, nil while streams > 0.
	elem *list.Element
	// savedName and savedLast are what the file (or the shared store)
	// has of name and last; savedStreaming says whether the shared store
	// was told that streams carry the name.
	savedName      string
	savedLast      time.Time
	savedStreaming bool
}

// New returns an empty table kept in memory only.
func New(opts Options) *Table {
	if opts.Hold < 0 {
		opts.Hold = 0
	}
	if opts.MaxHolds <= 0 {
		opts.MaxHolds = DefaultMaxHolds
	}
	if opts.PerIdentity <= 0 {
		opts.PerIdentity = DefaultPerIdentity
	}
	return &Table{opts: opts, holds: make(map[string]*hold), byID: make(map[string][]*hold)}
}

// Check reports whether identity may use name now without taking it: nil
// if the name is free or held by identity, a *HeldError if someone else
// holds it (anyone, when identity is ""), or an *Error if the name is
// refused.
func (t *Table) Check(name, identity string, now time.Time) error {
	key, err := Skeleton(name)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	if h := t.holds[key]; h != nil && h.id != identity { // ids are never ""
		return &HeldError{Name: name}
	}
	return nil
}

// Use takes or refreshes name for identity at now: a post or typing
// notice with the name. It fails as Check does, and with a *TooManyError
// or ErrFull by the bounds (see Table). With identity "" it only checks:
// a request without identity holds nothing.
func (t *Table) Use(name, identity string, now time.Time) error {
	_, err := t.use(name, identity, now, false, nil)
	return err
}

// Stream is a name carried by an open stream. While it is open, its
// holder keeps the name; Close it when the stream ends.
type Stream struct {
	// t is the table; h the hold, nil for a stream that holds nothing.
	t *Table
	h *hold
	// closed is set by Close (guarded by t.mu).
	closed bool
}

// Open takes or refreshes name for identity as Use does, for a stream
// that carries it: the name stays held until the returned Stream is
// closed, and for the hold time after. With identity "" it only checks,
// and the Stream holds nothing.
func (t *Table) Open(name, identity string, now time.Time) (*Stream, error) {
	return t.Take(name, identity, now, true, nil)
}

// Take is Use (stream false; the Stream returned is nil) or Open (stream
// true) with admit, which, when not nil, is called just before identity
// would take name anew: not when it holds the name already, nor for a use
// that takes nothing. An error from admit (an address's rate, say)
// refuses the name and is returned as it is. The table is locked while
// admit runs, so admit must not call the table.
func (t *Table) Take(name, identity string, now time.Time, stream bool, admit func() error) (*Stream, error) {
	h, err := t.use(name, identity, now, stream, admit)
	if err != nil || !stream {
		return nil, err
	}
	return &Stream{t: t, h: h}, nil
}

// Close ends the stream at now, which counts as a use of the name. It may
// be called more than once, and on a nil Stream; it does nothing if a
// moderator has freed the name since the stream opened. The stream ends
// even when the error (of writing the use to the file) is not nil.
func (s *Stream) Close(now time.Time) error {
	if s == nil {
		return nil
	}
	t := s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.closed || s.h == nil {
		return nil
	}
	s.closed = true
	h := s.h
	if t.holds[h.key] != h {
		return nil // freed by a moderator meanwhile
	}
	err := t.saveUse(h, h.name, now, h.streams-1)
	if t.holds[h.key] != h {
		return err // taken by another identity in the shared store
	}
	h.streams--
	h.last = now
	if h.streams == 0 {
		h.elem = t.idle.PushBack(h)
	}
	t.compact(now)
	return err
}

// use is Use, and with stream also counts one more stream on the hold;
// admit (see Take) may refuse a new hold.
func (t *Table) use(name, identity string, now time.Time, stream bool, admit func() error) (*hold, error) {
	key, err := Skeleton(name)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	h := t.holds[key]
	if identity == "" {
		if h != nil {
			return nil, &HeldError{Name: name}
		}
		return nil, nil
	}
	if h != nil && h.id != identity {
		return nil, &HeldError{Name: name}
	}
	switch {
	case h == nil && !stream && t.opts.Hold == 0:
		return nil, nil // held only by streams: a use alone takes nothing
	case h == nil:
		if admit != nil {
			if err := admit(); err != nil {
				return nil, err
			}
		}
		if h, err = t.take(key, name, identity, now, streams(stream)); err != nil {
			return nil, err
		}
	default:
		if err := t.saveUse(h, name, now, h.streams+streams(stream)); err != nil {
			return nil, err
		}
		h.name, h.last = name, now
	}
	if h.elem != nil {
		t.idle.Remove(h.elem)
		h.elem = nil
	}
	if stream {
		h.streams++
	} else if h.streams == 0 {
		h.elem = t.idle.PushBack(h)
	}
	t.compact(now)
	return h, nil
}

// streams returns 1 for a use by a stream, else 0.
func streams(stream bool) int {
	if stream {
		return 1
	}
	return 0
}

// take makes a new hold, which n streams carry, releasing or evicting
// another if the bounds say so, and writes the change to the file (or the
// shared store) before making it.
func (t *Table) take(key, name, identity string, now time.Time, n int) (*hold, error) {
	var drop *hold
	if mine := t.byID[identity]; len(mine) >= t.opts.PerIdentity {
		if drop = oldestIdle(mine); drop == nil {
			return nil, &TooManyError{Max: t.opts.PerIdentity}
		}
	} else if len(t.holds) >= t.opts.MaxHolds {
		front := t.idle.Front()
		if front == nil {
			return nil, ErrFull
		}
		drop = front.Value.(*hold)
	}
	h := &hold{key: key, id: identity, name: name, since: now, last: now}
	if err := t.saveTake(h, drop, n); err != nil {
		return nil, err
	}
	if drop != nil {
		t.remove(drop)
	}
	t.holds[key] = h
	t.byID[identity] = append(t.byID[identity], h)
	return h, nil
}

// Free releases name, whoever holds it (a moderator's act), and returns
// the hold it ended. It reports false if nobody held the name.
func (t *Table) Free(name string, now time.Time) (Hold, bool, error) {
	key, err := Skeleton(name)
	if err != nil {
		return Hold{}, false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	h := t.holds[key]
	if h == nil {
		return Hold{}, false, nil
	}
	if err := t.saveFree(h); err != nil {
		return Hold{}, false, err
	}
	t.remove(h)
	t.compact(now)
	return t.view(h), true, nil
}

// List returns the holds in force at now, ordered by skeleton.
func (t *Table) List(now time.Time) []Hold {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	out := make([]Hold, 0, len(t.holds))
	for _, h := range t.holds {
		out = append(out, t.view(h))
	}
	slices.SortFunc(out, func(a, b Hold) int { return cmp.Compare(a.Skeleton, b.Skeleton) })
	return out
}

// Len returns how many names are held (expired holds included until the
// table next expires them).
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.holds)
}

// Expire drops the holds that have ended by now and returns how many.
// Every other method expires holds too; call Expire to free memory in a
// table that is not otherwise used.
func (t *Table) Expire(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.expire(now)
}

// expire drops the idle holds whose hold time has passed at now: they
// are at the front of t.idle. Expiry needs no line in the file: a hold
// read back after its time is dropped then.
func (t *Table) expire(now time.Time) int {
	n := 0
	for e := t.idle.Front(); e != nil; e = t.idle.Front() {
		h := e.Value.(*hold)
		if now.Before(h.last.Add(t.opts.Hold)) {
			break
		}
		t.remove(h)
		n++
	}
	return n
}

// remove forgets h.
func (t *Table) remove(h *hold) {
	delete(t.holds, h.key)
	mine := slices.DeleteFunc(t.byID[h.id], func(m *hold) bool { return m == h })
	if len(mine) == 0 {
		delete(t.byID, h.id)
	} else {
		t.byID[h.id] = mine
	}
	if h.elem != nil {
		t.idle.Remove(h.elem)
		h.elem = nil
	}
}

// view returns h as List shows it.
func (t *Table) view(h *hold) Hold {
	v := Hold{Name: h.name, Skeleton: h.key, Since: h.since, LastUsed: h.last, Streams: h.streams}
	if h.elem != nil {
		v.Until = h.last.Add(t.opts.Hold)
	}
	return v
}
