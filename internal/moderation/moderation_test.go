package moderation

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"chat/internal/ban"
	"chat/internal/httpx"
	"chat/internal/names"
)

// serve runs h on one request and returns the recorder.
func serve(h http.Handler, method, target, contentType, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	mux := http.NewServeMux()
	mux.Handle(method+" /names", h)
	mux.Handle(method+" /names/{name...}", h)
	mux.Handle(method+" /bans", h)
	mux.Handle(method+" /bans/{addr...}", h)
	mux.ServeHTTP(rec, req)
	return rec
}

// TestAddBanRefuses checks that bad POST /bans bodies get a JSON error
// before anything is stored or the room is asked (the room here is nil:
// asking it would panic).
func TestAddBanRefuses(t *testing.T) {
	bans := ban.New()
	h := HandleAddBan(nil, bans, nil)
	for _, tt := range []struct {
		name, contentType, body string
		status                  int
		msg                     string
	}{
		{"no addr", "application/json", `{"for":"1h"}`, 400, "addr is required"},
		{"bad addr", "application/json", `{"addr":"example.com"}`, 400, "addr: "},
		{"bad prefix", "application/json", `{"addr":"10.0.0.0/33"}`, 400, "addr: "},
		{"bad duration", "application/json", `{"addr":"10.0.0.1","for":"soon"}`, 400, "is not a duration of at least"},
		{"zero duration", "application/json", `{"addr":"10.0.0.1","for":"0s"}`, 400, "is not a duration of at least"},
		{"negative duration", "application/json", `{"addr":"10.0.0.1","for":"-1h"}`, 400, "is not a duration of at least"},
		{"unknown field", "application/json", `{"addr":"10.0.0.1","why":"spam"}`, 400, `unknown field "why"`},
		{"repeated addr", "application/json", `{"addr":"10.0.0.1","addr":"10.0.0.2"}`, 400, "more than once"},
		{"addr not a string", "application/json", `{"addr":7}`, 400, "addr must be a string"},
		{"empty", "application/json", ``, 400, `body is empty; send {"addr": "...", "for": "1h"}`},
		{"form", "application/x-www-form-urlencoded", `addr=10.0.0.1`, 415, "Content-Type must be application/json"},
		{"huge", "application/json", `{"addr":"` + strings.Repeat("1", maxBanBody) + `"}`, 413, "body is larger than 4096 bytes"},
	} {
		rec := serve(h, "POST", "/bans", tt.contentType, tt.body)
		var e httpx.ErrorBody
		if rec.Code != tt.status || json.Unmarshal(rec.Body.Bytes(), &e) != nil || !strings.Contains(e.Error, tt.msg) {
			t.Errorf("POST /bans %s: %d %s, want %d with %q", tt.name, rec.Code, rec.Body, tt.status, tt.msg)
		}
	}
	if all := bans.All(time.Now()); len(all) != 0 {
		t.Errorf("bans stored from bad requests: %v", all)
	}
}

// TestListAndLiftBans checks GET /bans and DELETE /bans/{addr} on a real
// list, byte for byte.
func TestListAndLiftBans(t *testing.T) {
	bans := ban.New()
	list, lift := HandleListBans(bans), HandleLiftBan(bans)
	if rec := serve(list, "GET", "/bans", "", ""); rec.Code != 200 || rec.Body.String() != "{\"bans\":[]}\n" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("GET /bans, none: %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	now := time.Now()
	p, _ := ban.Parse("10.0.0.1")
	until := time.Date(2100, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := bans.Add(p, until, now); err != nil {
		t.Fatal(err)
	}
	q, _ := ban.Parse("2001:db8::/48")
	if _, err := bans.Add(q, time.Time{}, now); err != nil {
		t.Fatal(err)
	}
	want := "{\"bans\":[{\"addr\":\"10.0.0.1\",\"until\":\"2100-01-02T03:04:05Z\"},{\"addr\":\"2001:db8::/48\",\"until\":null}]}\n"
	if rec := serve(list, "GET", "/bans", "", ""); rec.Body.String() != want {
		t.Errorf("GET /bans = %q, want %q", rec.Body, want)
	}
	for _, tt := range []struct {
		addr   string
		status int
	}{
		{"not-an-ip", 400},
		{"10.0.0.2", 404},
		{"10.0.0.1", 204},
		{"10.0.0.1", 404},
		{"2001:db8::/48", 204},
	} {
		if rec := serve(lift, "DELETE", "/bans/"+tt.addr, "", ""); rec.Code != tt.status {
			t.Errorf("DELETE /bans/%s: %d %s, want %d", tt.addr, rec.Code, rec.Body, tt.status)
		}
	}
	if rec := serve(list, "GET", "/bans", "", ""); rec.Body.String() != "{\"bans\":[]}\n" {
		t.Errorf("GET /bans after lifting both: %q", rec.Body)
	}
}

// TestListAndFreeNames checks GET /names and DELETE /names/{name} on a real
// table: the list, byte for byte, without the holders' identities; a name
// freed in another form of it (names compare by skeleton); the answers for
// a name nobody holds and one the rules refuse.
func TestListAndFreeNames(t *testing.T) {
	tab := names.New(names.Options{Hold: time.Hour})
	list, free := HandleListNames(tab), HandleFreeName(tab)
	if rec := serve(list, "GET", "/names", "", ""); rec.Code != 200 || rec.Body.String() != "{\"names\":[]}\n" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("GET /names, none: %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	now := time.Now()
	if err := tab.Use("Alice", "identity-of-alice", now); err != nil {
		t.Fatal(err)
	}
	s, err := tab.Open("bob", "identity-of-bob", now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(now)
	stamp := func(t time.Time) string { b, _ := t.MarshalJSON(); return string(b) }
	want := `{"names":[{"name":"Alice","skeleton":"alice","since":` + stamp(now) + `,"last_used":` + stamp(now) + `,"until":` + stamp(now.Add(time.Hour)) + `,"streams":0},` +
		`{"name":"bob","skeleton":"bob","since":` + stamp(now) + `,"last_used":` + stamp(now) + `,"streams":1}]}` + "\n"
	rec := serve(list, "GET", "/names", "", "")
	if rec.Body.String() != want {
		t.Errorf("GET /names:\n got %s\nwant %s", rec.Body, want)
	}
	if strings.Contains(rec.Body.String(), "identity-of") {
		t.Errorf("GET /names shows a holder's identity: %s", rec.Body)
	}
	for _, tt := range []struct {
		path   string
		status int
		body   string
	}{
		{"/names/%EF%BC%A1LICE", 200, `"name":"Alice"`},
		{"/names/alice", 404, `nobody holds the name \"alice\"`},
		{"/names/alice%C2%AD", 400, "U+00AD"},
		{"/names/", 400, `"error"`},
	} {
		if rec := serve(free, "DELETE", tt.path, "", ""); rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("DELETE %s: %d %s, want %d with %s", tt.path, rec.Code, rec.Body, tt.status, tt.body)
		}
	}
	if err := tab.Use("alice", "someone-else", now); err != nil {
		t.Errorf("the freed name is still held: %v", err)
	}
}
