package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"chat/internal/identity"
	"chat/internal/names"
	"chat/internal/stream"
)

// heldBody is the exact 409 body for a name in use, as the request wrote
// it.
func heldBody(name string) string {
	b, _ := json.Marshal(name)
	q := strings.ReplaceAll(string(b), `"`, `\"`)
	return `{"error":"the name ` + q + ` is in use by someone else; choose another","name":` + string(b) + "}\n"
}

// wantRefused fails the test unless a post, a typing notice, a stream and
// a HEAD of a stream with name, through c, are each answered status with a
// body that contains want.
func wantRefused(t *testing.T, c *http.Client, base, name string, status int, want string) {
	t.Helper()
	for what, r := range map[string]reply{
		"post":   postMsg(t, c, base, name, "spoof", nil),
		"typing": typingAs(t, c, base, name),
		"stream": mustSend(t, c, "GET", streamURL(base, name), "", "", nil),
		"HEAD":   mustSend(t, c, "HEAD", streamURL(base, name), "", "", nil),
	} {
		body := string(r.body)
		if what == "HEAD" {
			body = want // a HEAD has no body to check
		}
		if r.status != status || !strings.Contains(body, want) {
			t.Errorf("%s as %q: %d %s, want %d with %s", what, name, r.status, r.body, status, want)
		}
	}
}

// TestNameHeldByLook: a name used by one identity is refused to everyone
// else (another identity, or a request without one) on post, typing and
// stream, in any case and any look-alike form, with a 409 that names it;
// names with invisible characters or mixed scripts are refused to everyone
// with a 400 that names the character. Nothing refused is stored, sent or
// counted; the holder may use every form.
func TestNameHeldByLook(t *testing.T) {
	ts := startServer(t)
	alice, mallory := identityClient(t, ts.URL), identityClient(t, ts.URL)
	watcher := subscribe(t, ts.URL, "")
	if r := postMsg(t, alice, ts.URL, "Alice", "hi", nil); r.status != http.StatusCreated {
		t.Fatalf("alice's first post: %d %s", r.status, r.body)
	}
	forms := []string{"alice", "ALICE", "ＡＬＩＣＥ", "Ａlice", "aLiCe"}
	for _, name := range forms {
		for who, c := range map[string]*http.Client{"another identity": mallory, "no identity": http.DefaultClient} {
			t.Run(who+" "+name, func(t *testing.T) { wantRefused(t, c, ts.URL, name, http.StatusConflict, heldBody(name)) })
		}
		if r := postMsg(t, alice, ts.URL, name, "still me", nil); r.status != http.StatusCreated {
			t.Errorf("alice as %q: %d %s, want 201", name, r.status, r.body)
		}
	}
	for name, code := range map[string]string{
		"alice\u00AD": "U+00AD", // soft hyphen
		"ali\u034Fce": "U+034F", // combining grapheme joiner
		"alice\u2062": "U+2062", // invisible times
		"alice\uFE0F": "U+FE0F", // variation selector
		"\u3164alice": "U+3164", // Hangul filler
		"\u0430lice":  "U+0430", // Cyrillic а among Latin letters
	} {
		for who, c := range map[string]*http.Client{"the holder": alice, "no identity": http.DefaultClient} {
			t.Run(who+" "+code, func(t *testing.T) { wantRefused(t, c, ts.URL, name, http.StatusBadRequest, code) })
		}
	}
	last := postMsg(t, alice, ts.URL, "alice", "end", nil)
	if last.status != http.StatusCreated {
		t.Fatalf("alice's last post: %d %s", last.status, last.body)
	}
	n := 2 + len(forms)
	msgs, _ := watcher.messages(t, n)
	for _, m := range msgs {
		if m.Content == "spoof" {
			t.Errorf("a refused post reached the stream: %+v", m)
		}
	}
	if st := ts.stats(t); st.MessagesPosted != uint64(n) {
		t.Errorf("%d messages posted, want %d", st.MessagesPosted, n)
	}
}

// TestFreeNameWithoutIdentity: a request without identity may use a free
// name again and again, on every route at once, and holds nothing; its
// answers carry an identity cookie (which curl without a jar drops). Once
// an identity uses the name, it is that identity's.
func TestFreeNameWithoutIdentity(t *testing.T) {
	ts := startServer(t, "-admin-key", "boss")
	for i := range 3 {
		r := postMsg(t, http.DefaultClient, ts.URL, "bob", "hello again", nil)
		if r.status != http.StatusCreated {
			t.Fatalf("post %d as bob without identity: %d %s", i, r.status, r.body)
		}
		if !strings.HasPrefix(r.header.Get("Set-Cookie"), identity.CookieName+"=") {
			t.Errorf("post %d without identity: no identity cookie in %v", i, r.header)
		}
		if r := typingAs(t, http.DefaultClient, ts.URL, "bob"); r.status != http.StatusNoContent {
			t.Errorf("typing %d as bob without identity: %d %s", i, r.status, r.body)
		}
	}
	streamAs(t, http.DefaultClient, ts.URL, "bob")
	streamAs(t, http.DefaultClient, ts.URL, "BOB")
	if r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/names", "", "", admin()); string(r.body) != "{\"names\":[]}\n" {
		t.Errorf("GET /names after uses without identity: %d %s, want none held", r.status, r.body)
	}
	carol := identityClient(t, ts.URL)
	if r := postMsg(t, carol, ts.URL, "Bob", "mine now", nil); r.status != http.StatusCreated {
		t.Fatalf("an identity takes bob while streams without identity carry it: %d %s", r.status, r.body)
	}
	if r := postMsg(t, http.DefaultClient, ts.URL, "bob", "hello?", nil); r.status != http.StatusConflict {
		t.Errorf("post as bob without identity after carol took it: %d %s, want 409", r.status, r.body)
	}
}

// TestStreamHoldsName: with -name-hold 0 a name is held only while its
// holder's stream carries it: a post alone takes nothing, an open stream
// holds the name against others, and its close frees it.
func TestStreamHoldsName(t *testing.T) {
	ts := startServer(t, "-name-hold", "0")
	dave, eve := identityClient(t, ts.URL), identityClient(t, ts.URL)
	if r := postMsg(t, dave, ts.URL, "dave", "a post holds nothing", nil); r.status != http.StatusCreated {
		t.Fatal(r.status)
	}
	if r := postMsg(t, eve, ts.URL, "dave", "so I may", nil); r.status != http.StatusCreated {
		t.Fatalf("eve as dave after dave's post alone: %d %s", r.status, r.body)
	}
	s := streamAs(t, dave, ts.URL, "Dave")
	wantRefused(t, eve, ts.URL, "dave", http.StatusConflict, heldBody("dave"))
	s.close()
	waitFor(t, "dave's stream to release the name", func() bool {
		return postMsg(t, eve, ts.URL, "dave", "free again", nil).status == http.StatusCreated
	})
}

// TestModeratorFreesName: GET /names lists the holds without the holders'
// identities, DELETE /names/{name} frees a name in any form of it; both
// need the admin key, and the delete refuses cross-site requests.
func TestModeratorFreesName(t *testing.T) {
	ts := startServer(t, "-admin-key", "boss")
	frank, grace := identityClient(t, ts.URL), identityClient(t, ts.URL)
	if r := postMsg(t, frank, ts.URL, "Frank", "hi", nil); r.status != http.StatusCreated {
		t.Fatal(r.status)
	}
	check401(t, "GET /names without a key", mustSend(t, http.DefaultClient, "GET", ts.URL+"/names", "", "", nil))
	check401(t, "DELETE /names/frank without a key", mustSend(t, http.DefaultClient, "DELETE", ts.URL+"/names/frank", "", "", nil))
	cross := admin()
	cross["Sec-Fetch-Site"], cross["Origin"] = "cross-site", "https://evil.example"
	if r := mustSend(t, http.DefaultClient, "DELETE", ts.URL+"/names/frank", "", "", cross); r.status != http.StatusForbidden {
		t.Errorf("cross-site DELETE /names/frank: %d %s, want 403", r.status, r.body)
	}
	r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/names", "", "", admin())
	var list struct {
		Names []names.Hold `json:"names"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &list) != nil || len(list.Names) != 1 ||
		list.Names[0].Name != "Frank" || list.Names[0].Skeleton != "frank" || list.Names[0].Until.IsZero() {
		t.Fatalf("GET /names: %d %s, want Frank's hold", r.status, r.body)
	}
	if r := postMsg(t, grace, ts.URL, "frank", "spoof", nil); r.status != http.StatusConflict {
		t.Fatalf("grace as frank: %d, want 409", r.status)
	}
	if r := mustSend(t, http.DefaultClient, "DELETE", ts.URL+"/names/"+url.PathEscape("ＦＲＡＮＫ"), "", "", admin()); r.status != http.StatusOK || !strings.Contains(string(r.body), `"name":"Frank"`) {
		t.Fatalf("DELETE /names/ＦＲＡＮＫ: %d %s, want 200 with Frank's hold", r.status, r.body)
	}
	if r := mustSend(t, http.DefaultClient, "DELETE", ts.URL+"/names/frank", "", "", admin()); r.status != http.StatusNotFound {
		t.Errorf("DELETE /names/frank again: %d %s, want 404", r.status, r.body)
	}
	if r := postMsg(t, grace, ts.URL, "frank", "mine now", nil); r.status != http.StatusCreated {
		t.Errorf("grace as frank once freed: %d %s, want 201", r.status, r.body)
	}
}

// TestFourthName: an identity whose three names each have a stream open is
// refused a fourth (409 naming it); with a stream closed, the fourth name
// releases the least recently used one, which anyone may then take. Taking
// a name for a stream draws on the address's post rate.
func TestFourthName(t *testing.T) {
	ts := startServer(t)
	heidi, ivan := identityClient(t, ts.URL), identityClient(t, ts.URL)
	var streams []*subscriber
	for _, name := range []string{"h1", "h2", "h3"} {
		streams = append(streams, streamAs(t, heidi, ts.URL, name))
	}
	r := postMsg(t, heidi, ts.URL, "h4", "a fourth", nil)
	want := "{\"error\":\"you hold 3 names already, each with a stream open; close one to take another name\",\"name\":\"h4\"}\n"
	if r.status != http.StatusConflict || string(r.body) != want {
		t.Fatalf("a fourth name with three streams open: %d %s, want 409 %s", r.status, r.body, want)
	}
	streams[0].close()
	waitFor(t, "h1's stream to end, so that a fourth name may release it", func() bool {
		return postMsg(t, heidi, ts.URL, "h4", "a fourth", nil).status == http.StatusCreated
	})
	if r := postMsg(t, ivan, ts.URL, "h1", "released", nil); r.status != http.StatusCreated {
		t.Errorf("ivan as h1, released for h4: %d %s", r.status, r.body)
	}
	for _, name := range []string{"h2", "h3", "h4"} {
		if r := postMsg(t, ivan, ts.URL, name, "spoof", nil); r.status != http.StatusConflict {
			t.Errorf("ivan as %s: %d, want 409", name, r.status)
		}
	}

	limited := startServer(t, "-post-rate", "0.001", "-post-burst", "2")
	judy := identityClient(t, limited.URL)
	streamAs(t, judy, limited.URL, "j1")
	streamAs(t, judy, limited.URL, "J1") // held already: free
	streamAs(t, judy, limited.URL, "j2")
	r = mustSend(t, judy, "GET", streamURL(limited.URL, "j3"), "", "", nil)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || r.errorText() != "too many new names; slow down" {
		t.Errorf("a third new name with a post rate of 2: %d %v %s, want 429 with Retry-After", r.status, r.header, r.body)
	}
}

// TestHoldExpiresOnFakeClock runs the handler and the hub in a synctest
// bubble: a name taken by a post is held against others until -name-hold
// has passed since its last use, and then is free.
func TestHoldExpiresOnFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, room := startRoom(t, RoomConfig{History: 10})
		var down atomic.Bool
		h := newServer(room, NewStats(), stream.NewTracker(), &down, serverConfig{heartbeat: time.Hour, writeTimeout: time.Second, maxContent: 100, maxBody: 1024}, slog.New(slog.DiscardHandler))
		cookies := map[string]*http.Cookie{}
		post := func(who, name string) int {
			req := httptest.NewRequest("POST", "/post", strings.NewReader(`{"username":"`+name+`","content":"hi"}`))
			req.Header.Set("Content-Type", "application/json")
			if c := cookies[who]; c != nil {
				req.AddCookie(c)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req.WithContext(context.Background()))
			for _, c := range rec.Result().Cookies() {
				cookies[who] = c
			}
			return rec.Code
		}
		post("kim", "x")   // kim gets her identity
		post("leo", "x")   // and leo his
		post("kim", "Kim") // kim takes the name
		time.Sleep(names.DefaultHold - time.Second)
		if got := post("leo", "kim"); got != http.StatusConflict {
			t.Errorf("leo as kim a second before the hold ends: %d, want 409", got)
		}
		time.Sleep(time.Second)
		if got := post("leo", "kim"); got != http.StatusCreated {
			t.Errorf("leo as kim once the hold ended: %d, want 201", got)
		}
	})
}
