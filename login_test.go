package main

// Tests of logins and sessions (-room-key, -admin-key): the session cookie
// and its attributes, cookies refused, sessions across restarts and key
// changes, and the throttle on wrong keys (per address, per IPv6 prefix, with
// bodies held back).

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"chat/internal/auth"
	"chat/internal/config"
)

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

// TestSessionsEndForGoodOnKeyChange restarts a server with -data as its
// room key goes K1, K2, K1: the session made with the first K1 stays
// refused, and the change is logged; a restart with the same key keeps
// sessions.
func TestSessionsEndForGoodOnKeyChange(t *testing.T) {
	data := filepath.Join(t.TempDir(), "chat.jsonl")
	start := func(key string) *testServer { return startServer(t, "-data", data, "-room-key", key) }
	ts := start("k1")
	first := sessionCookie(t, login(t, http.DefaultClient, ts.URL, "k1")).Value
	ts.stop(t)
	ts = start("k1")
	if r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/history", "", "", withCookie(first)); r.status != http.StatusOK {
		t.Errorf("session after a restart with the same key: %d, want 200", r.status)
	}
	ts.stop(t)
	ts = start("k2")
	check401(t, "session after K1 became K2", mustSend(t, http.DefaultClient, "GET", ts.URL+"/history", "", "", withCookie(first)))
	if !strings.Contains(ts.logs.String(), "every session has ended") {
		t.Errorf("the key change is not logged:\n%s", ts.logs)
	}
	ts.stop(t)
	ts = start("k1")
	check401(t, "K1's session after K1, K2, K1", mustSend(t, http.DefaultClient, "GET", ts.URL+"/history", "", "", withCookie(first)))
	if r := login(t, http.DefaultClient, ts.URL, "k1"); r.status != http.StatusNoContent {
		t.Errorf("a new login with K1: %d, want 204", r.status)
	}
}

// TestSessionLifetimeFlag checks that a session lifetime under a minute
// is refused at start with one line that names the flag.
func TestSessionLifetimeFlag(t *testing.T) {
	for _, v := range []string{"0", "-1h", "500ms", "59s"} {
		_, err := parseFlags([]string{"chat", "-room-key", "k", "-session-lifetime", v}, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-session-lifetime") || strings.Contains(err.Error(), "\n") {
			t.Errorf("-session-lifetime %s: %v, want a one-line error naming the flag", v, err)
		}
	}
	if c, err := parseFlags([]string{"chat", "-room-key", "k", "-session-lifetime", "1m"}, func(string) string { return "" }, io.Discard); err != nil || c.SessionLifetime != time.Minute {
		t.Errorf("-session-lifetime 1m: %v, %v", c.SessionLifetime, err)
	}
}

// TestLoginRateLimit: after config.LoginFailures wrong keys in a minute, an
// address gets 429 with Retry-After, even for the right key and for Bearer
// keys; another address and an existing session are not affected.
func TestLoginRateLimit(t *testing.T) {
	ts := startServer(t, "-room-key", "right")
	a, b := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")
	session := sessionCookie(t, login(t, a, ts.URL, "right")).Value
	for i := range config.LoginFailures - 1 {
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

// heldLogins sends one POST /login per key at once through c, each with
// "Expect: 100-continue" and its body held back. The server asks for a
// body (100 Continue) only once its handler reads it, so when every
// request has either been asked for its body or answered, the server has
// read every request's headers and decided on each; only then are all the
// bodies sent, together. It returns the final status of each request.
func heldLogins(t *testing.T, c *http.Client, url string, keys []string) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*waitTimeout)
	defer cancel()
	decided := make(chan struct{}, len(keys))
	statuses := make([]int, len(keys))
	bodies := make([]*io.PipeWriter, len(keys))
	var wg sync.WaitGroup
	for i, key := range keys {
		body := `{"key":"` + key + `"}`
		pr, pw := io.Pipe()
		bodies[i] = pw
		var once sync.Once
		signal := func() { once.Do(func() { decided <- struct{}{} }) }
		trace := &httptrace.ClientTrace{Got100Continue: signal}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "POST", url+"/login", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Expect", "100-continue")
		wg.Go(func() {
			defer signal()
			resp, err := c.Do(req)
			if err != nil {
				statuses[i] = -1
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	for range keys {
		select {
		case <-decided:
		case <-ctx.Done():
			t.Fatalf("the server did not read every login's headers within %v", 2*waitTimeout)
		}
	}
	for i, key := range keys {
		go func() {
			_, _ = io.WriteString(bodies[i], `{"key":"`+key+`"}`)
			bodies[i].Close()
		}()
	}
	wg.Wait()
	return statuses
}

// TestLoginThrottleHeldBodies sends 40 logins from one address at once,
// over HTTP/1.1 (one connection each) and over HTTP/2 (one connection),
// holding every body back until the server has read all the headers, with
// the right key among the wrong ones. At most config.LoginFailures of them may
// have their key looked at (401, or 204 for the right key); the others get
// 429 without their bodies being read.
func TestLoginThrottleHeldBodies(t *testing.T) {
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprintf("wrong%d", i)
	}
	keys[len(keys)/2] = "right"
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		t.Run(proto, func(t *testing.T) {
			ts := startTLSServer(t, "-room-key", "right")
			base := ts.URL
			tr := clientTransport("127.0.0.2", proto == "HTTP/2")
			tr.ExpectContinueTimeout = time.Hour // never send a body unasked
			if proto == "HTTP/1.1" {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			t.Cleanup(tr.CloseIdleConnections)
			counts := map[int]int{}
			for _, s := range heldLogins(t, &http.Client{Transport: tr}, base, keys) {
				counts[s]++
			}
			looked := counts[http.StatusUnauthorized] + counts[http.StatusNoContent]
			if looked != config.LoginFailures || counts[http.StatusTooManyRequests] != len(keys)-looked {
				t.Errorf("40 logins with held bodies: statuses %v; want %d keys looked at (401 or 204) and 429 for the rest", counts, config.LoginFailures)
			}
			// Unless the right key was among those looked at (and given its
			// try back), the address is blocked now, the right key included.
			c := &http.Client{Transport: tr}
			want := http.StatusTooManyRequests
			if counts[http.StatusNoContent] > 0 {
				want = http.StatusNoContent
			}
			if r := mustSend(t, c, "POST", base+"/login", "application/json", `{"key":"right"}`, nil); r.status != want {
				t.Errorf("right key after the burst (statuses %v): %d, want %d", counts, r.status, want)
			}
		})
	}
}

// TestLoginThrottleRefund checks that a right key and a login whose body
// is no key at all do not count as wrong keys: an address may log in again
// and again, and send malformed bodies, without being blocked.
func TestLoginThrottleRefund(t *testing.T) {
	ts := startServer(t, "-room-key", "right")
	c := clientFrom(t, "127.0.0.2")
	for i := range 2 * config.LoginFailures {
		if r := login(t, c, ts.URL, "right"); r.status != http.StatusNoContent {
			t.Fatalf("login %d with the right key: %d, want 204", i+1, r.status)
		}
		if r := mustSend(t, c, "POST", ts.URL+"/login", "application/json", `{"key":`, nil); r.status != http.StatusBadRequest {
			t.Fatalf("malformed login %d: %d, want 400", i+1, r.status)
		}
	}
	for i := range config.LoginFailures {
		check401(t, fmt.Sprintf("wrong key %d", i+1), login(t, c, ts.URL, "wrong"))
	}
	if r := login(t, c, ts.URL, "right"); r.status != http.StatusTooManyRequests {
		t.Errorf("right key after %d wrong ones: %d, want 429", config.LoginFailures, r.status)
	}
}

// TestLoginThrottleIPv6 sends wrong keys through a trusted proxy from 40
// IPv6 /64s of one /56: the /56 may try 4 times what one address may, and
// then every /64 in it is refused, for logins and Bearer keys alike, while
// another /56 is not.
func TestLoginThrottleIPv6(t *testing.T) {
	ts := startServer(t, "-room-key", "right", "-trusted-proxies", "127.0.0.1")
	from := func(host string) map[string]string { return map[string]string{"X-Forwarded-For": host} }
	tried := 0
	for i := range 40 {
		for range config.LoginFailures {
			r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/login", "application/json", `{"key":"wrong"}`, from(fmt.Sprintf("2001:db8:0:%x::1", i)))
			if r.status == http.StatusUnauthorized {
				tried++
			} else if r.status != http.StatusTooManyRequests {
				t.Fatalf("wrong key from /64 %d: %d %s", i, r.status, r.body)
			}
		}
	}
	if want := 4 * config.LoginFailures; tried != want {
		t.Errorf("40 /64s of one /56 had %d wrong keys looked at, want %d", tried, want)
	}
	h := from("2001:db8:0:ff::1")
	h["Authorization"] = "Bearer right"
	if r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/history", "", "", h); r.status != http.StatusTooManyRequests {
		t.Errorf("right Bearer key from a fresh /64 of the blocked /56: %d, want 429", r.status)
	}
	other := from("2001:db8:0:100::1")
	if r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/login", "application/json", `{"key":"right"}`, other); r.status != http.StatusNoContent {
		t.Errorf("right key from another /56: %d, want 204", r.status)
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
