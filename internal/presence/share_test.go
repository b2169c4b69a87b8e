package presence

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// share returns the share in its JSON form, parsed, failing the test if it
// does not parse.
func share(t *testing.T, data string) *Share {
	t.Helper()
	s, err := ParseShare([]byte(data), nil)
	if err != nil {
		t.Fatalf("ParseShare(%s): %v", data, err)
	}
	return s
}

// changed reports whether the board signalled a change of its own share,
// and takes the signal.
func changed(b *Board) bool {
	select {
	case <-b.Changes():
		return true
	default:
		return false
	}
}

// TestBoardMergesShares merges other nodes' shares into a board: the
// roster counts each name once with the streams of every node, and the
// anonymous streams of every node; the typing set is the union; the board's
// own share and its totals stay its own; a share replaced or dropped takes
// its counts with it.
func TestBoardMergesShares(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBoard(time.Second, 10)
	b.Join("ann")
	b.Join("")
	b.Typing("ann", now)
	b.Due(now)
	changed(b)
	if err := b.SetRemote("n2", share(t, `{"people":[{"name":"Bob","streams":1},{"name":"ann","streams":2}],"anonymous":3,"more_people":0,"more_streams":0,"typing":["Bob"]}`)); err != nil {
		t.Fatal(err)
	}
	if changed(b) {
		t.Error("another node's share changed this node's share")
	}
	if got, want := string(b.Roster.JSON(-1)), `{"people":[{"name":"ann","streams":3},{"name":"Bob","streams":1}],"anonymous":4,"people_total":2}`; got != want {
		t.Errorf("merged roster %s, want %s", got, want)
	}
	if got, want := string(b.typingJSON()), `{"typing":["ann","Bob"]}`; got != want {
		t.Errorf("merged typing %s, want %s", got, want)
	}
	if got, want := string(b.LocalShare()), `{"people":[{"name":"ann","streams":1}],"anonymous":1,"more_people":0,"more_streams":0,"typing":["ann"]}`; got != want {
		t.Errorf("local share %s, want %s", got, want)
	}
	local, room := b.Totals()
	if local != (Totals{People: 1, Anonymous: 1, Streams: 2, Nodes: 1}) || room != (Totals{People: 2, Anonymous: 4, Streams: 8, Nodes: 2}) {
		t.Errorf("totals local %+v, room %+v", local, room)
	}
	p, _, ty := b.Due(now.Add(time.Second))
	if p == nil || ty == nil {
		t.Errorf("after a share: presence event %q, typing event %q; want both", p, ty)
	}

	// The same node again, with Bob gone and ann down to one stream.
	b.SetRemote("n2", share(t, `{"people":[{"name":"ann","streams":1}],"anonymous":0,"more_people":0,"more_streams":0,"typing":[]}`))
	if got, want := string(b.Roster.JSON(-1)), `{"people":[{"name":"ann","streams":2}],"anonymous":1,"people_total":1}`; got != want {
		t.Errorf("roster after the share changed %s, want %s", got, want)
	}
	if got, want := string(b.typingJSON()), `{"typing":["ann"]}`; got != want {
		t.Errorf("typing after the share changed %s, want %s", got, want)
	}
	if !b.DropRemote("n2") || b.DropRemote("n2") {
		t.Error("DropRemote: want true once, then false")
	}
	if got, want := string(b.Roster.JSON(-1)), string(b.Local.JSON(-1)); got != want || b.Nodes() != 1 {
		t.Errorf("roster after the node left %s, want the local %s; %d nodes", got, want, b.Nodes())
	}
}

// TestBoardShareSameAgain checks that a share received again unchanged (a
// node renewing it) changes nothing and makes no event due.
func TestBoardShareSameAgain(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBoard(time.Second, 10)
	s := `{"people":[{"name":"bob","streams":2}],"anonymous":1,"more_people":0,"more_streams":0,"typing":["bob"]}`
	b.SetRemote("n2", share(t, s))
	b.Due(now)
	v := b.Roster.Version()
	b.SetRemote("n2", share(t, s))
	if b.Roster.Version() != v {
		t.Error("the same share again changed the roster")
	}
	if next, ok := b.Next(); ok {
		t.Errorf("the same share again made something due at %v", next)
	}
}

// TestBoardPresenceCoalescesShares sends a board a burst of changed
// shares: the roster event goes out once at the start and then once per
// interval, not once per share.
func TestBoardPresenceCoalescesShares(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBoard(time.Second, 10)
	sent := 0
	for i := range 100 {
		now := start.Add(time.Duration(i) * 50 * time.Millisecond) // 5 s
		b.SetRemote(fmt.Sprintf("n%d", i%3), share(t, fmt.Sprintf(`{"people":[],"anonymous":%d,"more_people":0,"more_streams":0,"typing":[]}`, i+1)))
		if p, _, _ := b.Due(now); p != nil {
			sent++
		}
	}
	if sent < 4 || sent > 6 {
		t.Errorf("%d presence events in 5 s of shares every 50 ms, want about 5", sent)
	}
}

// TestBoardPostedStopsRemoteTyping checks that a post by someone another
// node lists as typing ends their typing here at once.
func TestBoardPostedStopsRemoteTyping(t *testing.T) {
	b := NewBoard(time.Second, 10)
	b.SetRemote("n2", share(t, `{"people":[],"anonymous":0,"more_people":0,"more_streams":0,"typing":["bob","cy"]}`))
	b.Posted("bob")
	if got, want := string(b.typingJSON()), `{"typing":["cy"]}`; got != want {
		t.Errorf("typing after bob posted %s, want %s", got, want)
	}
	b.SetRemote("n2", share(t, `{"people":[],"anonymous":0,"more_people":0,"more_streams":0,"typing":["cy"]}`))
	if got, want := string(b.typingJSON()), `{"typing":["cy"]}`; got != want {
		t.Errorf("typing after n2's next share %s, want %s", got, want)
	}
}

// TestBoardChangesSignalsOwnShare checks that joins, leaves, typing, its
// expiry and a typer's post signal a change of the node's own share.
func TestBoardChangesSignalsOwnShare(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBoard(time.Second, 10)
	steps := []struct {
		name string
		do   func()
		want bool
	}{
		{"join", func() { b.Join("ann") }, true},
		{"nothing", func() {}, false},
		{"typing", func() { b.Typing("ann", now) }, true},
		{"typing again", func() { b.Typing("ann", now) }, false},
		{"typing expires", func() { b.Due(now.Add(typingTTL)) }, true},
		{"typing, then a post", func() { b.Typing("ann", now); changed(b); b.Posted("ann") }, true},
		{"another node's share", func() { b.SetRemote("n2", &Share{Anonymous: 1}) }, false},
		{"leave", func() { b.Leave("ann") }, true},
	}
	for _, s := range steps {
		s.do()
		if got := changed(b); got != s.want {
			t.Errorf("%s: changed %v, want %v", s.name, got, s.want)
		}
	}
}

// TestLocalShareCapsNames gives a node more names than a share lists: its
// share lists MaxShareNames in roster order and counts the rest, and a
// board that merges it has the right totals.
func TestLocalShareCapsNames(t *testing.T) {
	b := NewBoard(time.Second, 10)
	for i := range MaxShareNames + 3 {
		b.Join(fmt.Sprintf("p%05d", i))
	}
	b.Join(fmt.Sprintf("p%05d", MaxShareNames+2)) // a second stream of a name beyond the list
	data := b.LocalShare()
	s := share(t, string(data))
	if len(s.People) != MaxShareNames || s.MorePeople != 3 || s.MoreStreams != 4 || s.People[0].Name != "p00000" {
		t.Fatalf("share lists %d (first %q), more %d people %d streams; want %d, p00000, 3, 4",
			len(s.People), s.People[0].Name, s.MorePeople, s.MoreStreams, MaxShareNames)
	}
	if len(data) > 1<<20 {
		t.Errorf("share of %d bytes, more than NATS's default payload", len(data))
	}
	other := NewBoard(time.Second, 10)
	other.SetRemote("n1", s)
	var r struct {
		People      []Count `json:"people"`
		PeopleTotal int     `json:"people_total"`
	}
	if err := json.Unmarshal(other.Roster.JSON(-1), &r); err != nil {
		t.Fatal(err)
	}
	if _, room := other.Totals(); room.People != MaxShareNames+3 || room.Streams != MaxShareNames+4 || r.PeopleTotal != MaxShareNames+3 || len(r.People) != MaxShareNames {
		t.Errorf("merged totals %+v, people_total %d, %d listed", room, r.PeopleTotal, len(r.People))
	}
	other.DropRemote("n1")
	if _, room := other.Totals(); room != (Totals{Nodes: 1}) {
		t.Errorf("totals after the node left: %+v", room)
	}
}

// TestBoardMaxNodes checks the bound on the nodes a board merges.
func TestBoardMaxNodes(t *testing.T) {
	b := NewBoard(time.Second, 10)
	for i := range MaxNodes {
		if err := b.SetRemote(fmt.Sprint(i), &Share{Anonymous: 1}); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	if err := b.SetRemote("one more", &Share{Anonymous: 1}); !errors.Is(err, ErrTooManyNodes) {
		t.Errorf("node %d: %v, want ErrTooManyNodes", MaxNodes+1, err)
	}
	if err := b.SetRemote("0", &Share{Anonymous: 2}); err != nil {
		t.Errorf("a known node's new share: %v", err)
	}
	b.DropRemote("1")
	if err := b.SetRemote("one more", &Share{Anonymous: 1}); err != nil {
		t.Errorf("a new node after one left: %v", err)
	}
	if _, room := b.Totals(); room.Anonymous != MaxNodes+1 || room.Nodes != MaxNodes+1 {
		t.Errorf("totals %+v", room)
	}
}

// TestParseShare feeds ParseShare shares that are malformed, out of range
// or hostile: each is refused with the reason; a node's own share parses.
func TestParseShare(t *testing.T) {
	noBang := func(name string) error {
		if strings.Contains(name, "!") {
			return errors.New("not allowed")
		}
		return nil
	}
	many := func(n int, typing bool) string {
		var names []string
		for i := range n {
			if typing {
				names = append(names, fmt.Sprintf(`"p%d"`, i))
			} else {
				names = append(names, fmt.Sprintf(`{"name":"p%d","streams":1}`, i))
			}
		}
		if typing {
			return `{"people":[],"anonymous":0,"typing":[` + strings.Join(names, ",") + `]}`
		}
		return `{"people":[` + strings.Join(names, ",") + `],"anonymous":0,"typing":[]}`
	}
	for _, tt := range []struct{ name, data, want string }{
		{"not JSON", `people`, "invalid character"},
		{"an array", `[]`, "cannot unmarshal array"},
		{"unknown field", `{"people":[],"anonymous":0,"admin":true}`, `unknown field "admin"`},
		{"two objects", `{"people":[]} {"people":[]}`, "data after the object"},
		{"negative anonymous", `{"people":[],"anonymous":-1}`, "count out of range"},
		{"huge anonymous", `{"people":[],"anonymous":99999999999}`, "count out of range"},
		{"more streams than people", `{"people":[],"more_people":5,"more_streams":4}`, "count out of range"},
		{"zero streams", `{"people":[{"name":"ann","streams":0}]}`, `"ann" has 0 streams`},
		{"name twice", `{"people":[{"name":"ann","streams":1},{"name":"ann","streams":1}]}`, `"ann" listed twice`},
		{"empty name", `{"people":[{"name":"","streams":1}]}`, "an empty name"},
		{"name the rules refuse", `{"people":[{"name":"ann!","streams":1}]}`, `"ann!": not allowed`},
		{"typing name refused", `{"people":[],"typing":["bob!"]}`, `"bob!": not allowed`},
		{"typing twice", `{"people":[],"typing":["bob","bob"]}`, `"bob" listed twice`},
		{"too many names", many(MaxShareNames+1, false), "more than 5000"},
		{"too many typing", many(maxTyping+1, true), "typing names, more than 1000"},
	} {
		_, err := ParseShare([]byte(tt.data), noBang)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseShare = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	b := NewBoard(time.Second, 10)
	b.Join("Ann")
	b.Join("")
	b.Typing("Ann", time.Now())
	if _, err := ParseShare(b.LocalShare(), noBang); err != nil {
		t.Errorf("a node's own share: %v", err)
	}
	if _, err := ParseShare([]byte(many(MaxShareNames, false)), noBang); err != nil {
		t.Errorf("a share of %d names: %v", MaxShareNames, err)
	}
}
