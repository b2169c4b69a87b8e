package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"chat/internal/nats"
)

// Headers JetStream reads on a published message or adds to a stored one.
const (
	// MsgIDHeader is the message's id: a second message with the same id
	// within the stream's duplicate window is not stored again.
	MsgIDHeader = "Nats-Msg-Id"
	// ExpectedLastSubjSeqHeader makes the stream store the message only
	// if the last message on its subject has this sequence (0: none).
	ExpectedLastSubjSeqHeader = "Nats-Expected-Last-Subject-Sequence"
	// TTLHeader is the message's time to live (needs AllowMsgTTL).
	TTLHeader = "Nats-TTL"
	// RollupHeader "sub" replaces every earlier message on the subject.
	RollupHeader = "Nats-Rollup"
	// MarkerReasonHeader is on the delete markers the server leaves
	// (MaxAge, Purge or Remove).
	MarkerReasonHeader = "Nats-Marker-Reason"
)

// PubAck is the stream's acknowledgement of a stored message.
type PubAck struct {
	// Stream is the stream that stored the message.
	Stream string `json:"stream"`
	// Seq is its sequence in the stream.
	Seq uint64 `json:"seq"`
	// Duplicate is true when the Nats-Msg-Id was seen within the duplicate
	// window: nothing new was stored and Seq is the first message's.
	Duplicate bool `json:"duplicate,omitempty"`
	// Domain is the JetStream domain, if any.
	Domain string `json:"domain,omitempty"`
}

// Publish publishes data to subject and waits for the stream's
// acknowledgement; see PublishMsg.
func (js *JS) Publish(ctx context.Context, subject string, data []byte) (*PubAck, error) {
	return js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data})
}

// PublishMsg publishes m (with its headers, such as MsgIDHeader) and waits
// for the stream's acknowledgement, DefaultTimeout when ctx has no
// deadline. It never publishes twice.
//
// Its error says what became of m. Not stored, so publishing again is
// safe: nats.ErrNotConnected (not sent), ErrNoStream (no stream took it),
// or an *APIError (the stream refused it, for example
// ErrWrongLastSequence). Fate unknown: nats.ErrNoReply (it was sent and no
// acknowledgement came); publish it again with the same Nats-Msg-Id to
// settle it, as the duplicate window then answers with the first copy.
func (js *JS) PublishMsg(ctx context.Context, m *nats.Msg) (*PubAck, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	r, err := js.nc.Request(ctx, m)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("publish to %s: %w (%w)", m.Subject, ErrNoStream, err)
	}
	if err != nil {
		return nil, fmt.Errorf("publish to %s: %w", m.Subject, err)
	}
	var resp struct {
		apiResponse
		PubAck
	}
	if err := json.Unmarshal(r.Data, &resp); err != nil {
		// The stream may have stored it: the reply does not say.
		return nil, fmt.Errorf("publish to %s: %w: bad acknowledgement: %w", m.Subject, nats.ErrNoReply, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("publish to %s: %w", m.Subject, resp.Error)
	}
	if resp.Stream == "" || resp.Seq == 0 {
		return nil, fmt.Errorf("publish to %s: %w: acknowledgement without a sequence", m.Subject, nats.ErrNoReply)
	}
	return &resp.PubAck, nil
}

// FormatTTL formats d for TTLHeader: whole seconds, at least one.
func FormatTTL(d time.Duration) string {
	return strconv.FormatInt(max(int64((d+time.Second-1)/time.Second), 1), 10) + "s"
}

// StoredMsg is a message as the stream stores it.
type StoredMsg struct {
	Subject string
	// Seq is the message's sequence in the stream.
	Seq uint64
	// Time is when the stream stored it.
	Time   time.Time
	Header nats.Header
	Data   []byte
}

// GetMsg returns the message with sequence seq; ErrMsgNotFound when the
// stream does not hold it (never stored, deleted, or aged out).
func (js *JS) GetMsg(ctx context.Context, stream string, seq uint64) (*StoredMsg, error) {
	return js.getMsg(ctx, stream, struct {
		Seq uint64 `json:"seq"`
	}{seq})
}

// GetLastMsg returns the last message stored on subject; ErrMsgNotFound
// when there is none.
func (js *JS) GetLastMsg(ctx context.Context, stream, subject string) (*StoredMsg, error) {
	return js.getMsg(ctx, stream, struct {
		LastBySubject string `json:"last_by_subj"`
	}{subject})
}

// getMsg sends a STREAM.MSG.GET request, answered by the stream's leader
// so the answer is never behind an acknowledged publish.
func (js *JS) getMsg(ctx context.Context, stream string, req any) (*StoredMsg, error) {
	if !validName(stream) {
		return nil, fmt.Errorf("invalid stream name %q", stream)
	}
	var resp struct {
		apiResponse
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := js.requestRetry(ctx, "STREAM.MSG.GET."+stream, req, &resp); err != nil {
		return nil, fmt.Errorf("stream %s: get message: %w", stream, err)
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("stream %s: get message: empty response", stream)
	}
	m := &StoredMsg{Subject: resp.Message.Subject, Seq: resp.Message.Seq, Time: resp.Message.Time, Data: resp.Message.Data}
	if len(resp.Message.Header) > 0 {
		h, _, _, err := nats.ParseHeader(resp.Message.Header)
		if err != nil {
			return nil, fmt.Errorf("stream %s: message %d: %w", stream, m.Seq, err)
		}
		m.Header = h
	}
	return m, nil
}
