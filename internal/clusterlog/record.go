package clusterlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"chat/internal/idem"
	"chat/internal/jetstream"
	"chat/internal/nats"
	"chat/internal/record"
	"chat/internal/roomlog"
)

// Headers of a record in the stream, besides jetstream.MsgIDHeader (the
// post's Idempotency-Key, or a unique id the node made).
const (
	// KeyHeader is the Idempotency-Key a message was posted with; a
	// message without one has no KeyHeader.
	KeyHeader = "Chat-Key"
	// OriginHeader is the id of the publish that stored the record: the
	// node's own token and a counter. A node knows its own records by it
	// (and a retry of one publish carries the same origin).
	OriginHeader = "Chat-Origin"
)

// payload is a record's data in the stream: a message's username and
// content, the id of the message a deletion deletes, or the id of the
// message an edit edits and its new content; with the author's identity
// when there is one (a message's poster, an edit's author, an author who
// deleted their own message). The id, the sequence number and the time
// come from the stream, the key from a header; the rest of the record is
// rebuilt from these, the same way on every node.
type payload struct {
	Username string `json:"username,omitempty"`
	Content  string `json:"content,omitempty"`
	Delete   string `json:"delete,omitempty"`
	Edit     string `json:"edit,omitempty"`
	Author   string `json:"author,omitempty"`
}

// encodePayload returns the data of r in the stream, as one line of JSON
// without HTML escaping (so it reads as typed).
func encodePayload(r *roomlog.Record) []byte {
	p := payload{Username: r.Username, Content: r.Content, Author: r.Author}
	switch {
	case r.Deletes != "":
		p = payload{Delete: r.Deletes, Author: r.Author}
	case r.Edits != "":
		p = payload{Edit: r.Edits, Content: r.Content, Author: r.Author}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(p) // strings always encode
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// errBadRecord is wrapped by every error of decodeRecord.
var errBadRecord = errors.New("bad record")

// decodeRecord rebuilds the record that m holds, with its sequence number
// and the stream's time for it; valid, when not nil, checks a message's
// username and content, or an edit's content, against the room's rules.
// Its error says why the record is void: a payload that is not valid
// UTF-8, or not exactly one message (username and content), one deletion
// (a well-formed id) or one edit (a well-formed id, content and an
// author), or a malformed key. It is the one decoder every node uses, so
// every node voids the same records.
func decodeRecord(m *jetstream.Msg, valid func(r *roomlog.Record) error) (roomlog.Record, error) {
	r := roomlog.Record{Seq: m.Seq, Message: roomlog.Message{Time: m.Time.UTC()}}
	if !utf8.Valid(m.Data) {
		// encoding/json would turn bad bytes into U+FFFD.
		return r, fmt.Errorf("%w: payload is not valid UTF-8", errBadRecord)
	}
	var p payload
	dec := json.NewDecoder(bytes.NewReader(m.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return r, fmt.Errorf("%w: payload: %w", errBadRecord, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return r, fmt.Errorf("%w: payload: data after the object", errBadRecord)
	}
	r.Author = p.Author
	switch {
	case p.Delete != "" && p.Username == "" && p.Content == "" && p.Edit == "":
		if _, _, err := record.ParseID(p.Delete); err != nil {
			return r, fmt.Errorf("%w: deletion: %w", errBadRecord, err)
		}
		r.Deletes = p.Delete
		return r, nil
	case p.Edit != "" && p.Content != "" && p.Author != "" && p.Username == "" && p.Delete == "":
		if _, _, err := record.ParseID(p.Edit); err != nil {
			return r, fmt.Errorf("%w: edit: %w", errBadRecord, err)
		}
		r.Edits, r.Content = p.Edit, p.Content
	case p.Delete != "" || p.Edit != "" || p.Username == "" || p.Content == "":
		return r, fmt.Errorf("%w: payload is neither a message (username and content), a deletion nor an edit (with content and author)", errBadRecord)
	default:
		r.Username, r.Content = p.Username, p.Content
	}
	if valid != nil {
		if err := valid(&r); err != nil {
			return r, fmt.Errorf("%w: %w", errBadRecord, err)
		}
	}
	if r.Edits != "" {
		return r, nil
	}
	if keys := m.Header.Values(KeyHeader); len(keys) > 0 {
		if len(keys) > 1 || idem.CheckKey(keys[0]) != nil {
			return roomlog.Record{Seq: m.Seq}, fmt.Errorf("%w: malformed %s header", errBadRecord, KeyHeader)
		}
		r.Key, r.FP = keys[0], idem.Sum(r.Username, r.Content)
	}
	return r, nil
}

// origin returns the OriginHeader of m ("" for none).
func origin(m *jetstream.Msg) string { return m.Header.Get(OriginHeader) }

// newMsg returns the message that publishes r on subject, under msgID,
// from the publish named origin.
func newMsg(subject, msgID, origin string, r *roomlog.Record) *nats.Msg {
	h := nats.Header{jetstream.MsgIDHeader: {msgID}, OriginHeader: {origin}}
	if r.Key != "" {
		h[KeyHeader] = []string{r.Key}
	}
	return &nats.Msg{Subject: subject, Header: h, Data: encodePayload(r)}
}
