// Package idem remembers the idempotency keys of posted messages, so that a
// post that is retried with the same Idempotency-Key is answered with the
// message it first stored instead of being stored a second time.
//
// A Table is not safe for concurrent use: one goroutine (the chat hub) owns
// it, as it owns the history whose messages the keys point at.
package idem

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net/http"
	"time"
)

// Limits of the table and of a key.
const (
	// MaxKeyLen is the longest key, in bytes (each one visible ASCII).
	MaxKeyLen = 128
	// DefaultMax is how many keys a table holds, beyond those whose
	// message is still in history, before it forgets the oldest ones even
	// if they are younger than the TTL. At about 200 bytes a key (a
	// 36-character UUID, its entry, the map slot and the queue slot) that
	// is about 20 MB; 128-character keys cost about 300 bytes each.
	DefaultMax = 100000
	// DefaultTTL is how long a key is kept after its message has left
	// history, while the table holds fewer than its maximum.
	DefaultTTL = 24 * time.Hour
	// compactAt is the number of popped slots at the front of the queue
	// above which the queue is copied down (when they are also at least
	// half of it), so that popping stays O(1) amortised.
	compactAt = 1024
)

// CheckKey reports whether key is a valid Idempotency-Key: 1 to MaxKeyLen
// visible ASCII characters (0x21 to 0x7e), so no spaces, no control
// characters and nothing outside ASCII.
func CheckKey(key string) error {
	switch {
	case key == "":
		return errors.New("idempotency key is empty")
	case len(key) > MaxKeyLen:
		return errors.New("idempotency key is longer than 128 characters")
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x21 || c > 0x7e {
			return errors.New("idempotency key must be visible ASCII characters only, with no spaces")
		}
	}
	return nil
}

// FromHeader returns the Idempotency-Key header of h ("" if there is
// none), or an error if the header is repeated or not a valid key
// (CheckKey).
func FromHeader(h http.Header) (string, error) {
	vals := h.Values("Idempotency-Key")
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", errors.New("Idempotency-Key given more than once")
	}
	if err := CheckKey(vals[0]); err != nil {
		return "", err
	}
	return vals[0], nil
}

// Fingerprint identifies what a post says: a SHA-256 of its username and
// content. A retry has the fingerprint of the post it repeats; another post
// sent under the same key has a different one.
type Fingerprint [sha256.Size]byte

// Sum returns the fingerprint of a post by username saying content. Each
// part is preceded by its length, so no two different pairs collide by
// concatenation.
func Sum(username, content string) Fingerprint {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(username)))
	h.Write(n[:])
	h.Write([]byte(username))
	binary.BigEndian.PutUint64(n[:], uint64(len(content)))
	h.Write(n[:])
	h.Write([]byte(content))
	var fp Fingerprint
	h.Sum(fp[:0])
	return fp
}

// Entry is one remembered key and the message it stored.
type Entry struct {
	// Key is the Idempotency-Key.
	Key string
	// FP is the fingerprint of the post that stored the message.
	FP Fingerprint
	// Seq is the message's sequence number in history; entries are added
	// in increasing Seq order.
	Seq uint64
	// ID is the message's id.
	ID string
	// Time is when the message was accepted; the TTL counts from it.
	Time time.Time
	// Deleted is set once the message has been deleted: a retry is then
	// answered that it was, not with the message.
	Deleted bool
}

// Table is a bounded set of keys. It keeps every key whose message is still
// in history, and the others for at least its TTL, as long as it holds no
// more than its maximum; beyond that it forgets the oldest first.
type Table struct {
	// max is the number of keys above which old keys are forgotten before
	// their TTL.
	max int
	// ttl is how long a key outlives its message's place in history.
	ttl time.Duration
	// byKey holds every remembered entry.
	byKey map[string]*Entry
	// queue holds the entries in the order they were added (Seq order);
	// queue[head:] are live.
	queue []*Entry
	head  int
}

// New returns an empty table that keeps keys for ttl (DefaultTTL if not
// positive) up to max keys (DefaultMax if not positive).
func New(max int, ttl time.Duration) *Table {
	if max <= 0 {
		max = DefaultMax
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Table{max: max, ttl: ttl, byKey: make(map[string]*Entry)}
}

// Len returns the number of keys remembered.
func (t *Table) Len() int { return len(t.byKey) }

// Get returns the entry of key, if it is remembered.
func (t *Table) Get(key string) (*Entry, bool) {
	e, ok := t.byKey[key]
	return e, ok
}

// Add remembers e. Entries must be added in increasing Seq order; a key
// that is already remembered is replaced.
func (t *Table) Add(e Entry) {
	p := &e
	t.byKey[e.Key] = p
	t.queue = append(t.queue, p)
}

// Expire forgets, oldest first, the keys whose message has left history
// (Seq <= evicted, the newest sequence number no longer in history) and that
// are either older than the TTL at now or beyond the table's maximum. It
// stops at the first key it must keep, so a call costs O(1) amortised.
func (t *Table) Expire(now time.Time, evicted uint64) {
	for t.head < len(t.queue) {
		e := t.queue[t.head]
		if t.byKey[e.Key] != e {
			// Replaced by a later Add: this slot is stale.
			t.pop()
			continue
		}
		if e.Seq > evicted || (len(t.byKey) <= t.max && now.Sub(e.Time) < t.ttl) {
			return
		}
		delete(t.byKey, e.Key)
		t.pop()
	}
}

// pop drops the front of the queue and copies the queue down when most of
// it is popped slots.
func (t *Table) pop() {
	t.queue[t.head] = nil
	t.head++
	if t.head == len(t.queue) {
		t.queue, t.head = t.queue[:0], 0
		return
	}
	if t.head >= compactAt && t.head*2 >= len(t.queue) {
		n := copy(t.queue, t.queue[t.head:])
		clear(t.queue[n:])
		t.queue, t.head = t.queue[:n], 0
	}
}
