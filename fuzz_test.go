package main

// FuzzRequest: hostile methods, paths, headers, Last-Event-ID values and
// bodies through the real handler.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"chat/internal/httpx"
	"chat/internal/limit"
	"chat/internal/record"
)

// FuzzRequest feeds hostile methods, paths, headers, Last-Event-ID values
// and bodies through the real handler. It must never panic, and every
// answer is a success the request asked for or a JSON error.
func FuzzRequest(f *testing.F) {
	_, room := startRoom(f, RoomConfig{History: 50, Backlog: 5})
	trusted, _ := limit.ParseTrustedProxies("192.0.2.0/24")
	handler := newHandler(room, serverConfig{
		heartbeat:    time.Hour,
		writeTimeout: time.Second,
		maxContent:   200,
		maxBody:      1024,
		limiter:      limit.New(1e9, 1<<30),
		addrOf:       limit.ClientAddr(trusted),
	})
	epoch := strconv.FormatInt(room.log.Epoch(), 10)

	// sel: bits 0-2 choose the method, 3-5 the path, 6 an unknown body
	// length, 7 whether Last-Event-ID goes in the header.
	f.Add(uint8(1), "", "", "application/json", "", "", "", "", []byte(`{"username":"a","content":"b"}`))
	f.Add(uint8(1), "", "", "application/x-www-form-urlencoded", "", "", "", "6.6.6.6, 192.0.2.9", []byte("username=a&content=b%0d%0ac"))
	f.Add(uint8(1|1<<6), "", "", "application/json; charset=latin1", "", "https://evil.example", "cross-site", "", []byte(`{"username":"a","content":"b"}`))
	f.Add(uint8(1), "", "", "multipart/form-data; boundary=x", "", "http://chat.example", "same-origin", "", []byte("--x--"))
	f.Add(uint8(1), "", "", "application/json", "", "", "", "", []byte(`{"username":"a","content":"`+strings.Repeat("é", 300)+`"}`))
	f.Add(uint8(1), "", "", "application/json", "", "", "", "", bytes.Repeat([]byte("["), 2000))
	f.Add(uint8(0|1<<3|1<<7), "", "", "", epoch+"-0", "", "", "", []byte(nil))
	f.Add(uint8(0|1<<3|1<<7), "", "", "", "-1", "", "", "", []byte(nil))
	f.Add(uint8(0|1<<3|1<<7), "", "", "", "1-"+strings.Repeat("9", 300), "", "", "", []byte(nil))
	f.Add(uint8(0|1<<3|1<<7), "", "", "", "abc-def", "", "", "", []byte(nil))
	f.Add(uint8(0|1<<3|1<<7), "", "", "", epoch+"-18446744073709551615", "", "", "", []byte(nil))
	f.Add(uint8(0|6<<3), "", "", "", "9223372036854775807-1", "", "", "", []byte(nil))
	f.Add(uint8(2|1<<3|1<<7), "", "", "", "1-1", "", "", "", []byte(nil))
	f.Add(uint8(7|7<<3), "PROPFIND", "a/../stream?lastEventId=x", "", "", "", "", "", []byte("x"))
	f.Add(uint8(0|7<<3), "", "%2e%2e/post", "", "", "", "", "", []byte(nil))
	f.Add(uint8(3|2<<3), "", "", "", "", "", "", "", []byte(nil))

	methods := []string{"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"}
	f.Fuzz(func(t *testing.T, sel uint8, method, path, contentType, lastEventID, origin, fetchSite, xff string, body []byte) {
		if sel&7 < 7 {
			method = methods[sel&7]
		} else if !validToken(method) {
			return // the server answers 400 before any handler runs
		}
		target := []string{"/post", "/stream", "/", "/stats", "/healthz", "/metrics",
			"/stream?lastEventId=" + url.QueryEscape(lastEventID), "/" + path}[sel>>3&7]
		u, err := url.ParseRequestURI(target)
		if err != nil || strings.ContainsFunc(target, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			return // not a request target a client can send
		}
		for _, v := range []string{contentType, lastEventID, origin, fetchSite, xff} {
			if !validHeaderValue(v) {
				return // net/http refuses such headers before any handler runs
			}
		}
		// A stream request is made by a client that has already gone, so
		// that a stream that opens ends at once.
		reqCtx := context.Background()
		if u.Path == "/stream" {
			c, cancel := context.WithCancel(context.Background())
			cancel()
			reqCtx = c
		}
		req := httptest.NewRequestWithContext(reqCtx, method, target, bytes.NewReader(body))
		req.Host = "chat.example"
		req.RemoteAddr = "192.0.2.1:1234"
		if sel&(1<<6) != 0 {
			req.ContentLength = -1
		}
		for k, v := range map[string]string{"Content-Type": contentType, "Origin": origin, "Sec-Fetch-Site": fetchSite, "X-Forwarded-For": xff} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		if sel&(1<<7) != 0 && lastEventID != "" {
			req.Header.Set("Last-Event-ID", lastEventID)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		checkFuzzAnswer(t, req, rec)
	})
}

// checkFuzzAnswer fails the test unless rec holds a sound answer to req:
// nosniff always; a JSON error with the headers its status needs; or a
// success of the kind the request asked for.
func checkFuzzAnswer(t *testing.T, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	h, code, body := rec.Header(), rec.Code, rec.Body.Bytes()
	what := fmt.Sprintf("%s %s (Content-Type %q, Last-Event-ID %q)", req.Method, httpx.Truncate(req.URL.String(), 80), req.Header.Get("Content-Type"), httpx.Truncate(req.Header.Get("Last-Event-ID"), 40))
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: no X-Content-Type-Options: nosniff", what)
	}
	head := req.Method == "HEAD"
	switch {
	case code == http.StatusCreated:
		var m Message
		if req.Method != "POST" || req.URL.Path != "/post" || json.Unmarshal(body, &m) != nil || m.Username == "" || m.Content == "" {
			t.Fatalf("%s: 201 with %q", what, body)
		}
		if _, _, err := record.ParseID(m.ID); err != nil || m.Time.IsZero() {
			t.Fatalf("%s: 201 with id %q, time %v", what, m.ID, m.Time)
		}
	case code == http.StatusOK && req.URL.Path == "/stream":
		// Either the stream opened (and ended, its client being gone) or
		// the client left before it joined and nothing was written.
		ct := h.Get("Content-Type")
		switch {
		case ct == "text/event-stream" && (head && len(body) == 0 || bytes.HasPrefix(body, []byte("id: "))):
		case ct == "" && len(body) == 0:
		default:
			t.Fatalf("%s: 200 with Content-Type %q and %q", what, ct, httpx.Truncate(string(body), 80))
		}
	case code == http.StatusOK:
		if req.Method != "GET" && !head || req.URL.Path == "/post" {
			t.Fatalf("%s: 200 with %q", what, httpx.Truncate(string(body), 80))
		}
	case code == http.StatusMovedPermanently || code == http.StatusTemporaryRedirect || code == http.StatusPermanentRedirect:
		// ServeMux sends unclean paths to their clean form.
		if h.Get("Location") == "" {
			t.Fatalf("%s: %d without Location", what, code)
		}
	case code >= 400 && code < 500 || code == http.StatusServiceUnavailable:
		var e errorBody
		if h.Get("Content-Type") != "application/json" || (!head || len(body) > 0) && (json.Unmarshal(body, &e) != nil || e.Error == "") {
			t.Fatalf("%s: %d with Content-Type %q and %q, want a JSON error", what, code, h.Get("Content-Type"), httpx.Truncate(string(body), 80))
		}
		if code == http.StatusMethodNotAllowed && h.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", what)
		}
		if (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable) && h.Get("Retry-After") == "" {
			t.Errorf("%s: %d without Retry-After", what, code)
		}
	default:
		t.Fatalf("%s: status %d with %q", what, code, httpx.Truncate(string(body), 80))
	}
}

// validToken reports whether s is an HTTP token, as a method must be.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether net/http would accept s as a header
// value: no control characters but tab.
func validHeaderValue(s string) bool {
	for _, c := range []byte(s) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
