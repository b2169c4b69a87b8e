package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"chat/internal/auth"
)

// roomRoutes lists every endpoint that reads or writes the room. With a
// room key, every one of them must answer 401 to a request without
// credentials, before it looks at anything else in the request. Add a row
// for every new room endpoint (and its odd inputs: a malformed parameter
// must still get 401, not 400).
var roomRoutes = []struct {
	method, path, contentType, body string
	// ok is the status the request gets with valid credentials.
	ok int
}{
	{"GET", "/stream", "", "", http.StatusOK},
	{"HEAD", "/stream", "", "", http.StatusOK},
	{"GET", "/stream?lastEventId=1-1", "", "", http.StatusOK},
	{"GET", "/stream?lastEventId=garbage", "", "", http.StatusBadRequest},
	{"POST", "/post", "application/json", `{"username":"u","content":"json"}`, http.StatusCreated},
	{"POST", "/post", "application/x-www-form-urlencoded", "username=u&content=form", http.StatusCreated},
	{"POST", "/post", "text/plain", "junk", http.StatusUnsupportedMediaType},
	{"POST", "/post", "application/json", `{"username":""}`, http.StatusBadRequest},
	{"GET", "/history", "", "", http.StatusOK},
	{"GET", "/history?limit=5", "", "", http.StatusOK},
	{"GET", "/history?after=1-1", "", "", http.StatusNotFound}, // an id from another run
	{"GET", "/history?before=garbage", "", "", http.StatusBadRequest},
	{"GET", "/stream?name=alice", "", "", http.StatusOK},
	{"GET", "/stream?name=%07", "", "", http.StatusBadRequest},
	{"GET", "/presence", "", "", http.StatusOK},
	{"HEAD", "/presence", "", "", http.StatusOK},
	{"POST", "/typing", "application/json", `{"username":"u"}`, http.StatusNoContent},
	{"POST", "/typing", "application/x-www-form-urlencoded", "username=u", http.StatusNoContent},
	{"POST", "/typing", "application/json", `{"username":""}`, http.StatusBadRequest},
	{"POST", "/typing", "text/plain", "junk", http.StatusUnsupportedMediaType},
}

// openRoutes lists the endpoints that answer without credentials even in
// a private room.
var openRoutes = []struct{ method, path string }{
	{"GET", "/"},
	{"GET", "/healthz"},
	{"GET", "/stats"},
	{"GET", "/metrics"},
	{"GET", "/session"},
}

// keyFile writes key into a file in dir and returns its path.
func keyFile(t *testing.T, dir, name, key string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRoomKeyGuardsEveryRoute: with -room-key, every room endpoint
// answers 401 without credentials, with a wrong key, or with a forged
// cookie, and works with the room key, the admin key or a session; the
// page, health, statistics and metrics stay open; the answer never depends
// on what was asked for.
func TestRoomKeyGuardsEveryRoute(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, "-room-key-file", keyFile(t, dir, "room", "open sesame"), "-admin-key", "boss key")
	c := http.DefaultClient
	member := sessionCookie(t, login(t, c, ts.URL, "open sesame")).Value
	forged := member[:len(member)-4] + "AAAA"

	refusals := []struct {
		name   string
		header map[string]string
	}{
		{"no credentials", nil},
		{"forged cookie", withCookie(forged)},
		{"garbage cookie", withCookie("hello")},
		{"basic auth", map[string]string{"Authorization": "Basic b3BlbjpzZXNhbWU="}},
	}
	var bodies = map[string]bool{}
	for _, rt := range roomRoutes {
		for _, rf := range refusals {
			r := mustSend(t, c, rt.method, ts.URL+rt.path, rt.contentType, rt.body, rf.header)
			what := rt.method + " " + rt.path + " with " + rf.name
			if rt.method == "HEAD" {
				if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: status %d, WWW-Authenticate %q", what, r.status, r.header.Get("WWW-Authenticate"))
				}
				continue
			}
			check401(t, what, r)
			bodies[string(r.body)] = true
		}
	}
	if len(bodies) != 1 {
		t.Errorf("401 bodies differ between routes (they must reveal nothing): %v", bodies)
	}
	// One wrong Bearer key per route: a few, below the login throttle.
	for _, rt := range roomRoutes[:4] {
		if rt.method == "HEAD" {
			continue
		}
		check401(t, rt.method+" "+rt.path+" with a wrong key", mustSend(t, c, rt.method, ts.URL+rt.path, rt.contentType, rt.body, bearer("open sesame!")))
	}

	grants := []struct {
		name   string
		header map[string]string
	}{
		{"room key", bearer("open sesame")},
		{"admin key", bearer("boss key")},
		{"session", withCookie(member)},
	}
	for _, rt := range roomRoutes {
		for _, g := range grants {
			r := mustSend(t, c, rt.method, ts.URL+rt.path, rt.contentType, rt.body, g.header)
			if r.status != rt.ok {
				t.Errorf("%s %s with %s: status %d (%s), want %d", rt.method, rt.path, g.name, r.status, r.body, rt.ok)
			}
		}
	}
	for _, rt := range openRoutes {
		if r := mustSend(t, c, rt.method, ts.URL+rt.path, "", "", nil); r.status != http.StatusOK {
			t.Errorf("%s %s without credentials: %d, want 200", rt.method, rt.path, r.status)
		}
	}
	if strings.Contains(ts.logs.String(), "open sesame") || strings.Contains(ts.logs.String(), "boss key") {
		t.Errorf("a key appears in the log:\n%s", ts.logs)
	}
}

// TestOpenRoomUnchanged: without -room-key every room route answers as
// before, with no credentials, and there is no /login.
func TestOpenRoomUnchanged(t *testing.T) {
	ts := startServer(t)
	for _, rt := range roomRoutes {
		r := mustSend(t, http.DefaultClient, rt.method, ts.URL+rt.path, rt.contentType, rt.body, nil)
		if r.status != rt.ok {
			t.Errorf("%s %s in an open room: %d (%s), want %d", rt.method, rt.path, r.status, r.body, rt.ok)
		}
	}
	for _, path := range []string{"/login", "/logout", "/messages/1-1", "/bans"} {
		if r := mustSend(t, http.DefaultClient, "POST", ts.URL+path, "application/json", `{}`, nil); r.status != http.StatusNotFound {
			t.Errorf("POST %s in an open room: %d, want 404", path, r.status)
		}
	}
	r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/session", "", "", nil)
	if string(bytes.TrimSpace(r.body)) != `{"private":false,"moderation":false,"role":"member"}` {
		t.Errorf("GET /session in an open room: %s", r.body)
	}
}

// TestLoginAndLogout: the room key (JSON or form) buys a session cookie with
// the right attributes, the admin key an admin session; a wrong or missing
// key does not; logout clears the cookie.
func TestLoginAndLogout(t *testing.T) {
	ts := startServer(t, "-room-key", "k1", "-admin-key", "a1", "-session-lifetime", "2h")
	c := http.DefaultClient
	r := login(t, c, ts.URL, "k1")
	if r.status != http.StatusNoContent {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	ck := sessionCookie(t, r)
	raw := r.header.Get("Set-Cookie")
	for _, attr := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(raw, attr) {
			t.Errorf("Set-Cookie %q lacks %s", raw, attr)
		}
	}
	if ck.Secure {
		t.Errorf("Secure cookie over plain HTTP: %q", raw)
	}
	if ck.MaxAge < 7199 || ck.MaxAge > 7200 {
		t.Errorf("Max-Age %d, want 2h", ck.MaxAge)
	}
	if got := mustSend(t, c, "GET", ts.URL+"/session", "", "", withCookie(ck.Value)); !strings.Contains(string(got.body), `"role":"member"`) {
		t.Errorf("session after a room-key login: %s", got.body)
	}

	form := mustSend(t, c, "POST", ts.URL+"/login", "application/x-www-form-urlencoded", "key=a1", nil)
	if form.status != http.StatusNoContent {
		t.Fatalf("form login with the admin key: %d %s", form.status, form.body)
	}
	adm := sessionCookie(t, form).Value
	if got := mustSend(t, c, "GET", ts.URL+"/session", "", "", withCookie(adm)); !strings.Contains(string(got.body), `"role":"admin"`) {
		t.Errorf("session after an admin-key login: %s", got.body)
	}
	if got := mustSend(t, c, "GET", ts.URL+"/stream", "", "", withCookie(adm)); got.status != http.StatusOK {
		t.Errorf("stream with an admin session: %d", got.status)
	}

	bad := []struct {
		name, contentType, body string
		want                    int
	}{
		{"wrong key", "application/json", `{"key":"k2"}`, 401},
		{"empty key", "application/json", `{"key":""}`, 400},
		{"no body", "application/json", ``, 400},
		{"key not a string", "application/json", `{"key":1}`, 400},
		{"unknown field", "application/json", `{"key":"k1","user":"x"}`, 400},
		{"two objects", "application/json", `{"key":"k1"}{"key":"k1"}`, 400},
		{"repeated form field", "application/x-www-form-urlencoded", "key=k1&key=k1", 400},
		{"other form field", "application/x-www-form-urlencoded", "key=k1&x=1", 400},
		{"text", "text/plain", "k1", 415},
		{"huge", "application/json", `{"key":"` + strings.Repeat("k", 5000) + `"}`, 413},
	}
	for _, tt := range bad {
		r := mustSend(t, c, "POST", ts.URL+"/login", tt.contentType, tt.body, nil)
		if r.status != tt.want || r.errorText() == "" {
			t.Errorf("login with %s: %d %s, want %d and a JSON error", tt.name, r.status, r.body, tt.want)
		}
		if len(r.header.Values("Set-Cookie")) != 0 {
			t.Errorf("login with %s set a cookie", tt.name)
		}
	}
	if r := mustSend(t, c, "GET", ts.URL+"/login", "", "", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET /login: %d, want 405", r.status)
	}

	out := mustSend(t, c, "POST", ts.URL+"/logout", "", "", withCookie(ck.Value))
	if out.status != http.StatusNoContent {
		t.Fatalf("logout: %d", out.status)
	}
	if cleared := sessionCookie(t, out); cleared.Value != "" || cleared.MaxAge >= 0 {
		t.Errorf("logout cookie %+v, want an empty value that expires now", cleared)
	}
}

// TestSessionCookieOverTLS: over HTTPS the session cookie is Secure.
func TestSessionCookieOverTLS(t *testing.T) {
	ts := startTLSServer(t, "-room-key", "k")
	r := login(t, ts.client, ts.URL, "k")
	if ck := sessionCookie(t, r); !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie over TLS: %q, want Secure, HttpOnly, SameSite=Strict", r.header.Get("Set-Cookie"))
	}
}

// TestSessionCookiesRefused: cookies signed with the server's secret but
// expired, or for another room key, and cookies with a changed byte are
// refused; a session survives a restart with -data, and changing the room
// key ends it.
func TestSessionCookiesRefused(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "chat.jsonl")
	ts := startServer(t, "-data", data, "-room-key", "k1", "-admin-key", "a1")
	c := http.DefaultClient
	good := sessionCookie(t, login(t, c, ts.URL, "k1")).Value

	secret, err := os.ReadFile(data + ".secret")
	if err != nil {
		t.Fatalf("no secret beside the journal: %v", err)
	}
	if fi, _ := os.Stat(data + ".secret"); fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode %04o, want 0600", fi.Mode().Perm())
	}
	sign := func(keys auth.Keys, role auth.Role, at time.Time) string {
		s, err := auth.NewSessions(secret, keys, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		v, _, err := s.Issue(role, at)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	keys := auth.Keys{Room: "k1", Admin: "a1"}
	accepted := sign(keys, auth.Member, time.Now())
	cases := []struct {
		name, value string
		ok          bool
	}{
		{"issued by login", good, true},
		{"signed here with the same secret", accepted, true},
		{"expired", sign(keys, auth.Member, time.Now().Add(-2*time.Hour)), false},
		{"for another room key", sign(auth.Keys{Room: "k0", Admin: "a1"}, auth.Member, time.Now()), false},
		{"other secret", func() string {
			s, _ := auth.NewSessions(bytes.Repeat([]byte{7}, auth.SecretSize), keys, time.Hour)
			v, _, _ := s.Issue(auth.Member, time.Now())
			return v
		}(), false},
		{"one byte changed", good[:20] + string(good[20]^1) + good[21:], false},
		{"role letter raised", strings.Replace(good, "v1.m.", "v1.a.", 1), false},
	}
	for _, tt := range cases {
		r := mustSend(t, c, "GET", ts.URL+"/stream", "", "", withCookie(tt.value))
		if (r.status == http.StatusOK) != tt.ok {
			t.Errorf("cookie %s: status %d, want ok=%v", tt.name, r.status, tt.ok)
		}
		if !tt.ok {
			check401(t, "cookie "+tt.name, r)
		}
	}
	ts.stop(t)
	ts = startServer(t, "-data", data, "-room-key", "k1", "-admin-key", "a1")
	if r := mustSend(t, c, "GET", ts.URL+"/stream", "", "", withCookie(good)); r.status != http.StatusOK {
		t.Errorf("session after a restart with the same key: %d, want 200", r.status)
	}
	ts.stop(t)
	ts = startServer(t, "-data", data, "-room-key", "k2", "-admin-key", "a1")
	check401(t, "session after the room key changed", mustSend(t, c, "GET", ts.URL+"/stream", "", "", withCookie(good)))
}

// TestLoginRateLimit: after loginFailures wrong keys in a minute, an
// address gets 429 with Retry-After, even for the right key and for Bearer
// keys; another address and an existing session are not affected.
func TestLoginRateLimit(t *testing.T) {
	ts := startServer(t, "-room-key", "right")
	a, b := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")
	session := sessionCookie(t, login(t, a, ts.URL, "right")).Value
	for i := range loginFailures - 1 {
		check401(t, "wrong login "+strconv.Itoa(i+1), login(t, a, ts.URL, "wrong"))
	}
	// A wrong Bearer key counts as well.
	check401(t, "wrong Bearer key", mustSend(t, a, "GET", ts.URL+"/stream", "", "", bearer("wrong")))
	checkRetryAfter(t, "login after the failures", login(t, a, ts.URL, "wrong"), 429, 1, 60)
	checkRetryAfter(t, "right key after the failures", login(t, a, ts.URL, "right"), 429, 1, 60)
	checkRetryAfter(t, "right Bearer key after the failures", mustSend(t, a, "GET", ts.URL+"/stream", "", "", bearer("right")), 429, 1, 60)
	if r := mustSend(t, a, "GET", ts.URL+"/stream", "", "", withCookie(session)); r.status != http.StatusOK {
		t.Errorf("existing session from the throttled address: %d, want 200", r.status)
	}
	if r := login(t, b, ts.URL, "right"); r.status != http.StatusNoContent {
		t.Errorf("login from another address: %d, want 204", r.status)
	}
	if strings.Contains(ts.logs.String(), "right") || strings.Contains(ts.logs.String(), "wrong") {
		t.Errorf("a key appears in the log:\n%s", ts.logs)
	}
}

// TestCrossSiteLogin: the cross-site protection of /post covers /login and
// /logout.
func TestCrossSiteLogin(t *testing.T) {
	ts := startServer(t, "-room-key", "k")
	cross := map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
	for _, path := range []string{"/login", "/logout"} {
		r := mustSend(t, http.DefaultClient, "POST", ts.URL+path, "application/x-www-form-urlencoded", "key=k", cross)
		if r.status != http.StatusForbidden || r.errorText() == "" {
			t.Errorf("cross-site POST %s: %d %s, want 403 with a JSON error", path, r.status, r.body)
		}
		if len(r.header.Values("Set-Cookie")) != 0 {
			t.Errorf("cross-site POST %s set a cookie", path)
		}
	}
}

// TestKeyFlags: keys come from flags, CHAT_* variables or files; bad
// combinations are refused with errors that never show a key.
func TestKeyFlags(t *testing.T) {
	dir := t.TempDir()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	good := []struct {
		name       string
		args       []string
		env        map[string]string
		room, admn string
	}{
		{"none", nil, nil, "", ""},
		{"flags", []string{"-room-key", "r", "-admin-key", "a"}, nil, "r", "a"},
		{"env", nil, map[string]string{"CHAT_ROOM_KEY": "r", "CHAT_ADMIN_KEY": "a"}, "r", "a"},
		{"files", []string{"-room-key-file", keyFile(t, dir, "r", "  room key "), "-admin-key-file", keyFile(t, dir, "a", "admin")}, nil, "room key", "admin"},
		{"file from env", nil, map[string]string{"CHAT_ROOM_KEY_FILE": keyFile(t, dir, "r2", "from file")}, "from file", ""},
	}
	for _, tt := range good {
		c, err := parseFlags(append([]string{"chat"}, tt.args...), env(tt.env), &bytes.Buffer{})
		if err != nil || c.roomKey != tt.room || c.adminKey != tt.admn {
			t.Errorf("%s: room %q admin %q err %v; want %q %q", tt.name, c.roomKey, c.adminKey, err, tt.room, tt.admn)
		}
	}
	bad := []struct {
		name string
		args []string
	}{
		{"key and file", []string{"-room-key", "secret1", "-room-key-file", keyFile(t, dir, "x", "secret2")}},
		{"empty file", []string{"-room-key-file", keyFile(t, dir, "empty", "  ")}},
		{"missing file", []string{"-admin-key-file", filepath.Join(dir, "nope")}},
		{"same keys", []string{"-room-key", "secret1", "-admin-key", "secret1"}},
		{"zero lifetime", []string{"-room-key", "secret1", "-session-lifetime", "0"}},
	}
	for _, tt := range bad {
		_, err := parseFlags(append([]string{"chat"}, tt.args...), env(nil), &bytes.Buffer{})
		if err == nil {
			t.Errorf("%s: accepted", tt.name)
			continue
		}
		if strings.Contains(err.Error(), "secret1") || strings.Contains(err.Error(), "secret2") {
			t.Errorf("%s: error shows the key: %v", tt.name, err)
		}
	}
}
