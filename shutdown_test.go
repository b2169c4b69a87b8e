package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"chat/internal/journal"
	"chat/internal/record"
	"chat/internal/roomlog"
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
	epoch, seq, err := record.ParseID(pre.ID)
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
	if e, q, _ := record.ParseID(m.ID); e != epoch || q != 1 {
		t.Errorf("first message after the restart is %s, want %s", m.ID, record.FormatID(epoch, 1))
	}
	if resumed.sse.LastEventID() != record.FormatID(epoch, 1) {
		t.Errorf("last event id %q, want %s", resumed.sse.LastEventID(), record.FormatID(epoch, 1))
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

// postOutcome is the answer one POST /post got.
type postOutcome struct {
	content string
	status  int
	msg     Message
	err     error
}

// heldServer is a server whose journal can hold one fsync until the test
// releases it.
type heldServer struct {
	*testServer
	// entered receives once the held fsync has begun.
	entered <-chan struct{}
	// release lets the held fsync finish; it may be called again.
	release func()
}

// startHeldServer runs the server through serve with its journal at path
// and a journal drain of 300 ms, and flags: while armed reports true, the
// next fsync signals entered and waits for release.
func startHeldServer(t *testing.T, path string, armed func() bool, flags ...string) *heldServer {
	t.Helper()
	held, entered := make(chan struct{}), make(chan struct{}, 1)
	var once sync.Once
	release := func() { once.Do(func() { close(held) }) }
	ts := startServerConfig(t, func(cfg *config) {
		cfg.journalSync = func(f *os.File) error {
			if armed() {
				select {
				case entered <- struct{}{}:
					<-held // the first fsync while armed waits for the test
				default:
				}
			}
			return f.Sync()
		}
		cfg.journalWait = 300 * time.Millisecond
	}, append([]string{"-data", path}, flags...)...)
	t.Cleanup(release) // before the server's own cleanup, which waits for it
	return &heldServer{testServer: ts, entered: entered, release: release}
}

// TestShutdownAnswersMatchFate holds the journal inside an fsync while the
// server shuts down, with posts waiting on it, and then lets it finish: no
// post answered with a status that says "not stored" (503, 500) may be in
// the history after the restart, and every post answered 201 or 202 must
// be.
func TestShutdownAnswersMatchFate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	hs := startHeldServer(t, path, func() bool { return true }, "-post-rate", "0")
	url, entered := hs.URL, hs.entered

	// Each poster has its own connection, which the server has accepted
	// (a request was served on it), so that a post written before the
	// shutdown reaches the room rather than a closed listener.
	const posts = 6
	clients := make([]*http.Client, posts)
	for i := range clients {
		clients[i] = &http.Client{Transport: &http.Transport{}}
		t.Cleanup(clients[i].CloseIdleConnections)
		resp, err := clients[i].Get(url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	outcomes := make(chan postOutcome, posts)
	written := make(chan struct{}, posts)
	post := func(i int) {
		content := fmt.Sprintf("post %d", i)
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { written <- struct{}{} }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			"POST", url+"/post", strings.NewReader(`{"username":"fate","content":"`+content+`"}`))
		req.Header.Set("Content-Type", "application/json")
		o := postOutcome{content: content}
		resp, err := clients[i].Do(req)
		if err != nil {
			o.err = err
		} else {
			o.status = resp.StatusCode
			json.NewDecoder(resp.Body).Decode(&o.msg)
			resp.Body.Close()
		}
		outcomes <- o
	}
	go post(0)
	select {
	case <-entered: // post 0 is inside the fsync
	case <-time.After(waitTimeout):
		t.Fatal("the journal never synced")
	}
	for i := 1; i < posts; i++ {
		go post(i)
	}
	for range posts {
		select {
		case <-written:
		case <-time.After(waitTimeout):
			t.Fatal("posts not sent")
		}
	}
	// Shut down while the fsync is held, and collect every answer.
	hs.cancel()
	var got []postOutcome
	for range posts {
		select {
		case o := <-outcomes:
			got = append(got, o)
		case <-time.After(waitTimeout):
			t.Fatalf("a post got no answer during shutdown; answers so far: %+v", got)
		}
	}
	hs.release()
	select {
	case <-hs.done:
		if hs.err != nil {
			t.Fatalf("serve: %v", hs.err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("serve did not return after the fsync was released")
	}

	j, recs, err := journal.Open(path, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	j.Run(done)
	stored, err := roomlog.Recover(recs)
	if err != nil {
		t.Fatal(err)
	}
	inHistory := map[string]bool{}
	for _, m := range stored {
		inHistory[m.Content] = true
	}
	pending := false
	for _, o := range got {
		switch {
		case o.err != nil:
			// Never answered (the connection was refused or cut): the
			// poster knows nothing either way.
		case o.status == http.StatusCreated || o.status == http.StatusAccepted:
			if !inHistory[o.content] {
				t.Errorf("%q was answered %d but is not in history after the restart", o.content, o.status)
			}
			pending = pending || o.content == "post 0"
		default:
			if inHistory[o.content] {
				t.Errorf("%q was answered %d (not stored) but is in history after the restart", o.content, o.status)
			}
		}
	}
	if !pending {
		t.Errorf("post 0, whose fsync was held, was not answered 201 or 202: %+v", got)
	}
	statuses := make([]int, len(got))
	for i, o := range got {
		statuses[i] = o.status
	}
	t.Logf("answers %v; %d messages in history", statuses, len(stored))
}
