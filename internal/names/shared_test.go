package names

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a Shared that takes every write and records it, as
// "put <skeleton> <id> <ttl> streaming=<bool>", "release <skeleton>" or
// "free <skeleton>"; held, when set, is the skeleton it refuses (another
// identity holds it in the store).
type recorder struct {
	writes []string
	held   string
}

// Put implements Shared.
func (r *recorder) Put(skeleton string, rec Record, ttl time.Duration) error {
	if skeleton == r.held {
		return fmt.Errorf("%w: %s", ErrHeld, rec.Name)
	}
	r.writes = append(r.writes, fmt.Sprintf("put %s %s %v streaming=%v", skeleton, rec.ID, ttl, rec.Streaming))
	return nil
}

// Release implements Shared.
func (r *recorder) Release(skeleton string) error {
	r.writes = append(r.writes, "release "+skeleton)
	return nil
}

// Free implements Shared.
func (r *recorder) Free(skeleton string) error {
	r.writes = append(r.writes, "free "+skeleton)
	return nil
}

// take returns the writes since the last call.
func (r *recorder) take() string {
	out := strings.Join(r.writes, "; ")
	r.writes = nil
	return out
}

// TestSharedWrites follows the writes a sharing table makes: a take with
// the hold time as TTL, a stream's with the lease and streaming, a use
// only after refreshGrain, the release of the fourth name's predecessor,
// a stream's close (with no hold time: a release), Save renewing what
// streams carry, and a moderator's free. A take the store refuses is a
// HeldError, and holds nothing.
func TestSharedWrites(t *testing.T) {
	rec := &recorder{}
	tab := New(Options{Hold: time.Hour})
	tab.Share(rec)
	steps := []struct {
		name string
		do   func() error
		want string
	}{
		{"take", func() error { return tab.Use("ann", "x", t0) }, "put ann x 1h0m0s streaming=false"},
		{"use within the grain", func() error { return tab.Use("ann", "x", t0.Add(time.Second)) }, ""},
		{"use after the grain", func() error { return tab.Use("Ann", "x", t0.Add(2*time.Minute)) }, "put ann x 1h0m0s streaming=false"},
		{"two more", func() error {
			tab.Use("bo", "x", t0.Add(3*time.Minute))
			return tab.Use("cy", "x", t0.Add(3*time.Minute))
		}, "put bo x 1h0m0s streaming=false; put cy x 1h0m0s streaming=false"},
		{"a fourth", func() error { return tab.Use("di", "x", t0.Add(4*time.Minute)) }, "release ann; put di x 1h0m0s streaming=false"},
		{"save: no stream", func() error { return tab.Save(t0.Add(5 * time.Minute)) }, ""},
		{"free", func() error { _, _, err := tab.Free("bo", t0.Add(5*time.Minute)); return err }, "free bo"},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := rec.take(); got != s.want {
			t.Errorf("%s: writes %q, want %q", s.name, got, s.want)
		}
	}

	zero := New(Options{Hold: 0})
	zero.Share(rec)
	st, err := zero.Open("eve", "y", t0)
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); got != "put eve y 3m0s streaming=true" {
		t.Errorf("a stream with no hold time: %q, want the lease", got)
	}
	if err := zero.Save(t0.Add(time.Minute)); err != nil || rec.take() != "put eve y 3m0s streaming=true" {
		t.Errorf("Save with a stream open: %v, want the hold renewed", err)
	}
	st.Close(t0.Add(2 * time.Minute))
	if got := rec.take(); got != "release eve" {
		t.Errorf("the last stream closed with no hold time: %q, want a release", got)
	}

	rec.held = "fay"
	err = tab.Use("FAY", "x", t0.Add(6*time.Minute))
	var he *HeldError
	if !errors.As(err, &he) || he.Name != "FAY" {
		t.Errorf("a take the store refuses: %v, want a HeldError naming FAY", err)
	}
	if err := tab.Check("fay", "z", t0.Add(6*time.Minute)); err != nil {
		t.Errorf("the refused take holds something: %v", err)
	}
}

// TestApply applies other servers' changes: a new hold, the same
// identity's use, another identity's hold replacing one, a hold that
// streams carry elsewhere (kept past its hold time until the store says),
// a release (taken back while a stream here carries it) and an end.
func TestApply(t *testing.T) {
	rec := &recorder{}
	tab := New(Options{Hold: time.Minute})
	tab.Share(rec)
	r := func(id, name string, last time.Time, streaming bool) *Record {
		return &Record{ID: id, Name: name, Since: last.Unix(), Last: last.Unix(), Streaming: streaming}
	}
	tab.Apply("ann", r("x", "Ann", t0, false), Stored, t0)
	wantHeld(t, tab, "ann", "y", t0)
	tab.Apply("ann", r("y", "ann", t0, false), Stored, t0)
	wantHeld(t, tab, "ann", "x", t0)
	mustUse(t, tab, "ann", "y", t0)

	tab.Apply("bo", r("z", "bo", t0, true), Stored, t0)
	if n := tab.Expire(t0.Add(time.Hour)); n != 1 {
		t.Errorf("expired %d holds an hour on, want ann's alone", n)
	}
	wantHeld(t, tab, "bo", "y", t0.Add(time.Hour))
	tab.Apply("bo", r("z", "bo", t0.Add(time.Hour), false), Stored, t0.Add(time.Hour))
	if n := tab.Expire(t0.Add(time.Hour + time.Minute)); n != 1 {
		t.Errorf("a hold no stream carries any more did not expire after its hold time (%d expired)", n)
	}

	st, err := tab.Open("cy", "w", t0)
	if err != nil {
		t.Fatal(err)
	}
	rec.take()
	if err := tab.Apply("cy", nil, Released, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); got != "put cy w 3m0s streaming=true" {
		t.Errorf("released while a stream here carries it: %q, want it taken back", got)
	}
	tab.Apply("cy", nil, Ended, t0.Add(time.Second))
	if err := tab.Check("cy", "v", t0.Add(time.Second)); err != nil {
		t.Errorf("an ended hold, though a stream here carried it: %v, want free", err)
	}
	st.Close(t0.Add(2 * time.Second))
	if got := rec.take(); got != "" {
		t.Errorf("closing a stream whose hold ended wrote %q", got)
	}
	tab.Apply("di", r("x", "di", t0, false), Stored, t0)
	tab.Apply("di", nil, Released, t0)
	if err := tab.Check("di", "v", t0); err != nil {
		t.Errorf("a released hold no stream here carries: %v, want free", err)
	}
}
