package main

// Tests of presence and typing: the hub's coalescing, names, leaves and
// slow-client policy under testing/synctest, and over loopback the roster on
// streams and GET /presence, POST /typing and its limits.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"chat/internal/config"
	"chat/internal/sse"
)

// typingEvent is the data of a typing event.
type typingEvent struct {
	Typing []string `json:"typing"`
}

// rawEvent is one block of a stream: its type ("message" by default),
// whether it had an id field, and its data.
type rawEvent struct {
	typ   string
	hasID bool
	data  string
}

// rawEvents parses SSE bytes into their blocks with the shared parser,
// keeping whether each had an id field.
func rawEvents(t *testing.T, b []byte) []rawEvent {
	t.Helper()
	r := sse.NewReader(bytes.NewReader(b))
	var out []rawEvent
	for {
		blk, err := r.Next()
		if err != nil {
			return out
		}
		out = append(out, rawEvent{typ: blk.Type, hasID: blk.HasID, data: string(blk.Data)})
	}
}

// hubEvents drains what is queued for c and returns its presence and typing
// events, failing on any that carries an id.
func hubEvents(t *testing.T, c *client) (roster []rosterEvent, typing []typingEvent) {
	t.Helper()
	for {
		select {
		case f, ok := <-c.frames():
			if !ok {
				return roster, typing
			}
			r, ty := decodeEvents(t, f.Data)
			roster, typing = append(roster, r...), append(typing, ty...)
		default:
			return roster, typing
		}
	}
}

// decodeEvents decodes the presence and typing events in b.
func decodeEvents(t *testing.T, b []byte) (roster []rosterEvent, typing []typingEvent) {
	t.Helper()
	for _, ev := range rawEvents(t, b) {
		if ev.typ != "presence" && ev.typ != "typing" {
			continue
		}
		if ev.hasID {
			t.Errorf("%s event carries an id: %q", ev.typ, b)
		}
		dec := json.NewDecoder(strings.NewReader(ev.data))
		dec.DisallowUnknownFields()
		var err error
		if ev.typ == "presence" {
			var r rosterEvent
			err = dec.Decode(&r)
			roster = append(roster, r)
		} else {
			var ty typingEvent
			err = dec.Decode(&ty)
			typing = append(typing, ty)
		}
		if err != nil {
			t.Errorf("%s event %q: %v", ev.typ, ev.data, err)
		}
	}
	return roster, typing
}

// startPresenceRoom runs a room with presence on (interval 1 s) in the
// current synctest bubble until the test ends.
func startPresenceRoom(t *testing.T, cfg RoomConfig) (*ChatRoom, *Stats) {
	t.Helper()
	if cfg.PresenceInterval == 0 {
		cfg.PresenceInterval = time.Second
	}
	if cfg.PresenceNames == 0 {
		cfg.PresenceNames = config.DefaultPresenceNames
	}
	if cfg.ClientBuffer == 0 {
		cfg.ClientBuffer = 1024
	}
	_, room := startRoom(t, cfg)
	return room, room.stats
}

// A burst of joins costs each stream one or two presence events, not one
// per join; the roster is complete after one interval, and nothing more is
// sent while it does not change.
func TestHubPresenceCoalescesJoins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		room, stats := startPresenceRoom(t, RoomConfig{})
		ctx := t.Context()
		watcher, head, err := room.Join(ctx, "w", nil)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := decodeEvents(t, bytes.Join(head, nil))
		if len(r) != 1 || r[0].Anonymous != 1 || r[0].PeopleTotal != 0 {
			t.Fatalf("watcher's head: presence %+v, want one event with 1 anonymous", r)
		}
		// 500 joins over half a second.
		start := time.Now()
		for i := range 500 {
			if _, _, err := room.JoinAs(ctx, "a", fmt.Sprintf("user%03d", 499-i), nil); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		synctest.Wait()
		first, _ := hubEvents(t, watcher)
		time.Sleep(time.Until(start.Add(1500 * time.Millisecond)))
		synctest.Wait()
		second, _ := hubEvents(t, watcher)
		if got := len(first) + len(second); got < 1 || got > 2 {
			t.Fatalf("500 joins cost the watcher %d presence events, want 1 or 2", got)
		}
		last := slices.Concat(first, second)
		final := last[len(last)-1]
		if final.PeopleTotal != 500 || final.Anonymous != 1 || len(final.People) != config.DefaultPresenceNames {
			t.Errorf("after %v: people_total %d, anonymous %d, %d names listed; want 500, 1, %d",
				time.Since(start), final.PeopleTotal, final.Anonymous, len(final.People), config.DefaultPresenceNames)
		}
		if n := final.names(); n[0] != "user000" || n[len(n)-1] != "user199" || !slices.IsSorted(n) {
			t.Errorf("listed names %s … %s, want user000 … user199 in order", n[0], n[len(n)-1])
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if r, _ := hubEvents(t, watcher); len(r) != 0 {
			t.Errorf("%d presence events while the roster did not change", len(r))
		}
		b, err := room.Presence(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var all rosterEvent
		if err := json.Unmarshal(b, &all); err != nil || len(all.People) != 500 {
			t.Errorf("Presence lists %d people (%v), want all 500", len(all.People), err)
		}
		if s := stats.Snapshot(); s.People != 500 || s.Anonymous != 1 || s.Clients != 501 {
			t.Errorf("stats people %d anonymous %d clients %d, want 500, 1, 501", s.People, s.Anonymous, s.Clients)
		}
	})
}

// A name is counted once however many streams carry it; a stream's head
// ends with the roster that includes it; a name leaves with its last stream,
// within one interval.
func TestHubPresenceNamesAndLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		room, stats := startPresenceRoom(t, RoomConfig{History: 10, Backlog: 10})
		ctx := t.Context()
		if _, err := room.Post(ctx, "x", "before"); err != nil {
			t.Fatal(err)
		}
		a1, head, _ := room.JoinAs(ctx, "a", "alice", nil)
		evs := rawEvents(t, bytes.Join(head, nil))
		if len(evs) != 3 || evs[1].typ != "message" || !evs[1].hasID || evs[2].typ != "presence" || a1.headEvents != 1 {
			t.Fatalf("head %q: want the preamble, the message, then the roster (headEvents %d)", bytes.Join(head, nil), a1.headEvents)
		}
		r, _ := decodeEvents(t, bytes.Join(head, nil))
		if got := fmt.Sprint(r[0].People); got != "[{alice 1}]" {
			t.Errorf("alice's own head lists %s", got)
		}
		a2, _, _ := room.JoinAs(ctx, "b", "alice", nil)
		bob, _, _ := room.JoinAs(ctx, "b", "Bob", nil)
		time.Sleep(time.Second)
		synctest.Wait()
		ev, _ := hubEvents(t, a1)
		if len(ev) == 0 || fmt.Sprint(ev[len(ev)-1].People) != "[{alice 2} {Bob 1}]" {
			t.Fatalf("alice's first stream got %+v, want alice ×2 and Bob", ev)
		}
		hubEvents(t, bob)
		room.Leave(a2)
		time.Sleep(time.Second)
		synctest.Wait()
		ev, _ = hubEvents(t, bob)
		if len(ev) != 1 || fmt.Sprint(ev[0].People) != "[{alice 1} {Bob 1}]" {
			t.Errorf("after one of alice's streams left, Bob got %+v", ev)
		}
		left := time.Now()
		room.Leave(a1)
		synctest.Wait()
		ev, _ = hubEvents(t, bob)
		for len(ev) == 0 && time.Since(left) <= time.Second {
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
			ev, _ = hubEvents(t, bob)
		}
		if len(ev) != 1 || fmt.Sprint(ev[0].People) != "[{Bob 1}]" {
			t.Errorf("within an interval of alice's last stream leaving, Bob got %+v", ev)
		}
		if s := stats.Snapshot(); s.People != 1 || s.Anonymous != 0 {
			t.Errorf("stats people %d anonymous %d, want 1, 0", s.People, s.Anonymous)
		}
	})
}

// Presence events go through the clients' queues under the slow-client
// policy: a client that never reads is cut when they fill its queue.
func TestHubPresenceSlowClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		room, stats := startPresenceRoom(t, RoomConfig{ClientBuffer: 2})
		ctx := t.Context()
		slow, _, _ := room.JoinAs(ctx, "s", "slow", nil)
		for i := range 4 {
			c, _, _ := room.JoinAs(ctx, "a", fmt.Sprint("p", i), nil)
			time.Sleep(time.Second)
			synctest.Wait()
			room.Leave(c)
		}
		n := 0
		for range slow.frames() { // closed by the hub: the loop ends
			n++
		}
		synctest.Wait()
		if n != 2 {
			t.Errorf("slow client kept %d frames, want its queue's 2", n)
		}
		if s := stats.Snapshot(); s.SlowDisconnects != 1 || s.SlowDropped != 0 || s.People != 0 {
			t.Errorf("stats: %d slow disconnects, %d messages dropped, %d people; want 1, 0, 0", s.SlowDisconnects, s.SlowDropped, s.People)
		}
	})
}

// Typing: a name appears at once, further changes wait for the interval,
// a name expires 5 s after its last notice, and a message from the name
// clears it in the same write.
func TestHubTyping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		room, stats := startPresenceRoom(t, RoomConfig{History: 10})
		ctx := t.Context()
		w, _, _ := room.Join(ctx, "w", nil)
		synctest.Wait()
		hubEvents(t, w)

		start := time.Now()
		room.Typing(ctx, "alice")
		synctest.Wait()
		_, ty := hubEvents(t, w)
		if len(ty) != 1 || fmt.Sprint(ty[0].Typing) != "[alice]" {
			t.Fatalf("at once: typing events %+v, want [alice]", ty)
		}
		time.Sleep(100 * time.Millisecond)
		room.Typing(ctx, "bob")
		room.Typing(ctx, "alice") // already typing: no change
		time.Sleep(850 * time.Millisecond)
		synctest.Wait()
		if _, ty := hubEvents(t, w); len(ty) != 0 {
			t.Errorf("a second typing event %v after %v, within the 1 s interval", ty, time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		if _, ty := hubEvents(t, w); len(ty) != 1 || fmt.Sprint(ty[0].Typing) != "[alice bob]" {
			t.Errorf("after 1 s: typing events %+v, want [alice bob]", ty)
		}
		// bob says again that he types; alice's last notice was at +0.1 s,
		// so she leaves the set at +5.1 s.
		time.Sleep(time.Until(start.Add(3 * time.Second)))
		room.Typing(ctx, "bob")
		time.Sleep(time.Until(start.Add(5100*time.Millisecond)) - time.Millisecond)
		synctest.Wait()
		if _, ty := hubEvents(t, w); len(ty) != 0 {
			t.Errorf("typing event %v before alice's 5 s were up", ty)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if _, ty := hubEvents(t, w); len(ty) != 1 || fmt.Sprint(ty[0].Typing) != "[bob]" {
			t.Errorf("at +5.1 s: typing events %+v, want [bob]", ty)
		}
		// bob's message clears him in the same frame.
		time.Sleep(time.Second)
		m, err := room.Post(ctx, "bob", "hi")
		if err != nil {
			t.Fatal(err)
		}
		f := <-w.frames()
		evs := rawEvents(t, f.Data)
		if len(evs) != 2 || evs[0].typ != "message" || !strings.Contains(evs[0].data, m.ID) || evs[1].typ != "typing" || evs[1].data != `{"typing":[]}` {
			t.Errorf("bob's message frame = %q, want the message then an empty typing set", f.Data)
		}
		if f.N != 1 {
			t.Errorf("frame counts %d messages, want 1", f.N)
		}
		if s := stats.Snapshot(); s.MessagesPosted != 1 || s.HistorySize != 1 {
			t.Errorf("typing counted as messages: %d posted, history %d", s.MessagesPosted, s.HistorySize)
		}
		// A new stream gets the typing set after its roster when someone types.
		room.Typing(ctx, "carol")
		_, head, _ := room.Join(ctx, "n", nil)
		evs = rawEvents(t, bytes.Join(head, nil))
		if last := evs[len(evs)-1]; last.typ != "typing" || last.data != `{"typing":["carol"]}` || evs[len(evs)-2].typ != "presence" {
			t.Errorf("new stream's head %q: want presence then typing [carol]", bytes.Join(head, nil))
		}
	})
}

// Many names typing at once still cost one typing event per interval.
func TestHubTypingAtMostOncePerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		room, _ := startPresenceRoom(t, RoomConfig{})
		ctx := t.Context()
		w, _, _ := room.Join(ctx, "w", nil)
		var times []time.Duration
		start := time.Now()
		for i := range 50 {
			room.Typing(ctx, fmt.Sprint("t", i))
			synctest.Wait()
			if _, ty := hubEvents(t, w); len(ty) > 0 {
				times = append(times, time.Since(start))
			}
			time.Sleep(100 * time.Millisecond)
		}
		for i := 1; i < len(times); i++ {
			if times[i]-times[i-1] < time.Second {
				t.Errorf("typing events at %v and %v: less than 1 s apart", times[i-1], times[i])
			}
		}
		if len(times) < 4 || len(times) > 6 {
			t.Errorf("%d typing events in 5 s of changes, want about 5: %v", len(times), times)
		}
	})
}

// With PresenceInterval zero the hub sends no presence or typing events
// but still keeps the roster.
func TestHubPresenceOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		room := NewChatRoom(RoomConfig{}, NewStats())
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go room.Run(ctx)
		w, head, _ := room.JoinAs(ctx, "w", "alice", nil)
		room.Typing(ctx, "alice")
		time.Sleep(3 * time.Second)
		synctest.Wait()
		r, ty := hubEvents(t, w)
		hr, _ := decodeEvents(t, bytes.Join(head, nil))
		if len(r)+len(ty)+len(hr) != 0 {
			t.Errorf("presence off, yet %d presence and %d typing events", len(r)+len(hr), len(ty))
		}
		if b, _ := room.Presence(ctx); !strings.Contains(string(b), `"alice"`) {
			t.Errorf("Presence = %s, want alice", b)
		}
	})
}

// ---------------------------------------------------------------- end to end

// presenceServer starts the server with presence events every 100 ms.
func presenceServer(t *testing.T, flags ...string) *testServer {
	t.Helper()
	return startServer(t, append([]string{"-presence-interval", "100ms"}, flags...)...)
}

// namedStream opens GET /stream?name=name ("" for none) and returns the
// open stream.
func namedStream(t *testing.T, base, name string) *subscriber {
	t.Helper()
	var o streamOpts
	if name != "" {
		o.query = "?name=" + url.QueryEscape(name)
	}
	return subscribeOpts(t, base, o)
}

// waitRoster reads presence events until want(roster) holds.
func (s *subscriber) waitRoster(t *testing.T, what string, want func(rosterEvent) bool) rosterEvent {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ev := s.nextOf(t, "presence")
		var r rosterEvent
		if err := json.Unmarshal(ev.Data, &r); err != nil {
			t.Fatalf("presence event %q: %v", ev.Data, err)
		}
		if want(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no presence event with %s; last %+v", what, r)
		}
	}
}

func TestStreamNameValidation(t *testing.T) {
	ts := presenceServer(t)
	for _, tt := range []struct{ query, want string }{
		{"name=", "name is required"},
		{"name=%20%20", "name is required"},
		{"name=" + strings.Repeat("x", 33), "longer than 32"},
		{"name=a%07b", "control characters"},
		{"name=a%0Ab", "control characters"},
		{"name=%FF", "not valid UTF-8"},
		{"name=a&name=b", "more than once"},
		{"name=a%E2%80%AEb", "bidirectional control"},
		{"name=a%E2%80%8Bb", "zero-width"},
	} {
		resp, err := http.Get(ts.URL + "/stream?" + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK { // a stream: never read it to the end
			resp.Body.Close()
			t.Errorf("GET /stream?%s: 200, want 400 saying %q", tt.query, tt.want)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(b), tt.want) {
			t.Errorf("GET /stream?%s: %d %q %s, want 400 with a JSON error saying %q", tt.query, resp.StatusCode, resp.Header.Get("Content-Type"), b, tt.want)
		}
	}
	if st := ts.stats(t); st.ConnectionsTotal != 0 || st.People != 0 {
		t.Errorf("refused streams counted: %d connections, %d people", st.ConnectionsTotal, st.People)
	}
	// Trimmed, and 32 characters of any script are fine.
	s := namedStream(t, ts.URL, "  "+strings.Repeat("é", 32)+" ")
	r := s.waitRoster(t, "the long name", func(r rosterEvent) bool { return r.PeopleTotal == 1 })
	if r.People[0].Name != strings.Repeat("é", 32) {
		t.Errorf("roster name %q, want it trimmed", r.People[0].Name)
	}
}

// Streams with names make the roster: GET /presence, presence events on
// every stream (without ids, after the backlog), /stats and /metrics; a
// closed stream leaves it within the interval.
func TestPresenceEndToEnd(t *testing.T) {
	ts := presenceServer(t)
	m := ts.post(t, "x", "history")
	watcher := namedStream(t, ts.URL, "")
	// The head: the message, then the roster, which does not move the id.
	msgs, _ := watcher.messages(t, 1)
	if msgs[0].ID != m.ID {
		t.Fatalf("backlog %v, want %s", ids(msgs), m.ID)
	}
	ev := watcher.nextOf(t, "presence")
	if watcher.sse.LastEventID() != m.ID || ev.ID != m.ID {
		t.Errorf("after the presence event the last event id is %q, want %q (unchanged)", watcher.sse.LastEventID(), m.ID)
	}
	if string(ev.Data) != `{"people":[],"anonymous":1,"people_total":0}` {
		t.Errorf("watcher's first roster %s", ev.Data)
	}

	alice1 := namedStream(t, ts.URL, "alice")
	namedStream(t, ts.URL, "alice")
	bob := namedStream(t, ts.URL, "Bob")
	want := `[{alice 2} {Bob 1}]`
	r := watcher.waitRoster(t, want, func(r rosterEvent) bool { return fmt.Sprint(r.People) == want })
	if r.Anonymous != 1 || r.PeopleTotal != 2 {
		t.Errorf("roster %+v, want 1 anonymous, 2 people", r)
	}
	alice1.waitRoster(t, want, func(r rosterEvent) bool { return fmt.Sprint(r.People) == want })
	if got := getPresence(t, ts.URL); fmt.Sprint(got.People) != want || got.Anonymous != 1 || got.PeopleTotal != 2 {
		t.Errorf("GET /presence = %+v", got)
	}
	if st := ts.stats(t); st.People != 2 || st.Anonymous != 1 || st.Clients != 4 {
		t.Errorf("/stats people %d anonymous %d clients %d, want 2, 1, 4", st.People, st.Anonymous, st.Clients)
	}
	metrics := string(get(t, ts.URL+"/metrics").body)
	for _, line := range []string{"chat_people 2\n", "chat_anonymous_streams 1\n"} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	// Bob's stream closes: he leaves everyone's list.
	bob.close()
	closed := time.Now()
	r = watcher.waitRoster(t, "Bob gone", func(r rosterEvent) bool { return r.PeopleTotal == 1 })
	if fmt.Sprint(r.People) != "[{alice 2}]" {
		t.Errorf("after Bob left: %+v", r)
	}
	t.Logf("Bob left the roster %v after his stream closed", time.Since(closed))

	// A message after presence events arrives with the right id, and a
	// stream resuming from it replays no presence from history.
	m2 := ts.post(t, "alice", "after")
	if got, _ := watcher.messages(t, 1); got[0].ID != m2.ID {
		t.Errorf("next message %v, want %s", ids(got), m2.ID)
	}
	again := subscribe(t, ts.URL, m.ID)
	got, other := again.messages(t, 1)
	if got[0].ID != m2.ID || len(other) != 0 {
		t.Errorf("resume from %s: messages %v, other events %+v before them", m.ID, ids(got), other)
	}
	if ev := again.nextOf(t, "presence"); ev.ID != m2.ID {
		t.Errorf("presence after resume moved the id to %q", ev.ID)
	}
}

// A presence event lists at most -presence-names names; GET /presence lists
// everyone.
func TestPresenceNamesCap(t *testing.T) {
	ts := presenceServer(t, "-presence-names", "2")
	for _, n := range []string{"carol", "alice", "bob"} {
		namedStream(t, ts.URL, n)
	}
	w := namedStream(t, ts.URL, "")
	r := w.waitRoster(t, "3 people", func(r rosterEvent) bool { return r.PeopleTotal == 3 })
	if fmt.Sprint(r.names()) != "[alice bob]" {
		t.Errorf("capped event lists %v, want [alice bob]", r.names())
	}
	if got := getPresence(t, ts.URL); fmt.Sprint(got.names()) != "[alice bob carol]" {
		t.Errorf("GET /presence lists %v", got.names())
	}
}

// postTyping sends POST /typing and returns the status, a header and the body.
func postTyping(t *testing.T, base, contentType, body string, header map[string]string) (int, http.Header, string) {
	t.Helper()
	r := mustSend(t, http.DefaultClient, "POST", base+"/typing", contentType, body, header)
	return r.status, r.header, string(r.body)
}

// POST /typing shows the name on every stream until that person's message
// arrives; it is never stored or counted as a message.
func TestTypingEndToEnd(t *testing.T) {
	ts := presenceServer(t)
	w := namedStream(t, ts.URL, "watcher")
	if code, _, body := postTyping(t, ts.URL, "application/json", `{"username":" alice "}`, nil); code != 204 || body != "" {
		t.Fatalf("POST /typing: %d %q, want 204 and no body", code, body)
	}
	ev := w.nextOf(t, "typing")
	if string(ev.Data) != `{"typing":["alice"]}` || ev.ID != w.sse.LastEventID() {
		t.Errorf("typing event %+v", ev)
	}
	if code, _, _ := postTyping(t, ts.URL, "application/x-www-form-urlencoded", "username=bob", nil); code != 204 {
		t.Errorf("form POST /typing: %d", code)
	}
	ev = w.nextOf(t, "typing")
	if string(ev.Data) != `{"typing":["alice","bob"]}` {
		t.Errorf("typing event %s, want alice and bob", ev.Data)
	}
	m := ts.post(t, "alice", "done typing")
	if got, _ := w.messages(t, 1); got[0].ID != m.ID {
		t.Fatalf("message %v, want %s", ids(got), m.ID)
	}
	if ev := w.nextOf(t, "typing"); string(ev.Data) != `{"typing":["bob"]}` {
		t.Errorf("after alice's message: %s, want only bob", ev.Data)
	}
	st := ts.stats(t)
	if st.MessagesPosted != 1 || st.HistorySize != 1 || st.PostsRejected != 0 {
		t.Errorf("typing counted: %d messages, history %d, %d posts rejected", st.MessagesPosted, st.HistorySize, st.PostsRejected)
	}
}

// Bad POST /typing requests get a status and a JSON error, and show no one
// typing.
func TestTypingBadRequests(t *testing.T) {
	ts := presenceServer(t, "-typing-rate", "0")
	for _, tt := range []struct {
		name, contentType, body string
		header                  map[string]string
		status                  int
		want                    string
	}{
		{"empty JSON", "application/json", ``, nil, 400, "empty"},
		{"no name", "application/json", `{}`, nil, 400, "username is required"},
		{"blank", "application/json", `{"username":"  "}`, nil, 400, "username is required"},
		{"too long", "application/json", `{"username":"` + strings.Repeat("x", 33) + `"}`, nil, 400, "longer than 32"},
		{"control", "application/json", `{"username":"a\u0000"}`, nil, 400, "control characters"},
		{"bidi", "application/json", `{"username":"a\u202eb"}`, nil, 400, "bidirectional control"},
		{"case-mismatched key", "application/json", `{"USERNAME":"a"}`, nil, 400, "unknown field"},
		{"repeated key", "application/json", `{"username":"a","username":"b"}`, nil, 400, "more than once"},
		{"wrong type", "application/json", `{"username":5}`, nil, 400, "must be a string"},
		{"unknown field", "application/json", `{"username":"a","content":"x"}`, nil, 400, "unknown field"},
		{"two objects", "application/json", `{"username":"a"}{}`, nil, 400, "single JSON object"},
		{"form unknown", "application/x-www-form-urlencoded", `username=a&x=1`, nil, 400, "unknown field"},
		{"form twice", "application/x-www-form-urlencoded", `username=a&username=b`, nil, 400, "more than once"},
		{"form bad UTF-8", "application/x-www-form-urlencoded", `username=%FF`, nil, 400, "UTF-8"},
		{"text/plain", "text/plain", `alice`, nil, 415, "Content-Type"},
		{"too big", "application/json", `{"username":"` + strings.Repeat("x", 2000) + `"}`, nil, 413, "larger than"},
		{"cross-site", "application/json", `{"username":"eve"}`, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403, "cross-origin"},
	} {
		code, h, body := postTyping(t, ts.URL, tt.contentType, tt.body, tt.header)
		var e struct {
			Error string `json:"error"`
		}
		if code != tt.status || h.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, tt.want) {
			t.Errorf("%s: %d %q %s, want %d with a JSON error saying %q", tt.name, code, h.Get("Content-Type"), body, tt.status, tt.want)
		}
	}
	resp, err := http.Get(ts.URL + "/typing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /typing: %d Allow %q, want 405 POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// None of them reached the hub: a new stream's head has no typing event.
	w := namedStream(t, ts.URL, "")
	w.nextOf(t, "presence")
	ts.post(t, "x", "marker")
	_, other := w.messages(t, 1)
	for _, ev := range other {
		if ev.Type == "typing" {
			t.Errorf("a refused request showed someone typing: %s", ev.Data)
		}
	}
}

// POST /typing has its own per-address bucket: beyond it, 429 with
// Retry-After, while posting is unaffected.
func TestTypingRateLimit(t *testing.T) {
	ts := presenceServer(t, "-typing-rate", "1", "-typing-burst", "3", "-post-rate", "5")
	for i := range 3 {
		if code, _, body := postTyping(t, ts.URL, "application/json", `{"username":"alice"}`, nil); code != 204 {
			t.Fatalf("typing %d: %d %s", i, code, body)
		}
	}
	code, h, body := postTyping(t, ts.URL, "application/json", `{"username":"alice"}`, nil)
	if code != 429 || h.Get("Retry-After") != "1" || !strings.Contains(body, "slow down") {
		t.Errorf("typing beyond the burst: %d Retry-After %q %s, want 429 with Retry-After 1", code, h.Get("Retry-After"), body)
	}
	ts.post(t, "alice", "posting has its own bucket")
}

// A banned address cannot say that someone is typing, and its stream's
// name leaves the roster when the ban cuts the stream.
func TestTypingAndPresenceOfBannedAddress(t *testing.T) {
	ts := presenceServer(t, "-admin-key", "boss")
	bad := clientFrom(t, "127.0.0.2")
	req, _ := http.NewRequest("GET", ts.URL+"/stream?name=mallory", nil)
	resp, err := bad.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream from the soon banned address: %v %v", resp, err)
	}
	defer resp.Body.Close()
	w := namedStream(t, ts.URL, "")
	w.waitRoster(t, "mallory", func(r rosterEvent) bool { return fmt.Sprint(r.names()) == "[mallory]" })
	if r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/bans", "application/json", `{"addr":"127.0.0.2","for":"1h"}`, admin()); r.status != http.StatusCreated {
		t.Fatalf("POST /bans: %d %s", r.status, r.body)
	}
	w.waitRoster(t, "mallory gone", func(r rosterEvent) bool { return r.PeopleTotal == 0 })
	r := mustSend(t, bad, "POST", ts.URL+"/typing", "application/json", `{"username":"mallory"}`, nil)
	if r.status != http.StatusForbidden || r.errorText() == "" {
		t.Errorf("typing from a banned address: %d %s, want 403", r.status, r.body)
	}
}
