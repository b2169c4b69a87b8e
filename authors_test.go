package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"chat/internal/record"
	"chat/internal/roomlog"
	"chat/internal/sse"
	"chat/internal/stream"
)

// TestEditOwnMessage: the author edits their message (200 with it, marked
// edited); a live stream gets an "edit" event with its own id and the
// edited message, byte for byte; history and a new stream show the latest
// content with no edit event, and a stream that resumes from before the
// edits gets them in order. Everyone else is refused, as are bad ids,
// bodies and contents and cross-site requests, and nothing is sent then.
func TestEditOwnMessage(t *testing.T) {
	ts := startServer(t)
	ann, bob := identityClient(t, ts.URL), identityClient(t, ts.URL)
	m := postedBy(t, ann, ts.URL, "ann", "helo wrold")
	anon := postedBy(t, http.DefaultClient, ts.URL, "cat", "without identity")
	live := subscribe(t, ts.URL, anon.ID)
	cross := map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
	for _, tt := range []struct {
		name   string
		c      *http.Client
		id     string
		body   string
		header map[string]string
		status int
		msg    string
	}{
		{"by another identity", bob, m.ID, `{"content":"x"}`, nil, 403, "you can only edit your own messages"},
		{"without identity", http.DefaultClient, m.ID, `{"content":"x"}`, nil, 403, "you can only edit your own messages"},
		{"of a message posted without identity", ann, anon.ID, `{"content":"x"}`, nil, 403, "you can only edit your own messages"},
		{"unknown id", ann, strings.Split(m.ID, "-")[0] + "-99", `{"content":"x"}`, nil, 404, "no such message"},
		{"malformed id", ann, "nope", `{"content":"x"}`, nil, 400, "is not of the form"},
		{"malformed body", ann, m.ID, `{"content":`, nil, 400, "JSON"},
		{"blank content", ann, m.ID, `{"content":" \n "}`, nil, 400, "content is required"},
		{"long content", ann, m.ID, `{"content":"` + strings.Repeat("x", 2001) + `"}`, nil, 400, "longer than 2000"},
		{"cross-site", ann, m.ID, `{"content":"x"}`, cross, 403, "cross-origin"},
	} {
		if r := editMsg(t, tt.c, ts.URL, tt.id, tt.body, tt.header); r.status != tt.status || !strings.Contains(r.errorText(), tt.msg) {
			t.Errorf("PATCH %s: %d %s, want %d with %q", tt.name, r.status, r.body, tt.status, tt.msg)
		}
	}
	e1 := edited(t, editMsg(t, ann, ts.URL, m.ID, `{"content":"hello wrold"}`, nil))
	e2 := edited(t, editMsg(t, ann, ts.URL, m.ID, `{"content":"hello world <3"}`, nil))
	if e2.ID != m.ID || e2.Username != "ann" || e2.Content != "hello world <3" || !e2.Time.Equal(m.Time) || e2.Edited.Before(e1.Edited) {
		t.Fatalf("second edit answered %+v, want message %s as edited", e2, m.ID)
	}
	var edits []sse.Event
	for range 2 {
		edits = append(edits, live.nextEvent(t))
	}
	want := roomlog.MarshalMessage(e2)
	if ev := edits[1]; ev.Type != "edit" || !bytes.Equal(ev.Data, want) || !strings.Contains(string(want), `"content":"hello world <3",`) {
		t.Errorf("live stream's second edit event %+v, want an edit event with data %s", ev, want)
	}
	_, s1, _ := record.ParseID(edits[0].ID)
	_, s2, _ := record.ParseID(edits[1].ID)
	_, sm, _ := record.ParseID(anon.ID)
	if !strings.Contains(string(edits[0].Data), `"content":"hello wrold"`) || s1 != sm+1 || s2 != sm+2 {
		t.Errorf("edit events %+v, want the two edits in order, each with its own id after %s", edits, anon.ID)
	}

	page := mustSend(t, http.DefaultClient, "GET", ts.URL+"/history", "", "", nil)
	if !strings.Contains(string(page.body), `"content":"hello world <3","time":"`) || strings.Count(string(page.body), `"edited":"`) != 1 || strings.Contains(string(page.body), "wrold") {
		t.Errorf("GET /history: %s, want the latest content, marked edited", page.body)
	}
	fresh := subscribe(t, ts.URL, "")
	msgs, other := fresh.messages(t, 2)
	if msgs[0].Content != "hello world <3" || msgs[0].Edited.IsZero() || len(ordered(other)) != 0 {
		t.Errorf("a new stream's backlog: %+v and %+v, want the latest content and no edit event", msgs, other)
	}
	resumed := subscribe(t, ts.URL, anon.ID)
	for i := range 2 {
		if ev := resumed.nextEvent(t); ev.Type != "edit" || ev.ID != edits[i].ID || !bytes.Equal(ev.Data, edits[i].Data) {
			t.Errorf("resume from before the edits, event %d: %+v, want %+v", i, ev, edits[i])
		}
	}
	if st := ts.stats(t); st.MessagesPosted != 2 {
		t.Errorf("%d messages posted, want 2: edits are no posts", st.MessagesPosted)
	}
}

// TestDeleteOwnMessage: the author deletes their message (200 with the
// deletion, a "delete" event on every stream); others may not (403); a
// moderator deletes anyone's but edits nobody's.
func TestDeleteOwnMessage(t *testing.T) {
	ts := startServer(t, "-admin-key", "boss")
	ann, bob := identityClient(t, ts.URL), identityClient(t, ts.URL)
	m := postedBy(t, ann, ts.URL, "ann", "regrettable")
	other := postedBy(t, bob, ts.URL, "bob", "bob's")
	live := subscribe(t, ts.URL, other.ID)
	for who, c := range map[string]*http.Client{"another identity": bob, "no identity": http.DefaultClient} {
		if r := mustSend(t, c, "DELETE", ts.URL+"/messages/"+m.ID, "", "", nil); r.status != http.StatusForbidden || r.errorText() != "you can only delete your own messages" {
			t.Errorf("DELETE by %s: %d %s, want 403", who, r.status, r.body)
		}
	}
	if r := editMsg(t, http.DefaultClient, ts.URL, m.ID, `{"content":"moderated"}`, admin()); r.status != http.StatusForbidden {
		t.Errorf("PATCH by a moderator: %d %s, want 403", r.status, r.body)
	}
	r := mustSend(t, ann, "DELETE", ts.URL+"/messages/"+m.ID, "", "", nil)
	d := deletion(t, r)
	if d.Delete != m.ID {
		t.Fatalf("the author's deletion: %+v, want one of %s", d, m.ID)
	}
	checkDeleteEvent(t, "live stream", live.nextEvent(t), d)
	if r := mustSend(t, ann, "DELETE", ts.URL+"/messages/"+m.ID, "", "", nil); r.status != http.StatusNotFound {
		t.Errorf("DELETE again: %d %s, want 404", r.status, r.body)
	}
	if r := editMsg(t, ann, ts.URL, m.ID, `{"content":"back"}`, nil); r.status != http.StatusNotFound {
		t.Errorf("PATCH of a deleted message: %d %s, want 404", r.status, r.body)
	}
	md := deletion(t, mustSend(t, http.DefaultClient, "DELETE", ts.URL+"/messages/"+other.ID, "", "", admin()))
	checkDeleteEvent(t, "live stream", live.nextEvent(t), md)
	if hist := historyIDs(t, ts.URL, nil); len(hist) != 0 {
		t.Errorf("history after both deletions: %v", hist)
	}
}

// TestEditWindowOnFakeClock runs the handler and the hub in a synctest
// bubble: an author may edit until roomlog.EditWindow has passed since the
// post, and delete after that.
func TestEditWindowOnFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, room := startRoom(t, RoomConfig{History: 10})
		var down atomic.Bool
		h := newServer(room, NewStats(), stream.NewTracker(), &down, serverConfig{heartbeat: time.Hour, writeTimeout: time.Second, maxContent: 100, maxBody: 1024}, slog.New(slog.DiscardHandler))
		var cookie *http.Cookie
		do := func(method, path, body string) *httptest.ResponseRecorder {
			req := httptest.NewRequest(method, path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if cookie != nil {
				req.AddCookie(cookie)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req.WithContext(context.Background()))
			if cs := rec.Result().Cookies(); len(cs) > 0 {
				cookie = cs[0]
			}
			return rec
		}
		do("GET", "/", "")
		var m Message
		if rec := do("POST", "/post", `{"username":"ann","content":"v1"}`); rec.Code != 201 || json.Unmarshal(rec.Body.Bytes(), &m) != nil {
			t.Fatalf("post: %d %s", rec.Code, rec.Body)
		}
		time.Sleep(roomlog.EditWindow - time.Second)
		if rec := do("PATCH", "/messages/"+m.ID, `{"content":"v2"}`); rec.Code != 200 {
			t.Errorf("edit a second before the window ends: %d %s", rec.Code, rec.Body)
		}
		time.Sleep(time.Second)
		if rec := do("PATCH", "/messages/"+m.ID, `{"content":"v3"}`); rec.Code != 403 || !strings.Contains(rec.Body.String(), "this message can no longer be edited") {
			t.Errorf("edit once the window has ended: %d %s, want 403", rec.Code, rec.Body)
		}
		if rec := do("DELETE", "/messages/"+m.ID, ""); rec.Code != 200 {
			t.Errorf("delete after the window: %d %s, want 200", rec.Code, rec.Body)
		}
	})
}

// TestRestartKeepsHoldsEditsAuthors restarts a server with -data, once
// shut down and once killed with SIGKILL (the real binary): the names held,
// the edits and the messages' authors survive, and the identity cookies
// issued before stay good (their secret is kept beside the journal).
func TestRestartKeepsHoldsEditsAuthors(t *testing.T) {
	bin := chatBinary(t)
	for _, how := range []string{"shutdown", "SIGKILL"} {
		t.Run(how, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "chat.jsonl")
			var stop func()
			start := func() string {
				if how == "shutdown" {
					ts := startServer(t, "-data", data)
					stop = func() { ts.stop(t) }
					return ts.URL
				}
				p := startChatProc(t, bin, "-data", data)
				stop = func() { p.kill(t) }
				return p.URL
			}
			base := start()
			nina, omar := identityClient(t, base), identityClient(t, base)
			var m Message
			r := mustSend(t, nina, "POST", base+"/post", "application/json", `{"username":"Nina","content":"frist"}`, nil)
			if r.status != http.StatusCreated || json.Unmarshal(r.body, &m) != nil {
				t.Fatalf("post: %d %s", r.status, r.body)
			}
			edited(t, editMsg(t, nina, base, m.ID, `{"content":"first"}`, nil))
			stop()

			base = start()
			if r := mustSend(t, omar, "POST", base+"/post", "application/json", `{"username":"nina","content":"spoof"}`, nil); r.status != http.StatusConflict {
				t.Errorf("omar as nina after the restart: %d %s, want 409", r.status, r.body)
			}
			if r := editMsg(t, omar, base, m.ID, `{"content":"spoof"}`, nil); r.status != http.StatusForbidden {
				t.Errorf("omar's edit after the restart: %d %s, want 403", r.status, r.body)
			}
			page := mustSend(t, http.DefaultClient, "GET", base+"/history", "", "", nil)
			if !strings.Contains(string(page.body), `"content":"first","time":"`) || !strings.Contains(string(page.body), `"edited":"`) {
				t.Errorf("history after the restart: %s, want the edited message", page.body)
			}
			if strings.Contains(string(page.body), "author") {
				t.Errorf("history shows an author: %s", page.body)
			}
			again := edited(t, editMsg(t, nina, base, m.ID, `{"content":"first!"}`, nil))
			if again.Content != "first!" {
				t.Errorf("nina's edit after the restart: %+v", again)
			}
			if r := mustSend(t, nina, "POST", base+"/post", "application/json", `{"username":"NINA","content":"still mine"}`, nil); r.status != http.StatusCreated {
				t.Errorf("nina as NINA after the restart: %d %s, want 201", r.status, r.body)
			}
			stop()
		})
	}
}

// TestEditAcrossNodes runs two nodes of one room over NATS with one
// -identity-secret-file: a message posted through one is edited by its
// author through the other, which refuses anyone else; a stream on the
// first gets the edit event, both nodes' history shows the edit, and the
// author deletes the message through the first.
func TestEditAcrossNodes(t *testing.T) {
	s := startNATS(t)
	secret := filepath.Join(t.TempDir(), "identity")
	nodes := startNodes(t, 2, []string{s.URL()}, "-identity-secret-file", secret)
	a, b := nodes[0], nodes[1]
	pat, quinn := identityClient(t, a.URL), identityClient(t, b.URL)
	m := postedBy(t, pat, a.URL, "pat", "on a")
	live := subscribe(t, a.URL, m.ID)
	waitFor(t, "b to read pat's message", func() bool { return len(historyIDs(t, b.URL, nil)) == 1 })
	if r := editMsg(t, quinn, b.URL, m.ID, `{"content":"spoof"}`, nil); r.status != http.StatusForbidden {
		t.Errorf("quinn's edit on b: %d %s, want 403", r.status, r.body)
	}
	e := edited(t, editMsg(t, pat, b.URL, m.ID, `{"content":"on a, edited on b"}`, nil))
	if ev := live.nextEvent(t); ev.Type != "edit" || !bytes.Equal(ev.Data, roomlog.MarshalMessage(e)) {
		t.Errorf("a's stream got %+v, want the edit of %s", ev, m.ID)
	}
	for _, n := range nodes {
		page := mustSend(t, http.DefaultClient, "GET", n.URL+"/history", "", "", nil)
		if !strings.Contains(string(page.body), `"content":"on a, edited on b"`) {
			t.Errorf("%s history: %s, want the edited message", n.URL, page.body)
		}
	}
	if r := mustSend(t, pat, "DELETE", a.URL+"/messages/"+m.ID, "", "", nil); r.status != http.StatusOK {
		t.Errorf("pat's deletion on a: %d %s", r.status, r.body)
	}
}
