package main

// Hardening tests: every limit and defence of the server, each shown to
// hold over real HTTP on loopback, and each failing without the defence.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chat/internal/httpx"
	"chat/internal/limit"
	"chat/internal/record"
	"chat/internal/stream"
)

// TestLimitFlagDefaults checks the documented defaults of the limit flags,
// their environment variables, that negative values are refused and that
// 0 turns the post limit off.
func TestLimitFlagDefaults(t *testing.T) {
	noEnv := func(string) string { return "" }
	cfg, err := parseFlags([]string{"chat"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.maxStreams != 50000 || cfg.maxStreamsPerAddr != 64 || cfg.postRate != 5 || cfg.postBurst != 20 || cfg.trustedProxies != "" {
		t.Errorf("defaults: -max-streams %d -max-streams-per-addr %d -post-rate %v -post-burst %d -trusted-proxies %q; want 50000 64 5 20 \"\"",
			cfg.maxStreams, cfg.maxStreamsPerAddr, cfg.postRate, cfg.postBurst, cfg.trustedProxies)
	}
	env := map[string]string{
		"CHAT_MAX_STREAMS": "7", "CHAT_MAX_STREAMS_PER_ADDR": "3", "CHAT_POST_RATE": "0.5",
		"CHAT_POST_BURST": "4", "CHAT_TRUSTED_PROXIES": "10.0.0.0/8",
	}
	cfg, err = parseFlags([]string{"chat"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.maxStreams != 7 || cfg.maxStreamsPerAddr != 3 || cfg.postRate != 0.5 || cfg.postBurst != 4 || cfg.trustedProxies != "10.0.0.0/8" {
		t.Errorf("from environment: %+v, %v", cfg, err)
	}
	for _, flag := range []string{"-max-streams", "-max-streams-per-addr", "-post-rate", "-post-burst"} {
		if _, err := parseFlags([]string{"chat", flag, "-1"}, noEnv, io.Discard); err == nil {
			t.Errorf("%s -1 accepted", flag)
		}
	}
	err = run(context.Background(), []string{"chat", "-addr", "127.0.0.1:0", "-trusted-proxies", "10.0.0.1,proxy.example"}, noEnv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "proxy.example") {
		t.Errorf("run with a bad -trusted-proxies = %v, want an error naming it", err)
	}
}

// TestMaxStreams checks -max-streams: past it a stream gets 503 with
// Retry-After, counted in streams_rejected, and a freed place is usable
// (once the next heartbeat has noticed the closed stream).
func TestMaxStreams(t *testing.T) {
	ts := startServer(t, "-max-streams", "3", "-heartbeat", "50ms")
	subs := []*subscriber{subscribe(t, ts.URL, ""), subscribe(t, ts.URL, ""), subscribe(t, ts.URL, "")}
	r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/stream", "", "", nil)
	checkRetryAfter(t, "GET /stream past -max-streams", r, http.StatusServiceUnavailable, 1, 60)
	// A different address is refused too: the cap is for the server.
	r = mustSend(t, clientFrom(t, "127.0.0.2"), "GET", ts.URL+"/stream", "", "", nil)
	checkRetryAfter(t, "GET /stream from 127.0.0.2 past -max-streams", r, http.StatusServiceUnavailable, 1, 60)
	if st := ts.stats(t); st.StreamsRejected != 2 || st.Clients != 3 {
		t.Errorf("stats: streams_rejected %d, clients %d; want 2, 3", st.StreamsRejected, st.Clients)
	}
	subs[0].close()
	waitFor(t, "a place to free up", func() bool { return ts.stats(t).Clients == 2 })
	subscribe(t, ts.URL, "")
}

// TestMaxStreamsPerAddr checks -max-streams-per-addr: past it a stream from
// the same address gets 429 with Retry-After (whatever X-Forwarded-For it
// claims), counted in streams_rejected, while other addresses still
// connect.
func TestMaxStreamsPerAddr(t *testing.T) {
	ts := startServer(t, "-max-streams-per-addr", "2", "-heartbeat", "50ms")
	addr := ts.addr()
	a1 := subscribe(t, ts.URL, "")
	subscribe(t, ts.URL, "")
	r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/stream", "", "", nil)
	checkRetryAfter(t, "third stream from 127.0.0.1", r, http.StatusTooManyRequests, 1, 60)
	r = mustSend(t, http.DefaultClient, "GET", ts.URL+"/stream", "", "", map[string]string{"X-Forwarded-For": "198.51.100.9"})
	checkRetryAfter(t, "third stream from 127.0.0.1 claiming another address", r, http.StatusTooManyRequests, 1, 60)
	for _, ip := range []string{"127.0.0.2", "127.0.0.2"} {
		s, status, err := dialStream(addr, ip, "")
		if err != nil || status != http.StatusOK {
			t.Fatalf("stream from %s: status %d, %v; want 200", ip, status, err)
		}
		defer s.conn.Close()
	}
	if _, status, err := dialStream(addr, "127.0.0.2", ""); err != nil || status != http.StatusTooManyRequests {
		t.Errorf("third stream from 127.0.0.2: status %d, %v; want 429", status, err)
	}
	if st := ts.stats(t); st.StreamsRejected != 3 || st.Clients != 4 {
		t.Errorf("stats: streams_rejected %d, clients %d; want 3, 4", st.StreamsRejected, st.Clients)
	}
	a1.close()
	waitFor(t, "a stream of 127.0.0.1 to leave", func() bool { return ts.stats(t).Clients == 3 })
	subscribe(t, ts.URL, "")
}

// TestHeadStream checks that HEAD /stream answers what GET /stream would
// at the same moment (bad parameters, an address at its stream limit, a
// full server, a banned address), without a body, and that it joins
// nothing: no client, no name on the roster, no place taken, nothing
// counted as a refused stream.
func TestHeadStream(t *testing.T) {
	ts := startServer(t, "-max-streams", "2", "-max-streams-per-addr", "1", "-admin-key", "boss")
	// check sends HEAD and, unless onlyHead, GET /stream+query from c, and
	// fails the test unless both answer want, the HEAD without a body.
	check := func(what string, c *http.Client, query string, want int, onlyHead bool) {
		t.Helper()
		head := mustSend(t, c, "HEAD", ts.URL+"/stream"+query, "", "", nil)
		if head.status != want || len(head.body) != 0 {
			t.Errorf("HEAD /stream%s %s: %d with %d body bytes, want %d and none", query, what, head.status, len(head.body), want)
		}
		if (want == http.StatusTooManyRequests || want == http.StatusServiceUnavailable) && head.header.Get("Retry-After") == "" {
			t.Errorf("HEAD /stream %s: %d without Retry-After", what, want)
		}
		if onlyHead {
			return
		}
		get := mustSend(t, c, "GET", ts.URL+"/stream"+query, "", "", nil)
		if get.status != want || get.header.Get("Retry-After") != head.header.Get("Retry-After") ||
			get.header.Get("Content-Type") != head.header.Get("Content-Type") {
			t.Errorf("/stream%s %s: GET %d %v, HEAD %d %v; want both %d with the same headers", query, what, get.status, get.header, head.status, head.header, want)
		}
	}
	head := mustSend(t, http.DefaultClient, "HEAD", ts.URL+"/stream?name=alice", "", "", nil)
	if head.status != 200 || head.header.Get("Content-Type") != "text/event-stream" || head.header.Get("Cache-Control") != "no-cache" || len(head.body) != 0 {
		t.Errorf("HEAD /stream on an empty server: %d %v %q", head.status, head.header, head.body)
	}
	for _, q := range []string{"?lastEventId=x", "?lastEventId=1-1&lastEventId=1-2", "?name=", "?name=a&name=b"} {
		check("with bad parameters", http.DefaultClient, q, http.StatusBadRequest, false)
	}
	if st := ts.stats(t); st.Clients != 0 || st.ConnectionsTotal != 0 || st.People != 0 {
		t.Errorf("after HEAD requests: clients %d, connections %d, people %d; want none", st.Clients, st.ConnectionsTotal, st.People)
	}
	if p := mustSend(t, http.DefaultClient, "GET", ts.URL+"/presence", "", "", nil); strings.Contains(string(p.body), "alice") {
		t.Errorf("a HEAD put its name on the roster: %s", p.body)
	}
	subscribe(t, ts.URL, "") // 127.0.0.1 is at its limit of 1
	check("from an address at its limit", http.DefaultClient, "", http.StatusTooManyRequests, false)
	subscribeOpts(t, ts.URL, streamOpts{client: clientFrom(t, "127.0.0.2")})
	check("on a full server", clientFrom(t, "127.0.0.3"), "", http.StatusServiceUnavailable, false)
	if r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/bans", "application/json", `{"addr":"127.0.0.4"}`, admin()); r.status != http.StatusCreated {
		t.Fatalf("ban: %d %s", r.status, r.body)
	}
	check("from a banned address", clientFrom(t, "127.0.0.4"), "", http.StatusForbidden, false)
	if st := ts.stats(t); st.Clients != 2 || st.StreamsRejected != 3 {
		t.Errorf("stats: clients %d, streams_rejected %d; want 2 and 3 (the GETs alone)", st.Clients, st.StreamsRejected)
	}
}

// TestRepeatedLastEventID checks that a stream request giving its resume
// point twice, as two Last-Event-ID headers or two lastEventId parameters,
// is refused with 400 and joins nothing, as /history refuses repeated
// parameters.
func TestRepeatedLastEventID(t *testing.T) {
	ts := startServer(t)
	m := ts.post(t, "u", "hello")
	for _, tt := range []struct {
		name, query string
		headers     []string
	}{
		{"two headers", "", []string{m.ID, m.ID}},
		{"two headers, one empty", "", []string{"", m.ID}},
		{"two parameters", "?lastEventId=" + m.ID + "&lastEventId=" + m.ID, nil},
		{"two empty parameters", "?lastEventId=&lastEventId=", nil},
	} {
		req, _ := http.NewRequest("GET", ts.URL+"/stream"+tt.query, nil)
		for _, h := range tt.headers {
			req.Header.Add("Last-Event-ID", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body []byte
		if resp.StatusCode != http.StatusOK { // an open stream would not end
			body, _ = io.ReadAll(resp.Body)
		}
		resp.Body.Close()
		var e errorBody
		if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "more than once") {
			t.Errorf("%s: %d %s, want 400 saying it was given more than once", tt.name, resp.StatusCode, body)
		}
	}
	if st := ts.stats(t); st.ConnectionsTotal != 0 {
		t.Errorf("refused streams joined: %d connections", st.ConnectionsTotal)
	}
}

// TestPostRateLimit checks -post-rate and -post-burst end to end: an
// address gets its burst, then 429 with a Retry-After that says when a
// token is back; X-Forwarded-For does not buy a fresh bucket (no trusted
// proxies by default); another address is not affected; every refusal is
// in posts_rejected and nothing refused is stored.
func TestPostRateLimit(t *testing.T) {
	// One token every 10 s: the test is far quicker than a refill.
	ts := startServer(t, "-post-rate", "0.1", "-post-burst", "3")
	for i := range 3 {
		if r := postMsg(t, http.DefaultClient, ts.URL, "a", fmt.Sprint("burst ", i), nil); r.status != http.StatusCreated {
			t.Fatalf("post %d of the burst: status %d %s, want 201", i, r.status, r.body)
		}
	}
	r := postMsg(t, http.DefaultClient, ts.URL, "a", "one too many", nil)
	checkRetryAfter(t, "post past the burst", r, http.StatusTooManyRequests, 8, 10)
	for i, xff := range []string{"198.51.100.1", "198.51.100.2, 198.51.100.3", "::1"} {
		r := postMsg(t, http.DefaultClient, ts.URL, "a", fmt.Sprint("spoof ", i), map[string]string{"X-Forwarded-For": xff})
		checkRetryAfter(t, "post with X-Forwarded-For "+xff, r, http.StatusTooManyRequests, 1, 10)
	}
	other := clientFrom(t, "127.0.0.2")
	for i := range 3 {
		if r := postMsg(t, other, ts.URL, "b", fmt.Sprint("other ", i), nil); r.status != http.StatusCreated {
			t.Errorf("post %d from 127.0.0.2: status %d %s, want 201", i, r.status, r.body)
		}
	}
	st := ts.stats(t)
	if st.PostsRejected != 4 || st.MessagesPosted != 6 || st.HistorySize != 6 {
		t.Errorf("stats: posts_rejected %d, messages_posted %d, history %d; want 4, 6, 6", st.PostsRejected, st.MessagesPosted, st.HistorySize)
	}
}

// TestTrustedProxyEndToEnd runs with -trusted-proxies 127.0.0.1: each
// address in X-Forwarded-For gets its own bucket, and a client cannot
// escape its own by prepending addresses to the header the proxy extends.
func TestTrustedProxyEndToEnd(t *testing.T) {
	ts := startServer(t, "-post-rate", "0.1", "-post-burst", "2", "-trusted-proxies", "127.0.0.1")
	xff := func(v string) map[string]string { return map[string]string{"X-Forwarded-For": v} }
	for i := range 2 {
		if r := postMsg(t, http.DefaultClient, ts.URL, "a", fmt.Sprint(i), xff("198.51.100.1")); r.status != http.StatusCreated {
			t.Fatalf("post %d for 198.51.100.1: status %d %s", i, r.status, r.body)
		}
	}
	r := postMsg(t, http.DefaultClient, ts.URL, "a", "too many", xff("198.51.100.1"))
	checkRetryAfter(t, "third post for 198.51.100.1", r, http.StatusTooManyRequests, 1, 10)
	r = postMsg(t, http.DefaultClient, ts.URL, "a", "spoofed", xff("203.0.113.66, 198.51.100.1"))
	checkRetryAfter(t, "post for 198.51.100.1 with a spoofed address before it", r, http.StatusTooManyRequests, 1, 10)
	if r := postMsg(t, http.DefaultClient, ts.URL, "b", "other client", xff("198.51.100.2")); r.status != http.StatusCreated {
		t.Errorf("post for 198.51.100.2: status %d %s, want 201", r.status, r.body)
	}
	if st := ts.stats(t); st.PostsRejected != 2 || st.MessagesPosted != 3 {
		t.Errorf("stats: posts_rejected %d, messages_posted %d; want 2, 3", st.PostsRejected, st.MessagesPosted)
	}
}

// TestTrustedProxyStreams checks the per-address stream limit behind a
// trusted proxy: it counts the forwarded address, not the proxy's.
func TestTrustedProxyStreams(t *testing.T) {
	ts := startServer(t, "-max-streams-per-addr", "1", "-trusted-proxies", "127.0.0.1")
	addr := ts.addr()
	for _, client := range []string{"198.51.100.1", "198.51.100.2"} {
		s, status, err := dialStream(addr, "", "X-Forwarded-For: "+client+"\r\n")
		if err != nil || status != http.StatusOK {
			t.Fatalf("stream for %s: status %d, %v; want 200", client, status, err)
		}
		defer s.conn.Close()
	}
	if _, status, err := dialStream(addr, "", "X-Forwarded-For: 203.0.113.1, 198.51.100.1\r\n"); err != nil || status != http.StatusTooManyRequests {
		t.Errorf("second stream for 198.51.100.1: status %d, %v; want 429", status, err)
	}
	if st := ts.stats(t); st.StreamsRejected != 1 {
		t.Errorf("streams_rejected = %d, want 1", st.StreamsRejected)
	}
}

// TestCrossSitePost checks that browsers' cross-site POSTs (by fetch
// metadata or by Origin) are refused with a JSON 403 and store nothing,
// while curl-like and same-origin requests pass.
func TestCrossSitePost(t *testing.T) {
	ts := startServer(t)
	const jsonBody, formBody = `{"username":"x","content":"y"}`, "username=x&content=y"
	tests := []struct {
		name, contentType, body string
		header                  map[string]string
		want                    int
	}{
		{"curl-like", "application/json", jsonBody, nil, 201},
		{"curl-like form", "application/x-www-form-urlencoded", formBody, nil, 201},
		{"same-origin fetch", "application/json", jsonBody, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": ts.URL}, 201},
		{"same-origin metadata only", "application/json", jsonBody, map[string]string{"Sec-Fetch-Site": "same-origin"}, 201},
		{"old browser, same Origin", "application/json", jsonBody, map[string]string{"Origin": ts.URL}, 201},
		{"cross-site fetch", "application/json", jsonBody, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403},
		{"cross-site metadata only", "application/json", jsonBody, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"cross-site form", "application/x-www-form-urlencoded", formBody, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403},
		{"same-site is another origin", "application/json", jsonBody, map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://sub.127.0.0.1"}, 403},
		{"old browser, other Origin", "application/json", jsonBody, map[string]string{"Origin": "https://evil.example"}, 403},
		{"old browser, other port", "application/x-www-form-urlencoded", formBody, map[string]string{"Origin": "http://127.0.0.1:1"}, 403},
		{"old browser, null Origin", "application/x-www-form-urlencoded", formBody, map[string]string{"Origin": "null"}, 403},
	}
	var created, refused uint64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/post", tt.contentType, tt.body, tt.header)
			if r.status != tt.want {
				t.Fatalf("POST with %v: status %d %s, want %d", tt.header, r.status, r.body, tt.want)
			}
			if r.status == http.StatusCreated {
				created++
				return
			}
			refused++
			if r.errorText() == "" || r.header.Get("Content-Type") != "application/json" {
				t.Errorf("403 with Content-Type %q, body %s; want a JSON error", r.header.Get("Content-Type"), r.body)
			}
		})
	}
	st := ts.stats(t)
	if st.MessagesPosted != created {
		t.Errorf("messages_posted = %d, want %d: a refused post was stored", st.MessagesPosted, created)
	}
	t.Run("counted in posts_rejected", func(t *testing.T) {
		if st.PostsRejected != refused {
			t.Errorf("posts_rejected = %d after %d cross-site posts were refused, want %d", st.PostsRejected, refused, refused)
		}
	})
}

// TestPageSecurityHeaders extends TestPageAndHeaders: the page's CSP is
// exactly the contract's (its script and style from this server, nothing
// inline, nothing from elsewhere), the page has nothing the policy would
// block, HEAD gets the same headers, and every kind of response carries
// nosniff.
func TestPageSecurityHeaders(t *testing.T) {
	ts := startServer(t)
	page, err := pageFiles.ReadFile("index.html")
	if err != nil {
		t.Fatal(err)
	}
	// The page itself: module scripts loaded from this server and empty;
	// no <style>, no inline style or event-handler attributes; nothing
	// loaded from elsewhere.
	scripts := regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllSubmatch(page, -1)
	if len(scripts) == 0 {
		t.Fatal("index.html loads no script")
	}
	for _, s := range scripts {
		if !regexp.MustCompile(`^ type="module" src="web/[a-z]+\.js"$`).Match(s[1]) || len(s[2]) != 0 {
			t.Errorf("index.html has a script that is not an empty module from web/: %.80q", s[0])
		}
	}
	if n := len(regexp.MustCompile(`(?i)<script`).FindAllIndex(page, -1)); n != len(scripts) {
		t.Errorf("index.html has %d <script tags, %d of them well formed", n, len(scripts))
	}
	if m := regexp.MustCompile(`(?i)<[^>]*\s(style|on[a-z]+)\s*=|<style`).Find(page); m != nil {
		t.Errorf("index.html has an inline style or handler the CSP blocks: %.80q", m)
	}
	if m := regexp.MustCompile(`(?i)\s(src|href|action)\s*=\s*["']?(https?:|//)`).Find(page); m != nil {
		t.Errorf("index.html loads from elsewhere: %.80q", m)
	}
	const wantCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
	for _, method := range []string{"GET", "HEAD"} {
		r := mustSend(t, http.DefaultClient, method, ts.URL+"/", "", "", nil)
		if r.status != 200 {
			t.Fatalf("%s /: status %d", method, r.status)
		}
		if got := r.header.Get("Content-Security-Policy"); got != wantCSP {
			t.Errorf("%s / CSP:\n got %s\nwant %s", method, got, wantCSP)
		}
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
			if got := r.header.Get(k); got != want {
				t.Errorf("%s / %s = %q, want %q", method, k, got, want)
			}
		}
	}
	// JSON answers and the stream are not sniffed into HTML either.
	for _, path := range []string{"/stats", "/nope", "/healthz"} {
		if r := mustSend(t, http.DefaultClient, "GET", ts.URL+path, "", "", nil); r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s without X-Content-Type-Options: nosniff", path)
		}
	}
	if r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/post", "text/html", "<b>", nil); r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("POST /post error without X-Content-Type-Options: nosniff")
	}
	if s := subscribe(t, ts.URL, ""); s.resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET /stream without X-Content-Type-Options: nosniff")
	}
}

// TestRequestSizeLimits checks the bounds on what one request may send:
// headers past the server's maximum get 431, and a chunked body (no
// Content-Length to refuse early) past -max-body gets a JSON 413.
func TestRequestSizeLimits(t *testing.T) {
	ts := startServer(t, "-max-body", "256")
	big := strings.Repeat("x", maxHeaderBytes+8<<10)
	r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/stats", "", "", map[string]string{"X-Big": big})
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("GET with %d bytes of headers: status %d, want 431", len(big), r.status)
	}
	body := `{"username":"a","content":"` + strings.Repeat("b", 300) + `"}`
	// A reader of unknown length makes the client send it chunked.
	req, _ := http.NewRequest("POST", ts.URL+"/post", io.MultiReader(strings.NewReader(body)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := (reply{status: resp.StatusCode, header: resp.Header, body: b}); got.status != http.StatusRequestEntityTooLarge || !strings.Contains(got.errorText(), "256") {
		t.Errorf("chunked POST of %d bytes: status %d %s, want 413 with a JSON error", len(body), got.status, got.body)
	}
	if st := ts.stats(t); st.MessagesPosted != 0 {
		t.Errorf("messages_posted = %d, want 0", st.MessagesPosted)
	}
}

// TestSlowHeadersCut is the slowloris defence: a client that sends its
// request headers a byte at a time, forever, or connects and sends
// nothing, is cut by ReadHeaderTimeout (5 s), not left to hold a connection
// and a goroutine. It takes about 5 s and runs in parallel with the other
// slow tests.
func TestSlowHeadersCut(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	for _, tt := range []struct {
		name    string
		dribble bool
	}{{"dribble", true}, {"silent", false}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", ts.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			stop := make(chan struct{})
			defer close(stop)
			// The dribble: one byte every 50 ms, paced by a ticker; it
			// ends when a write fails or the test ends.
			go func() {
				if !tt.dribble {
					return
				}
				if _, err := io.WriteString(conn, "GET /stats HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
					return
				}
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if _, err := conn.Write([]byte("a")); err != nil {
							return
						}
					}
				}
			}()
			checkCut(t, conn, start, readHeaderTimeout)
		})
	}
}

// checkCut waits for the server to close conn (the client reads nothing
// but the end) and checks that this happened after about timeout from
// start: not before 80% of it, nor after it plus 3 s.
func checkCut(t *testing.T, conn net.Conn, start time.Time, timeout time.Duration) {
	t.Helper()
	_ = conn.SetReadDeadline(start.Add(timeout + 3*time.Second))
	got, err := io.ReadAll(conn)
	elapsed := time.Since(start)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("connection still open after %v (server timeout %v)", elapsed.Round(time.Millisecond), timeout)
	case elapsed < timeout*8/10:
		t.Fatalf("connection closed after %v, before the %v timeout (read %q, %v)", elapsed.Round(time.Millisecond), timeout, got, err)
	}
	t.Logf("cut after %v (timeout %v), read %q", elapsed.Round(time.Millisecond), timeout, httpx.Truncate(string(got), 60))
}

// TestSlowBodyCut checks that a POST whose body trickles in is cut by
// ReadTimeout (15 s) and stores nothing. It takes about 15 s, so it runs in
// parallel with the other slow tests and not in -short mode; a hook to
// shorten readTimeout in tests would make it quick.
func TestSlowBodyCut(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 15 s (ReadTimeout)")
	}
	t.Parallel()
	ts := startServer(t)
	start := time.Now()
	body := `{"username":"slow","content":"` + strings.Repeat("z", 900) + `"}`
	conn, err := dialRaw(ts.addr(), "", fmt.Sprintf("POST /post HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(body)-1; i++ { // never the last byte
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte{body[i]}); err != nil {
					return
				}
			}
		}
	}()
	checkCut(t, conn, start, readTimeout)
	if st := ts.stats(t); st.MessagesPosted != 0 {
		t.Errorf("messages_posted = %d, want 0", st.MessagesPosted)
	}
}

// TestUnreadStreamCut checks -write-timeout: a client that opens a stream
// and never reads is disconnected once a write to it blocks longer than
// the timeout, even though its queue never fills (so it is not the
// slow-client rule that cuts it), and its writer goroutine ends.
func TestUnreadStreamCut(t *testing.T) {
	ts := startServer(t, "-write-timeout", "300ms", "-client-buffer", "100000", "-history", "10",
		"-max-content", "20000", "-max-body", "100000")
	before := baselineGoroutines()
	s, status, err := dialStream(ts.addr(), "", "")
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /stream: %d, %v", status, err)
	}
	defer s.conn.Close()
	waitFor(t, "the client to join", func() bool { return ts.stats(t).Clients == 1 })
	big := strings.Repeat("w", 16000)
	start := time.Now()
	posts := 0
	for ts.stats(t).Clients != 0 {
		if posts >= 5000 || time.Since(start) > waitTimeout {
			t.Fatalf("client that never reads still connected after %d posts of 16 kB in %v", posts, time.Since(start).Round(time.Millisecond))
		}
		ts.post(t, "w", big)
		posts++
	}
	t.Logf("cut after %d posts of 16 kB in %v", posts, time.Since(start).Round(time.Millisecond))
	if st := ts.stats(t); st.SlowDisconnects != 0 {
		t.Errorf("slow_disconnects = %d, want 0: the queue limit cut the client, not the write timeout", st.SlowDisconnects)
	}
	settleGoroutines(t, "after the write timeout", before+2)
}

// TestVanishingClients opens 1000 streams whose clients then vanish with a
// TCP reset and no further traffic: every stream must be noticed (at the
// next heartbeat, as nothing else is written) and its client and goroutine
// freed, while the clients that stay receive every message in order.
func TestVanishingClients(t *testing.T) {
	ts := startServer(t, "-heartbeat", "50ms")
	addr := ts.addr()
	const vanishing, staying, before, after = 1000, 3, 20, 20
	stayers := make([]*subscriber, staying)
	for i := range stayers {
		stayers[i] = subscribe(t, ts.URL, "")
	}
	waitFor(t, "the staying clients", func() bool { return ts.stats(t).Clients == staying })
	base := baselineGoroutines()

	conns := make([]*net.TCPConn, vanishing)
	var wg sync.WaitGroup
	errs := make(chan error, vanishing)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < vanishing; i += 4 {
				s, status, err := dialStream(addr, "", "")
				if err != nil || status != http.StatusOK {
					errs <- fmt.Errorf("stream %d: status %d, %v", i, status, err)
					return
				}
				conns[i] = s.conn.(*net.TCPConn)
			}
		})
	}
	wg.Wait()
	close(errs)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, "every client to join", func() bool { return ts.stats(t).Clients == vanishing+staying })

	var posted []Message
	for i := range before {
		posted = append(posted, ts.post(t, "p", fmt.Sprint("before ", i)))
	}
	for _, c := range conns {
		_ = c.SetLinger(0)
		c.Close()
	}
	start := time.Now()
	waitFor(t, "the vanished clients to leave", func() bool { return ts.stats(t).Clients == staying })
	t.Logf("%d reset streams noticed within %v", vanishing, time.Since(start).Round(time.Millisecond))
	settleGoroutines(t, "after the resets", base+3)
	for i := range after {
		posted = append(posted, ts.post(t, "p", fmt.Sprint("after ", i)))
	}
	for i, s := range stayers {
		got, _ := s.messages(t, len(posted))
		if fmt.Sprint(ids(got)) != fmt.Sprint(ids(posted)) {
			t.Errorf("staying client %d got %v, want %v", i, ids(got), ids(posted))
		}
	}
	if st := ts.stats(t); st.SlowDisconnects != 0 || st.ConnectionsTotal != vanishing+staying {
		t.Errorf("stats: slow_disconnects %d, connections_total %d; want 0, %d", st.SlowDisconnects, st.ConnectionsTotal, vanishing+staying)
	}
}

// TestPostFloodIsolation floods posts from 127.0.0.2 far past its rate
// limit while a client on 127.0.0.1 posts normally: the flooder gets 429s
// (and no more than its burst plus its rate through), and the other
// client's posts all get 201 and reach a subscriber promptly.
func TestPostFloodIsolation(t *testing.T) {
	ts := startServer(t, "-post-rate", "5", "-post-burst", "20")
	watcher := subscribe(t, ts.URL, "")
	type arrival struct {
		m  Message
		at time.Time
	}
	arrivals := make(chan arrival, 10000)
	go func() {
		defer close(arrivals)
		for {
			ev, err := watcher.sse.NextEvent()
			if err != nil {
				return
			}
			var m Message
			if json.Unmarshal([]byte(ev.Data), &m) == nil {
				arrivals <- arrival{m, time.Now()}
			}
		}
	}()

	flooder := clientFrom(t, "127.0.0.2")
	var accepted, refused, badRetry atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	floodStart := time.Now()
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := send(flooder, "POST", ts.URL+"/post", "application/json", `{"username":"flood","content":"spam"}`, nil)
				switch {
				case err != nil:
				case r.status == http.StatusCreated:
					accepted.Add(1)
				case r.status == http.StatusTooManyRequests:
					refused.Add(1)
					if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 {
						badRetry.Add(1)
					}
				}
			}
		})
	}
	waitFor(t, "the flood to be refused", func() bool { return refused.Load() >= 200 })

	// The quiet client posts every 50 ms, within its own rate, while the
	// flood goes on.
	const quiet = 15
	sent := map[string]time.Time{}
	pace := time.NewTicker(50 * time.Millisecond)
	defer pace.Stop()
	for i := range quiet {
		<-pace.C
		at := time.Now()
		r := postMsg(t, http.DefaultClient, ts.URL, "quiet", fmt.Sprint("q", i), nil)
		if r.status != http.StatusCreated {
			t.Fatalf("quiet post %d during the flood: status %d %s, want 201", i, r.status, r.body)
		}
		var m Message
		_ = json.Unmarshal(r.body, &m)
		sent[m.ID] = at
	}
	var worst time.Duration
	timeout := time.After(waitTimeout)
	for got := 0; got < quiet; {
		select {
		case a, ok := <-arrivals:
			if !ok {
				t.Fatalf("watcher's stream ended after %d quiet messages", got)
			}
			if at, ok := sent[a.m.ID]; ok {
				got++
				worst = max(worst, a.at.Sub(at))
			}
		case <-timeout:
			t.Fatalf("watcher got %d of %d quiet messages within %v", got, quiet, waitTimeout)
		}
	}
	close(stop)
	wg.Wait()
	floodTime := time.Since(floodStart)
	t.Logf("flood of %v: %d accepted, %d refused; quiet posts delivered within %v at worst",
		floodTime.Round(time.Millisecond), accepted.Load(), refused.Load(), worst.Round(time.Microsecond))
	if limit := int64(20 + 5*floodTime.Seconds() + 1); accepted.Load() > limit {
		t.Errorf("flooder got %d posts through in %v, want at most %d (burst 20 + 5/s)", accepted.Load(), floodTime, limit)
	}
	if badRetry.Load() != 0 {
		t.Errorf("%d of the flooder's 429s lacked a Retry-After of whole seconds", badRetry.Load())
	}
	if worst > time.Second {
		t.Errorf("a quiet post took %v from POST to delivery during the flood, want under 1s", worst)
	}
	if st := ts.stats(t); st.PostsRejected != uint64(refused.Load()) {
		t.Errorf("posts_rejected = %d, want the flooder's %d refusals", st.PostsRejected, refused.Load())
	}
}

// FuzzRequest feeds hostile methods, paths, headers, Last-Event-ID values
// and bodies through the real handler. It must never panic, and every
// answer is a success the request asked for or a JSON error.
func FuzzRequest(f *testing.F) {
	stats := NewStats()
	room := NewChatRoom(RoomConfig{History: 50, Backlog: 5}, stats)
	ctx, cancel := context.WithCancel(context.Background())
	roomDone := make(chan struct{})
	go func() {
		room.Run(ctx)
		close(roomDone)
	}()
	f.Cleanup(func() {
		cancel()
		<-roomDone
	})
	trusted, _ := limit.ParseTrustedProxies("192.0.2.0/24")
	var shuttingDown atomic.Bool
	handler := newServer(room, stats, stream.NewTracker(), &shuttingDown, serverConfig{
		heartbeat:    time.Hour,
		writeTimeout: time.Second,
		maxContent:   200,
		maxBody:      1024,
		limiter:      limit.New(1e9, 1<<30),
		addrOf:       limit.ClientAddr(trusted),
	}, slog.New(slog.DiscardHandler))
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
