package auth

import (
	"sync"
	"time"

	"chat/internal/limit"
)

// Throttle counts the tries of keys per address in fixed windows: once an
// address has used its tries in one window, it is refused until the window
// ends. A try is counted in the same step as the check, so requests sent
// at once cannot all pass the check before any of them is counted: a login
// takes its try (Take) before its body is read and gives it back (Refund)
// if its key is right, and a Bearer key is checked and counted at once
// (Record).
//
// Addresses are the per-address keys of package limit, and count like the
// rate limits: an IPv6 /64 also counts against its /56 and /48, which may
// use 4 and 16 times as many (see limit.Scopes), so a network cannot multiply
// its tries by spreading over the /64s it holds. A try counts in every
// scope or in none. Throttle is safe for concurrent use; a nil Throttle
// counts nothing and refuses nothing.
type Throttle struct {
	max    int
	window time.Duration
	// mu guards seen and the windows in it.
	mu   sync.Mutex
	seen map[string]*tries
}

// tries is one scope's tries in the window that began at start: wrong keys,
// and tries taken whose key is not known yet.
type tries struct {
	start time.Time
	n     int
}

// NewThrottle returns a throttle that allows n tries (at least 1) per
// window and per address.
func NewThrottle(n int, window time.Duration) *Throttle {
	return &Throttle{max: max(n, 1), window: window, seen: make(map[string]*tries)}
}

// Ticket is one try taken from a Throttle. It counts as a wrong key until
// it is refunded; it belongs to the request that took it.
type Ticket struct {
	t *Throttle
	// keys and held are the scopes the try is counted in and their windows
	// at the time; nil once the ticket is settled.
	keys []string
	held []*tries
}

// Take takes one try for addr at now, in one step with the check: if addr
// (or a scope it counts against) has used up its tries, Take returns nil
// and how long until it may try again. Otherwise the try counts at once,
// before the key is known; the caller settles the returned ticket with
// Fail or Refund. On a nil Throttle it returns a ticket that does nothing.
func (t *Throttle) Take(addr string, now time.Time) (*Ticket, time.Duration) {
	if t == nil {
		return &Ticket{}, 0
	}
	scopes := limit.Scopes(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	if wait := t.blocked(scopes, now); wait > 0 {
		return nil, wait
	}
	tk := &Ticket{t: t, keys: make([]string, len(scopes))}
	for i, sc := range scopes {
		tk.keys[i] = sc.Key
	}
	tk.held = t.count(scopes, now)
	return tk, 0
}

// Record checks and counts, in one step, a try whose key is already
// known (a Bearer key): if addr has used up its tries it reports how
// long until it may try again, and the caller must not act on the key.
// Otherwise a wrong key (right false) counts, and a right one does not.
func (t *Throttle) Record(addr string, now time.Time, right bool) (time.Duration, bool) {
	if t == nil {
		return 0, false
	}
	scopes := limit.Scopes(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	if wait := t.blocked(scopes, now); wait > 0 {
		return wait, true
	}
	if !right {
		t.count(scopes, now)
	}
	return 0, false
}

// Fail settles the ticket as a wrong key: it stays counted.
func (tk *Ticket) Fail() { tk.keys, tk.held = nil, nil }

// Refund gives the try back (the key was right, or no key was compared),
// unless the ticket is settled already. A try whose window has ended since
// it was taken is not given back to the next window.
func (tk *Ticket) Refund() {
	if tk.t == nil || tk.held == nil {
		return
	}
	tk.t.mu.Lock()
	defer tk.t.mu.Unlock()
	for i, key := range tk.keys {
		if w := tk.held[i]; tk.t.seen[key] == w {
			if w.n--; w.n <= 0 {
				delete(tk.t.seen, key)
			}
		}
	}
	tk.keys, tk.held = nil, nil
}

// blocked returns how long until every scope in scopes that has used up
// its tries at now has a new window (0: none has). t.mu must be held.
func (t *Throttle) blocked(scopes []limit.Scope, now time.Time) time.Duration {
	var wait time.Duration
	for _, sc := range scopes {
		w := t.seen[sc.Key]
		if w == nil || w.n < t.max*sc.Factor {
			continue
		}
		wait = max(wait, w.start.Add(t.window).Sub(now))
	}
	return wait
}

// count counts one try in every scope at now, starting a new window for a
// scope whose window has ended, and returns the windows. t.mu must be held.
func (t *Throttle) count(scopes []limit.Scope, now time.Time) []*tries {
	held := make([]*tries, len(scopes))
	for i, sc := range scopes {
		w := t.seen[sc.Key]
		if w == nil || now.Sub(w.start) >= t.window {
			if w == nil && len(t.seen) >= maxThrottled {
				t.sweep(now)
			}
			w = &tries{start: now}
			t.seen[sc.Key] = w
		}
		w.n++
		held[i] = w
	}
	return held
}

// sweep forgets the windows that have ended, and if that is not enough,
// arbitrary ones until a tenth of the room is free. t.mu must be held.
func (t *Throttle) sweep(now time.Time) {
	for a, w := range t.seen {
		if now.Sub(w.start) >= t.window {
			delete(t.seen, a)
		}
	}
	for a := range t.seen {
		if len(t.seen) < maxThrottled-maxThrottled/10 {
			break
		}
		delete(t.seen, a)
	}
}
