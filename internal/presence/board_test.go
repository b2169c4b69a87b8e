package presence

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"chat/internal/sse"
)

// events describes the events a board returned, as "presence:<json>" or
// "typing:<json>", read back with the SSE reader; nil ones are skipped.
func events(evs ...[]byte) string {
	var out []string
	for _, b := range evs {
		if b == nil {
			continue
		}
		ev, err := sse.NewReader(bytes.NewReader(b)).NextEvent()
		if err != nil {
			return fmt.Sprintf("unreadable event %q: %v", b, err)
		}
		out = append(out, ev.Type+":"+string(ev.Data))
	}
	return strings.Join(out, " ")
}

// TestBoardJoinHead checks the events a joining stream's head ends with:
// the roster with its version, and the typing set only while someone
// types; none when the board sends no events.
func TestBoardJoinHead(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBoard(time.Second, 10)
	evs, v := b.Join("ann")
	if got := events(evs...); got != `presence:{"people":[{"name":"ann","streams":1}],"anonymous":0,"people_total":1}` || v != b.Roster.Version() {
		t.Errorf("first join: %s, version %d", got, v)
	}
	b.Typing("ann", now)
	evs, _ = b.Join("")
	if got := events(evs...); !strings.HasSuffix(got, ` typing:{"typing":["ann"]}`) || len(evs) != 2 {
		t.Errorf("join while ann types: %s", got)
	}

	off := NewBoard(0, 10)
	off.Typing("ann", now)
	if evs, v := off.Join("ann"); evs != nil || v != 0 || off.Roster.People() != 1 {
		t.Errorf("board without events: join gave %q, version %d, %d people; want nothing, 0, 1", evs, v, off.Roster.People())
	}
	if _, ok := off.Next(); ok {
		t.Error("a board without events has something due")
	}
}

// TestBoardDue checks when events are due: a roster change at once after a
// quiet interval and then at most once per interval; a typing name at once
// and again when it expires; a stop of typing with the next messages when
// the typing interval allows, else later.
func TestBoardDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	b := NewBoard(time.Second, 10)
	b.Join("ann")
	steps := []struct {
		name     string
		do       func()
		at       time.Duration
		want     string // the events Due returns
		wantNext time.Duration
		none     bool // nothing is due after
	}{
		{"first change: at once", func() {}, 0, `presence:{"people":[{"name":"ann","streams":1}],"anonymous":0,"people_total":1}`, 0, true},
		{"second change: after the interval", func() { b.Join("bob") }, 100 * time.Millisecond, "", time.Second, false},
		{"at the interval", func() {}, time.Second, `presence:{"people":[{"name":"ann","streams":1},{"name":"bob","streams":1}],"anonymous":0,"people_total":2}`, 0, true},
		{"typing", func() { b.Typing("bob", at(1500*time.Millisecond)) }, 1500 * time.Millisecond, `typing:{"typing":["bob"]}`, 1500*time.Millisecond + typingTTL, false},
		{"typing expires", func() {}, 1500*time.Millisecond + typingTTL, `typing:{"typing":[]}`, 0, true},
	}
	for _, s := range steps {
		s.do()
		p, _, ty := b.Due(at(s.at))
		if got := events(p, ty); got != s.want {
			t.Errorf("%s: Due = %s, want %s", s.name, got, s.want)
		}
		next, ok := b.Next()
		if s.none && ok {
			t.Errorf("%s: something due at %v, want nothing", s.name, next.Sub(start))
		}
		if !s.none && (!ok || next.Sub(start) != s.wantNext) {
			t.Errorf("%s: next at %v (%v), want %v", s.name, next.Sub(start), ok, s.wantNext)
		}
	}
}

// TestBoardTypingNow checks the typing event that goes with messages: only
// after a change (a sender stopped typing), and only when the typing
// interval allows; otherwise it waits.
func TestBoardTypingNow(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBoard(time.Second, 10)
	if ev, waiting := b.TypingNow(start); ev != nil || waiting {
		t.Errorf("nothing changed: %q, waiting %v", ev, waiting)
	}
	b.Typing("ann", start)
	b.Due(start) // the typing event goes out
	b.Posted("ann")
	if ev, waiting := b.TypingNow(start.Add(100 * time.Millisecond)); ev != nil || !waiting {
		t.Errorf("stop within the interval: %q, waiting %v; want nothing yet, waiting", ev, waiting)
	}
	if ev, _ := b.TypingNow(start.Add(time.Second)); events(ev) != `typing:{"typing":[]}` {
		t.Errorf("stop after the interval: %q, want the empty typing set", ev)
	}
	b.Posted("bob") // was not typing: no change
	if ev, waiting := b.TypingNow(start.Add(3 * time.Second)); ev != nil || waiting {
		t.Errorf("a post by someone not typing: %q, waiting %v", ev, waiting)
	}
}

// TestBoardTimer checks that Schedule arms the timer for the next event,
// that it fires then, and that a board with nothing pending stops it.
func TestBoardTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBoard(time.Second, 10)
		b.Join("ann")
		b.Due(time.Now())
		b.Join("bob")
		b.Schedule(time.Now())
		start := time.Now()
		<-b.Timer()
		if waited := time.Since(start); waited != time.Second {
			t.Errorf("timer fired after %v, want 1s", waited)
		}
		p, _, _ := b.Due(time.Now())
		if p == nil {
			t.Error("nothing due when the timer fired")
		}
		b.Schedule(time.Now())
		time.Sleep(time.Hour)
		select {
		case <-b.Timer():
			t.Error("the timer fired with nothing pending")
		default:
		}
		b.Stop()
	})
}
