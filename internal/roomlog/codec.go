package roomlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"chat/internal/idem"
	"chat/internal/journal"
	"chat/internal/record"
	"chat/internal/sse"
)

// Message is one chat message as stored, sent to clients and returned by
// POST /post.
type Message struct {
	// ID is "<epoch>-<seq>": the history's epoch and the message's sequence
	// number in it. The store assigns it when it commits the message.
	ID string `json:"id"`
	// Username is the sender's name, trimmed and validated.
	Username string `json:"username"`
	// Content is the message text, trimmed and validated.
	Content string `json:"content"`
	// Time is when the message was proposed.
	Time time.Time `json:"time"`
	// Edited is when its author last edited it; zero (and left out of
	// the JSON) for a message never edited.
	Edited time.Time `json:"edited,omitzero"`
}

// Deletion is the deletion of a message (by a moderator, or by its author)
// as DELETE /messages/{id} answers it: its own id (a deletion takes its
// place in the sequence), the id of the message it deletes, its time.
type Deletion struct {
	ID     string    `json:"id"`
	Delete string    `json:"delete"`
	Time   time.Time `json:"time"`
}

// Record is one entry of the room's log: a message, the deletion of one
// (Deletes is set) or an edit of one (Edits is set). It carries all a log
// needs to rebuild the message, its event, its Idempotency-Key and its
// author, whichever node proposed it.
type Record struct {
	// Message is the message (a deletion has only its ID and Time, an
	// edit its ID, Time and new Content). Its ID is set when the record
	// is committed.
	Message
	// Seq is the record's sequence number, the <seq> of its ID, assigned
	// by the store when it commits the record.
	Seq uint64
	// Key is the Idempotency-Key the message was posted with ("" for
	// none), and FP the fingerprint of its username and content
	// (idem.Sum), set whenever Key is.
	Key string
	FP  idem.Fingerprint
	// Deletes, for a deletion, is the id of the message it deletes.
	Deletes string
	// Edits, for an edit, is the id of the message whose content it
	// replaces.
	Edits string
	// Author is the identity (package identity) of the message's poster,
	// "" for a post without one; of an edit, the author who made it; of a
	// deletion, the author who deleted their own message, "" for a
	// moderator's. Stores keep it; it is never in the public JSON.
	Author string
	// Edited is, for an edit once committed, the message as it left it
	// (the answer to PATCH and the data of its "edit" event).
	Edited Message
	// JSON is the message as one line of JSON (MarshalMessage), once its
	// id is known: whoever marshals it first, a store that writes it or
	// the log, keeps it here, so that it is marshalled once.
	JSON []byte
	// Void marks a record that takes its sequence number and nothing
	// else: one a store read from a log shared with others and could not
	// decode (or that fails the room's rules). Every node that reads it
	// skips it the same way. A void record is never a local proposal.
	Void bool
}

// Deletion returns the deletion r is.
func (r *Record) Deletion() Deletion { return Deletion{ID: r.ID, Delete: r.Deletes, Time: r.Time} }

// Line returns r as a store that keeps lines of JSON writes it (the
// journal's form): a message's JSON (MarshalMessage), followed by its key
// as "key" when it has one and its author as "author" when it has one; a
// deletion's JSON, with "author" for an author's; or an edit's, {"id",
// "edit", "content", "time", "author"}. r's ID must be set. The bytes are
// new, or r.JSON itself for a message without a key or an author.
func (r *Record) Line() []byte {
	switch {
	case r.Deletes != "":
		return marshalLine(lineRecord{ID: r.ID, Delete: r.Deletes, Time: r.Time, Author: r.Author})
	case r.Edits != "":
		return marshalLine(lineRecord{ID: r.ID, Edit: r.Edits, Content: r.Content, Time: r.Time, Author: r.Author})
	}
	if r.JSON == nil {
		r.JSON = MarshalMessage(r.Message)
	}
	if r.Key == "" && r.Author == "" {
		return r.JSON
	}
	out := make([]byte, 0, len(r.JSON)+len(r.Key)+len(r.Author)+32)
	out = append(out, r.JSON[:len(r.JSON)-1]...) // without the closing brace
	if r.Key != "" {
		k, _ := json.Marshal(r.Key) // a string always marshals
		out = append(append(out, `,"key":`...), k...)
	}
	if r.Author != "" {
		a, _ := json.Marshal(r.Author)
		out = append(append(out, `,"author":`...), a...)
	}
	return append(out, '}')
}

// lineRecord is every member a line may hold: a message's, its key and
// author, a deletion's and an edit's. Line writes a deletion's and an
// edit's members in this order, leaving out the empty ones.
type lineRecord struct {
	ID       string    `json:"id"`
	Delete   string    `json:"delete,omitempty"`
	Edit     string    `json:"edit,omitempty"`
	Username string    `json:"username,omitempty"`
	Content  string    `json:"content,omitempty"`
	Time     time.Time `json:"time"`
	Key      string    `json:"key,omitempty"`
	Author   string    `json:"author,omitempty"`
}

// marshalLine returns l as one line of JSON, without HTML escaping.
func marshalLine(l lineRecord) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(l) // strings and a time always marshal
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// DecodeLine reads a record back from its Line. The record's Seq is that
// of its id; JSON is left nil (the log marshals it again, so that what it
// serves is what it would have marshalled).
func DecodeLine(line []byte) (Record, error) {
	var l lineRecord
	if err := json.Unmarshal(line, &l); err != nil {
		return Record{}, err
	}
	_, seq, err := record.ParseID(l.ID)
	if err != nil {
		return Record{}, err
	}
	switch {
	case l.Delete != "" && l.Edit != "":
		return Record{}, errors.New("a line is a deletion or an edit, not both")
	case l.Delete != "":
		return Record{Message: Message{ID: l.ID, Time: l.Time}, Seq: seq, Deletes: l.Delete, Author: l.Author}, nil
	case l.Edit != "":
		return Record{Message: Message{ID: l.ID, Content: l.Content, Time: l.Time}, Seq: seq, Edits: l.Edit, Author: l.Author}, nil
	}
	r := Record{Message: Message{ID: l.ID, Username: l.Username, Content: l.Content, Time: l.Time}, Seq: seq, Key: l.Key, Author: l.Author}
	if r.Key != "" {
		r.FP = idem.Sum(r.Username, r.Content)
	}
	return r, nil
}

// Recover decodes the records a journal recovered, oldest first, for
// Config.Recovered. A record that does not decode is an error that names
// its id.
func Recover(recs []journal.Record) ([]Record, error) {
	out := make([]Record, 0, len(recs))
	for _, jr := range recs {
		r, err := DecodeLine(jr.Data)
		if err != nil {
			return nil, fmt.Errorf("journal record %s: %w", record.FormatID(jr.Epoch, jr.Seq), err)
		}
		out = append(out, r)
	}
	return out, nil
}

// MarshalMessage returns m as one line of JSON, without the HTML escaping
// of encoding/json's default ("<" stays "<"): the page renders text with
// textContent, and curl users read it as it was typed.
func MarshalMessage(m Message) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		// A Message always marshals; keep the event well-formed anyway.
		return []byte("{}")
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// AppendMessageEvent appends m as a chat event (its id and its JSON on one
// data line) to dst.
func AppendMessageEvent(dst []byte, m Message) []byte {
	return sse.AppendEvent(dst, sse.Event{ID: m.ID, Data: MarshalMessage(m)})
}

// editEvent returns the "edit" event of edit r: its own id, and the message
// as the edit left it as the data.
func editEvent(r *Record, data []byte) []byte {
	return sse.AppendEvent(nil, sse.Event{Type: "edit", ID: r.ID, Data: data})
}

// deleteEvent returns the "delete" event of deletion r: its own id, and the
// id of the message it deletes as the data.
func deleteEvent(r *Record) []byte {
	data, _ := json.Marshal(struct {
		ID string `json:"id"`
	}{r.Deletes})
	return sse.AppendEvent(nil, sse.Event{Type: "delete", ID: r.ID, Data: data})
}
