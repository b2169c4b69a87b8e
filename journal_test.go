package main

// Tests of the journal (-data): its line format, what run does with a torn
// last line and with damage in the middle, -data needing history, and one
// server per journal in one process.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"chat/internal/journal"
	"chat/internal/record"
	"chat/internal/roomlog"
)

// oldJournalLine returns m as the journal wrote it before it moved to
// internal/journal: json.Encoder without HTML escaping, newline included.
func oldJournalLine(t *testing.T, m Message) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestJournalFormat checks that the hub journals each message as one line
// that is byte for byte the line the journal wrote before it became a
// package of its own, and that such a file is recovered to the same messages.
func TestJournalFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	j, recs, err := journal.Open(path, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Fatalf("new journal recovered %d records", len(recs))
	}
	room := NewChatRoom(RoomConfig{History: 100, Store: roomlog.NewJournalStore(j, time.Now().UnixMilli(), nil)}, NewStats())
	ctx, cancel := context.WithCancel(context.Background())
	jDone, roomDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(jDone); j.Run(ctx) }()
	go func() { defer close(roomDone); room.Run(ctx) }()
	var posted []Message
	for _, content := range []string{"<b>bold</b> & \"quoted\"", "héllo ✓ 🎉 \u2028", "line\\nnot a newline"} {
		pctx, pcancel := context.WithTimeout(ctx, waitTimeout)
		m, err := room.Post(pctx, "alice", content)
		pcancel()
		if err != nil {
			t.Fatalf("Post(%q): %v", content, err)
		}
		posted = append(posted, m)
	}
	cancel()
	<-jDone
	<-roomDone

	var want []byte
	for _, m := range posted {
		want = append(want, oldJournalLine(t, m)...)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("journal =\n%s\nwant\n%s", got, want)
	}

	j, recs, err = journal.Open(path, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	j.Run(done)
	msgs, err := roomlog.Recover(recs)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if len(msgs) != len(posted) {
		t.Fatalf("recovered %d messages, want %d", len(msgs), len(posted))
	}
	for i, m := range msgs {
		p := posted[i]
		if m.ID != p.ID || m.Username != p.Username || m.Content != p.Content || !m.Time.Equal(p.Time) {
			t.Errorf("recovered message %d = %+v, want %+v", i, m, p)
		}
	}
}

// TestJournalUndecodableRecord checks that run refuses to start on a journal
// whose middle line has a good id but is not a message the hub can decode,
// with an error that names the file and the record's id.
func TestJournalUndecodableRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	line := `{"id":"` + record.FormatID(testEpoch, 2) + `","username":"u","content":"two","time":"yesterday"}` + "\n"
	writeJournal(t, path, journalLine(t, testEpoch, 1, "one"), line, journalLine(t, testEpoch, 3, "three"))
	logs, err := runRefused(t, "-data", path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), record.FormatID(testEpoch, 2)) {
		t.Errorf("run = %v, want an error naming %s and record %s", err, path, record.FormatID(testEpoch, 2))
	}
	if strings.Contains(logs, "msg=listening") {
		t.Errorf("server listened on an undecodable journal:\n%s", logs)
	}
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

// TestJournalLockInProcess runs two servers through run on one -data in
// one process: the second returns an error naming the journal and saying
// this process holds it, without listening, and the first keeps serving.
func TestJournalLockInProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	first := startServer(t, "-data", path)
	first.post(t, "a", "one")

	logs, err := runRefused(t, "-data", path)
	want := fmt.Sprintf("open journal: journal %s is in use by another server: this process (pid %d) already has it open", path, os.Getpid())
	if err == nil || err.Error() != want || !errors.Is(err, journal.ErrLocked) {
		t.Errorf("second run = %v, want %q", err, want)
	}
	if strings.Contains(logs, "msg=listening") {
		t.Errorf("second server listened:\n%s", logs)
	}
	if m := first.post(t, "a", "two"); !strings.HasSuffix(m.ID, "-2") {
		t.Errorf("first server's next id %s, want seq 2", m.ID)
	}
}
