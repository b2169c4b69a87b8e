package main

// Tests of moderation (the admin key): deletions reach live and resumed
// streams and survive kill -9 and compaction; bans cut open streams, are
// keyed like the limits, refuse bad requests, are kept in a file the server
// checks at start, and are refused cross-site.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"chat/internal/ban"
	"chat/internal/roomlog"
	"chat/internal/sse"
)

// ordered drops the presence and typing events from evs, which are not
// part of the ordered stream.
func ordered(evs []sse.Event) []sse.Event {
	var out []sse.Event
	for _, ev := range evs {
		if ev.Type != "presence" && ev.Type != "typing" {
			out = append(out, ev)
		}
	}
	return out
}

// checkDeleteEvent fails the test unless ev is the delete event d.
func checkDeleteEvent(t *testing.T, what string, ev sse.Event, d roomlog.Deletion) {
	t.Helper()
	if ev.Type != "delete" || ev.ID != d.ID || string(ev.Data) != `{"id":"`+d.Delete+`"}` {
		t.Errorf("%s: event %+v, want delete id %s data {\"id\":%q}", what, ev, d.ID, d.Delete)
	}
}

// TestDeleteReachesLiveAndResumedStreams: a deletion is an ordered event
// with its own id; a live stream gets it at once, a client that was away
// gets it on resume, a new client never sees the message, and /history no
// longer lists it. Only the admin key may delete.
func TestDeleteReachesLiveAndResumedStreams(t *testing.T) {
	ts := startServer(t, "-room-key", "room", "-admin-key", "boss")
	h := bearer("room")
	var msgs []Message
	for i := range 3 {
		r := postMsg(t, http.DefaultClient, ts.URL, "u", fmt.Sprintf("m%d", i), h)
		var m Message
		if r.status != http.StatusCreated || json.Unmarshal(r.body, &m) != nil {
			t.Fatalf("post: %d %s", r.status, r.body)
		}
		msgs = append(msgs, m)
	}
	live := subscribeOpts(t, ts.URL, streamOpts{lastID: "", header: h})
	live.messages(t, 3)

	// Refused deletions change nothing.
	check401(t, "delete without a key", deleteMsg(t, ts.URL, msgs[1].ID, nil))
	if r := deleteMsg(t, ts.URL, msgs[1].ID, h); r.status != http.StatusForbidden || r.errorText() == "" {
		t.Errorf("delete with the room key: %d %s, want 403", r.status, r.body)
	}
	for _, tt := range []struct {
		id   string
		want int
	}{
		{"garbage", 400},
		{msgs[2].ID + "0", 404},
		{"1-1", 404},
	} {
		if r := deleteMsg(t, ts.URL, tt.id, admin()); r.status != tt.want || r.errorText() == "" {
			t.Errorf("delete %s: %d %s, want %d", tt.id, r.status, r.body, tt.want)
		}
	}

	d := deletion(t, deleteMsg(t, ts.URL, msgs[1].ID, admin()))
	if d.Delete != msgs[1].ID || !idLess(t, msgs[2].ID, d.ID) {
		t.Errorf("deletion %+v: want delete %s and an id after %s", d, msgs[1].ID, msgs[2].ID)
	}
	checkDeleteEvent(t, "live stream", live.nextEvent(t), d)
	if r := deleteMsg(t, ts.URL, msgs[1].ID, admin()); r.status != http.StatusNotFound {
		t.Errorf("second delete: %d, want 404", r.status)
	}
	if r := deleteMsg(t, ts.URL, d.ID, admin()); r.status != http.StatusNotFound {
		t.Errorf("deleting the deletion: %d, want 404", r.status)
	}

	// A client that saw m0..m2 and was away resumes: it gets the deletion.
	resumed := subscribeOpts(t, ts.URL, streamOpts{lastID: msgs[2].ID, header: h})
	checkDeleteEvent(t, "stream resumed after m2", resumed.nextEvent(t), d)
	resumed2 := subscribeOpts(t, ts.URL, streamOpts{lastID: msgs[0].ID, header: h})
	got, other := resumed2.messages(t, 1)
	other = ordered(other)
	if got[0].ID != msgs[2].ID {
		t.Errorf("resume after m0: first message %s, want m2 %s (m1 is deleted)", got[0].ID, msgs[2].ID)
	}
	if len(other) != 0 {
		t.Errorf("resume after m0: events before m2: %+v", other)
	}
	checkDeleteEvent(t, "stream resumed after m0", resumed2.nextEvent(t), d)

	// A new client gets m0 and m2 and no deletion.
	fresh := subscribeOpts(t, ts.URL, streamOpts{lastID: "", header: h})
	got, other = fresh.messages(t, 2)
	other = ordered(other)
	if got[0].ID != msgs[0].ID || got[1].ID != msgs[2].ID || len(other) != 0 {
		t.Errorf("new client: %v and %+v, want m0 m2 only", ids(got), other)
	}
	if hist := historyIDs(t, ts.URL, h); strings.Join(hist, ",") != msgs[0].ID+","+msgs[2].ID {
		t.Errorf("/history after the delete: %v", hist)
	}
	// Messages go on after the deletion, on every stream.
	m3 := postMsg(t, http.DefaultClient, ts.URL, "u", "after", h)
	if m3.status != http.StatusCreated {
		t.Fatalf("post after delete: %d", m3.status)
	}
	for _, s := range []*subscriber{live, fresh} {
		if got, _ := s.messages(t, 1); got[0].Content != "after" {
			t.Errorf("after the deletion: %+v", got[0])
		}
	}
}

// TestResumedStreamGetsDeletion: the resumed stream of
// TestDeleteReachesLiveAndResumedStreams, checked on its own: after the
// last message it saw, its first event is the deletion.
func TestResumedStreamGetsDeletion(t *testing.T) {
	ts := startServer(t, "-admin-key", "boss")
	a, b := ts.post(t, "u", "a"), ts.post(t, "u", "b")
	d := deletion(t, deleteMsg(t, ts.URL, a.ID, admin()))
	s := subscribe(t, ts.URL, b.ID)
	checkDeleteEvent(t, "resumed after b", s.nextEvent(t), d)
}

// TestDeleteSurvivesKillAndCompaction runs the real binary with a tiny
// history, so the journal compacts: the deleted message's line is still in
// the compacted file, and the deletion's line after it keeps it deleted
// across kill -9 and restart; a stream resuming from before it gets the
// deletion.
func TestDeleteSurvivesKillAndCompaction(t *testing.T) {
	bin := chatBinary(t)
	journalPath := filepath.Join(t.TempDir(), "chat.jsonl")
	args := []string{"-data", journalPath, "-history", "5", "-admin-key", "boss"}
	p := startChatProc(t, bin, args...)
	var msgs []Message
	for i := range 9 {
		msgs = append(msgs, p.post(t, "u", fmt.Sprintf("m%d", i)))
	}
	d := deletion(t, deleteMsg(t, p.URL, msgs[7].ID, admin())) // journal line 10
	last := p.post(t, "u", "m9")                               // line 11: compaction keeps the last 5
	p.kill(t)

	data, err := os.ReadFile(journalPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 6 || strings.Contains(string(data), `"content":"m0"`) || !strings.Contains(string(data), `"content":"m7"`) || !strings.Contains(string(data), `"delete":"`+msgs[7].ID+`"`) {
		t.Fatalf("journal was not compacted as expected (want at most 6 lines, no m0, and m7 and its deletion):\n%s", data)
	}

	p = startChatProc(t, bin, args...)
	hist := historyIDs(t, p.URL, nil)
	if strings.Join(hist, ",") != msgs[6].ID+","+msgs[8].ID+","+last.ID {
		t.Errorf("history after kill -9: %v, want m6 m8 m9 (m7 deleted)", hist)
	}
	s := subscribe(t, p.URL, msgs[6].ID)
	got, _ := s.messages(t, 1)
	if got[0].ID != msgs[8].ID {
		t.Errorf("resume after m6: %s, want m8", got[0].ID)
	}
	checkDeleteEvent(t, "resume after restart", s.nextEvent(t), d)
	if got, _ := s.messages(t, 1); got[0].ID != last.ID {
		t.Errorf("after the deletion: %s, want m9", got[0].ID)
	}
	if r := deleteMsg(t, p.URL, msgs[7].ID, admin()); r.status != http.StatusNotFound {
		t.Errorf("deleting again after restart: %d, want 404", r.status)
	}
	// A new message goes on after the deletion's id.
	if m := p.post(t, "u", "m10"); !idLess(t, last.ID, m.ID) {
		t.Errorf("id after restart %s does not follow %s", m.ID, last.ID)
	}
}

// TestBanCutsOpenStream: a ban closes the banned address's open streams at
// once and refuses its posts and new streams with 403; other addresses
// are untouched; bans are listed, lifted, and kept across a restart.
func TestBanCutsOpenStream(t *testing.T) {
	data := filepath.Join(t.TempDir(), "chat.jsonl")
	ts := startServer(t, "-admin-key", "boss", "-data", data)
	bad, good := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")
	banned := subscribeOpts(t, ts.URL, streamOpts{client: bad})
	other := subscribeOpts(t, ts.URL, streamOpts{client: good})
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, banned.resp.Body)
		ended <- err
	}()

	r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/bans", "application/json", `{"addr":"127.0.0.2","for":"1h"}`, admin())
	var b banJSON
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &b) != nil || b.Addr != "127.0.0.2" || b.Until == nil || b.StreamsClosed == nil || *b.StreamsClosed != 1 {
		t.Fatalf("POST /bans: %d %s", r.status, r.body)
	}
	if d := time.Until(*b.Until); d < 59*time.Minute || d > time.Hour {
		t.Errorf("ban until %v, want an hour from now", b.Until)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("banned stream ended with %v, want a clean end", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the banned address's open stream was not closed")
	}
	if r := postMsg(t, bad, ts.URL, "x", "y", nil); r.status != http.StatusForbidden || r.errorText() == "" {
		t.Errorf("post from a banned address: %d %s, want 403", r.status, r.body)
	}
	if r := mustSend(t, bad, "GET", ts.URL+"/stream", "", "", nil); r.status != http.StatusForbidden || r.errorText() == "" {
		t.Errorf("stream from a banned address: %d %s, want 403", r.status, r.body)
	}
	m := postMsg(t, good, ts.URL, "ok", "still here", nil)
	if m.status != http.StatusCreated {
		t.Fatalf("post from another address: %d", m.status)
	}
	if got, _ := other.messages(t, 1); got[0].Content != "still here" {
		t.Errorf("other stream: %+v", got[0])
	}

	list := mustSend(t, http.DefaultClient, "GET", ts.URL+"/bans", "", "", admin())
	if !strings.Contains(string(list.body), `"addr":"127.0.0.2"`) {
		t.Errorf("GET /bans: %s", list.body)
	}
	// Kept across a restart.
	ts.stop(t)
	ts = startServer(t, "-admin-key", "boss", "-data", data)
	if r := postMsg(t, bad, ts.URL, "x", "y", nil); r.status != http.StatusForbidden {
		t.Errorf("post from a banned address after a restart: %d, want 403", r.status)
	}
	if r := mustSend(t, http.DefaultClient, "DELETE", ts.URL+"/bans/127.0.0.2", "", "", admin()); r.status != http.StatusNoContent {
		t.Fatalf("DELETE /bans/127.0.0.2: %d %s", r.status, r.body)
	}
	if r := mustSend(t, http.DefaultClient, "DELETE", ts.URL+"/bans/127.0.0.2", "", "", admin()); r.status != http.StatusNotFound {
		t.Errorf("lifting it again: %d, want 404", r.status)
	}
	if r := postMsg(t, bad, ts.URL, "x", "y", nil); r.status != http.StatusCreated {
		t.Errorf("post after the ban was lifted: %d, want 201", r.status)
	}
}

// TestBanKeyedLikeLimits: behind a trusted proxy the ban applies to the
// forwarded address, and an IPv6 address bans its /64.
func TestBanKeyedLikeLimits(t *testing.T) {
	ts := startServer(t, "-admin-key", "boss", "-trusted-proxies", "127.0.0.1")
	r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/bans", "application/json", `{"addr":"2001:db8::5"}`, admin())
	if r.status != http.StatusCreated || !strings.Contains(string(r.body), `"addr":"2001:db8::/64","until":null`) {
		t.Fatalf("ban on an IPv6 address: %d %s, want its /64 without end", r.status, r.body)
	}
	r = mustSend(t, http.DefaultClient, "POST", ts.URL+"/bans", "application/json", `{"addr":"198.51.100.0/24","for":"10m"}`, admin())
	if r.status != http.StatusCreated {
		t.Fatalf("ban on a prefix: %d %s", r.status, r.body)
	}
	for _, tt := range []struct {
		xff  string
		want int
	}{
		{"2001:db8::7", 403},
		{"2001:db8::ffff:1", 403},
		{"2001:db8:0:1::1", 201},
		{"198.51.100.9", 403},
		{"198.51.101.9", 201},
		{"198.51.100.9, 203.0.113.1", 201}, // the right-most untrusted hop counts
	} {
		if r := postMsg(t, http.DefaultClient, ts.URL, "x", "y", map[string]string{"X-Forwarded-For": tt.xff}); r.status != tt.want {
			t.Errorf("post forwarded for %s: %d, want %d", tt.xff, r.status, tt.want)
		}
	}
	// The proxy itself is not banned.
	if r := postMsg(t, http.DefaultClient, ts.URL, "x", "y", nil); r.status != http.StatusCreated {
		t.Errorf("post from the proxy itself: %d", r.status)
	}
}

// TestBanRequests: bad POST /bans bodies get clear errors and ban nothing;
// the moderation routes need the admin key.
func TestBanRequests(t *testing.T) {
	ts := startServer(t, "-room-key", "room", "-admin-key", "boss")
	for _, tt := range []struct {
		name, contentType, body string
		want                    int
	}{
		{"no addr", "application/json", `{"for":"1h"}`, 400},
		{"bad addr", "application/json", `{"addr":"example.com"}`, 400},
		{"bad prefix", "application/json", `{"addr":"10.0.0.0/33"}`, 400},
		{"bad duration", "application/json", `{"addr":"10.0.0.1","for":"soon"}`, 400},
		{"negative duration", "application/json", `{"addr":"10.0.0.1","for":"-1h"}`, 400},
		{"ended at once", "application/json", `{"addr":"10.0.0.1","for":"1ns"}`, 400},
		{"mapped prefix beyond IPv4", "application/json", `{"addr":"::ffff:10.9.9.17/80"}`, 400},
		{"IPv4-compatible address", "application/json", `{"addr":"::10.9.9.18"}`, 400},
		{"unknown field", "application/json", `{"addr":"10.0.0.1","why":"spam"}`, 400},
		{"addr not a string", "application/json", `{"addr":7}`, 400},
		{"empty", "application/json", ``, 400},
		{"form", "application/x-www-form-urlencoded", `addr=10.0.0.1`, 415},
		{"huge", "application/json", `{"addr":"` + strings.Repeat("1", 5000) + `"}`, 413},
	} {
		r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/bans", tt.contentType, tt.body, admin())
		if r.status != tt.want || r.errorText() == "" {
			t.Errorf("POST /bans %s: %d %s, want %d with a JSON error", tt.name, r.status, r.body, tt.want)
		}
	}
	if list := mustSend(t, http.DefaultClient, "GET", ts.URL+"/bans", "", "", admin()); strings.TrimSpace(string(list.body)) != `{"bans":[]}` {
		t.Errorf("bans after bad requests: %s", list.body)
	}
	if r := mustSend(t, http.DefaultClient, "DELETE", ts.URL+"/bans/not-an-ip", "", "", admin()); r.status != http.StatusBadRequest {
		t.Errorf("DELETE /bans/not-an-ip: %d, want 400", r.status)
	}
	for _, rt := range []struct{ method, path, body string }{
		{"GET", "/bans", ""},
		{"POST", "/bans", `{"addr":"10.0.0.1"}`},
		{"DELETE", "/bans/10.0.0.1", ""},
		{"DELETE", "/messages/1-1", ""},
	} {
		check401(t, rt.method+" "+rt.path+" without a key", mustSend(t, http.DefaultClient, rt.method, ts.URL+rt.path, "application/json", rt.body, nil))
		if r := mustSend(t, http.DefaultClient, rt.method, ts.URL+rt.path, "application/json", rt.body, bearer("room")); r.status != http.StatusForbidden {
			t.Errorf("%s %s with the room key: %d, want 403", rt.method, rt.path, r.status)
		}
		member := sessionCookie(t, login(t, http.DefaultClient, ts.URL, "room")).Value
		if r := mustSend(t, http.DefaultClient, rt.method, ts.URL+rt.path, "application/json", rt.body, withCookie(member)); r.status != http.StatusForbidden {
			t.Errorf("%s %s with a member session: %d, want 403", rt.method, rt.path, r.status)
		}
	}
	adm := sessionCookie(t, login(t, http.DefaultClient, ts.URL, "boss")).Value
	if r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/bans", "", "", withCookie(adm)); r.status != http.StatusOK {
		t.Errorf("GET /bans with an admin session: %d, want 200", r.status)
	}
}

// TestBanMappedAddress checks that an IPv4-mapped address bans the IPv4
// address it maps (a client from it gets 403), and that a ban of one
// second is taken.
func TestBanMappedAddress(t *testing.T) {
	ts := startServer(t, "-admin-key", "boss")
	r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/bans", "application/json", `{"addr":"::ffff:127.0.0.2/128","for":"1h"}`, admin())
	if r.status != http.StatusCreated || !strings.Contains(string(r.body), `"addr":"127.0.0.2"`) {
		t.Fatalf("ban on ::ffff:127.0.0.2/128: %d %s, want 201 for 127.0.0.2", r.status, r.body)
	}
	if r := postMsg(t, clientFrom(t, "127.0.0.2"), ts.URL, "u", "hi", nil); r.status != http.StatusForbidden {
		t.Errorf("post from the banned IPv4 address: %d, want 403", r.status)
	}
	if r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/bans", "application/json", `{"addr":"127.0.0.3","for":"1s"}`, admin()); r.status != http.StatusCreated {
		t.Errorf("a one-second ban: %d %s, want 201", r.status, r.body)
	}
}

// TestBansFileRefusedAtStart checks that the server does not start with a
// bans file it cannot use (unreadable, or with more bans than it keeps),
// and that its error names the file and how to move it aside.
func TestBansFileRefusedAtStart(t *testing.T) {
	over := make([]string, ban.MaxBans+1)
	for i := range over {
		over[i] = fmt.Sprintf(`{"addr":"10.%d.%d.%d","until":null}`, i>>16, (i>>8)&255, i&255)
	}
	for _, tt := range []struct {
		name  string
		setup func(path string) error
	}{
		{"unreadable", func(path string) error { return os.Mkdir(path, 0o700) }},
		{"over the cap", func(path string) error {
			return os.WriteFile(path, []byte("["+strings.Join(over, ",")+"]"), 0o600)
		}},
	} {
		data := filepath.Join(t.TempDir(), "chat.jsonl")
		bans := data + ".bans"
		if err := tt.setup(bans); err != nil {
			t.Fatal(err)
		}
		_, err := runRefused(t, "-data", data, "-admin-key", "boss")
		if err == nil || !strings.Contains(err.Error(), "mv "+bans+" "+bans+".bad") {
			t.Errorf("%s: run = %v, want an error saying how to move %s aside", tt.name, err, bans)
		}
	}
}

// TestCrossSiteModeration: the cross-site protection of /post covers
// DELETE /messages/{id} and /bans.
func TestCrossSiteModeration(t *testing.T) {
	ts := startServer(t, "-admin-key", "boss")
	m := ts.post(t, "u", "keep me")
	cross := admin()
	cross["Sec-Fetch-Site"] = "cross-site"
	cross["Origin"] = "https://evil.example"
	for _, rt := range []struct{ method, path, body string }{
		{"DELETE", "/messages/" + m.ID, ""},
		{"POST", "/bans", `{"addr":"10.0.0.1"}`},
		{"DELETE", "/bans/10.0.0.1", ""},
	} {
		r := mustSend(t, http.DefaultClient, rt.method, ts.URL+rt.path, "application/json", rt.body, cross)
		if r.status != http.StatusForbidden || r.errorText() == "" {
			t.Errorf("cross-site %s %s: %d %s, want 403", rt.method, rt.path, r.status, r.body)
		}
	}
	if hist := historyIDs(t, ts.URL, nil); len(hist) != 1 {
		t.Errorf("a cross-site delete went through: history %v", hist)
	}
	if list := mustSend(t, http.DefaultClient, "GET", ts.URL+"/bans", "", "", admin()); strings.TrimSpace(string(list.body)) != `{"bans":[]}` {
		t.Errorf("a cross-site ban went through: %s", list.body)
	}
}
