package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
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
