// Package presence keeps who is in a chat room and who is typing there: the
// roster (the names of the connected streams, each name counted once however
// many streams carry it, and the number of streams that carry no name), the
// set of names typing now, and a gate that spaces out the broadcasts of
// either. It encodes both as the JSON the server sends. A Board puts them
// together for the room's hub, with the rule and the timer for when each
// event is due; in a cluster it also merges the other nodes' shares of the
// room's presence (Share) into the room's roster and typing set.
//
// Nothing here is safe for concurrent use and nothing starts a goroutine:
// the room's hub goroutine owns every value and is its only user.
package presence

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// person is one name on the roster.
type person struct {
	// name is the name as the streams gave it.
	name string
	// fold is name in lower case: the roster's sort key.
	fold string
	// streams counts the connected streams that carry name.
	streams int
}

// less orders people case-insensitively, and by their exact names where
// that ties, so that the order is total and stable.
func less(a, b *person) bool {
	if a.fold != b.fold {
		return a.fold < b.fold
	}
	return a.name < b.name
}

// Roster is the set of connected streams: the named ones counted once per
// name, the anonymous ones counted. Its zero value is not ready; use
// NewRoster.
type Roster struct {
	// byName finds a person by exact name.
	byName map[string]*person
	// sorted holds every person in roster order (see less).
	sorted []*person
	// anonymous counts the streams without a name.
	anonymous int
	// named counts the streams that carry a name.
	named int
	// hidden counts people that other nodes counted without listing them
	// (Share.MorePeople), and hiddenStreams their streams.
	hidden, hiddenStreams int
	// version changes with every change of the roster.
	version uint64
	// cache holds the last encodings, one per limit asked for.
	cache [2]encoding
}

// encoding is a cached JSON form of the roster.
type encoding struct {
	version uint64
	limit   int
	b       []byte
}

// NewRoster returns an empty roster.
func NewRoster() *Roster {
	return &Roster{byName: make(map[string]*person)}
}

// Add counts one more stream that carries name ("" for an anonymous one).
func (r *Roster) Add(name string) { r.AddN(name, 1) }

// AddN counts n more streams that carry name ("" for anonymous ones).
func (r *Roster) AddN(name string, n int) {
	if n <= 0 {
		return
	}
	r.version++
	if name == "" {
		r.anonymous += n
		return
	}
	r.named += n
	if p := r.byName[name]; p != nil {
		p.streams += n
		return
	}
	p := &person{name: name, fold: strings.ToLower(name), streams: n}
	i, _ := slices.BinarySearchFunc(r.sorted, p, compare)
	r.sorted = slices.Insert(r.sorted, i, p)
	r.byName[name] = p
}

// Remove counts one stream that carried name ("" for an anonymous one) less.
// A name leaves the roster with its last stream. Removing what is not there
// does nothing.
func (r *Roster) Remove(name string) { r.RemoveN(name, 1) }

// RemoveN counts n streams that carried name ("" for anonymous ones) less,
// down to none.
func (r *Roster) RemoveN(name string, n int) {
	if n <= 0 {
		return
	}
	if name == "" {
		if r.anonymous > 0 {
			r.anonymous -= min(n, r.anonymous)
			r.version++
		}
		return
	}
	p := r.byName[name]
	if p == nil {
		return
	}
	r.version++
	n = min(n, p.streams)
	r.named -= n
	if p.streams -= n; p.streams > 0 {
		return
	}
	delete(r.byName, name)
	if i, ok := slices.BinarySearchFunc(r.sorted, p, compare); ok {
		r.sorted = slices.Delete(r.sorted, i, i+1)
	}
}

// Hide adds people that are counted without being listed (a node's share
// that lists only some of its names), with their streams; negative
// numbers take them away again.
func (r *Roster) Hide(people, streams int) {
	if people == 0 && streams == 0 {
		return
	}
	r.hidden += people
	r.hiddenStreams += streams
	r.version++
}

// compare is less as a three-way comparison, for binary search.
func compare(a, b *person) int {
	switch {
	case less(a, b):
		return -1
	case less(b, a):
		return 1
	}
	return 0
}

// People returns the number of names on the roster, those counted
// without being listed included.
func (r *Roster) People() int { return len(r.sorted) + r.hidden }

// Streams returns the number of streams, named and anonymous.
func (r *Roster) Streams() int { return r.named + r.hiddenStreams + r.anonymous }

// Totals are a roster's counts, as the statistics show them.
type Totals struct {
	// People is the number of names; Anonymous the streams without one;
	// Streams every stream.
	People, Anonymous, Streams int
	// Nodes is how many nodes the counts come from.
	Nodes int
}

// Totals returns the roster's counts, with Nodes 1.
func (r *Roster) Totals() Totals {
	return Totals{People: r.People(), Anonymous: r.anonymous, Streams: r.Streams(), Nodes: 1}
}

// Anonymous returns the number of streams without a name.
func (r *Roster) Anonymous() int { return r.anonymous }

// Version returns a number that changes whenever the roster does.
func (r *Roster) Version() uint64 { return r.version }

// JSON returns the roster as one line of JSON,
//
//	{"people":[{"name":"alice","streams":2}],"anonymous":3,"people_total":1}
//
// with the people in roster order, at most limit of them (all of them if
// limit is negative), and the totals always. The result is cached until the
// roster changes and is shared: callers must not modify it.
func (r *Roster) JSON(limit int) []byte {
	if limit < 0 || limit > len(r.sorted) {
		limit = -1
	}
	slot := &r.cache[0]
	if limit >= 0 {
		slot = &r.cache[1]
	}
	if slot.b != nil && slot.version == r.version && slot.limit == limit {
		return slot.b
	}
	list := r.sorted
	if limit >= 0 {
		list = list[:limit]
	}
	b := make([]byte, 0, 48+len(list)*32)
	b = append(b, `{"people":[`...)
	for i, p := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = AppendString(b, p.name)
		b = append(b, `,"streams":`...)
		b = strconv.AppendInt(b, int64(p.streams), 10)
		b = append(b, '}')
	}
	b = append(b, `],"anonymous":`...)
	b = strconv.AppendInt(b, int64(r.anonymous), 10)
	b = append(b, `,"people_total":`...)
	b = strconv.AppendInt(b, int64(r.People()), 10)
	b = append(b, '}')
	*slot = encoding{version: r.version, limit: limit, b: b}
	return b
}

// Typing is the set of names typing now. A name stays in it for a fixed
// time after it was last said to be typing, or until it is stopped.
type Typing struct {
	// ttl is how long a name stays after its last Start.
	ttl time.Duration
	// max bounds the names held; Start ignores new names beyond it.
	max int
	// until holds each name's expiry.
	until map[string]time.Time
}

// NewTyping returns an empty set whose names expire ttl after their last
// Start and which holds at most max names.
func NewTyping(ttl time.Duration, max int) *Typing {
	return &Typing{ttl: ttl, max: max, until: make(map[string]time.Time)}
}

// Start records that name is typing at now and reports whether the set
// changed (a name already in it only has its expiry moved). A new name is
// ignored while the set is full.
func (t *Typing) Start(name string, now time.Time) bool {
	if _, ok := t.until[name]; ok {
		t.until[name] = now.Add(t.ttl)
		return false
	}
	if len(t.until) >= t.max {
		return false
	}
	t.until[name] = now.Add(t.ttl)
	return true
}

// Stop removes name and reports whether it was there.
func (t *Typing) Stop(name string) bool {
	if len(t.until) == 0 {
		return false
	}
	if _, ok := t.until[name]; !ok {
		return false
	}
	delete(t.until, name)
	return true
}

// Expire removes the names whose time is up at now and reports whether any
// was.
func (t *Typing) Expire(now time.Time) bool {
	changed := false
	for name, until := range t.until {
		if !now.Before(until) {
			delete(t.until, name)
			changed = true
		}
	}
	return changed
}

// Next returns the earliest expiry, and false when the set is empty.
func (t *Typing) Next() (time.Time, bool) {
	var next time.Time
	for _, until := range t.until {
		if next.IsZero() || until.Before(next) {
			next = until
		}
	}
	return next, !next.IsZero()
}

// Len returns the number of names typing.
func (t *Typing) Len() int { return len(t.until) }

// JSON returns the set as one line of JSON, {"typing":["alice","bob"]},
// names in roster order (case-insensitive), at most limit of them (all of
// them if limit is negative).
func (t *Typing) JSON(limit int) []byte { return typingJSON(t.Names(), limit) }

// Names returns the names typing, in roster order (case-insensitive).
func (t *Typing) Names() []string {
	names := make([]string, 0, len(t.until))
	for name := range t.until {
		names = append(names, name)
	}
	sortNames(names)
	return names
}

// sortNames sorts names in roster order.
func sortNames(names []string) {
	slices.SortFunc(names, func(a, b string) int {
		return compare(&person{name: a, fold: strings.ToLower(a)}, &person{name: b, fold: strings.ToLower(b)})
	})
}

// typingJSON returns names, in roster order, as a typing event's data,
// {"typing":["alice","bob"]}, at most limit of them (all of them if limit
// is negative).
func typingJSON(names []string, limit int) []byte {
	if limit >= 0 && limit < len(names) {
		names = names[:limit]
	}
	b := append(make([]byte, 0, 16+len(names)*16), `{"typing":[`...)
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, name)
	}
	return append(b, "]}"...)
}

// Gate spaces out the broadcasts of a value that changes: the first change
// after a quiet interval may go out at once, later ones wait until an
// interval has passed since the last send, so a burst of changes costs one
// or two sends rather than one per change.
type Gate struct {
	// interval is the least time between two sends.
	interval time.Duration
	// last is when the value was last sent.
	last time.Time
	// pending is set when the value changed since it was last sent.
	pending bool
}

// NewGate returns a gate that lets one send through per interval.
func NewGate(interval time.Duration) *Gate { return &Gate{interval: interval} }

// Changed records that the value changed.
func (g *Gate) Changed() { g.pending = true }

// Pending reports whether a change waits to be sent.
func (g *Gate) Pending() bool { return g.pending }

// Due returns when the pending change may be sent (a time in the past
// means now).
func (g *Gate) Due() time.Time { return g.last.Add(g.interval) }

// Ready reports whether a change is pending and may be sent at now.
func (g *Gate) Ready(now time.Time) bool { return g.pending && !now.Before(g.Due()) }

// Sent records that the value was sent at now.
func (g *Gate) Sent(now time.Time) {
	g.pending = false
	g.last = now
}

// AppendString appends s to dst as a JSON string. Invalid UTF-8 becomes
// U+FFFD; control characters, U+2028 and U+2029 are escaped, and nothing
// else (no HTML escaping), as encoding/json does with SetEscapeHTML(false).
func AppendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
