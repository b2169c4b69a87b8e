package main

// Tests of GET /stream: posts reaching every stream in order, the
// headers and the preamble, history on join, the slow-client policy (a slow
// client is cut and loses nothing), goroutines freed, HEAD, a repeated
// Last-Event-ID, and cross-site streams refused.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"chat/internal/record"
	"chat/internal/sse"
)

func TestPostAndStream(t *testing.T) {
	ts := startServer(t)
	const clients, messages = 20, 30
	subs := make([]*subscriber, clients)
	for i := range subs {
		subs[i] = subscribe(t, ts.URL, "")
	}
	var posted []Message
	for i := range messages {
		posted = append(posted, ts.post(t, fmt.Sprintf("user%d", i%3), fmt.Sprintf("message %d\nwith a second line", i)))
	}
	for i, m := range posted {
		_, seq, err := record.ParseID(m.ID)
		if err != nil || seq != uint64(i+1) {
			t.Fatalf("post %d got id %q, want sequence %d", i, m.ID, i+1)
		}
	}
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() {
			got, _ := s.messages(t, messages)
			if fmt.Sprint(got) != fmt.Sprint(posted) {
				t.Errorf("client %d got %v, want %v", i, ids(got), ids(posted))
			}
		})
	}
	wg.Wait()
	if st := ts.stats(t); st.MessagesPosted != messages || st.Deliveries != clients*messages || st.Clients != clients {
		t.Errorf("stats = %+v, want %d messages, %d deliveries, %d clients", st, messages, clients*messages, clients)
	}
}

func TestStreamHeaders(t *testing.T) {
	ts := startServer(t, "-heartbeat", "50ms")
	s := subscribe(t, ts.URL, "")
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := s.resp.Header.Get(k); got != want {
			t.Errorf("GET /stream header %s = %q, want %q", k, got, want)
		}
	}
	// The preamble arrives at once (so EventSource opens) and carries a
	// retry hint and the stream position; heartbeats follow.
	done := make(chan error, 1)
	go func() {
		for comments := 0; comments < 2; {
			b, err := s.sse.Next()
			if err != nil {
				done <- err
				return
			}
			comments += len(b.Comments)
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reading stream: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("no two heartbeats within %v", waitTimeout)
	}
	if got := s.sse.Retry(); got != time.Second {
		t.Errorf("retry = %v, want 1s", got)
	}
	if _, seq, err := record.ParseID(s.sse.LastEventID()); err != nil || seq != 0 {
		t.Errorf("preamble id = %q, want <epoch>-0", s.sse.LastEventID())
	}
}

func TestHistoryOnJoin(t *testing.T) {
	ts := startServer(t, "-backlog", "5", "-history", "20")
	var posted []Message
	for i := range 8 {
		posted = append(posted, ts.post(t, "a", fmt.Sprint("before ", i)))
	}
	// Posts race with the join: whatever the interleaving, the client
	// must see the last 5 before it joined, then every later one, with no
	// gap and no duplicate.
	done := make(chan []Message)
	go func() {
		var later []Message
		for i := range 10 {
			r, err := postJSON(http.DefaultClient, ts.URL, "b", fmt.Sprint("during ", i), nil)
			if err != nil {
				break
			}
			later = append(later, r.msg)
		}
		done <- later
	}()
	s := subscribe(t, ts.URL, "")
	later := <-done
	all := append(posted, later...)
	got, _ := s.messages(t, 1)
	_, first, _ := record.ParseID(got[0].ID)
	if first < 4 || first > 14 {
		t.Fatalf("first message %s, want one of the 5 newest at join time", got[0].ID)
	}
	rest, _ := s.messages(t, len(all)-int(first))
	got = append(got, rest...)
	if want := all[first-1:]; fmt.Sprint(ids(got)) != fmt.Sprint(ids(want)) {
		t.Errorf("got %v, want %v", ids(got), ids(want))
	}
}

func TestSlowClientLosesNothing(t *testing.T) {
	ts := startServer(t, "-client-buffer", "16", "-history", "5000", "-write-timeout", "30s", "-max-content", "20000", "-max-body", "100000")
	// The slow client stops reading after the preamble, with a small
	// socket buffer so that the server's writes soon block.
	conn, err := dialRaw(ts.addr(), "", "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	slowConn := bufio.NewReaderSize(conn, 1024)
	if _, err := slowConn.ReadString('\n'); err != nil { // status line
		t.Fatal(err)
	}
	// The header lines that follow are fields the parser ignores.
	slow := sse.NewReader(slowConn)
	// The fast client reads all along.
	fast := subscribe(t, ts.URL, "")
	fastGot := make(chan Message, 10000)
	go func() {
		for {
			ev, err := fast.sse.NextEvent()
			if err != nil {
				close(fastGot)
				return
			}
			var m Message
			if json.Unmarshal([]byte(ev.Data), &m) == nil {
				fastGot <- m
			}
		}
	}()

	big := strings.Repeat("x", 16000)
	var posted []Message
	for i := 0; ts.stats(t).SlowDisconnects == 0; i++ {
		if i > 4000 {
			t.Fatalf("no slow disconnect after %d posts", i)
		}
		posted = append(posted, ts.post(t, "a", fmt.Sprint(i, big)))
	}
	for range 5 {
		posted = append(posted, ts.post(t, "a", fmt.Sprint("after ", big)))
	}
	// The fast client was never held up or cut off.
	var got []Message
	for len(got) < len(posted) {
		select {
		case m, ok := <-fastGot:
			if !ok {
				t.Fatalf("fast client's stream ended after %d messages", len(got))
			}
			got = append(got, m)
		case <-time.After(waitTimeout):
			t.Fatalf("fast client: timed out after %d of %d messages", len(got), len(posted))
		}
	}
	if fmt.Sprint(ids(got)) != fmt.Sprint(ids(posted)) {
		t.Fatalf("fast client: got %v, want %v", ids(got), ids(posted))
	}
	// The slow client reads what it was sent, then sees the stream end,
	// resumes with its last id and gets everything else.
	var slowGot []Message
	for {
		ev, err := slow.NextEvent()
		if err != nil {
			break
		}
		if ev.Type == "message" {
			var m Message
			_ = json.Unmarshal([]byte(ev.Data), &m)
			slowGot = append(slowGot, m)
		}
	}
	if len(slowGot) >= len(posted) {
		t.Fatalf("slow client got all %d messages before its disconnect; test proves nothing", len(slowGot))
	}
	again := subscribe(t, ts.URL, slow.LastEventID())
	rest, other := again.messages(t, len(posted)-len(slowGot))
	if len(other) != 0 {
		t.Errorf("resume: unexpected events %+v", other)
	}
	slowGot = append(slowGot, rest...)
	if fmt.Sprint(ids(slowGot)) != fmt.Sprint(ids(posted)) {
		t.Errorf("slow client ended with %v, want %v", ids(slowGot), ids(posted))
	}
	st := ts.stats(t)
	if st.SlowDisconnects != 1 || st.SlowDropped == 0 {
		t.Errorf("stats slow_disconnects=%d slow_dropped_messages=%d, want 1 and > 0", st.SlowDisconnects, st.SlowDropped)
	}
}

func TestGoroutinesReturnToBaseline(t *testing.T) {
	ts := startServer(t, "-heartbeat", "20ms")
	before := runtime.NumGoroutine()
	subs := make([]*subscriber, 100)
	for i := range subs {
		subs[i] = subscribe(t, ts.URL, "")
	}
	waitFor(t, "100 clients", func() bool { return ts.stats(t).Clients == 100 })
	if n := runtime.NumGoroutine(); n < before+100 {
		t.Fatalf("goroutines with 100 streams = %d, want at least %d", n, before+100)
	}
	for _, s := range subs {
		s.close()
	}
	http.DefaultClient.CloseIdleConnections()
	waitFor(t, "clients to leave", func() bool { return ts.stats(t).Clients == 0 })
	waitFor(t, "goroutines to return to baseline", func() bool {
		http.DefaultClient.CloseIdleConnections()
		return runtime.NumGoroutine() <= before+2
	})
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
