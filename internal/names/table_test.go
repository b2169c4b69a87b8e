package names

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// t0 is the time the tests without a synctest bubble start at.
var t0 = time.Unix(1_800_000_000, 0)

// mustUse fails the test if id cannot use name at now.
func mustUse(t *testing.T, tab *Table, name, id string, now time.Time) {
	t.Helper()
	if err := tab.Use(name, id, now); err != nil {
		t.Fatalf("Use(%q, %q): %v", name, id, err)
	}
}

// wantHeld fails the test unless id is refused name at now because
// someone else holds it, with an error that names the name.
func wantHeld(t *testing.T, tab *Table, name, id string, now time.Time) {
	t.Helper()
	err := tab.Use(name, id, now)
	var he *HeldError
	if !errors.As(err, &he) || !errors.Is(err, ErrHeld) || he.Name != name {
		t.Fatalf("Use(%q, %q) = %v, want a HeldError naming it", name, id, err)
	}
	if err := tab.Check(name, id, now); !errors.Is(err, ErrHeld) {
		t.Fatalf("Check(%q, %q) = %v, want ErrHeld", name, id, err)
	}
}

// TestUseHoldsByLook checks that a held name is refused to others in any
// case or look-alike form, and stays usable by its holder.
func TestUseHoldsByLook(t *testing.T) {
	tab := New(Options{Hold: DefaultHold})
	mustUse(t, tab, "Alice", "A", t0)
	for _, name := range []string{"alice", "ALICE", "ＡＬＩＣＥ", " alice ", "Ａlice"} {
		wantHeld(t, tab, name, "B", t0)
		mustUse(t, tab, name, "A", t0)
	}
	if _, err := tab.Open("alice", "B", t0); !errors.Is(err, ErrHeld) {
		t.Errorf("Open by another identity: %v, want ErrHeld", err)
	}
	if err := tab.Use("alice\u00AD", "B", t0); !errors.Is(err, ErrInvisible) {
		t.Errorf("Use of a look-alike with a soft hyphen: %v, want ErrInvisible", err)
	}
	if err := tab.Use("аlice", "B", t0); !errors.Is(err, ErrMixedScripts) {
		t.Errorf("Use of a look-alike with Cyrillic а: %v, want ErrMixedScripts", err)
	}
	if n := tab.Len(); n != 1 {
		t.Errorf("%d holds, want 1", n)
	}
}

// TestWithoutIdentity checks that a request without identity may use a
// free name again and again but holds nothing, and may not use a held one.
func TestWithoutIdentity(t *testing.T) {
	tab := New(Options{Hold: DefaultHold})
	for i := range 3 {
		mustUse(t, tab, "bob", "", t0.Add(time.Duration(i)*time.Second))
		s, err := tab.Open("bob", "", t0)
		if err != nil {
			t.Fatalf("Open without identity: %v", err)
		}
		if err := s.Close(t0); err != nil {
			t.Fatal(err)
		}
	}
	if n := tab.Len(); n != 0 {
		t.Fatalf("%d holds after uses without identity, want 0", n)
	}
	mustUse(t, tab, "bob", "B", t0) // nothing held it
	wantHeld(t, tab, "Bob", "", t0)
	if _, err := tab.Open("BOB", "", t0); !errors.Is(err, ErrHeld) {
		t.Errorf("Open of a held name without identity: %v, want ErrHeld", err)
	}
}

// TestHoldExpires checks, on a fake clock, that a name is held for the
// hold time after its last use and no longer.
func TestHoldExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := New(Options{Hold: DefaultHold})
		mustUse(t, tab, "alice", "A", time.Now())
		time.Sleep(DefaultHold / 2)
		mustUse(t, tab, "alice", "A", time.Now()) // refreshes
		time.Sleep(DefaultHold - time.Second)
		wantHeld(t, tab, "alice", "B", time.Now())
		time.Sleep(time.Second)
		if n := tab.Expire(time.Now()); n != 1 {
			t.Fatalf("Expire dropped %d holds, want 1", n)
		}
		mustUse(t, tab, "alice", "B", time.Now())
	})
}

// TestStreamHolds checks, on a fake clock, that an open stream holds its
// name however long it lasts, and the close of the last one starts the
// hold time.
func TestStreamHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := New(Options{Hold: time.Hour})
		s, err := tab.Open("alice", "A", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(48 * time.Hour)
		tab.Expire(time.Now())
		wantHeld(t, tab, "alice", "B", time.Now())
		if l := tab.List(time.Now()); len(l) != 1 || l[0].Streams != 1 || !l[0].Until.IsZero() {
			t.Fatalf("List while streaming = %+v, want one hold with a stream and no end", l)
		}
		s2, err := tab.Open("ALICE", "A", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // a second Close does nothing: s2 still holds the name
			if err := s.Close(time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Hour)
		wantHeld(t, tab, "alice", "B", time.Now())
		if err := s2.Close(time.Now()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour - time.Second)
		wantHeld(t, tab, "alice", "B", time.Now())
		time.Sleep(time.Second)
		mustUse(t, tab, "alice", "B", time.Now())
	})
}

// TestHoldZero checks that with a hold time of 0 only open streams hold
// names.
func TestHoldZero(t *testing.T) {
	tab := New(Options{})
	mustUse(t, tab, "alice", "A", t0)
	mustUse(t, tab, "alice", "B", t0) // a post alone held nothing
	s, err := tab.Open("alice", "A", t0)
	if err != nil {
		t.Fatal(err)
	}
	mustUse(t, tab, "alice", "A", t0.Add(time.Hour))
	wantHeld(t, tab, "alice", "B", t0.Add(time.Hour))
	if err := s.Close(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	mustUse(t, tab, "alice", "B", t0.Add(time.Hour))
	if n := tab.Len(); n != 0 {
		t.Errorf("%d holds, want 0", n)
	}
}

// TestFourthName checks the per-identity bound: a fourth name releases
// the least recently used one that no stream carries, and is refused if
// streams carry all three.
func TestFourthName(t *testing.T) {
	tab := New(Options{Hold: DefaultHold})
	for i, name := range []string{"one", "two", "three"} {
		mustUse(t, tab, name, "A", t0.Add(time.Duration(i)*time.Minute))
	}
	mustUse(t, tab, "one", "A", t0.Add(5*time.Minute)) // one is now the newest
	mustUse(t, tab, "four", "A", t0.Add(6*time.Minute))
	mustUse(t, tab, "two", "B", t0.Add(7*time.Minute)) // released
	for _, name := range []string{"one", "three", "four"} {
		wantHeld(t, tab, name, "B", t0.Add(7*time.Minute))
	}
	var streams []*Stream
	for _, name := range []string{"one", "three", "four"} {
		s, err := tab.Open(name, "A", t0.Add(8*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	err := tab.Use("five", "A", t0.Add(9*time.Minute))
	var tm *TooManyError
	if !errors.As(err, &tm) || !errors.Is(err, ErrTooMany) || tm.Max != 3 || err.Error() != "you hold 3 names already, each with a stream open; close one to take another name" {
		t.Fatalf("fourth name with three streams open: %v, want a TooManyError", err)
	}
	if err := streams[1].Close(t0.Add(10 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	mustUse(t, tab, "five", "A", t0.Add(11*time.Minute)) // releases three
	mustUse(t, tab, "three", "B", t0.Add(11*time.Minute))
}

// TestTableBound checks the bound of the whole table: a new hold drops
// the least recently used one without a stream, never one with.
func TestTableBound(t *testing.T) {
	tab := New(Options{Hold: DefaultHold, MaxHolds: 3})
	mustUse(t, tab, "a", "A", t0)
	if _, err := tab.Open("b", "B", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	mustUse(t, tab, "c", "C", t0.Add(2*time.Second))
	mustUse(t, tab, "d", "D", t0.Add(3*time.Second)) // drops a
	mustUse(t, tab, "a", "X", t0.Add(4*time.Second)) // drops c; b has a stream
	wantHeld(t, tab, "b", "X", t0.Add(4*time.Second))
	mustUse(t, tab, "c", "Y", t0.Add(5*time.Second)) // drops d
	if got := fmt.Sprint(names(tab.List(t0.Add(5 * time.Second)))); got != "[a b c]" {
		t.Fatalf("held %s, want [a b c]", got)
	}
	full := New(Options{Hold: DefaultHold, MaxHolds: 1})
	if _, err := full.Open("a", "A", t0); err != nil {
		t.Fatal(err)
	}
	if err := full.Use("b", "B", t0); !errors.Is(err, ErrFull) {
		t.Fatalf("Use in a table full of streams: %v, want ErrFull", err)
	}
}

// names returns the skeletons of holds.
func names(holds []Hold) []string {
	var out []string
	for _, h := range holds {
		out = append(out, h.Skeleton)
	}
	return out
}

// TestFree checks that a moderator frees a name whoever holds it, and
// that the freed stream's close does not touch a later holder.
func TestFree(t *testing.T) {
	tab := New(Options{Hold: DefaultHold})
	s, err := tab.Open("Alice", "A", t0)
	if err != nil {
		t.Fatal(err)
	}
	h, ok, err := tab.Free("ALICE", t0.Add(time.Minute))
	if err != nil || !ok || h.Name != "Alice" || h.Streams != 1 {
		t.Fatalf("Free = %+v, %v, %v", h, ok, err)
	}
	if _, ok, _ := tab.Free("alice", t0); ok {
		t.Error("freed a free name")
	}
	if _, _, err := tab.Free("al\u200Bice", t0); !errors.Is(err, ErrInvisible) {
		t.Errorf("Free of a refused name: %v", err)
	}
	if _, err := tab.Open("alice", "B", t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t0.Add(3 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(3*time.Minute + DefaultHold)
	tab.Expire(later)
	wantHeld(t, tab, "alice", "A", later) // B's stream holds it still
}

// TestList checks what List shows of a hold, as JSON: no identity.
func TestList(t *testing.T) {
	tab := New(Options{Hold: time.Hour})
	mustUse(t, tab, "Zoë", "A", t0)
	mustUse(t, tab, "ZOË", "A", t0.Add(time.Minute))
	if _, err := tab.Open("bob", "B", t0); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(tab.List(t0.Add(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"name":"bob","skeleton":"bob","since":"2027-01-15T08:00:00Z","last_used":"2027-01-15T08:00:00Z","streams":1},` +
		`{"name":"ZOË","skeleton":"zoë","since":"2027-01-15T08:00:00Z","last_used":"2027-01-15T08:01:00Z","until":"2027-01-15T09:01:00Z","streams":0}]`
	if got := string(b); got != want {
		t.Errorf("List as JSON:\n got %s\nwant %s", got, want)
	}
}

// TestConcurrentUse races identities over a few names: each name ends
// with one holder, and no identity holds more than three.
func TestConcurrentUse(t *testing.T) {
	tab := New(Options{Hold: DefaultHold})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				name := fmt.Sprintf("name%d", (g+i)%10)
				_ = tab.Use(name, fmt.Sprintf("id%d", g), t0)
				if s, err := tab.Open(name, fmt.Sprintf("id%d", g), t0); err == nil {
					_ = s.Close(t0)
				}
				tab.List(t0)
			}
		})
	}
	wg.Wait()
	per := map[string]int{}
	for _, r := range tab.Records(t0) {
		per[r.ID]++
	}
	for id, n := range per {
		if n > DefaultPerIdentity {
			t.Errorf("%s holds %d names", id, n)
		}
	}
}

// TestTakeAdmits checks that Take asks admit exactly when a name would be
// taken anew, and that its error refuses the name and takes nothing.
func TestTakeAdmits(t *testing.T) {
	tab := New(Options{Hold: DefaultHold})
	errRate := errors.New("slow down")
	asked := 0
	admit := func(err error) func() error {
		return func() error { asked++; return err }
	}
	if _, err := tab.Take("alice", "A", t0, false, admit(errRate)); err != errRate {
		t.Fatalf("Take refused by admit: %v, want its error", err)
	}
	if n := tab.Len(); n != 0 || asked != 1 {
		t.Fatalf("after a refusal: %d holds, admit asked %d times; want 0 and 1", n, asked)
	}
	if _, err := tab.Take("alice", "A", t0, false, admit(nil)); err != nil {
		t.Fatal(err)
	}
	s, err := tab.Take("ALICE", "A", t0, true, admit(errRate)) // held already: not asked
	if err != nil || s == nil {
		t.Fatalf("Take of a name A holds, with a stream: %v, %v", s, err)
	}
	for _, c := range []struct{ name, id string }{{"bob", ""}, {"alice", "B"}} {
		if _, err := tab.Take(c.name, c.id, t0, false, admit(errRate)); err == errRate {
			t.Errorf("Take(%q, %q) asked admit, which only a new hold needs", c.name, c.id)
		}
	}
	zero := New(Options{})
	if _, err := zero.Take("carol", "A", t0, false, admit(errRate)); err != nil {
		t.Errorf("with hold 0 a use takes nothing, so admit is not asked: %v", err)
	}
	if asked != 2 {
		t.Errorf("admit asked %d times, want 2", asked)
	}
	if err := s.Close(t0); err != nil {
		t.Fatal(err)
	}
	var none *Stream
	if err := none.Close(t0); err != nil {
		t.Errorf("Close of a nil Stream: %v", err)
	}
}
