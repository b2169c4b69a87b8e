package roomlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"chat/internal/idem"
	"chat/internal/record"
	"chat/internal/sse"
)

// testEpoch is the epoch of the tests' memory stores.
const testEpoch = 1764094637123

// seen records what a log tells the hub through Config.Committed: each
// record's id, its event and the record.
type seen struct {
	ids     []string
	events  [][]byte
	records []Record
}

// committed is a Config.Committed that records each call.
func (s *seen) committed(r *Record, event []byte) {
	s.ids = append(s.ids, r.ID)
	s.events = append(s.events, event)
	s.records = append(s.records, *r)
}

// newMemoryLog returns a log over a memory store of epoch testEpoch with
// history records, and what it tells the hub.
func newMemoryLog(history int, recovered ...Record) (*Log, *seen) {
	s := &seen{}
	return New(NewMemoryStore(testEpoch), Config{History: history, Recovered: recovered, Committed: s.committed}), s
}

// proposal returns a post of content by username with key ("" for none).
func proposal(username, content, key string) *Proposal {
	p := &Proposal{Reply: make(chan error, 1)}
	p.Username, p.Content, p.Key = username, content, key
	if key != "" {
		p.FP = idem.Sum(username, content)
	}
	return p
}

// deletion returns a deletion of the message id.
func deletion(id string) *Proposal {
	p := &Proposal{Reply: make(chan error, 1)}
	p.Deletes = id
	return p
}

// answer returns p's answer, failing the test if there is none yet.
func answer(t *testing.T, p *Proposal) error {
	t.Helper()
	select {
	case err := <-p.Reply:
		return err
	default:
		t.Fatalf("proposal %q/%q has no answer", p.Content, p.Deletes)
		return nil
	}
}

// unanswered fails the test if p has an answer.
func unanswered(t *testing.T, p *Proposal) {
	t.Helper()
	select {
	case err := <-p.Reply:
		t.Fatalf("proposal %q/%q answered %v, want no answer yet", p.Content, p.Deletes, err)
	default:
	}
}

// post proposes a message on a log whose store commits at once, and
// returns it, failing the test on an error.
func post(t *testing.T, l *Log, content string) Message {
	t.Helper()
	p := proposal("u", content, "")
	l.Propose(p)
	if err := answer(t, p); err != nil {
		t.Fatalf("post %q: %v", content, err)
	}
	return p.Message
}

// id returns the id of record seq of testEpoch.
func id(seq uint64) string { return record.FormatID(testEpoch, seq) }

// contents returns the contents of the messages (JSON) in msgs.
func contents(t *testing.T, msgs [][]byte) []string {
	t.Helper()
	out := make([]string, 0, len(msgs))
	for _, b := range msgs {
		var m Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("message %s: %v", b, err)
		}
		out = append(out, m.Content)
	}
	return out
}

// eventIDs returns each event's type ("message" for a message) and id, as
// "type:id", read back with the SSE reader.
func eventIDs(events [][]byte) []string {
	out := make([]string, 0, len(events))
	for _, b := range events {
		ev, err := sse.NewReader(bytes.NewReader(b)).NextEvent()
		if err != nil {
			out = append(out, fmt.Sprintf("unreadable %q: %v", b, err))
			continue
		}
		out = append(out, ev.Type+":"+ev.ID)
	}
	return out
}
