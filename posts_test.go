package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"chat/internal/limit"
	"chat/internal/record"
	"chat/internal/sse"
)

// TestStrictJSON checks the strict JSON decoder: keys must match a field
// name exactly and appear once, as in the form path; nothing is stored.
func TestStrictJSON(t *testing.T) {
	ts := startServer(t)
	tests := []struct {
		name, body, want string
	}{
		{"upper-case keys", `{"USERNAME":"alice","CoNtEnT":"x"}`, `unknown field "USERNAME"`},
		{"one key in another case", `{"username":"alice","Content":"x"}`, `unknown field "Content"`},
		{"repeated username", `{"username":"a","username":"b","content":"x"}`, `field "username" given more than once`},
		{"repeated content", `{"username":"a","content":"x","content":"y"}`, `field "content" given more than once`},
		{"repeated, other case", `{"username":"a","content":"x","CONTENT":"y"}`, `unknown field "CONTENT"`},
		{"unknown field", `{"username":"a","content":"x","id":"1-1"}`, `unknown field "id"`},
		{"wrong type still named", `{"username":"a","content":5}`, "content must be a string"},
		{"not an object", `["username"]`, "body must be a JSON object"},
		{"two objects", `{"username":"a","content":"x"}{}`, "single JSON object"},
	}
	before := ts.stats(t).MessagesPosted
	for _, tt := range tests {
		r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/post", "application/json", tt.body, nil)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(), tt.want) {
			t.Errorf("%s: POST %s: status %d, body %s; want 400 with %q", tt.name, tt.body, r.status, r.body, tt.want)
		}
	}
	if got := ts.stats(t).MessagesPosted; got != before {
		t.Errorf("messages_posted went from %d to %d; refused posts must not be stored", before, got)
	}
	// Exact keys, in any order, with nested values to skip, still pass.
	r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/post", "application/json", `{"content":"hi","username":"alice"}`, nil)
	if r.status != http.StatusCreated {
		t.Errorf("exact keys: status %d, body %s", r.status, r.body)
	}
}

// TestNameAndContentRules checks that names with bidirectional controls or
// zero-width characters, and messages with nothing visible, are refused
// with a clear 400 and never stored or sent, by JSON and by form.
func TestNameAndContentRules(t *testing.T) {
	ts := startServer(t)
	sub := subscribe(t, ts.URL, "")
	defer sub.close()
	tests := []struct {
		name, username, content, want string
	}{
		{"right-to-left override", "\u202eecila", "hi", "username must not contain bidirectional control characters (found U+202E)"},
		{"isolate", "bob\u2067", "hi", "U+2067"},
		{"right-to-left mark", "\u200fbob", "hi", "U+200F"},
		{"arabic letter mark", "bob\u061c", "hi", "U+061C"},
		{"zero-width space alone", "\u200b", "\u2800", "username must not contain zero-width characters (found U+200B)"},
		{"zero-width joiner", "ali\u200dce", "hi", "U+200D"},
		{"word joiner", "ali\u2060ce", "hi", "U+2060"},
		{"byte order mark", "\ufeffalice", "hi", "U+FEFF"},
		{"Hangul filler name", "\u3164", "hi", "username must contain at least one visible character"},
		{"braille blank content", "alice", "\u2800\u2800", "content must contain at least one visible character"},
		{"Hangul fillers content", "alice", "\u115f\u1160\u3164\uffa0", "content must contain at least one visible character"},
		{"format characters only", "alice", "\u200b\u200d\u2060\ufeff", "content must contain at least one visible character"},
		{"spaces and marks", "alice", "\u00a0\u3000\u0301", "content must contain at least one visible character"},
	}
	before := ts.stats(t).MessagesPosted
	for _, tt := range tests {
		r := postMsg(t, http.DefaultClient, ts.URL, tt.username, tt.content, nil)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(), tt.want) {
			t.Errorf("%s (JSON): status %d, body %s; want 400 with %q", tt.name, r.status, r.body, tt.want)
		}
		form := "username=" + urlEscape(tt.username) + "&content=" + urlEscape(tt.content)
		r = mustSend(t, http.DefaultClient, "POST", ts.URL+"/post", "application/x-www-form-urlencoded", form, nil)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(), tt.want) {
			t.Errorf("%s (form): status %d, body %s; want 400 with %q", tt.name, r.status, r.body, tt.want)
		}
	}
	if got := ts.stats(t).MessagesPosted; got != before {
		t.Errorf("messages_posted went from %d to %d; refused posts must not be stored", before, got)
	}
	// What people write still passes, bidi text in messages included.
	for _, m := range [][2]string{{"Zoë", "مرحبا \u202bبالعالم\u202c"}, {"王小明", "你好"}, {"dan 😀", "👍"}, {"eve", "a\u2800b"}} {
		if r := postMsg(t, http.DefaultClient, ts.URL, m[0], m[1], nil); r.status != http.StatusCreated {
			t.Errorf("post %+q: status %d, body %s", m, r.status, r.body)
		}
	}
	msgs, _ := sub.messages(t, 4)
	if msgs[0].Username != "Zoë" {
		t.Errorf("first message on the stream is %+v; a refused post was sent out", msgs[0])
	}
}

// urlEscape form-encodes s.
func urlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// TestCrossSiteStream checks that GET /stream refuses requests a browser
// marks as cross-site or same-site with a JSON 403, before they take a
// slot, and serves the page's own (same-origin), navigations (none) and
// clients that send no fetch metadata (curl).
func TestCrossSiteStream(t *testing.T) {
	ts := startServer(t)
	for _, sfs := range []string{"cross-site", "same-site"} {
		r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/stream", "", "", map[string]string{"Sec-Fetch-Site": sfs, "Origin": "http://evil.example"})
		if r.status != http.StatusForbidden || r.header.Get("Content-Type") != "application/json" || !strings.Contains(r.errorText(), "cross-site") {
			t.Errorf("Sec-Fetch-Site %s: status %d, Content-Type %q, body %s; want a JSON 403", sfs, r.status, r.header.Get("Content-Type"), r.body)
		}
	}
	s := ts.stats(t)
	if s.Clients != 0 || s.ConnectionsTotal != 0 || s.StreamsRejected != 2 {
		t.Errorf("after two cross-site streams: clients %d, connections_total %d, streams_rejected %d; want 0, 0, 2", s.Clients, s.ConnectionsTotal, s.StreamsRejected)
	}
	for _, sfs := range []string{"same-origin", "none", ""} {
		h := map[string]string{}
		if sfs != "" {
			h["Sec-Fetch-Site"] = sfs
		}
		if r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/stream", "", "", h); r.status != http.StatusOK {
			t.Errorf("Sec-Fetch-Site %q: status %d, want 200", sfs, r.status)
		}
	}
}

// TestHSTS checks that responses over TLS carry Strict-Transport-Security
// and responses over plain HTTP do not.
func TestHSTS(t *testing.T) {
	tlsTS := startTLSServer(t)
	client := tlsClient(t, true)
	for _, path := range []string{"/", "/stats", "/nope"} {
		r := mustSend(t, client, "GET", tlsTS.URL+path, "", "", nil)
		if got := r.header.Get("Strict-Transport-Security"); got != "max-age=86400" {
			t.Errorf("GET %s over TLS: Strict-Transport-Security %q, want max-age=86400", path, got)
		}
	}
	plain := startServer(t)
	if r := mustSend(t, http.DefaultClient, "GET", plain.URL+"/", "", "", nil); r.header.Get("Strict-Transport-Security") != "" {
		t.Errorf("GET / over plain HTTP has Strict-Transport-Security %q", r.header.Get("Strict-Transport-Security"))
	}
}

// TestPprofAddr checks that profiles are served only on the -pprof-addr
// listener, never on the public one, and that the old -pprof flag fails
// with a sentence that names its replacement.
func TestPprofAddr(t *testing.T) {
	ts := startServer(t, "-pprof-addr", "127.0.0.1:0")
	m := pprofRE.FindStringSubmatch(ts.logs.String())
	if m == nil {
		t.Fatalf("no pprof listening line in the log:\n%s", ts.logs)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=2", "/debug/pprof/cmdline"} {
		if r := mustSend(t, http.DefaultClient, "GET", ts.URL+path, "", "", nil); r.status != http.StatusNotFound {
			t.Errorf("GET %s on the public listener: status %d, want 404", path, r.status)
		}
		if r := mustSend(t, http.DefaultClient, "GET", "http://"+m[1]+path, "", "", nil); r.status != http.StatusOK {
			t.Errorf("GET %s on the pprof listener: status %d, want 200", path, r.status)
		}
	}
	plain := startServer(t)
	if r := mustSend(t, http.DefaultClient, "GET", plain.URL+"/debug/pprof/", "", "", nil); r.status != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ without -pprof-addr: status %d, want 404", r.status)
	}
	_, err := parseFlags([]string{"chat", "-pprof"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-pprof-addr") {
		t.Errorf("-pprof: error %v, want one naming -pprof-addr", err)
	}
	if _, err := parseFlags([]string{"chat"}, func(k string) string {
		if k == "CHAT_PPROF" {
			return "true"
		}
		return ""
	}, io.Discard); err == nil {
		t.Error("CHAT_PPROF=true accepted; want the same error as -pprof")
	}
}

// TestServerTimeouts checks the connection bounds: idle keep-alive
// connections close after about 30 s (idleTimeout), and headers are capped
// at 16 KiB.
func TestServerTimeouts(t *testing.T) {
	if idleTimeout > 30*time.Second || idleTimeout < 10*time.Second {
		t.Errorf("idleTimeout = %v, want about 30 s", idleTimeout)
	}
	if maxHeaderBytes > 16<<10 {
		t.Errorf("maxHeaderBytes = %d, want at most 16 KiB", maxHeaderBytes)
	}
	ts := startServer(t)
	// 17 KiB of headers plus net/http's 4 KiB allowance for the request
	// line is refused with 431.
	r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/stats", "", "", map[string]string{"X-Big": strings.Repeat("x", 21<<10)})
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("21 KiB of headers: status %d, want 431", r.status)
	}
}

// TestConnCap checks the per-address connection cap end to end: an
// address at -max-conns-per-addr has its next connection closed before
// anything is read, another address is served meanwhile, and /stats and
// /metrics count the refusal.
func TestConnCap(t *testing.T) {
	ts := startServer(t, "-max-conns-per-addr", "4")
	addr := ts.addr()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 4 {
		c, err := dialRaw(addr, "127.0.0.2", "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		_ = c.SetDeadline(time.Now().Add(waitTimeout))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("connection %d within the cap: %v", i, err)
		}
		resp.Body.Close()
	}
	over := clientFrom(t, "127.0.0.2")
	if _, err := send(over, "GET", ts.URL+"/healthz", "", "", nil); err == nil {
		t.Error("fifth connection from 127.0.0.2 was served; want it closed")
	}
	other := clientFrom(t, "127.0.0.3")
	if r := mustSend(t, other, "GET", ts.URL+"/healthz", "", "", nil); r.status != http.StatusOK {
		t.Errorf("another address while 127.0.0.2 holds its cap: status %d", r.status)
	}
	s := ts.stats(t)
	if s.ConnectionsRefused < 1 {
		t.Errorf("connections_refused = %d, want at least 1", s.ConnectionsRefused)
	}
	r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/metrics", "", "", nil)
	if !regexp.MustCompile(`(?m)^chat_tcp_connections_refused_total [1-9]`).Match(r.body) {
		t.Errorf("/metrics does not count the refusal:\n%s", r.body)
	}
}

// TestHubIPv6Aggregates checks that the per-address stream limit applies
// to an IPv6 /64, and 4 and 16 times over to its /56 and /48.
func TestHubIPv6Aggregates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		room := NewChatRoom(RoomConfig{MaxStreamsPerAddr: 1}, NewStats())
		go room.Run(ctx)
		join := func(host string) error {
			_, _, err := room.Join(ctx, limit.Key(host), nil)
			return err
		}
		if err := join("2001:db8:0:1::1"); err != nil {
			t.Fatal(err)
		}
		if err := join("2001:db8:0:1::2"); !errors.Is(err, errTooManyStreams) {
			t.Errorf("second stream of one /64: %v, want too many", err)
		}
		for i := 2; i <= 4; i++ {
			if err := join(fmt.Sprintf("2001:db8:0:%x::1", i)); err != nil {
				t.Errorf("/64 number %d of a /56: %v", i, err)
			}
		}
		if err := join("2001:db8:0:5::1"); !errors.Is(err, errTooManyStreams) {
			t.Errorf("fifth /64 of one /56 (limit 4): %v, want too many", err)
		}
		for i := 1; i < 4; i++ {
			for j := range 4 {
				if err := join(fmt.Sprintf("2001:db8:0:%x%02x::1", i, j)); err != nil {
					t.Errorf("/56 %d, /64 %d of a /48: %v", i, j, err)
				}
			}
		}
		if err := join("2001:db8:0:ff00::1"); !errors.Is(err, errTooManyStreams) {
			t.Errorf("17th /64 of one /48 (limit 16): %v, want too many", err)
		}
		if err := join("2001:db8:1::1"); err != nil {
			t.Errorf("the next /48: %v", err)
		}
	})
}

// slowReader reads at most chunk bytes every interval: a client on a slow
// link.
type slowReader struct {
	r        io.Reader
	chunk    int
	interval time.Duration
	next     time.Time
}

// Read reads up to chunk bytes once interval has passed since the last
// read.
func (s *slowReader) Read(p []byte) (int, error) {
	if d := time.Until(s.next); d > 0 {
		time.Sleep(d) // pacing a simulated slow link, not synchronisation
	}
	s.next = time.Now().Add(s.interval)
	return s.r.Read(p[:min(len(p), s.chunk)])
}

// fillHistory posts n messages of 2 000 three-byte characters.
func fillHistory(t *testing.T, ts *testServer, n int) {
	t.Helper()
	content := strings.Repeat("€", 2000)
	for range n {
		ts.post(t, "filler", content)
	}
}

// openRawStream opens GET /stream on a bare connection, resuming after
// lastID, with a deadline of waitTimeout for everything.
func openRawStream(t *testing.T, ts *testServer, lastID string) net.Conn {
	t.Helper()
	c, err := dialRaw(ts.addr(), "", "GET /stream HTTP/1.1\r\nHost: t\r\nLast-Event-ID: "+lastID+"\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readEvents reads the stream's events (after the HTTP head) until n
// messages have come or the stream ends, and returns the messages' ids,
// whether a reset came first and the error that ended it (nil if n came).
func readEvents(t *testing.T, r io.Reader, n int) (ids []string, reset bool, err error) {
	t.Helper()
	br := bufio.NewReaderSize(r, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, false, err
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /stream: %d", resp.StatusCode)
	}
	return moreEvents(sse.NewReader(br), n)
}

// moreEvents reads from sr until n messages have come or the stream ends,
// as readEvents does.
func moreEvents(sr *sse.Reader, n int) (ids []string, reset bool, err error) {
	for len(ids) < n {
		ev, err := sr.NextEvent()
		if err != nil {
			return ids, reset, err
		}
		if ev.Type == "reset" {
			reset = true
			continue
		}
		ids = append(ids, ev.ID)
	}
	return ids, reset, nil
}

// TestReplayInPieces checks that a resume's replay of all history (here
// 400 messages of 2 000 characters, 2.4 MB) reaches a client that reads
// steadily but too slowly to take it within one write timeout: the head
// goes out in pieces, each within the deadline.
func TestReplayInPieces(t *testing.T) {
	ts := startServer(t, "-history", "400", "-write-timeout", "1s")
	fillHistory(t, ts, 400)
	c := openRawStream(t, ts, "1-1")
	start := time.Now()
	// 16 KiB every 20 ms is 800 KB/s: about 3 s for the replay.
	ids, reset, err := readEvents(t, &slowReader{r: c, chunk: 16 << 10, interval: 20 * time.Millisecond}, 400)
	took := time.Since(start)
	if err != nil || !reset || len(ids) != 400 {
		t.Fatalf("slow reader got %d of 400 messages (reset %v) in %v, then %v", len(ids), reset, took, err)
	}
	if took < 2*time.Second {
		t.Errorf("the replay took %v, less than two write timeouts: the test proves nothing", took)
	}
}

// TestReplayCutResumes checks that a client that stops reading in the
// middle of its replay is cut at the write timeout, and that resuming from
// the last message it got yields exactly the rest.
func TestReplayCutResumes(t *testing.T) {
	ts := startServer(t, "-history", "200", "-write-timeout", "300ms")
	fillHistory(t, ts, 200)
	c := openRawStream(t, ts, "1-1")
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /stream: %v", err)
	}
	sr := sse.NewReader(br)
	got, _, err := moreEvents(sr, 10)
	if err != nil {
		t.Fatal(err)
	}
	// Stop reading: the server's writes block, and the write timeout
	// cuts the stream.
	waitFor(t, "the stalled replay to be cut", func() bool { return ts.stats(t).Clients == 0 })
	// Whatever reached the client before the cut is still readable; read
	// it, then resume after the last whole message.
	more, _, _ := moreEvents(sr, 200)
	got = append(got, more...)
	if len(got) >= 200 {
		t.Fatalf("the client got all %d messages although it stopped reading", len(got))
	}
	rest, reset, err := readEvents(t, openRawStream(t, ts, got[len(got)-1]), 200-len(got))
	if err != nil || reset {
		t.Fatalf("resume after %s: %d messages, reset %v, %v", got[len(got)-1], len(rest), reset, err)
	}
	got = append(got, rest...)
	for i := 1; i < len(got); i++ {
		_, a, _ := record.ParseID(got[i-1])
		_, b, _ := record.ParseID(got[i])
		if b != a+1 {
			t.Fatalf("message %d: id %s after %s; want no gap and no repeat", i, got[i], got[i-1])
		}
	}
}
