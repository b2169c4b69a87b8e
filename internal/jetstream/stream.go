package jetstream

import (
	"context"
	"fmt"
	"time"
)

// Values of the stream configuration's policy fields.
const (
	LimitsPolicy  = "limits"
	FileStorage   = "file"
	MemoryStorage = "memory"
	DiscardOld    = "old"
	DiscardNew    = "new"
)

// StreamConfig is the configuration of a stream, limited to the fields the
// chat room uses. Zero limits mean "no limit" (the server reports them as
// -1); empty policies mean limits retention, file storage and discarding
// old messages. The server refuses a configuration whose fields disagree
// (see CreateStream) rather than change it.
type StreamConfig struct {
	Name     string   `json:"name"`
	Subjects []string `json:"subjects,omitempty"`
	// Retention is LimitsPolicy (the only one the room uses).
	Retention string `json:"retention"`
	// Storage is FileStorage or MemoryStorage.
	Storage string `json:"storage"`
	// Replicas is how many servers keep the stream (1 to 5).
	Replicas          int           `json:"num_replicas"`
	MaxMsgs           int64         `json:"max_msgs"`
	MaxBytes          int64         `json:"max_bytes"`
	MaxMsgsPerSubject int64         `json:"max_msgs_per_subject"`
	MaxAge            time.Duration `json:"max_age"`
	// Duplicates is the window in which a repeated Nats-Msg-Id is not
	// stored again (0: the server's default, two minutes or MaxAge).
	Duplicates time.Duration `json:"duplicate_window,omitempty"`
	// Discard is DiscardOld or DiscardNew: what a full stream refuses.
	Discard string `json:"discard"`
	// AllowMsgTTL lets messages carry a Nats-TTL header (server 2.11+).
	AllowMsgTTL bool `json:"allow_msg_ttl"`
	// SubjectDeleteMarkerTTL, when set, makes the server leave a delete
	// marker (with a Nats-Marker-Reason header) when a subject's last
	// message expires, kept for this long.
	SubjectDeleteMarkerTTL time.Duration `json:"subject_delete_marker_ttl,omitempty"`
	AllowDirect            bool          `json:"allow_direct"`
	AllowRollup            bool          `json:"allow_rollup_hdrs"`
	DenyDelete             bool          `json:"deny_delete"`
	DenyPurge              bool          `json:"deny_purge"`
}

// withDefaults fills the policies left empty.
func (c StreamConfig) withDefaults() StreamConfig {
	if c.Retention == "" {
		c.Retention = LimitsPolicy
	}
	if c.Storage == "" {
		c.Storage = FileStorage
	}
	if c.Discard == "" {
		c.Discard = DiscardOld
	}
	return c
}

// StreamInfo is what the server says about a stream.
type StreamInfo struct {
	Config StreamConfig `json:"config"`
	// Created is when the stream was made; the room uses it as its epoch.
	Created time.Time   `json:"created"`
	State   StreamState `json:"state"`
	Cluster *struct {
		Leader string `json:"leader"`
	} `json:"cluster,omitempty"`
}

// StreamState is a stream's contents.
type StreamState struct {
	Msgs      uint64    `json:"messages"`
	Bytes     uint64    `json:"bytes"`
	FirstSeq  uint64    `json:"first_seq"`
	FirstTime time.Time `json:"first_ts"`
	LastSeq   uint64    `json:"last_seq"`
	LastTime  time.Time `json:"last_ts"`
}

// streamInfoResponse is the reply to stream create, update and info.
type streamInfoResponse struct {
	apiResponse
	StreamInfo
}

// CreateStream makes a stream. Making one that exists with the same
// configuration succeeds and returns it; one that exists with another
// configuration fails with ErrStreamNameInUse. A configuration the server
// would have to adjust fails with an *APIError saying why: delete markers
// need AllowRollup and not DenyPurge, and a MaxAge under two minutes needs
// a Duplicates window no longer than it.
func (js *JS) CreateStream(ctx context.Context, cfg StreamConfig) (*StreamInfo, error) {
	return js.putStream(ctx, "STREAM.CREATE.", cfg)
}

// UpdateStream changes a stream's configuration, within what the server
// allows to change (not its storage, for example).
func (js *JS) UpdateStream(ctx context.Context, cfg StreamConfig) (*StreamInfo, error) {
	return js.putStream(ctx, "STREAM.UPDATE.", cfg)
}

// putStream sends a stream create or update. It asks the server to be
// pedantic: to refuse a configuration it would otherwise adjust silently
// (for example delete markers without roll-ups, or a duplicate window left
// to its default but longer than MaxAge), so a stream made is exactly the
// one asked for.
func (js *JS) putStream(ctx context.Context, op string, cfg StreamConfig) (*StreamInfo, error) {
	if !validName(cfg.Name) {
		return nil, fmt.Errorf("invalid stream name %q", cfg.Name)
	}
	req := struct {
		StreamConfig
		Pedantic bool `json:"pedantic"`
	}{cfg.withDefaults(), true}
	var resp streamInfoResponse
	if err := js.requestRetry(ctx, op+cfg.Name, req, &resp); err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	return &resp.StreamInfo, nil
}

// StreamInfo returns a stream's configuration and state;
// ErrStreamNotFound when there is none.
func (js *JS) StreamInfo(ctx context.Context, name string) (*StreamInfo, error) {
	if !validName(name) {
		return nil, fmt.Errorf("invalid stream name %q", name)
	}
	var resp streamInfoResponse
	if err := js.requestRetry(ctx, "STREAM.INFO."+name, nil, &resp); err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return &resp.StreamInfo, nil
}

// DeleteStream deletes a stream and everything in it.
func (js *JS) DeleteStream(ctx context.Context, name string) error {
	if !validName(name) {
		return fmt.Errorf("invalid stream name %q", name)
	}
	var resp apiResponse
	if err := js.request(ctx, "STREAM.DELETE."+name, nil, &resp); err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	return nil
}
