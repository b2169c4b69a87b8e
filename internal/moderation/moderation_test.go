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
)

// serve runs h on one request and returns the recorder.
func serve(h http.Handler, method, target, contentType, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	mux := http.NewServeMux()
	mux.Handle(method+" /messages/{id}", h)
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

// TestDeleteRefusesBadID checks that a malformed id is a 400 before the
// room is asked (the room here is nil).
func TestDeleteRefusesBadID(t *testing.T) {
	for _, id := range []string{"x", "1-", "-1", "1-2-3", "1-99999999999999999999999"} {
		if rec := serve(HandleDelete(nil), "DELETE", "/messages/"+id, "", ""); rec.Code != 400 || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("DELETE /messages/%s: %d %s, want a JSON 400", id, rec.Code, rec.Body)
		}
	}
}
