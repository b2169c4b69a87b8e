package main

// Tests of the log: JSON lines with one line per stream at debug level, and
// text lines without them at info level.

import (
	"encoding/json"
	"strings"
	"testing"
)

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
