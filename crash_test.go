package main

// Operations tests: the real binary killed and restarted on its journal,
// journal damage seen through run, the /metrics exposition checked by a
// strict parser, /healthz during shutdown, and the log formats.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"chat/internal/record"
)

// ackLog records the messages a server acknowledged with 201.
type ackLog struct {
	mu   sync.Mutex
	msgs []Message
}

// add records m.
func (a *ackLog) add(m Message) {
	a.mu.Lock()
	a.msgs = append(a.msgs, m)
	a.mu.Unlock()
}

// len returns how many messages were acknowledged.
func (a *ackLog) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.msgs)
}

// all returns the acknowledged messages.
func (a *ackLog) all() []Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.msgs)
}

// postStorm posts from workers goroutines until stop is closed, recording
// every 201 in acked. Posts that fail (the server was killed) are not
// acknowledged and are ignored; any answer other than 201 or 503 is
// reported on the returned channel, which is closed when all have stopped.
func postStorm(url, tag string, workers int, acked *ackLog, stop <-chan struct{}) <-chan error {
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: workers},
	}
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, err := postJSON(client, url, fmt.Sprintf("w%d", w), fmt.Sprintf("%s w%d #%d", tag, w, i), nil)
				switch {
				case err != nil:
					// The server is gone (killed): nothing was acknowledged.
				case r.status == http.StatusCreated:
					acked.add(r.msg)
				case r.status == http.StatusServiceUnavailable:
					// Journal busy: not stored, not acknowledged.
				default:
					select {
					case errs <- fmt.Errorf("POST %s: status %d", tag, r.status):
					default:
					}
					return
				}
			}
		})
	}
	go func() {
		wg.Wait()
		client.CloseIdleConnections()
		close(errs)
	}()
	return errs
}

// checkRecovered checks a server restarted on a journal: the whole history
// (read from the start, <epoch>-0) holds every acknowledged message, with
// contiguous ids in one epoch; a client resuming at lastAcked gets exactly
// the messages after it, with no reset; and a new post continues the ids.
// It returns that new post, which the server acknowledged.
func checkRecovered(t *testing.T, srv endpoint, epoch int64, acked []Message, lastAcked Message) Message {
	t.Helper()
	whole := subscribe(t, srv.URL, record.FormatID(epoch, 0))
	resumed := subscribe(t, srv.URL, lastAcked.ID)
	next := srv.post(t, "checker", fmt.Sprintf("after restart at %d", time.Now().UnixNano()))

	hist, other := whole.readUntil(t, next.ID)
	whole.close()
	if len(other) != 0 {
		t.Errorf("history from %s: unexpected events %+v", record.FormatID(epoch, 0), other)
	}
	byID := make(map[string]Message, len(hist))
	contents := make(map[string]bool, len(hist))
	for i, m := range hist {
		e, seq := mustParseID(t, m.ID)
		if e != epoch || seq != uint64(i+1) {
			t.Fatalf("history[%d] has id %s, want %s (ids must be contiguous, in one epoch, no duplicates)", i, m.ID, record.FormatID(epoch, uint64(i+1)))
		}
		if contents[m.Content] {
			t.Errorf("history holds %q twice", m.Content)
		}
		contents[m.Content] = true
		byID[m.ID] = m
	}
	for _, a := range acked {
		got, ok := byID[a.ID]
		if !ok {
			t.Errorf("acknowledged message %s %q is missing from history", a.ID, a.Content)
			continue
		}
		if got.Username != a.Username || got.Content != a.Content || !got.Time.Equal(a.Time) {
			t.Errorf("history has %+v for acknowledged %+v", got, a)
		}
	}
	_, lastSeq := mustParseID(t, lastAcked.ID)
	t.Logf("after restart: history holds %d messages; %d were acknowledged (any others became durable just before the server died, unanswered)", len(hist)-1, len(acked))
	if _, seq := mustParseID(t, next.ID); seq <= lastSeq {
		t.Errorf("post after restart got %s, want a seq above %s", next.ID, lastAcked.ID)
	}

	got, other := resumed.readUntil(t, next.ID)
	resumed.close()
	if len(other) != 0 {
		t.Errorf("resume from %s: unexpected events %+v, want none (no reset)", lastAcked.ID, other)
	}
	if lastSeq >= uint64(len(hist)) {
		t.Fatalf("history ends at %s, before the last acknowledged %s", hist[len(hist)-1].ID, lastAcked.ID)
	}
	if want := hist[lastSeq:]; !slices.Equal(ids(got), ids(want)) {
		t.Errorf("resume from %s got %v, want %v", lastAcked.ID, ids(got), ids(want))
	}
	return next
}

// lastOf returns the acknowledged message with the highest seq.
func lastOf(t *testing.T, msgs []Message) Message {
	t.Helper()
	var last Message
	var best uint64
	for _, m := range msgs {
		if _, seq := mustParseID(t, m.ID); seq >= best {
			last, best = m, seq
		}
	}
	return last
}

// TestCrashBinary runs the real server binary on a journal.
func TestCrashBinary(t *testing.T) {
	bin := chatBinary(t)

	// KillRounds posts from several goroutines, kills the server with
	// SIGKILL in the middle of the posts, restarts it on the same journal
	// and checks that every message answered 201 survived, that ids go on
	// in the same epoch, and that a client resumes across the restart with
	// no reset. Three rounds.
	t.Run("KillRounds", func(t *testing.T) {
		t.Parallel()
		journal := filepath.Join(t.TempDir(), "chat.jsonl")
		args := []string{"-data", journal, "-history", "100000"}
		var acked []Message
		var epoch int64
		const rounds, workers = 3, 8
		for round := range rounds {
			p := startChatProc(t, bin, args...)
			if round > 0 {
				next := checkRecovered(t, p.endpoint, epoch, acked, lastOf(t, acked))
				acked = append(acked, next)
			}
			var log ackLog
			stop := make(chan struct{})
			errs := postStorm(p.URL, fmt.Sprintf("round %d", round), workers, &log, stop)
			killAt := 100 + 50*round
			waitFor(t, fmt.Sprintf("%d acknowledged posts", killAt), func() bool { return log.len() >= killAt })
			p.kill(t) // posts are still in flight
			close(stop)
			for err := range errs {
				t.Errorf("round %d: %v", round, err)
			}
			if round == 0 {
				epoch, _ = mustParseID(t, log.all()[0].ID)
			}
			acked = append(acked, log.all()...)
			t.Logf("round %d: %d posts acknowledged before SIGKILL, %d in all", round, log.len(), len(acked))
			if t.Failed() {
				t.Fatalf("server log:\n%s", p.logs)
			}
		}
		p := startChatProc(t, bin, args...)
		checkRecovered(t, p.endpoint, epoch, acked, lastOf(t, acked))
		if !strings.Contains(p.logs.String(), "msg=\"journal opened\"") {
			t.Errorf("no journal log line:\n%s", p.logs)
		}
	})

	// CleanRestart stops the server with SIGTERM while a stream is open:
	// it must exit 0 within 5 s, end the stream cleanly, and keep its
	// history and ids across the restart.
	t.Run("CleanRestart", func(t *testing.T) {
		t.Parallel()
		journal := filepath.Join(t.TempDir(), "chat.jsonl")
		p := startChatProc(t, bin, "-data", journal)
		var acked []Message
		for i := range 5 {
			acked = append(acked, p.post(t, "a", fmt.Sprintf("clean %d", i)))
		}
		s := subscribe(t, p.URL, "")
		if _, err := s.sse.Next(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		ended := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, s.resp.Body)
			ended <- err
		}()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t, 5*time.Second); code != 0 {
			t.Fatalf("exit code after SIGTERM = %d, want 0\n%s", code, p.logs)
		}
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("stream ended with %v, want a clean end", err)
			}
		case <-time.After(waitTimeout):
			t.Error("stream still open after the server exited")
		}
		if !strings.Contains(p.logs.String(), "msg=stopped messages=5") {
			t.Errorf("no stop log line:\n%s", p.logs)
		}

		p = startChatProc(t, bin, "-data", journal)
		epoch, _ := mustParseID(t, acked[0].ID)
		next := checkRecovered(t, p.endpoint, epoch, acked, acked[len(acked)-1])
		if want := record.FormatID(epoch, 6); next.ID != want {
			t.Errorf("first post after restart got id %s, want %s", next.ID, want)
		}
	})

	// CorruptMiddleLine starts the binary on a journal whose middle line
	// is damaged: it must refuse to start, exit 1 and name the line.
	t.Run("CorruptMiddleLine", func(t *testing.T) {
		t.Parallel()
		journal := filepath.Join(t.TempDir(), "chat.jsonl")
		writeJournal(t, journal, journalLine(t, testEpoch, 1, "one"), "{not json\n", journalLine(t, testEpoch, 3, "three"))
		p := startChatProcNoWait(t, bin, "-data", journal)
		if code := p.wait(t, waitTimeout); code != 1 {
			t.Errorf("exit code = %d, want 1", code)
		}
		logs := p.logs.String()
		if !strings.Contains(logs, journal+" line 2") {
			t.Errorf("stderr does not name %s line 2:\n%s", journal, logs)
		}
		if strings.Contains(logs, "msg=listening") {
			t.Errorf("server listened on a corrupt journal:\n%s", logs)
		}
	})
}

// TestOpsJournalTornTail starts the server through run on a journal whose
// last line was torn by a crash: it starts, logs a warning, drops the line
// and continues the ids after the last whole message.
func TestOpsJournalTornTail(t *testing.T) {
	t.Parallel()
	journal := filepath.Join(t.TempDir(), "chat.jsonl")
	torn := journalLine(t, testEpoch, 4, "four")
	writeJournal(t, journal, journalLine(t, testEpoch, 1, "one"), journalLine(t, testEpoch, 2, "two"), journalLine(t, testEpoch, 3, "three"), torn[:len(torn)/2])
	ts := startServer(t, "-data", journal)
	logs := ts.logs.String()
	if !regexp.MustCompile(`level=WARN msg="dropping torn last line of journal".* line=4 `).MatchString(logs) {
		t.Errorf("no warning about torn line 4:\n%s", logs)
	}
	if st := ts.stats(t); st.HistorySize != 3 {
		t.Errorf("history_size = %d, want 3", st.HistorySize)
	}
	m := ts.post(t, "u", "four again")
	if want := record.FormatID(testEpoch, 4); m.ID != want {
		t.Errorf("post after torn tail got id %s, want %s", m.ID, want)
	}
	s := subscribe(t, ts.URL, record.FormatID(testEpoch, 0))
	got, other := s.readUntil(t, m.ID)
	if want := []string{"one", "two", "three", "four again"}; len(other) != 0 || len(got) != 4 ||
		got[0].Content != want[0] || got[1].Content != want[1] || got[2].Content != want[2] || got[3].Content != want[3] {
		t.Errorf("history after torn tail: %+v, events %+v; want contents %q", got, other, want)
	}
	ts.stop(t)
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(b), "\n"); lines != 4 || !bytes.HasSuffix(b, []byte("\n")) {
		t.Errorf("journal after restart has %d lines:\n%s", lines, b)
	}
}

// TestOpsJournalCorruptLine starts the server through run on a journal
// whose middle line is damaged: run returns an error naming the file and
// the line, and serves nothing.
func TestOpsJournalCorruptLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, line string
	}{
		{"not JSON", "{\"id\": oops}\n"},
		{"bad id", strings.Replace(journalLine(t, testEpoch, 2, "two"), record.FormatID(testEpoch, 2), "two", 1)},
		{"id out of order", journalLine(t, testEpoch, 1, "one again")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			journal := filepath.Join(t.TempDir(), "chat.jsonl")
			writeJournal(t, journal, journalLine(t, testEpoch, 1, "one"), tt.line, journalLine(t, testEpoch, 3, "three"))
			logs, err := runRefused(t, "-data", journal)
			if err == nil || !strings.Contains(err.Error(), journal+" line 2") {
				t.Errorf("run = %v, want an error naming %s line 2", err, journal)
			}
			if strings.Contains(logs, "msg=listening") {
				t.Errorf("server listened on a corrupt journal:\n%s", logs)
			}
		})
	}
}

// TestMetricsExposition checks the live GET /metrics with the strict parser
// after posts and streams, and that it reports the figures /stats does.
func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "-heartbeat", "20ms") // finds the closed stream soon
	const posts = 5
	var last Message
	for i := range posts {
		last = ts.post(t, "m", fmt.Sprintf("metrics %d", i))
	}
	resp, err := http.Post(ts.URL+"/post", "application/json", strings.NewReader(`{"username":""}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad post: status %d, want 400", resp.StatusCode)
	}
	a, b := subscribe(t, ts.URL, ""), subscribe(t, ts.URL, "")
	a.readUntil(t, last.ID)
	b.readUntil(t, last.ID)
	b.close()
	waitFor(t, "deliveries and clients to settle", func() bool {
		st := ts.stats(t)
		return st.Deliveries == 2*posts && st.Clients == 1
	})

	// /stats is read just before and just after /metrics: a figure that
	// moves on its own (uptime, CPU time) is then bounded on both sides
	// however long the scheduler keeps the test between the requests.
	statsBefore := getStatsMap(t, ts.URL)
	resp, err = http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	fams, err := parsePromText(string(body))
	if err != nil {
		t.Fatalf("GET /metrics: %v\n%s", err, body)
	}

	stats := getStatsMap(t, ts.URL)

	// Every figure of /stats, and its metric. Exact ones cannot move while
	// nothing happens; the process figures move on their own: the ones
	// that only grow (uptime, CPU time) must lie between the two /stats
	// readings, and the others (gauges of the whole test process, which
	// other tests share) near them.
	type kind int
	const (
		exact kind = iota
		growing
		near
	)
	type figure struct {
		metric string
		kind   kind
	}
	figures := map[string]figure{
		"clients":               {"chat_clients", exact},
		"peak_clients":          {"chat_clients_peak", exact},
		"connections_total":     {"chat_connections_total", exact},
		"messages_posted":       {"chat_messages_total", exact},
		"deliveries":            {"chat_deliveries_total", exact},
		"stream_writes":         {"chat_stream_writes_total", exact},
		"slow_dropped_messages": {"chat_slow_dropped_messages_total", exact},
		"slow_disconnects":      {"chat_slow_disconnects_total", exact},
		"posts_rejected":        {"chat_posts_rejected_total", exact},
		"streams_rejected":      {"chat_streams_rejected_total", exact},
		"people":                {"chat_people", near},
		"anonymous":             {"chat_anonymous_streams", near},
		"history_size":          {"chat_history_messages", exact},
		"uptime_seconds":        {"chat_uptime_seconds", growing},
		"goroutines":            {"chat_goroutines", near},
		"cpu_seconds":           {"process_cpu_seconds_total", growing},
		"rss_bytes":             {"process_resident_memory_bytes", near},
		"heap_bytes":            {"chat_heap_bytes", near},
		"connections_open":      {"chat_tcp_connections", near},
		"connections_refused":   {"chat_tcp_connections_refused_total", exact},
	}
	for key, after := range stats {
		fig, ok := figures[key]
		if !ok {
			t.Errorf("/stats has %q, which /metrics does not report (or this test does not know)", key)
			continue
		}
		f := fams[fig.metric]
		if f == nil {
			t.Errorf("/metrics has no %s (for /stats %s)", fig.metric, key)
			continue
		}
		got, before := f.value(fig.metric), statsBefore[key]
		lo, hi := min(before, after), max(before, after)
		switch {
		case math.IsNaN(got) || got < 0:
			t.Errorf("%s = %v", fig.metric, got)
		case fig.kind == exact && (got != before || got != after):
			t.Errorf("%s = %v, /stats %s = %v before and %v after", fig.metric, got, key, before, after)
		case fig.kind == growing && (got < before || got > after):
			t.Errorf("%s = %v, not between /stats %s = %v before and %v after", fig.metric, got, key, before, after)
		case fig.kind == near && hi > 0 && (got > 2*hi+1 || got < lo/2):
			t.Errorf("%s = %v, far from /stats %s = %v before and %v after", fig.metric, got, key, before, after)
		}
	}
	wantExact := map[string]float64{
		"chat_clients": 1, "chat_clients_peak": 2, "chat_connections_total": 2, "chat_messages_total": posts,
		"chat_deliveries_total": 2 * posts, "chat_posts_rejected_total": 1, "chat_history_messages": posts,
	}
	for name, want := range wantExact {
		if got := fams[name].value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"chat_uptime_seconds", "chat_goroutines", "process_resident_memory_bytes", "chat_heap_bytes"} {
		if got := fams[name].value(name); !(got > 0) {
			t.Errorf("%s = %v, want > 0", name, got)
		}
	}
	if f := fams["chat_post_duration_seconds"]; f == nil || f.typ != "histogram" || f.value("chat_post_duration_seconds_count") != posts+1 {
		t.Errorf("chat_post_duration_seconds: %+v, want a histogram of %d posts", f, posts+1)
	}
	if f := fams["chat_delivery_latency_seconds"]; f == nil || f.typ != "histogram" || f.value("chat_delivery_latency_seconds_count") > 2*posts {
		t.Errorf("chat_delivery_latency_seconds: %+v, want a histogram of at most %d deliveries", f, 2*posts)
	}
	// Whole numbers are written out, not as 9.678848e+06, for people and
	// scripts that read the page.
	if m := regexp.MustCompile(`(?m)^\S+ [0-9.]+e\+[0-9]+$`).Find(body); m != nil {
		t.Errorf("exponent in a whole-number value: %s", m)
	}
	if t.Failed() {
		t.Logf("GET /metrics:\n%s", body)
	}
}

// getStatsMap returns GET /stats as a map of its figures.
func getStatsMap(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stats map[string]float64
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	return stats
}

// TestMetricsFormatValue checks how sample values are written.
func TestMetricsFormatValue(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{3, "3"},
		{9678848, "9678848"},
		{1 << 52, "4503599627370496"},
		{1e300, "1e+300"},
		{-2, "-2"},
		{0.0005, "0.0005"},
		{1.709016769, "1.709016769"},
		{1e-7, "1e-07"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
		{math.NaN(), "NaN"},
	}
	for _, tt := range tests {
		got := formatValue(tt.in)
		if got != tt.want {
			t.Errorf("formatValue(%v) = %q, want %q", tt.in, got, tt.want)
		}
		if !promValueRE.MatchString(got) {
			t.Errorf("formatValue(%v) = %q, not a valid sample value", tt.in, got)
		}
	}
}

// TestHealthHandler checks /healthz against the shutdown flag directly.
func TestHealthHandler(t *testing.T) {
	var shuttingDown atomic.Bool
	h := handleHealth(&shuttingDown, NewStats())
	for _, tt := range []struct {
		down bool
		code int
		body string
	}{{false, 200, `{"status":"ok"}`}, {true, 503, `{"status":"shutting down"}`}} {
		shuttingDown.Store(tt.down)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if rec.Code != tt.code || strings.TrimSpace(rec.Body.String()) != tt.body || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("shutting down %v: %d %s %v, want %d %s", tt.down, rec.Code, rec.Body, rec.Header(), tt.code, tt.body)
		}
	}
}

// TestHealthDuringShutdown checks the real run: /healthz answers 200 while
// serving and 503 once shutdown has begun. A stream whose client reads
// nothing keeps its writer blocked on a large backlog, which holds the
// server in the drain phase of shutdown (streamDrain) while an already
// open keep-alive connection asks for /healthz.
func TestHealthDuringShutdown(t *testing.T) {
	t.Parallel()
	// 4000 messages of 2000 characters: 8 MB of backlog, more than the
	// kernel buffers hold on both ends.
	journal := filepath.Join(t.TempDir(), "chat.jsonl")
	var lines []string
	content := strings.Repeat("x", 2000)
	for i := range 4000 {
		lines = append(lines, journalLine(t, testEpoch, uint64(i+1), content))
	}
	writeJournal(t, journal, lines...)
	ts := startServer(t, "-data", journal, "-history", "4000", "-backlog", "4000")
	addr := ts.addr()

	stuck, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	_ = stuck.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(stuck, "GET /stream HTTP/1.1\r\nHost: chat\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The room counts the client before the handler hands the connection
	// to its writer, and a shutdown in between ends the stream at once,
	// so wait for the writer's first byte: from then on shutdown waits for
	// it. One byte read leaves megabytes the writer cannot get rid of.
	_ = stuck.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadFull(stuck, make([]byte, 1)); err != nil {
		t.Fatalf("reading the stuck stream's first byte: %v", err)
	}

	health, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer health.Close()
	hr := bufio.NewReader(health)
	get := func() (int, error) {
		_ = health.SetDeadline(time.Now().Add(waitTimeout))
		if _, err := io.WriteString(health, "GET /healthz HTTP/1.1\r\nHost: chat\r\n\r\n"); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(hr, nil)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(); code != http.StatusOK {
		t.Fatalf("GET /healthz while serving: %d, %v; want 200", code, err)
	}

	// The writer counts the backlog as delivered only once all of it is
	// written, which a client that reads nothing never lets happen.
	delivered := ts.stats(t).Deliveries
	ts.cancel()
	deadline := time.Now().Add(streamDrain)
	for {
		code, err := get()
		if err != nil {
			t.Fatalf("GET /healthz during shutdown: %v (connection closed before any 503; deliveries before shutdown %d, 0 if the stream writer was blocked as planned)", err, delivered)
		}
		if code == http.StatusServiceUnavailable {
			break
		}
		if code != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("GET /healthz during shutdown: %d, want 503", code)
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	ts.stop(t)
	t.Logf("run returned %v after the first 503", time.Since(start))
}

// TestLogJSONAndDebugStreams runs the server with -log-format json and
// -log-level debug: every log line is a JSON object with time, level and
// msg, and each stream logs exactly one line when it opens and one when it
// closes.
func TestLogJSONAndDebugStreams(t *testing.T) {
	t.Parallel()
	s := startServer(t, "-log-format", "json", "-log-level", "debug", "-heartbeat", "20ms")
	const streams = 3
	var subs []*subscriber
	for range streams {
		subs = append(subs, subscribe(t, s.URL, ""))
	}
	waitFor(t, "stream opened lines", func() bool { return s.logs.count(`"msg":"stream opened"`) == streams })
	for _, sub := range subs {
		sub.close()
	}
	waitFor(t, "stream closed lines", func() bool { return s.logs.count(`"msg":"stream closed"`) == streams })
	s.post(t, "j", "hello")
	s.stop(t)

	counts := map[string]int{}
	for line := range strings.Lines(s.logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q: %v", line, err)
			continue
		}
		for _, key := range []string{"time", "level", "msg"} {
			if _, ok := rec[key]; !ok {
				t.Errorf("log line has no %q: %q", key, line)
			}
		}
		msg, _ := rec["msg"].(string)
		counts[msg]++
		if strings.HasPrefix(msg, "stream ") {
			if rec["level"] != "DEBUG" || rec["addr"] != "127.0.0.1" {
				t.Errorf("stream log line %q: want level DEBUG and addr 127.0.0.1", line)
			}
		}
	}
	for msg, want := range map[string]int{"listening": 1, "stream opened": streams, "stream closed": streams, "shutting down": 1, "stopped": 1} {
		if counts[msg] != want {
			t.Errorf("%d log lines %q, want %d", counts[msg], msg, want)
		}
	}
}

// TestLogTextInfo checks the default log: text lines (key=value), and no
// per-stream lines at info level.
func TestLogTextInfo(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	sub := subscribe(t, s.URL, "")
	m := s.post(t, "t", "hi")
	sub.readUntil(t, m.ID)
	sub.close()
	s.stop(t)
	logs := s.logs.String()
	for line := range strings.Lines(logs) {
		if !strings.HasPrefix(line, "time=") || !strings.Contains(line, " level=") || !strings.Contains(line, " msg=") {
			t.Errorf("log line is not slog text: %q", line)
		}
	}
	if strings.Contains(logs, "stream opened") || strings.Contains(logs, "level=DEBUG") {
		t.Errorf("debug lines at info level:\n%s", logs)
	}
}
