package main

import (
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"testing"
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
