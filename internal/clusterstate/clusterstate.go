// Package clusterstate shares what a chat room keeps besides its log
// between the nodes of a cluster, each in a JetStream key/value bucket
// named after the room's stream:
//
//   - who is on each node and who types there (<stream>_presence): every
//     node publishes its share of the room's presence (presence.Share)
//     under a key of its own when it changes, at most once a second, and
//     renews it every few seconds; each value lives shareTTL, so the
//     share of a node that dies expires and the server tells every
//     watcher. Every node watches the bucket and hands each other node's
//     share to its room's hub, which merges them (Presence);
//   - the bans (<stream>_bans): one key per banned prefix, with the ban's
//     end as the value's TTL; every node mirrors the bucket in a ban.List
//     that its handlers read, and closes the streams of an address as its
//     ban arrives (Bans);
//   - the secrets that sign sessions and identity cookies
//     (<stream>_secrets): made by the first node that needs one, with
//     create-if-absent so that nodes starting at once agree (Secrets).
//
// Anyone who may use the cluster's NATS account can read and write these
// buckets, as they can the room's messages: every value read is checked.
package clusterstate

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"chat/internal/jetstream"
)

// Tuning of the shared state.
const (
	// shareInterval is the least time between two publishes of a node's
	// share: a join storm costs one publish a second.
	shareInterval = time.Second
	// shareRenew is how often a node publishes its share unchanged, so
	// that it does not expire.
	shareRenew = 3 * time.Second
	// shareTTL is how long a share lives unless renewed: a node that dies
	// leaves every other node's roster this long after its last renewal
	// at most (then the server removes the share and tells the watchers).
	shareTTL = 12 * time.Second
	// staleAfter is how long a node keeps another node's share that was
	// neither renewed nor removed (a removal it missed while cut off from
	// NATS for longer than markerTTL).
	staleAfter = 2 * shareTTL
	// markerTTL is how long the server keeps the marker it leaves where a
	// value expired, for watchers to see.
	markerTTL = time.Minute
	// putWait bounds one publish to a bucket.
	putWait = 3 * time.Second
	// retryPause is the pause after a failed publish or watch before the
	// next try.
	retryPause = time.Second
	// applyWait bounds how long a ban's writer waits to see its change in
	// its own node's mirror (read your writes).
	applyWait = 2 * time.Second
	// leaveTTL is how long the empty share a node leaves at shutdown
	// lives: long enough to be read, short enough to leave nothing behind.
	leaveTTL = time.Second
)

// Config says where the room's state is kept.
type Config struct {
	// JS is the node's JetStream connection (the room's log's), which
	// stays the caller's to close.
	JS *jetstream.JS
	// Stream is the room's stream; the buckets are named after it.
	Stream string
	// Replicas is how many servers keep each bucket (the stream's).
	Replicas int
	// Logger receives the values refused and the failures to publish
	// (nil: none).
	Logger *slog.Logger
}

// Bucket names the bucket of kind ("presence", "bans", "secrets") of the
// room whose stream is stream.
func Bucket(stream, kind string) string { return stream + "_" + kind }

// openBucket makes the bucket of kind, or binds to the one that exists with
// the same configuration, within ctx.
func openBucket(ctx context.Context, cfg Config, kind string, markers bool) (*jetstream.KV, error) {
	kc := jetstream.KVConfig{Bucket: Bucket(cfg.Stream, kind), Replicas: max(cfg.Replicas, 1)}
	if markers {
		kc.LimitMarkerTTL = markerTTL
	}
	kv, err := cfg.JS.CreateKV(ctx, kc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return kv, nil
}

// openLoaded opens the bucket of kind (with markers for expiries) and
// watches it, handing apply every entry it holds, within ctx, until the
// watcher has caught up; it returns the bucket and the watcher, which reads
// on.
func openLoaded(ctx context.Context, cfg Config, kind string, apply func(*jetstream.KVEntry)) (*jetstream.KV, *jetstream.KVWatcher, error) {
	kv, err := openBucket(ctx, cfg, kind, true)
	if err != nil {
		return nil, nil, err
	}
	w, err := kv.Watch(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	for {
		select {
		case <-w.CaughtUp():
			return kv, w, nil
		default:
		}
		e, err := w.Next(ctx)
		if err != nil {
			w.Stop()
			return nil, nil, fmt.Errorf("%s: load: %w", kind, err)
		}
		apply(e)
	}
}

// logger returns cfg's logger, or one that discards.
func (cfg Config) logger() *slog.Logger {
	if cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return cfg.Logger
}

// pause waits d, and reports false if ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
