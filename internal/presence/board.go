package presence

import (
	"slices"
	"time"

	"chat/internal/sse"
)

// Tuning values of typing events.
const (
	// typingInterval is the least time between two typing events on a
	// stream.
	typingInterval = time.Second
	// typingTTL is how long a name stays in the typing set after it was
	// last said to be typing (its message removes it at once).
	typingTTL = 5 * time.Second
	// maxTyping bounds the names in the typing set, however many
	// addresses say they type; new names beyond it are ignored until some
	// expire.
	maxTyping = 1000
)

// Board is a room's presence as its hub keeps it: the roster, the typing
// set, the gates that space out their events, the rule for when each event
// is due, and the timer that says so. The hub calls Schedule after every
// change, and Due when Timer fires.
type Board struct {
	// Roster is who is connected to the room: this node's streams and, in
	// a cluster, every other node's share (see SetRemote).
	Roster *Roster
	// Local is who is connected to this node: its share.
	Local *Roster
	// typers is the set of names typing on this node now.
	typers *Typing
	// remote holds the other nodes' shares, by node; remoteTyping counts,
	// for each name, the shares that list it typing.
	remote       map[string]*remoteShare
	remoteTyping map[string]int
	// changes signals a change of this node's share: its roster or its
	// typing set (buffered 1; see Changes).
	changes chan struct{}
	// rosterGate and typingGate space out the presence and typing events.
	rosterGate, typingGate *Gate
	// names caps the names an event lists.
	names int
	// on is set when the board sends events at all.
	on bool
	// timer fires when an event may be due or a typing name expires;
	// due is when it is set to fire, if armed.
	timer *time.Timer
	due   time.Time
	armed bool
}

// NewBoard returns an empty board that sends a presence event at most once
// per interval and a typing event at most once a second, each listing at
// most names names. An interval of zero sends no events and keeps no typing
// set; the roster is still kept.
func NewBoard(interval time.Duration, names int) *Board {
	b := &Board{
		Roster:       NewRoster(),
		Local:        NewRoster(),
		typers:       NewTyping(typingTTL, maxTyping),
		remote:       make(map[string]*remoteShare),
		remoteTyping: make(map[string]int),
		changes:      make(chan struct{}, 1),
		rosterGate:   NewGate(interval),
		typingGate:   NewGate(typingInterval),
		names:        names,
		on:           interval > 0,
		timer:        time.NewTimer(time.Hour),
	}
	b.timer.Stop()
	return b
}

// Join adds a stream that carries name ("" for an anonymous watcher) and
// returns the events the stream's head ends with: the roster, then the
// typing set if anyone is typing (none when the board sends no events),
// with the roster version the head carries.
func (b *Board) Join(name string) (events [][]byte, version uint64) {
	b.Roster.Add(name)
	b.Local.Add(name)
	b.localChanged()
	if !b.on {
		return nil, 0
	}
	b.rosterGate.Changed()
	events = append(events, sse.AppendEvent(nil, sse.Event{Type: "presence", Data: b.Roster.JSON(b.names)}))
	if b.typers.Len() > 0 || len(b.remoteTyping) > 0 {
		events = append(events, sse.AppendEvent(nil, sse.Event{Type: "typing", Data: b.typingJSON()}))
	}
	return events, b.Roster.Version()
}

// Leave removes a stream that carried name.
func (b *Board) Leave(name string) {
	b.Roster.Remove(name)
	b.Local.Remove(name)
	b.localChanged()
	if b.on {
		b.rosterGate.Changed()
	}
}

// Typing records that name is typing at now.
func (b *Board) Typing(name string, now time.Time) {
	if b.on && b.typers.Start(name, now) {
		b.typingGate.Changed()
		b.localChanged()
	}
}

// Posted records that name posted a message, so it no longer types, here
// or on any other node (whose next share will say so too).
func (b *Board) Posted(name string) {
	if b.typers.Stop(name) {
		b.typingGate.Changed()
		b.localChanged()
	}
	if b.remoteTyping[name] > 0 {
		delete(b.remoteTyping, name)
		for _, sh := range b.remote {
			sh.typing = slices.DeleteFunc(sh.typing, func(n string) bool { return n == name })
		}
		b.typingGate.Changed()
	}
}

// TypingNow returns the typing event to send at now together with
// messages, when the typing set changed (a sender stopped typing) and the
// interval allows, and records it sent. Otherwise it returns nil, and
// waiting reports whether a change waits (for Next's time).
func (b *Board) TypingNow(now time.Time) (event []byte, waiting bool) {
	if !b.typingGate.Pending() {
		return nil, false
	}
	if !b.on || !b.typingGate.Ready(now) {
		return nil, true
	}
	b.typingGate.Sent(now)
	return sse.AppendEvent(nil, sse.Event{Type: "typing", Data: b.typingJSON()}), false
}

// Due expires the typing names whose time is up at now and returns the
// events due then, each nil if not: the presence event, with the roster
// version it carries, and the typing event. It records them sent. Call it
// when Timer fires, then Schedule.
func (b *Board) Due(now time.Time) (presence []byte, version uint64, typing []byte) {
	b.armed = false
	if b.typers.Expire(now) {
		b.typingGate.Changed()
		b.localChanged()
	}
	if b.rosterGate.Ready(now) {
		b.rosterGate.Sent(now)
		presence = sse.AppendEvent(nil, sse.Event{Type: "presence", Data: b.Roster.JSON(b.names)})
		version = b.Roster.Version()
	}
	if b.typingGate.Ready(now) {
		b.typingGate.Sent(now)
		typing = sse.AppendEvent(nil, sse.Event{Type: "typing", Data: b.typingJSON()})
	}
	return presence, version, typing
}

// Next returns the earliest of: when the pending presence event may go,
// when the pending typing event may go, and the next expiry in the typing
// set; false when there is none.
func (b *Board) Next() (time.Time, bool) {
	var next time.Time
	found := false
	earliest := func(t time.Time) {
		if !found || t.Before(next) {
			next, found = t, true
		}
	}
	if b.rosterGate.Pending() {
		earliest(b.rosterGate.Due())
	}
	if b.typingGate.Pending() {
		earliest(b.typingGate.Due())
	}
	if t, ok := b.typers.Next(); ok {
		earliest(t)
	}
	return next, found
}

// Timer returns the channel on which the board's timer fires (see
// Schedule).
func (b *Board) Timer() <-chan time.Time { return b.timer.C }

// Schedule sets the timer to fire at Next, counted from now, or stops it
// when nothing is pending.
func (b *Board) Schedule(now time.Time) {
	next, ok := b.Next()
	switch {
	case !ok:
		if b.armed {
			b.timer.Stop()
			b.armed = false
		}
	case !b.armed || !next.Equal(b.due):
		b.timer.Reset(max(0, next.Sub(now)))
		b.due, b.armed = next, true
	}
}

// Stop stops the timer, for good.
func (b *Board) Stop() {
	b.timer.Stop()
	b.armed = false
}
