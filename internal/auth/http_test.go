package auth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// testGate returns a gate with a room key "room", an admin key "boss",
// sessions and a throttle of 3 wrong keys a minute.
func testGate(t *testing.T) *Gate {
	t.Helper()
	keys := Keys{Room: "room", Admin: "boss"}
	s, err := NewSessions(secret(7), keys, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &Gate{Keys: keys, Sessions: s, Failures: NewThrottle(3, time.Minute)}
}

// peer is the address a request counts against: its remote address.
func peer(r *http.Request) string { return r.RemoteAddr }

// login sends POST /login with body from addr and returns the answer.
func login(g *Gate, addr, contentType, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "/login", strings.NewReader(body))
	req.RemoteAddr = addr
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	g.HandleLogin(peer, nil).ServeHTTP(rec, req)
	return rec
}

// TestHandleLogin checks the answers of POST /login and its cookie.
func TestHandleLogin(t *testing.T) {
	g := testGate(t)
	for _, tt := range []struct {
		name, contentType, body string
		status                  int
	}{
		{"room key", "application/json", `{"key":"room"}`, 204},
		{"admin key as a form", "application/x-www-form-urlencoded", "key=boss", 204},
		{"key with spaces", "application/json", `{"key":"  room\n"}`, 204},
		{"no key", "application/json", `{"key":"  "}`, 400},
		{"empty", "application/json", ``, 400},
		{"unknown field", "application/json", `{"key":"room","user":"x"}`, 400},
		{"form not UTF-8", "application/x-www-form-urlencoded", "key=%FF", 400},
		{"latin1", "application/json; charset=latin1", `{"key":"room"}`, 415},
		{"text", "text/plain", `room`, 415},
		{"too large", "application/json", `{"key":"` + strings.Repeat("k", maxLoginBody) + `"}`, 413},
	} {
		rec := login(g, "192.0.2.1", tt.contentType, tt.body)
		if rec.Code != tt.status || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %s, want %d", tt.name, rec.Code, rec.Body, tt.status)
		}
		if got := rec.Header().Get("Set-Cookie"); (tt.status == 204) != (got != "") {
			t.Errorf("%s: Set-Cookie %q", tt.name, got)
		}
	}
	rec := login(g, "192.0.2.1", "application/json", `{"key":"boss"}`)
	c := rec.Result().Cookies()
	if len(c) != 1 || c[0].Name != CookieName || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode || c[0].Secure || c[0].MaxAge != 3600 {
		t.Fatalf("cookie = %+v", c)
	}
	if role := g.Sessions.Check(c[0].Value, time.Now()); role != Admin {
		t.Errorf("the admin key's session is %v", role)
	}
}

// TestHandleLoginThrottle checks that wrong keys are counted per address
// and that the right key gives its try back.
func TestHandleLoginThrottle(t *testing.T) {
	g := testGate(t)
	for range 5 {
		if rec := login(g, "192.0.2.1", "application/json", `{"key":"room"}`); rec.Code != 204 {
			t.Fatalf("right key: %d", rec.Code)
		}
	}
	for i := range 3 {
		if rec := login(g, "192.0.2.1", "application/json", `{"key":"nope"}`); rec.Code != 401 || rec.Header().Get("WWW-Authenticate") == "" {
			t.Fatalf("wrong key %d: %d %v", i, rec.Code, rec.Header())
		}
	}
	rec := login(g, "192.0.2.1", "application/json", `{"key":"room"}`)
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("after 3 wrong keys: %d %v, want 429 with Retry-After", rec.Code, rec.Header())
	}
	if rec := login(g, "192.0.2.2", "application/json", `{"key":"room"}`); rec.Code != 204 {
		t.Errorf("another address: %d, want 204", rec.Code)
	}
}

// TestRequire checks RequireRoom, RequireAdmin and HandleSession for each
// kind of credentials.
func TestRequire(t *testing.T) {
	g := testGate(t)
	member, _, _ := g.Sessions.Issue(Member, time.Now())
	admin, _, _ := g.Sessions.Issue(Admin, time.Now())
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	for _, tt := range []struct {
		name           string
		bearer, cookie string
		room, adm      int
		session        string
	}{
		{"nothing", "", "", 401, 401, `"role":"none"`},
		{"room key", "room", "", 299, 403, `"role":"member"`},
		{"admin key", "boss", "", 299, 299, `"role":"admin"`},
		{"wrong key", "nope", "", 401, 401, `"role":"none"`},
		{"member session", "", member, 299, 403, `"role":"member"`},
		{"admin session", "", admin, 299, 299, `"role":"admin"`},
		{"forged session", "", admin + "x", 401, 401, `"role":"none"`},
	} {
		for _, h := range []struct {
			what    string
			handler http.Handler
			want    int
		}{
			{"room", g.RequireRoom(peer, ok), tt.room},
			{"admin", g.RequireAdmin(peer, ok), tt.adm},
			{"session", g.HandleSession(peer), 200},
		} {
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = "198.51.100." + tt.name // its own address: the wrong keys do not add up
			if tt.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tt.bearer)
			}
			if tt.cookie != "" {
				req.AddCookie(&http.Cookie{Name: CookieName, Value: tt.cookie})
			}
			rec := httptest.NewRecorder()
			h.handler.ServeHTTP(rec, req)
			if rec.Code != h.want {
				t.Errorf("%s, %s: %d %s, want %d", tt.name, h.what, rec.Code, rec.Body, h.want)
			}
			if h.what == "session" && !strings.Contains(rec.Body.String(), tt.session) {
				t.Errorf("%s: GET /session = %s, want %s", tt.name, rec.Body, tt.session)
			}
		}
	}
	open := &Gate{Keys: Keys{Admin: "boss"}}
	rec := httptest.NewRecorder()
	open.RequireRoom(peer, ok).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 299 {
		t.Errorf("an open room's route without credentials: %d, want it passed", rec.Code)
	}
}

// TestHandleLogout checks that logout clears the cookie.
func TestHandleLogout(t *testing.T) {
	rec := httptest.NewRecorder()
	HandleLogout().ServeHTTP(rec, httptest.NewRequest("POST", "/logout", nil))
	c := rec.Result().Cookies()
	if rec.Code != 204 || len(c) != 1 || c[0].Name != CookieName || c[0].Value != "" || c[0].MaxAge != -1 || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("logout: %d %+v", rec.Code, c)
	}
}

// TestModerator checks who Moderator takes for a moderator, and which
// credentials it answers itself: a wrong Bearer key (401, then 429 once
// the address has used up its tries), never a request without
// credentials or with the room's.
func TestModerator(t *testing.T) {
	g := testGate(t)
	member, _, _ := g.Sessions.Issue(Member, time.Now())
	admin, _, _ := g.Sessions.Issue(Admin, time.Now())
	ask := func(g *Gate, addr, bearer, cookie string) (bool, bool, int) {
		req := httptest.NewRequest("DELETE", "/messages/1-1", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
		}
		rec := httptest.NewRecorder()
		mod, answered := g.Moderator(rec, req, addr)
		return mod, answered, rec.Code
	}
	for _, tt := range []struct {
		name                string
		bearer, cookie      string
		moderator, answered bool
		status              int
	}{
		{"nothing", "", "", false, false, 200},
		{"room key", "room", "", false, false, 200},
		{"member session", "", member, false, false, 200},
		{"forged session", "", admin + "x", false, false, 200},
		{"admin key", "boss", "", true, false, 200},
		{"admin session", "", admin, true, false, 200},
		{"wrong key", "nope", "", false, true, 401},
	} {
		mod, answered, status := ask(g, "198.51.100.1:"+tt.name, tt.bearer, tt.cookie)
		if mod != tt.moderator || answered != tt.answered || status != tt.status {
			t.Errorf("%s: moderator %v, answered %v (%d); want %v, %v (%d)", tt.name, mod, answered, status, tt.moderator, tt.answered, tt.status)
		}
	}
	for range 3 {
		ask(g, "203.0.113.9", "nope", "")
	}
	if mod, answered, status := ask(g, "203.0.113.9", "boss", ""); mod || !answered || status != 429 {
		t.Errorf("after 3 wrong keys, the admin key: moderator %v, answered %v (%d); want a 429", mod, answered, status)
	}
	open := &Gate{}
	if mod, answered, status := ask(open, "203.0.113.10", "boss", ""); mod || answered || status != 200 {
		t.Errorf("a room without an admin key: moderator %v, answered %v (%d); want neither", mod, answered, status)
	}
}
