package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"chat/internal/nats"
)

// The layout of a key/value bucket, as nats.go keeps it: bucket B is the
// stream KV_B on the subjects $KV.B.>, key K the subject $KV.B.K.
const (
	kvStreamPrefix  = "KV_"
	kvSubjectPrefix = "$KV."
	// kvOpHeader marks a delete ("DEL") or a purge ("PURGE").
	kvOpHeader = "KV-Operation"
	// defaultKVDuplicates is the bucket's duplicate window unless its TTL
	// is shorter.
	defaultKVDuplicates = 2 * time.Minute
)

// Errors of the key/value calls.
var (
	ErrKeyNotFound   = errors.New("key not found")
	ErrKeyExists     = errors.New("key exists")
	ErrInvalidKey    = errors.New("invalid key")
	ErrInvalidBucket = errors.New("invalid bucket name")
)

// KVOp is what an entry records.
type KVOp int

// The operations of a bucket.
const (
	// KVPut is a value.
	KVPut KVOp = iota
	// KVDelete is a delete marker.
	KVDelete
	// KVPurge is a purge marker (older values removed), or the server's
	// marker for a value that expired.
	KVPurge
)

// String names the operation.
func (op KVOp) String() string {
	switch op {
	case KVDelete:
		return "delete"
	case KVPurge:
		return "purge"
	}
	return "put"
}

// KVConfig configures a bucket.
type KVConfig struct {
	Bucket string
	// History is how many values a key keeps (default 1).
	History int64
	// TTL is how long every value lives (0: until replaced).
	TTL time.Duration
	// LimitMarkerTTL, when set, lets values carry their own TTL and makes
	// the server leave a marker, kept this long, when a key's value
	// expires, so watchers see the expiry (server 2.11+).
	LimitMarkerTTL time.Duration
	// Storage is FileStorage (default) or MemoryStorage.
	Storage string
	// Replicas is how many servers keep the bucket (default 1).
	Replicas int
}

// KV is a key/value bucket.
type KV struct {
	js     *JS
	bucket string
	stream string
	// prefix is "$KV.<bucket>.", before every key.
	prefix string
}

// KVEntry is one entry of a bucket: a value, or a delete or purge marker.
type KVEntry struct {
	Key   string
	Value []byte
	// Revision is the entry's sequence in the bucket's stream.
	Revision uint64
	Created  time.Time
	Op       KVOp
}

// CreateKV makes a bucket, or returns the one that exists with the same
// configuration (a different one gives ErrStreamNameInUse).
func (js *JS) CreateKV(ctx context.Context, cfg KVConfig) (*KV, error) {
	if !validBucket(cfg.Bucket) {
		return nil, fmt.Errorf("%w %q", ErrInvalidBucket, cfg.Bucket)
	}
	history := max(cfg.History, 1)
	replicas := max(cfg.Replicas, 1)
	dup := defaultKVDuplicates
	if cfg.TTL > 0 && cfg.TTL < dup {
		dup = cfg.TTL
	}
	sc := StreamConfig{
		Name: kvStreamPrefix + cfg.Bucket, Subjects: []string{kvSubjectPrefix + cfg.Bucket + ".>"},
		Storage: cfg.Storage, Replicas: replicas, MaxMsgs: -1, MaxBytes: -1,
		MaxMsgsPerSubject: history, MaxAge: cfg.TTL, Duplicates: dup, Discard: DiscardNew,
		AllowRollup: true, DenyDelete: true, AllowDirect: true,
		AllowMsgTTL: cfg.LimitMarkerTTL > 0, SubjectDeleteMarkerTTL: cfg.LimitMarkerTTL,
	}
	if _, err := js.CreateStream(ctx, sc); err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	return js.newKV(cfg.Bucket), nil
}

// KV returns the bucket that exists; ErrStreamNotFound when there is none.
func (js *JS) KV(ctx context.Context, bucket string) (*KV, error) {
	if !validBucket(bucket) {
		return nil, fmt.Errorf("%w %q", ErrInvalidBucket, bucket)
	}
	info, err := js.StreamInfo(ctx, kvStreamPrefix+bucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	if info.Config.MaxMsgsPerSubject < 1 {
		return nil, fmt.Errorf("bucket %s: stream %s is not a key/value bucket", bucket, info.Config.Name)
	}
	return js.newKV(bucket), nil
}

// newKV returns the KV of a bucket.
func (js *JS) newKV(bucket string) *KV {
	return &KV{js: js, bucket: bucket, stream: kvStreamPrefix + bucket, prefix: kvSubjectPrefix + bucket + "."}
}

// Bucket returns the bucket's name.
func (kv *KV) Bucket() string { return kv.bucket }

// Put stores value under key and returns its revision.
func (kv *KV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return kv.put(ctx, key, value, 0, -1)
}

// PutTTL stores value under key for ttl (at least a second); the bucket
// needs a LimitMarkerTTL.
func (kv *KV) PutTTL(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return kv.put(ctx, key, value, ttl, -1)
}

// Create stores value under key only if the key has no value (never had
// one, or was deleted, purged or expired); else ErrKeyExists. A ttl of 0
// means none.
func (kv *KV) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	rev, err := kv.put(ctx, key, value, ttl, 0)
	if !isWrongLastSequence(err) {
		return rev, err
	}
	if e, gerr := kv.last(ctx, key); gerr == nil && e.Op != KVPut {
		rev, err = kv.put(ctx, key, value, ttl, int64(e.Revision))
		if !isWrongLastSequence(err) {
			return rev, err
		}
	}
	return 0, fmt.Errorf("bucket %s: %w: %s", kv.bucket, ErrKeyExists, key)
}

// Update stores value under key only if the key's last revision is
// revision; else ErrKeyExists.
func (kv *KV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	return kv.UpdateTTL(ctx, key, value, revision, 0)
}

// UpdateTTL is Update with a TTL for the new value (0: none; the bucket
// needs a LimitMarkerTTL for one).
func (kv *KV) UpdateTTL(ctx context.Context, key string, value []byte, revision uint64, ttl time.Duration) (uint64, error) {
	rev, err := kv.put(ctx, key, value, ttl, int64(revision))
	if isWrongLastSequence(err) {
		return 0, fmt.Errorf("bucket %s: %w: %s is not at revision %d", kv.bucket, ErrKeyExists, key, revision)
	}
	return rev, err
}

// isWrongLastSequence reports whether err is the stream refusing an
// expected last subject sequence.
func isWrongLastSequence(err error) bool {
	return errors.Is(err, ErrWrongLastSequence) || errors.Is(err, ErrWrongLastSequenceReplicated)
}

// put publishes a value with a TTL (0: none) and an expected last
// revision (-1: none).
func (kv *KV) put(ctx context.Context, key string, value []byte, ttl time.Duration, expect int64) (uint64, error) {
	if !validKey(key) {
		return 0, fmt.Errorf("%w %q", ErrInvalidKey, key)
	}
	m := &nats.Msg{Subject: kv.prefix + key, Data: value}
	if ttl > 0 || expect >= 0 {
		m.Header = nats.Header{}
	}
	if ttl > 0 {
		m.Header.Set(TTLHeader, FormatTTL(ttl))
	}
	if expect >= 0 {
		m.Header.Set(ExpectedLastSubjSeqHeader, strconv.FormatInt(expect, 10))
	}
	ack, err := kv.js.PublishMsg(ctx, m)
	if err != nil {
		return 0, err
	}
	return ack.Seq, nil
}

// Get returns the key's value; ErrKeyNotFound when it has none (never
// had one, or was deleted, purged or expired).
func (kv *KV) Get(ctx context.Context, key string) (*KVEntry, error) {
	e, err := kv.last(ctx, key)
	if err != nil {
		return nil, err
	}
	if e.Op != KVPut {
		return nil, fmt.Errorf("bucket %s: %w: %s (%s)", kv.bucket, ErrKeyNotFound, key, e.Op)
	}
	return e, nil
}

// last returns the key's last entry, a marker or a value.
func (kv *KV) last(ctx context.Context, key string) (*KVEntry, error) {
	if !validKey(key) {
		return nil, fmt.Errorf("%w %q", ErrInvalidKey, key)
	}
	m, err := kv.js.GetLastMsg(ctx, kv.stream, kv.prefix+key)
	if errors.Is(err, ErrMsgNotFound) {
		return nil, fmt.Errorf("bucket %s: %w: %s", kv.bucket, ErrKeyNotFound, key)
	}
	if err != nil {
		return nil, err
	}
	return &KVEntry{Key: key, Value: m.Data, Revision: m.Seq, Created: m.Time, Op: kvOp(m.Header)}, nil
}

// Delete marks key deleted, keeping its history.
func (kv *KV) Delete(ctx context.Context, key string) error {
	return kv.mark(ctx, key, nats.Header{kvOpHeader: {"DEL"}})
}

// Purge marks key purged, removing its earlier values.
func (kv *KV) Purge(ctx context.Context, key string) error {
	return kv.mark(ctx, key, nats.Header{kvOpHeader: {"PURGE"}, RollupHeader: {"sub"}})
}

// mark publishes a marker with header h on key.
func (kv *KV) mark(ctx context.Context, key string, h nats.Header) error {
	if !validKey(key) {
		return fmt.Errorf("%w %q", ErrInvalidKey, key)
	}
	_, err := kv.js.PublishMsg(ctx, &nats.Msg{Subject: kv.prefix + key, Header: h})
	return err
}

// kvOp reads an entry's operation from its headers: KV-Operation for
// deletes and purges, or the marker the server leaves for an expiry.
func kvOp(h nats.Header) KVOp {
	switch h.Get(kvOpHeader) {
	case "DEL":
		return KVDelete
	case "PURGE":
		return KVPurge
	}
	switch h.Get(MarkerReasonHeader) {
	case "MaxAge", "Purge":
		return KVPurge
	case "Remove":
		return KVDelete
	}
	return KVPut
}

// KVWatcher delivers a bucket's entries: first each key's last entry, then
// every change as it happens, including deletes, purges and expiries.
type KVWatcher struct {
	kv *KV
	c  *Consumer
}

// Watch watches the keys matching keys (wildcards * and > allowed; ""
// means every key).
func (kv *KV) Watch(ctx context.Context, keys string) (*KVWatcher, error) {
	if keys == "" {
		keys = ">"
	}
	if !validKeyFilter(keys) {
		return nil, fmt.Errorf("%w %q", ErrInvalidKey, keys)
	}
	c, err := kv.js.OrderedConsumer(ctx, kv.stream, ConsumerConfig{
		DeliverPolicy: DeliverLastPerSubject, FilterSubjects: []string{kv.prefix + keys},
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: watch: %w", kv.bucket, err)
	}
	return &KVWatcher{kv: kv, c: c}, nil
}

// Next returns the next entry, waiting until ctx ends.
func (w *KVWatcher) Next(ctx context.Context) (*KVEntry, error) {
	m, err := w.c.Next(ctx)
	if err != nil {
		return nil, err
	}
	return &KVEntry{
		Key: strings.TrimPrefix(m.Subject, w.kv.prefix), Value: m.Data,
		Revision: m.Seq, Created: m.Time, Op: kvOp(m.Header),
	}, nil
}

// CaughtUp returns a channel closed once the watcher has delivered the
// last entry of every key that existed when it started.
func (w *KVWatcher) CaughtUp() <-chan struct{} { return w.c.CaughtUp() }

// Stop ends the watcher.
func (w *KVWatcher) Stop() { w.c.Stop() }

// validBucket reports whether name may be a bucket name: letters, digits,
// '_' and '-'.
func validBucket(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// validKey reports whether key may be a key: letters, digits and
// "-/_=.", not starting or ending with '.', without empty tokens.
func validKey(key string) bool {
	if key == "" || key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; !isAlnum(c) && !strings.ContainsRune("-/_=.", rune(c)) {
			return false
		}
	}
	return true
}

// validKeyFilter reports whether keys may filter a watch: a key whose
// tokens may also be the wildcards "*" (one token) or ">" (the rest, last).
func validKeyFilter(keys string) bool {
	tokens := strings.Split(keys, ".")
	for i, tok := range tokens {
		if tok == "*" || (tok == ">" && i == len(tokens)-1) {
			continue
		}
		if !validKey(tok) {
			return false
		}
	}
	return true
}

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
