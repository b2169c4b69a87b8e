package roomlog

import (
	"strings"
	"testing"
	"time"

	"chat/internal/idem"
	"chat/internal/journal"
)

// TestAppendMessageEvent checks a message's event byte for byte: its id,
// and its JSON on one data line, with no HTML escaping and every line break
// escaped.
func TestAppendMessageEvent(t *testing.T) {
	m := Message{ID: "10-4", Username: "<b>eve</b>", Content: "line1\nline2\r\ndata: x\u2028", Time: time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC)}
	got := string(AppendMessageEvent(nil, m))
	want := "id: 10-4\ndata: {\"id\":\"10-4\",\"username\":\"<b>eve</b>\",\"content\":\"line1\\nline2\\r\\ndata: x\\u2028\",\"time\":\"2026-01-02T03:04:05.6Z\"}\n\n"
	if got != want {
		t.Errorf("AppendMessageEvent = %q, want %q", got, want)
	}
}

// TestLineRoundTrip checks the record codec: each kind of record as the
// exact line a journal keeps, and DecodeLine giving the record back, key
// and fingerprint included.
func TestLineRoundTrip(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		r    Record
		line string
	}{
		{"message", Record{Message: Message{ID: "7-1", Username: "ann", Content: "<hi> & \"bye\"", Time: at}, Seq: 1},
			`{"id":"7-1","username":"ann","content":"<hi> & \"bye\"","time":"2026-01-02T03:04:05Z"}`},
		{"keyed message", Record{Message: Message{ID: "7-2", Username: "ann", Content: "hi", Time: at}, Seq: 2, Key: `k"1\`, FP: idem.Sum("ann", "hi")},
			`{"id":"7-2","username":"ann","content":"hi","time":"2026-01-02T03:04:05Z","key":"k\"1\\"}`},
		{"deletion", Record{Message: Message{ID: "7-3", Time: at}, Seq: 3, Deletes: "7-1"},
			`{"id":"7-3","delete":"7-1","time":"2026-01-02T03:04:05Z"}`},
		{"message with an author", Record{Message: Message{ID: "7-4", Username: "ann", Content: "hi", Time: at}, Seq: 4, Author: "AAAAAAAAAAAAAAAAAAAAAA"},
			`{"id":"7-4","username":"ann","content":"hi","time":"2026-01-02T03:04:05Z","author":"AAAAAAAAAAAAAAAAAAAAAA"}`},
		{"keyed message with an author", Record{Message: Message{ID: "7-5", Username: "ann", Content: "hi", Time: at}, Seq: 5, Key: "k", FP: idem.Sum("ann", "hi"), Author: "A"},
			`{"id":"7-5","username":"ann","content":"hi","time":"2026-01-02T03:04:05Z","key":"k","author":"A"}`},
		{"edit", Record{Message: Message{ID: "7-6", Content: "<fixed> & \"so\"", Time: at}, Seq: 6, Edits: "7-4", Author: "A"},
			`{"id":"7-6","edit":"7-4","content":"<fixed> & \"so\"","time":"2026-01-02T03:04:05Z","author":"A"}`},
		{"author's deletion", Record{Message: Message{ID: "7-7", Time: at}, Seq: 7, Deletes: "7-4", Author: "A"},
			`{"id":"7-7","delete":"7-4","time":"2026-01-02T03:04:05Z","author":"A"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r
			if got := string(r.Line()); got != tt.line {
				t.Errorf("Line = %s, want %s", got, tt.line)
			}
			back, err := DecodeLine([]byte(tt.line))
			if err != nil {
				t.Fatalf("DecodeLine: %v", err)
			}
			if back.Message != tt.r.Message || back.Seq != tt.r.Seq || back.Key != tt.r.Key || back.FP != tt.r.FP || back.Deletes != tt.r.Deletes ||
				back.Edits != tt.r.Edits || back.Author != tt.r.Author || back.JSON != nil {
				t.Errorf("DecodeLine = %+v, want %+v", back, tt.r)
			}
		})
	}
}

// TestDecodeLineRefuses checks that lines that are not records are errors,
// not records with holes.
func TestDecodeLineRefuses(t *testing.T) {
	for _, line := range []string{
		``,
		`{"id":"7-1","username":"u","content":"c","time":"2026-01-02T03:04:05Z"`,
		`{"id":"7-1","username":"u","content":"c","time":"yesterday"}`,
		`{"id":"seven","username":"u","content":"c","time":"2026-01-02T03:04:05Z"}`,
		`{"username":"u","content":"c","time":"2026-01-02T03:04:05Z"}`,
		`{"id":"7-1","username":7}`,
		`["7-1"]`,
		`{"id":"7-3","delete":"7-1","edit":"7-1","time":"2026-01-02T03:04:05Z"}`,
	} {
		if r, err := DecodeLine([]byte(line)); err == nil {
			t.Errorf("DecodeLine(%s) = %+v, want an error", line, r)
		}
	}
}

// TestRecover checks that Recover decodes a journal's records in order,
// and names the record it cannot decode.
func TestRecover(t *testing.T) {
	recs := []journal.Record{
		{Epoch: 7, Seq: 1, Data: []byte(`{"id":"7-1","username":"u","content":"one","time":"2026-01-02T03:04:05Z","key":"k"}`)},
		{Epoch: 7, Seq: 2, Data: []byte(`{"id":"7-2","delete":"7-1","time":"2026-01-02T03:04:05Z"}`)},
	}
	got, err := Recover(recs)
	if err != nil || len(got) != 2 || got[0].Content != "one" || got[0].Key != "k" || got[1].Deletes != "7-1" || got[1].Seq != 2 {
		t.Fatalf("Recover = %+v, %v", got, err)
	}
	recs = append(recs, journal.Record{Epoch: 7, Seq: 3, Data: []byte(`{"id":"7-3","time":"soon"}`)})
	if _, err := Recover(recs); err == nil || !strings.Contains(err.Error(), "journal record 7-3") {
		t.Errorf("Recover of a bad record: %v, want an error naming 7-3", err)
	}
}

// TestRecoveredLog checks that a log started from recovered records has
// their history, ids and keys: it continues the sequence, answers a retry
// of a recovered key as a repeat, and a retry of the key of a recovered
// message that was deleted with ErrDeleted.
func TestRecoveredLog(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := func(seq uint64, content, key string) Record {
		r := Record{Message: Message{ID: id(seq), Username: "u", Content: content, Time: at}, Seq: seq, Key: key}
		if key != "" {
			r.FP = idem.Sum("u", content)
		}
		return r
	}
	recovered := []Record{
		rec(40, "kept", "k-kept"),
		rec(41, "gone", "k-gone"),
		{Message: Message{ID: id(42), Time: at}, Seq: 42, Deletes: id(41)},
	}
	store := NewJournalStore(nil, testEpoch, recovered)
	s := &seen{}
	l := New(store, Config{History: 10, Recovered: recovered, Committed: s.committed})
	if l.last != 42 || l.ring.evicted != 39 || l.Len() != 3 || len(s.ids) != 0 {
		t.Errorf("recovered log: last %d, evicted %d, %d records, %d told to the hub; want 42, 39, 3, 0", l.last, l.ring.evicted, l.Len(), len(s.ids))
	}
	if page, _ := l.Page(Query{Limit: 10}); len(page.Msgs) != 1 || string(page.Msgs[0]) != string(MarshalMessage(recovered[0].Message)) {
		t.Errorf("recovered page = %q, want only %q", page.Msgs, MarshalMessage(recovered[0].Message))
	}
	p := proposal("u", "kept", "k-kept")
	l.Propose(p)
	if err := answer(t, p); err != nil || !p.Repeat || p.ID != id(40) || !p.Time.Equal(at) {
		t.Errorf("retry of a recovered key: %v, repeat %v, id %s; want a repeat of %s", err, p.Repeat, p.ID, id(40))
	}
	p = proposal("u", "gone", "k-gone")
	l.Propose(p)
	if err := answer(t, p); err != ErrDeleted || p.Repeat || p.Content != "gone" || p.ID != "" {
		t.Errorf("retry of a deleted recovered key: %v, repeat %v, id %q; want ErrDeleted and nothing of the message", err, p.Repeat, p.ID)
	}
	if r := l.Replay(&Position{Epoch: testEpoch, Seq: 39}, 0); r.Reset != "" || len(r.Events) != 2 {
		t.Errorf("resume after the last evicted: reset %q, %d events; want none, 2", r.Reset, len(r.Events))
	}
}
