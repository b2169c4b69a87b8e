package main

// Tests of private rooms (-room-key): every room route refuses a request
// without credentials and serves one with them, an open room is unchanged,
// and the key flags.

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	for _, path := range []string{"/login", "/logout", "/bans", "/names"} {
		if r := mustSend(t, http.DefaultClient, "POST", ts.URL+path, "application/json", `{}`, nil); r.status != http.StatusNotFound {
			t.Errorf("POST %s in an open room: %d, want 404", path, r.status)
		}
	}
	// Authors edit and delete their messages in every room.
	if r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/messages/1-1", "application/json", `{}`, nil); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "PATCH, DELETE" {
		t.Errorf("POST /messages/1-1 in an open room: %d, Allow %q; want 405 with PATCH, DELETE", r.status, r.header.Get("Allow"))
	}
	r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/session", "", "", nil)
	if string(bytes.TrimSpace(r.body)) != `{"private":false,"moderation":false,"role":"member"}` {
		t.Errorf("GET /session in an open room: %s", r.body)
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
		if err != nil || c.RoomKey != tt.room || c.AdminKey != tt.admn {
			t.Errorf("%s: room %q admin %q err %v; want %q %q", tt.name, c.RoomKey, c.AdminKey, err, tt.room, tt.admn)
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
