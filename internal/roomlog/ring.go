package roomlog

import (
	"encoding/json"
	"slices"
	"sort"

	"chat/internal/record"
	"chat/internal/sse"
)

// entry is one record kept in history: a message with its encoded event
// (as last edited), a deletion (deletes is set, enc is its "delete" event
// and data is nil) or an edit (edits is set, enc is its "edit" event and
// data is nil). A message that was deleted keeps its place with enc and
// data nil and nothing of its text, and so do its edits.
type entry struct {
	seq uint64
	msg Message
	// key is the message's Idempotency-Key, so that its deletion can mark
	// the key deleted.
	key string
	// author is the message's author's identity ("" for none).
	author string
	// deletes is, for a deletion, the id of the message it deleted; edits,
	// for an edit, the id of the message it edited.
	deletes, edits string
	enc            []byte
	// data is the message's JSON: the data line of enc, shared with it.
	data []byte
}

// visible reports whether e is a message that has not been deleted.
func (e *entry) visible() bool { return e.data != nil && e.deletes == "" && e.edits == "" }

// newEntry returns the history entry of message r, whose JSON is set.
func newEntry(r *Record) entry {
	enc, data := encodeMessage(r.ID, r.JSON)
	return entry{seq: r.Seq, msg: r.Message, key: r.Key, enc: enc, data: data}
}

// encodeMessage returns the chat event of the message with id and JSON
// data, and the part of it that is data.
func encodeMessage(id string, data []byte) (enc, shared []byte) {
	enc = sse.AppendEvent(nil, sse.Event{ID: id, Data: data})
	// The event ends with data, a newline and the blank line; data holds
	// no line break, as JSON escapes them.
	end := len(enc) - 2
	return enc, enc[end-len(data) : end : end]
}

// ring is a ring of the newest committed records, oldest first.
type ring struct {
	buf   []entry
	start int
	n     int
	// evicted is the sequence number of the newest record that has left
	// the ring (0 if none): a client that has seen less than it has lost
	// records.
	evicted uint64
}

// add appends e, evicting the oldest entry when the ring is full.
func (h *ring) add(e entry) {
	if len(h.buf) == 0 {
		h.evicted = e.seq
		return
	}
	if h.n == len(h.buf) {
		h.evicted = h.buf[h.start].seq
		h.buf[h.start] = e
		h.start = (h.start + 1) % len(h.buf)
		return
	}
	h.buf[(h.start+h.n)%len(h.buf)] = e
	h.n++
}

// forgetEdits takes the text out of the edits of the message with id: a
// deleted message's edits keep their places with nothing of it.
func (h *ring) forgetEdits(id string) {
	for i := range h.n {
		if e := h.at(i); e.edits == id {
			*e = entry{seq: e.seq, msg: Message{ID: e.msg.ID}}
		}
	}
}

// at returns the i-th oldest entry.
func (h *ring) at(i int) *entry { return &h.buf[(h.start+i)%len(h.buf)] }

// after returns the index of the oldest entry whose sequence number is
// greater than seq (h.n if none).
func (h *ring) after(seq uint64) int {
	return sort.Search(h.n, func(i int) bool { return h.at(i).seq > seq })
}

// find returns the entry with sequence number seq, or nil if the ring does
// not hold it.
func (h *ring) find(seq uint64) *entry {
	if seq == 0 {
		return nil
	}
	if i := h.after(seq - 1); i < h.n && h.at(i).seq == seq {
		return h.at(i)
	}
	return nil
}

// visibleIn reports whether entries [from, to) hold a message that is
// still there.
func (h *ring) visibleIn(from, to int) bool {
	for i := from; i < to; i++ {
		if h.at(i).visible() {
			return true
		}
	}
	return false
}

// Position is a point in the log a client names: just after the record
// with ID.
type Position struct {
	// ID is the id as the client sent it, and Epoch and Seq its parts.
	ID    string
	Epoch int64
	Seq   uint64
}

// ParsePosition returns the position just after the record id, or an error
// if id is not of the form "<epoch>-<seq>".
func ParsePosition(id string) (*Position, error) {
	epoch, seq, err := record.ParseID(id)
	if err != nil {
		return nil, err
	}
	return &Position{ID: id, Epoch: epoch, Seq: seq}, nil
}

// Query asks for one page of history: the Limit messages just before
// Before, just after After, or (both nil) the newest.
type Query struct {
	Before, After *Position
	Limit         int
}

// Page answers a Query.
type Page struct {
	// Msgs holds the messages oldest first, each as the JSON POST /post
	// returned for it. The buffers are shared with the log and must not
	// be modified.
	Msgs [][]byte
	// More reports whether history holds more messages beyond the page in
	// the direction asked (older for Before and the newest page, newer
	// for After).
	More bool
}

// Page answers q from history, or returns ErrUnknownID if q names an id of
// another epoch or one not yet committed. Deleted messages and deletions
// are skipped: a page holds up to q.Limit messages that are still there.
func (l *Log) Page(q Query) (Page, error) {
	h := &l.ring
	for _, p := range []*Position{q.Before, q.After} {
		if p != nil && (p.Epoch != l.epoch || p.Seq > l.last) {
			return Page{}, ErrUnknownID
		}
	}
	var msgs [][]byte
	if q.After != nil {
		i := h.after(q.After.Seq)
		for ; i < h.n && len(msgs) < q.Limit; i++ {
			if e := h.at(i); e.visible() {
				msgs = append(msgs, e.data)
			}
		}
		return Page{Msgs: msgs, More: h.visibleIn(i, h.n)}, nil
	}
	end := h.n
	if q.Before != nil {
		end = 0
		if q.Before.Seq > 0 {
			end = h.after(q.Before.Seq - 1)
		}
	}
	i := end - 1
	for ; i >= 0 && len(msgs) < q.Limit; i-- {
		if e := h.at(i); e.visible() {
			msgs = append(msgs, e.data)
		}
	}
	slices.Reverse(msgs)
	return Page{Msgs: msgs, More: h.visibleIn(0, i+1)}, nil
}

// Reasons a Replay gives for a reset.
const (
	// ResetUnknown: the position is of another epoch, or later than the
	// last record committed.
	ResetUnknown = "unknown"
	// ResetExpired: history no longer holds the records just after it.
	ResetExpired = "expired"
)

// Replay is what a stream that starts at a position gets from the log.
type Replay struct {
	// ID is the id of the record just before Events (the last committed
	// one if Events is empty): the stream's starting point, which its
	// first event names so that a client that reconnects at once resumes
	// with Events.
	ID string
	// Reset is "" when the stream resumes where it asked, or why it
	// cannot (ResetUnknown, ResetExpired); it then gets all of history,
	// after ResetEvent, the "reset" event that tells the client so.
	Reset      string
	ResetEvent []byte
	// Events holds the encoded events to send first, oldest first:
	// messages, and for a resuming stream the deletions. The buffers are
	// shared with the log and must not be modified.
	Events [][]byte
}

// Replay returns what a stream gets before live records: for a new stream
// (from nil) the newest backlog messages; for a resuming one everything
// after from, or all of history with a reset if from cannot be resumed.
func (l *Log) Replay(from *Position, backlog int) Replay {
	h := &l.ring
	start := max(0, h.n-backlog)
	var reset string
	if from != nil {
		switch {
		case from.Epoch != l.epoch || from.Seq > l.last:
			reset, start = ResetUnknown, 0
		case from.Seq < h.evicted:
			reset, start = ResetExpired, 0
		default:
			start = h.after(from.Seq)
		}
	}
	pos := l.last
	if start < h.n {
		pos = h.at(start).seq - 1
	}
	events := make([][]byte, 0, h.n-start)
	for i := start; i < h.n; i++ {
		e := h.at(i)
		// Deleted messages are gone; a new client, which has none of
		// them, needs no deletions either, nor edits: each message
		// it gets is as last edited.
		if e.enc == nil || (from == nil && (e.deletes != "" || e.edits != "")) {
			continue
		}
		events = append(events, e.enc)
	}
	r := Replay{ID: record.FormatID(l.epoch, pos), Reset: reset, Events: events}
	if reset != "" {
		r.ResetEvent = resetEvent(r.ID, reset, from.ID)
	}
	return r
}

// resetEvent returns the "reset" event of a stream that asked to resume
// after lastEventID and starts at id instead, for reason.
func resetEvent(id, reason, lastEventID string) []byte {
	why := "this server does not know that id (it restarted without its history); some messages may be missing"
	if reason == ResetExpired {
		why = "history no longer holds the messages after that id; some messages are missing"
	}
	data, _ := json.Marshal(struct {
		Reason      string `json:"reason"`
		LastEventID string `json:"last_event_id"`
		Message     string `json:"message"`
	}{reason, lastEventID, why})
	return sse.AppendEvent(nil, sse.Event{Type: "reset", ID: id, Data: data})
}
