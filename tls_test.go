package main

// Tests over TLS: HTTP/2 (many streams and posts on one connection, an idle
// stream that outlives the write timeout, a stalled one that does not) and
// Strict-Transport-Security.

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"chat/internal/sse"
)

// TestHTTP2 serves over TLS and checks that streams and posts share one
// HTTP/2 connection: many streams open at once, where HTTP/1.1 browsers
// would stop at six.
func TestHTTP2(t *testing.T) {
	ts := startTLSServer(t)
	base := ts.URL
	client := http2Client(t, 0)

	const streams = 10
	subs := make([]*subscriber, streams)
	for i := range subs {
		subs[i] = subscribeOpts(t, base, streamOpts{client: client})
		if resp := subs[i].resp; resp.ProtoMajor != 2 {
			t.Fatalf("GET /stream over TLS: %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
		}
	}
	resp, err := client.Post(base+"/post", "application/json", strings.NewReader(`{"username":"h2","content":"over one connection"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST over HTTP/2: %d", resp.StatusCode)
	}
	for i, s := range subs {
		msgs, _ := s.messages(t, 1)
		if msgs[0].Content != "over one connection" {
			t.Errorf("stream %d got %+v", i, msgs[0])
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

// openHTTP2Stream opens GET /stream on base with c and checks that it is
// HTTP/2.
func openHTTP2Stream(t *testing.T, c *http.Client, base string) *subscriber {
	t.Helper()
	s := subscribeOpts(t, base, streamOpts{client: c})
	if s.resp.ProtoMajor != 2 {
		t.Fatalf("GET /stream over TLS: %s, want HTTP/2", s.resp.Proto)
	}
	return s
}

// TestHTTP2IdleStreamSurvivesWriteTimeout checks that an HTTP/2 stream
// with nothing to write stays open for much longer than -write-timeout:
// the write deadline guards writes, and must not reset an idle stream.
func TestHTTP2IdleStreamSurvivesWriteTimeout(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	ts := startTLSServer(t, "-write-timeout", writeTimeout.String())
	base := ts.URL
	c := http2Client(t, 0)
	s := openHTTP2Stream(t, c, base)
	if _, err := s.sse.Next(); err != nil {
		t.Fatalf("read the preamble: %v", err)
	}
	// Read in the background, so that a reset shows at once.
	ended := make(chan error, 1)
	events := make(chan sse.Event, 1)
	go func() {
		ev, err := s.sse.NextEvent()
		if err != nil {
			ended <- err
			return
		}
		events <- ev
	}()
	// Idle for eight write timeouts (well under the 15 s heartbeat).
	select {
	case err := <-ended:
		t.Fatalf("idle HTTP/2 stream ended within %v (write timeout %v): %v", 8*writeTimeout, writeTimeout, err)
	case ev := <-events:
		t.Fatalf("idle stream got an event: %+v", ev)
	case <-time.After(8 * writeTimeout):
	}
	resp, err := c.Post(base+"/post", "application/json", strings.NewReader(`{"username":"h2","content":"after a quiet spell"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST over HTTP/2: %d", resp.StatusCode)
	}
	select {
	case err := <-ended:
		t.Fatalf("stream ended instead of delivering the message: %v", err)
	case ev := <-events:
		if !strings.Contains(string(ev.Data), "after a quiet spell") {
			t.Errorf("stream got %+v, want the message", ev)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no message on the stream")
	}
	if n := getStats(t, c, base).ConnectionsTotal; n != 1 {
		t.Errorf("connections_total = %d, want 1 (no reconnect)", n)
	}
}

// TestHTTP2StalledStreamCut checks that an HTTP/2 stream whose client stops
// reading is still cut by the write timeout once a write blocks, after it
// has been idle for longer than the write timeout.
func TestHTTP2StalledStreamCut(t *testing.T) {
	ts := startTLSServer(t, "-write-timeout", "300ms",
		"-max-content", "20000", "-max-body", "65536")
	base := ts.URL
	// A 16 KiB receive window that the test never frees: it reads nothing.
	c := http2Client(t, 16<<10)
	openHTTP2Stream(t, c, base)
	poster := http2Client(t, 0)
	waitFor(t, "the stream to join", func() bool { return getStats(t, poster, base).Clients == 1 })
	// Idle for twice the write timeout: that alone must not cut it.
	<-time.After(600 * time.Millisecond)
	if n := getStats(t, poster, base).Clients; n != 1 {
		t.Fatalf("idle stream cut before it stalled: clients = %d", n)
	}
	body := `{"username":"h2","content":"` + strings.Repeat("x", 16000) + `"}`
	for range 4 {
		resp, err := poster.Post(base+"/post", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
	}
	start := time.Now()
	waitFor(t, "the stalled stream to be cut", func() bool { return getStats(t, poster, base).Clients == 0 })
	t.Logf("stalled stream cut %v after the last post", time.Since(start).Round(time.Millisecond))
}
