package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"chat/internal/sse"
)

// TestEmptyJournalRestartKeepsEpoch checks that the epoch of a journal is
// durable from the moment the journal exists: a client that connected to a
// server whose journal held no message yet (and so saw only the preamble id
// E-0) resumes after a restart without a reset, and the first message
// continues that epoch.
func TestEmptyJournalRestartKeepsEpoch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	first := startServer(t, "-data", path)
	s := subscribe(t, first.URL, "")
	pre, err := s.sse.Next()
	if err != nil {
		t.Fatalf("read the preamble: %v", err)
	}
	epoch, seq, err := parseID(pre.ID)
	if err != nil || seq != 0 {
		t.Fatalf("preamble id %q (%v), want <epoch>-0", pre.ID, err)
	}
	s.close()
	first.stop(t)

	second := startServer(t, "-data", path)
	resumed := subscribe(t, second.URL, pre.ID)
	m := second.post(t, "a", "after an empty restart")
	got, other := resumed.messages(t, 1)
	for _, ev := range other {
		if ev.Type == "reset" {
			t.Errorf("resume from %s after a restart on an empty journal: reset %s", pre.ID, ev.Data)
		}
	}
	if got[0].ID != m.ID {
		t.Errorf("resumed stream got %s, want %s", got[0].ID, m.ID)
	}
	if e, q, _ := parseID(m.ID); e != epoch || q != 1 {
		t.Errorf("first message after the restart is %s, want %s", m.ID, formatID(epoch, 1))
	}
	if resumed.sse.LastEventID() != formatID(epoch, 1) {
		t.Errorf("last event id %q, want %s", resumed.sse.LastEventID(), formatID(epoch, 1))
	}
}

// TestDataNeedsHistory checks that -data with -history 0 (from a flag or
// from the environment) is refused by parseFlags with one clear sentence,
// before anything is opened.
func TestDataNeedsHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"flags", []string{"chat", "-data", path, "-history", "0"}, nil},
		{"environment", []string{"chat", "-data", path}, map[string]string{"CHAT_HISTORY": "0"}},
	} {
		_, err := parseFlags(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
		const want = "-data needs -history of at least 1: the journal keeps the history"
		if err == nil || err.Error() != want {
			t.Errorf("%s: parseFlags = %v, want %q", tt.name, err, want)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("journal file created for a refused configuration: %v", err)
	}
	// Without -data, -history 0 (no history at all) stays allowed.
	if _, err := parseFlags([]string{"chat", "-history", "0"}, func(string) string { return "" }, io.Discard); err != nil {
		t.Errorf("-history 0 without -data: %v", err)
	}
}

// stopTheWorldPauses returns how many stop-the-world pauses the runtime has
// made for reasons other than garbage collection (runtime.ReadMemStats is
// one; runtime/metrics.Read is not).
func stopTheWorldPauses() uint64 {
	s := []metrics.Sample{{Name: "/sched/pauses/total/other:seconds"}}
	metrics.Read(s)
	var n uint64
	for _, c := range s[0].Value.Float64Histogram().Counts {
		n += c
	}
	return n
}

// TestStatsDoNotStopTheWorld checks that GET /stats and GET /metrics read
// the memory figures without stopping the world: a hundred requests may
// not make a hundred non-GC pauses, which runtime.ReadMemStats would.
func TestStatsDoNotStopTheWorld(t *testing.T) {
	ts := startServer(t)
	const n = 50
	before := stopTheWorldPauses()
	for range n {
		if s := ts.stats(t); s.HeapBytes == 0 {
			t.Fatalf("GET /stats: heap_bytes is 0")
		}
		resp, err := http.Get(ts.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "\nchat_heap_bytes ") || strings.Contains(string(b), "\nchat_heap_bytes 0\n") {
			t.Fatalf("GET /metrics: no heap figure:\n%s", b)
		}
	}
	if d := stopTheWorldPauses() - before; d >= n {
		t.Errorf("%d requests to /stats and /metrics stopped the world %d times, want none of them to", 2*n, d)
	}
}

// http2Client returns a client of a test server over TLS and HTTP/2, with
// the given per-stream receive window (0: the default).
func http2Client(t *testing.T, window int) *http.Client {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}
	if window > 0 {
		tr.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: window}
	}
	c := &http.Client{Transport: tr}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// openHTTP2Stream opens GET /stream on base with c and checks that it is
// HTTP/2.
func openHTTP2Stream(t *testing.T, c *http.Client, base string) *subscriber {
	t.Helper()
	resp, err := c.Get(base + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /stream over TLS: %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	return &subscriber{resp: resp, sse: sse.NewReader(resp.Body)}
}

// tlsStats returns GET /stats of the server at base, read with c.
func tlsStats(t *testing.T, c *http.Client, base string) StatsSnapshot {
	t.Helper()
	resp, err := c.Get(base + "/stats")
	if err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	defer resp.Body.Close()
	var s StatsSnapshot
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	return s
}

// TestHTTP2IdleStreamSurvivesWriteTimeout checks that an HTTP/2 stream
// with nothing to write stays open for much longer than -write-timeout:
// the write deadline guards writes, and must not reset an idle stream.
func TestHTTP2IdleStreamSurvivesWriteTimeout(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	certFile, keyFile := writeTestCert(t, t.TempDir())
	ts := startServer(t, "-tls-cert", certFile, "-tls-key", keyFile, "-write-timeout", writeTimeout.String())
	base := strings.Replace(ts.URL, "http://", "https://", 1)
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
	if n := tlsStats(t, c, base).ConnectionsTotal; n != 1 {
		t.Errorf("connections_total = %d, want 1 (no reconnect)", n)
	}
}

// TestHTTP2StalledStreamCut checks that an HTTP/2 stream whose client stops
// reading is still cut by the write timeout once a write blocks, after it
// has been idle for longer than the write timeout.
func TestHTTP2StalledStreamCut(t *testing.T) {
	certFile, keyFile := writeTestCert(t, t.TempDir())
	ts := startServer(t, "-tls-cert", certFile, "-tls-key", keyFile, "-write-timeout", "300ms",
		"-max-content", "20000", "-max-body", "65536")
	base := strings.Replace(ts.URL, "http://", "https://", 1)
	// A 16 KiB receive window that the test never frees: it reads nothing.
	c := http2Client(t, 16<<10)
	openHTTP2Stream(t, c, base)
	poster := http2Client(t, 0)
	waitFor(t, "the stream to join", func() bool { return tlsStats(t, poster, base).Clients == 1 })
	// Idle for twice the write timeout: that alone must not cut it.
	<-time.After(600 * time.Millisecond)
	if n := tlsStats(t, poster, base).Clients; n != 1 {
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
	waitFor(t, "the stalled stream to be cut", func() bool { return tlsStats(t, poster, base).Clients == 0 })
	t.Logf("stalled stream cut %v after the last post", time.Since(start).Round(time.Millisecond))
}
