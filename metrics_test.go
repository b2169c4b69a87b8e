package main

// Tests of the figures: GET /metrics read by the strict parser
// (prometheus_test.go) against /stats, the format of values, /stats without
// stopping the world, /healthz, and profiles only on -pprof-addr.

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
)

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

func TestHandlerUnitRecorder(t *testing.T) {
	// The stats endpoint through httptest.NewRecorder, the plain way.
	stats := NewStats()
	rec := httptest.NewRecorder()
	handleStats(stats).ServeHTTP(rec, httptest.NewRequest("GET", "/stats", nil))
	var s StatsSnapshot
	if err := json.NewDecoder(rec.Result().Body).Decode(&s); err != nil || rec.Code != 200 || s.Goroutines == 0 {
		t.Errorf("GET /stats = %d %+v %v", rec.Code, s, err)
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
