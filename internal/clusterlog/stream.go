package clusterlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"chat/internal/jetstream"
)

// ConflictError says how an existing stream differs from what the room
// needs: Field is the stream configuration's field (as JetStream names
// it), Have its value and Want the room's.
type ConflictError struct {
	Stream, Field, Have, Want string
}

// Error names the stream, the field and both values.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("stream %s exists with %s %s, the room needs %s", e.Stream, e.Field, e.Have, e.Want)
}

// streamConfig returns the configuration of the stream cfg asks for: file
// storage with cfg.Replicas, limits retention with at most cfg.History
// records and the oldest discarded, the duplicate window, and no deletion
// or purge of single records (a record's sequence number is its id).
func streamConfig(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       cfg.Stream,
		Subjects:   []string{Subject(cfg.Stream)},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   cfg.Replicas,
		MaxMsgs:    int64(cfg.History),
		Duplicates: cfg.Duplicates,
		Discard:    jetstream.DiscardOld,
		DenyDelete: true,
		DenyPurge:  true,
	}
}

// ensureStream makes the stream cfg asks for, or returns the existing one
// if it can serve the room (ConflictError if not). Two nodes that start at
// once may both try to make it; the second finds it made.
func ensureStream(ctx context.Context, js *jetstream.JS, cfg Config) (*jetstream.StreamInfo, error) {
	want := streamConfig(cfg)
	info, err := js.StreamInfo(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		info, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameInUse) {
			info, err = js.StreamInfo(ctx, cfg.Stream)
		} else if err != nil {
			return nil, fmt.Errorf("make %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := checkStream(info.Config, want); err != nil {
		return nil, err
	}
	return info, nil
}

// checkStream returns a ConflictError naming the first field of have (an
// existing stream's configuration) that keeps it from serving as want: it
// must hold the room's subject alone, keep every record (limits retention,
// file storage, no age, size or per-subject limit) up to the same number,
// discard the oldest, have the replicas asked for, and a duplicate window
// at least as long as a node's retries of one publish.
func checkStream(have, want jetstream.StreamConfig) error {
	conflict := func(field, h, w string) error {
		return &ConflictError{Stream: want.Name, Field: field, Have: h, Want: w}
	}
	num := func(n int64) string {
		if n <= 0 {
			return "unlimited"
		}
		return strconv.FormatInt(n, 10)
	}
	switch {
	case !slices.Equal(have.Subjects, want.Subjects):
		return conflict("subjects", "["+strings.Join(have.Subjects, " ")+"]", "["+strings.Join(want.Subjects, " ")+"]")
	case have.Retention != want.Retention:
		return conflict("retention", have.Retention, want.Retention)
	case have.Storage != want.Storage:
		return conflict("storage", have.Storage, want.Storage)
	case have.Replicas != want.Replicas:
		return conflict("num_replicas", strconv.Itoa(have.Replicas), strconv.Itoa(want.Replicas))
	case have.MaxMsgs != want.MaxMsgs:
		return conflict("max_msgs", num(have.MaxMsgs), num(want.MaxMsgs))
	case have.Discard != want.Discard:
		return conflict("discard", have.Discard, want.Discard)
	case have.MaxAge != 0:
		return conflict("max_age", have.MaxAge.String(), "none")
	case have.MaxBytes > 0:
		return conflict("max_bytes", num(have.MaxBytes), "unlimited")
	case have.MaxMsgsPerSubject > 0:
		return conflict("max_msgs_per_subject", num(have.MaxMsgsPerSubject), "unlimited")
	case have.Duplicates < minDuplicates:
		return conflict("duplicate_window", have.Duplicates.String(), "at least "+minDuplicates.String())
	}
	return nil
}

// minDuplicates is the shortest duplicate window an existing stream may
// have: a node retries one publish for up to DefaultPublishWait, and a
// client retries a 504 a few seconds later.
const minDuplicates = 30 * time.Second

// ValidStream reports whether name may name the room's stream: 1 to 32
// ASCII letters, digits, "-" or "_" (a stream name is part of API
// subjects, and the room's subject holds it).
func ValidStream(name string) bool {
	if name == "" || len(name) > 32 {
		return false
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
