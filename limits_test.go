package main

// Tests of the limits: the limit flags and their defaults, the stream caps
// (in the hub, per address, per IPv6 prefix), the post rate per address and
// behind a trusted proxy, a post flood that leaves other clients alone, the
// size of a request, and the per-address connection cap. Each is shown to
// hold over real HTTP on loopback, and to fail without its defence.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"chat/internal/config"
	"chat/internal/limit"
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
	if cfg.MaxStreams != 50000 || cfg.MaxStreamsPerAddr != 64 || cfg.PostRate != 5 || cfg.PostBurst != 20 || cfg.TrustedProxies != "" {
		t.Errorf("defaults: -max-streams %d -max-streams-per-addr %d -post-rate %v -post-burst %d -trusted-proxies %q; want 50000 64 5 20 \"\"",
			cfg.MaxStreams, cfg.MaxStreamsPerAddr, cfg.PostRate, cfg.PostBurst, cfg.TrustedProxies)
	}
	env := map[string]string{
		"CHAT_MAX_STREAMS": "7", "CHAT_MAX_STREAMS_PER_ADDR": "3", "CHAT_POST_RATE": "0.5",
		"CHAT_POST_BURST": "4", "CHAT_TRUSTED_PROXIES": "10.0.0.0/8",
	}
	cfg, err = parseFlags([]string{"chat"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.MaxStreams != 7 || cfg.MaxStreamsPerAddr != 3 || cfg.PostRate != 0.5 || cfg.PostBurst != 4 || cfg.TrustedProxies != "10.0.0.0/8" {
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

// TestHubLimits checks the stream caps.
func TestHubLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		room := NewChatRoom(RoomConfig{MaxStreams: 3, MaxStreamsPerAddr: 2}, NewStats())
		go room.Run(ctx)
		a1, _, err1 := room.Join(ctx, "a", nil)
		_, _, err2 := room.Join(ctx, "a", nil)
		_, _, err3 := room.Join(ctx, "a", nil)
		_, _, err4 := room.Join(ctx, "b", nil)
		_, _, err5 := room.Join(ctx, "c", nil)
		if err1 != nil || err2 != nil || !errors.Is(err3, errTooManyStreams) || err4 != nil || !errors.Is(err5, errRoomFull) {
			t.Errorf("joins = %v %v %v %v %v; want ok ok too-many ok full", err1, err2, err3, err4, err5)
		}
		room.Leave(a1)
		if _, _, err := room.Join(ctx, "a", nil); err != nil {
			t.Errorf("join after leave: %v", err)
		}
	})
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

// TestRequestSizeLimits checks the bounds on what one request may send:
// headers past the server's maximum get 431, and a chunked body (no
// Content-Length to refuse early) past -max-body gets a JSON 413.
func TestRequestSizeLimits(t *testing.T) {
	ts := startServer(t, "-max-body", "256")
	big := strings.Repeat("x", config.MaxHeaderBytes+8<<10)
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
