package main

// Tests of resuming a stream with Last-Event-ID: after any message, from
// the start, from another epoch, after expiry, across restarts (an empty
// journal's epoch included), and a long replay sent in pieces or cut and
// resumed.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"chat/internal/record"
	"chat/internal/sse"
)

func TestResume(t *testing.T) {
	ts := startServer(t, "-history", "10")
	var posted []Message
	for i := range 6 {
		posted = append(posted, ts.post(t, "a", fmt.Sprint(i)))
	}
	epochOf := func(m Message) string { e, _, _ := record.ParseID(m.ID); return strconv.FormatInt(e, 10) }
	tests := []struct {
		name string
		// lastID returns the id to resume after and the index in posted
		// of the first message the client must get.
		lastID    func() (string, int)
		wantReset string
	}{
		{"after the second", func() (string, int) { return posted[1].ID, 2 }, ""},
		{"after the last", func() (string, int) { return posted[len(posted)-1].ID, len(posted) }, ""},
		{"from the start", func() (string, int) { return epochOf(posted[0]) + "-0", 0 }, ""},
		{"other epoch", func() (string, int) { return "1-3", 0 }, "unknown"},
		{"from the future", func() (string, int) { return epochOf(posted[0]) + "-99", 0 }, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lastID, from := tt.lastID()
			s := subscribe(t, ts.URL, lastID)
			posted = append(posted, ts.post(t, "b", "live "+tt.name))
			want := posted[from:]
			got, other := s.messages(t, len(want))
			if fmt.Sprint(ids(got)) != fmt.Sprint(ids(want)) {
				t.Errorf("Last-Event-ID %s: got %v, want %v", lastID, ids(got), ids(want))
			}
			gotReset := ""
			for _, ev := range other {
				if ev.Type == "reset" {
					var r struct{ Reason string }
					_ = json.Unmarshal([]byte(ev.Data), &r)
					gotReset = r.Reason
				}
			}
			if gotReset != tt.wantReset {
				t.Errorf("Last-Event-ID %s: reset %q, want %q (other events %+v)", lastID, gotReset, tt.wantReset, other)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		// History holds 10; the first messages are long gone.
		for len(posted) < 13 {
			posted = append(posted, ts.post(t, "c", "filler"))
		}
		s := subscribe(t, ts.URL, posted[0].ID)
		got, other := s.messages(t, 10)
		if len(other) != 1 || other[0].Type != "reset" || !strings.Contains(string(other[0].Data), `"reason":"expired"`) {
			t.Errorf("got events %+v, want one reset with reason expired", other)
		}
		if want := posted[len(posted)-10:]; fmt.Sprint(ids(got)) != fmt.Sprint(ids(want)) {
			t.Errorf("got %v, want %v", ids(got), ids(want))
		}
	})
	t.Run("query parameter", func(t *testing.T) {
		s := subscribeOpts(t, ts.URL, streamOpts{query: "?lastEventId=" + posted[len(posted)-2].ID})
		got, _ := s.messages(t, 1)
		if got[0].ID != posted[len(posted)-1].ID {
			t.Errorf("lastEventId query: got %s, want %s", got[0].ID, posted[len(posted)-1].ID)
		}
	})
}

func TestResumeAfterRestart(t *testing.T) {
	first := startServer(t)
	old := first.post(t, "a", "before restart")
	first.stop(t)
	second := startServer(t)
	m := second.post(t, "a", "after restart")
	if m.ID == old.ID {
		t.Fatalf("id %s reused across restarts", m.ID)
	}
	s := subscribe(t, second.URL, old.ID)
	got, other := s.messages(t, 1)
	if len(other) != 1 || other[0].Type != "reset" || !strings.Contains(string(other[0].Data), `"last_event_id":"`+old.ID+`"`) {
		t.Errorf("resume across restart: events %+v, want one reset naming %s", other, old.ID)
	}
	if got[0].ID != m.ID {
		t.Errorf("resume across restart: got %s, want %s", got[0].ID, m.ID)
	}
	// The reset carries a position, so a reconnect after it resumes exactly.
	if other[0].ID == "" || s.sse.LastEventID() != m.ID {
		t.Errorf("reset id %q, last id %q; want a position and then %s", other[0].ID, s.sse.LastEventID(), m.ID)
	}
}

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
