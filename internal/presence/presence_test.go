package presence

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// rosterJSON is the decoded form of Roster.JSON.
type rosterJSON struct {
	People []struct {
		Name    string `json:"name"`
		Streams int    `json:"streams"`
	} `json:"people"`
	Anonymous   int `json:"anonymous"`
	PeopleTotal int `json:"people_total"`
}

func decode(t *testing.T, b []byte) rosterJSON {
	t.Helper()
	var v rosterJSON
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("roster JSON %s: %v", b, err)
	}
	return v
}

func TestRosterCountsNamesOnce(t *testing.T) {
	r := NewRoster()
	for _, n := range []string{"bob", "alice", "", "Alice", "bob", "", "carol", ""} {
		r.Add(n)
	}
	r.Remove("carol")
	r.Remove("")
	r.Remove("nobody")
	got := string(r.JSON(-1))
	want := `{"people":[{"name":"Alice","streams":1},{"name":"alice","streams":1},{"name":"bob","streams":2}],"anonymous":2,"people_total":3}`
	if got != want {
		t.Errorf("JSON(-1) =\n%s\nwant\n%s", got, want)
	}
	if r.People() != 3 || r.Anonymous() != 2 {
		t.Errorf("People, Anonymous = %d, %d; want 3, 2", r.People(), r.Anonymous())
	}
	r.Remove("bob")
	if v := decode(t, r.JSON(-1)); len(v.People) != 3 || v.People[2].Streams != 1 {
		t.Errorf("after one of bob's two streams left: %+v", v)
	}
	r.Remove("bob")
	if v := decode(t, r.JSON(-1)); len(v.People) != 2 || v.PeopleTotal != 2 {
		t.Errorf("after bob's last stream left: %+v", v)
	}
	for range 5 {
		r.Remove("")
	}
	if r.Anonymous() != 0 {
		t.Errorf("Anonymous = %d after removing more than there were", r.Anonymous())
	}
}

func TestRosterLimitKeepsTotals(t *testing.T) {
	r := NewRoster()
	for i := range 500 {
		r.Add(fmt.Sprintf("user%03d", 499-i))
	}
	r.Add("")
	v := decode(t, r.JSON(200))
	if len(v.People) != 200 || v.PeopleTotal != 500 || v.Anonymous != 1 {
		t.Fatalf("JSON(200): %d people listed, total %d, anonymous %d", len(v.People), v.PeopleTotal, v.Anonymous)
	}
	if v.People[0].Name != "user000" || v.People[199].Name != "user199" {
		t.Errorf("JSON(200) lists %s … %s, want user000 … user199", v.People[0].Name, v.People[199].Name)
	}
	if v := decode(t, r.JSON(0)); len(v.People) != 0 || v.PeopleTotal != 500 {
		t.Errorf("JSON(0): %+v", v)
	}
	if v := decode(t, r.JSON(-1)); len(v.People) != 500 {
		t.Errorf("JSON(-1) lists %d people, want 500", len(v.People))
	}
}

func TestRosterOrderMatchesSort(t *testing.T) {
	r := NewRoster()
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "B", "b", "é", "É", "z", "Z", "ß", "日", "1"}
	names := map[string]int{}
	for range 2000 {
		n := ""
		for range 1 + rng.IntN(3) {
			n += alphabet[rng.IntN(len(alphabet))]
		}
		if rng.IntN(3) == 0 && names[n] > 0 {
			r.Remove(n)
			names[n]--
			continue
		}
		r.Add(n)
		names[n]++
	}
	var want []string
	for n, c := range names {
		if c > 0 {
			want = append(want, n)
		}
	}
	slices.SortFunc(want, func(a, b string) int {
		if c := strings.Compare(strings.ToLower(a), strings.ToLower(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	v := decode(t, r.JSON(-1))
	var got []string
	for _, p := range v.People {
		got = append(got, p.Name)
		if p.Streams != names[p.Name] {
			t.Errorf("%q: streams %d, want %d", p.Name, p.Streams, names[p.Name])
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("order\n%q\nwant\n%q", got, want)
	}
}

func TestRosterJSONCache(t *testing.T) {
	r := NewRoster()
	r.Add("alice")
	a := r.JSON(10)
	if b := r.JSON(10); &a[0] != &b[0] {
		t.Error("JSON(10) re-encoded an unchanged roster")
	}
	full := r.JSON(-1)
	r.Add("bob")
	if got := string(r.JSON(-1)); got == string(full) || !strings.Contains(got, "bob") {
		t.Errorf("JSON(-1) after a change = %s", got)
	}
	if got := string(r.JSON(10)); !strings.Contains(got, "bob") {
		t.Errorf("JSON(10) after a change = %s", got)
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "alice", `q"uo\te`, "tab\tnl\ncr\r", "\x00\x1f\x7f", "<b>&", "日本語 🎉", "\u2028\u2029", "bad\xffutf8", "\u202eevil"} {
		got := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("AppendString(%q) = %s: not JSON: %v", s, got, err)
			continue
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if back != want {
			t.Errorf("AppendString(%q) decodes to %q, want %q", s, back, want)
		}
		if strings.ContainsAny(string(got), "\n\r\u2028\u2029") {
			t.Errorf("AppendString(%q) = %q holds a raw line break", s, got)
		}
	}
}

func TestTyping(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ty := NewTyping(5*time.Second, 3)
	if !ty.Start("bob", t0) || !ty.Start("Alice", t0.Add(time.Second)) {
		t.Fatal("Start of new names reported no change")
	}
	if ty.Start("bob", t0.Add(2*time.Second)) {
		t.Error("Start of a name already typing reported a change")
	}
	if got := string(ty.JSON(-1)); got != `{"typing":["Alice","bob"]}` {
		t.Errorf("JSON = %s", got)
	}
	if next, ok := ty.Next(); !ok || !next.Equal(t0.Add(6*time.Second)) {
		t.Errorf("Next = %v, %v; want Alice's expiry t0+6s", next, ok)
	}
	if ty.Expire(t0.Add(5 * time.Second)) {
		t.Error("bob expired although his expiry moved to t0+7s")
	}
	if !ty.Expire(t0.Add(6*time.Second)) || ty.Len() != 1 {
		t.Errorf("Alice did not expire at t0+6s (len %d)", ty.Len())
	}
	if !ty.Stop("bob") || ty.Stop("bob") || ty.Len() != 0 {
		t.Error("Stop did not remove bob exactly once")
	}
	if _, ok := ty.Next(); ok {
		t.Error("Next on an empty set reported an expiry")
	}
	if got := string(ty.JSON(-1)); got != `{"typing":[]}` {
		t.Errorf("empty JSON = %s", got)
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		ty.Start(n, t0)
	}
	if ty.Len() != 3 {
		t.Errorf("a set of at most 3 holds %d", ty.Len())
	}
	if got := string(ty.JSON(2)); got != `{"typing":["a","b"]}` {
		t.Errorf("JSON(2) = %s", got)
	}
}

func TestGate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := NewGate(time.Second)
	if g.Ready(t0) {
		t.Error("ready with nothing pending")
	}
	g.Changed()
	if !g.Ready(t0) {
		t.Fatal("the first change after a quiet time is not ready at once")
	}
	g.Sent(t0)
	g.Changed()
	if g.Ready(t0.Add(999 * time.Millisecond)) {
		t.Error("ready again within the interval")
	}
	if !g.Due().Equal(t0.Add(time.Second)) || !g.Ready(t0.Add(time.Second)) {
		t.Errorf("Due = %v, want t0+1s, and ready then", g.Due())
	}
	g.Sent(t0.Add(time.Second))
	if g.Pending() {
		t.Error("pending after Sent")
	}
}
