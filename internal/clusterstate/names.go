package clusterstate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"chat/internal/jetstream"
	"chat/internal/names"
)

// Bounds of the names bucket.
const (
	// maxRevisions bounds the revisions Names remembers; past it they are
	// forgotten (they are hints: a write at a stale one reads the key
	// again).
	maxRevisions = 4 * names.DefaultMaxHolds
	// maxIdentity bounds the length of an identity in a hold (a real one
	// is 22 characters).
	maxIdentity = 64
	// putTries bounds the rounds of a Put while other nodes write the key.
	putTries = 3
)

// Names is the room's held names shared by every node: kept in the names
// bucket (one key per skeleton, names.Key; the value a names.Record,
// with a TTL to the hold's end, or Lease while streams carry it), and
// mirrored in each node's names.Table, which writes its changes here
// (names.Shared) and hears the other nodes' through Apply. A name is taken
// with create-if-absent and used at the revision last seen, so two nodes
// cannot hand one name to two identities: the second is refused with
// names.ErrHeld. Its goroutine mirrors the bucket and renews the holds
// that this node's streams carry, until Stop.
type Names struct {
	kv    *jetstream.KV
	table *names.Table
	log   *slog.Logger
	// cancel ends the goroutine, and wg waits for it.
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// rev holds the last revision seen of each key, with the identity
	// whose hold it stores.
	rev map[string]revision
}

// revision is a key's revision and the identity whose hold it stores.
type revision struct {
	rev uint64
	id  string
}

// OpenNames opens the names bucket and loads it into table, within ctx;
// then table shares its holds there (names.Table.Share) and a goroutine
// applies every other node's change to table and renews, every
// names.Lease/3, the holds that this node's streams carry, until Stop.
func OpenNames(ctx context.Context, cfg Config, table *names.Table) (*Names, error) {
	n := &Names{table: table, log: cfg.logger(), rev: make(map[string]revision)}
	var w *jetstream.KVWatcher
	var err error
	if n.kv, w, err = openLoaded(ctx, cfg, "names", n.apply); err != nil {
		return nil, err
	}
	table.Share(n)
	rctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Go(func() {
		defer w.Stop()
		n.run(rctx, w)
	})
	return n, nil
}

// Stop stops mirroring the bucket and renewing this node's holds.
func (n *Names) Stop() {
	n.cancel()
	n.wg.Wait()
}

// run applies the bucket's changes as the watcher w delivers them, and
// renews this node's streams' holds every names.Lease/3, until ctx ends.
func (n *Names) run(ctx context.Context, w *jetstream.KVWatcher) {
	renew := time.Now().Add(names.Lease / 3)
	for {
		nctx, cancel := context.WithDeadline(ctx, renew)
		e, err := w.Next(nctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded):
			renew = time.Now().Add(names.Lease / 3)
			if err := n.table.Save(time.Now()); err != nil {
				n.log.Warn("could not renew the names this node's streams hold", "error", err)
			}
		case err != nil:
			n.log.Warn("could not read the room's held names; trying again", "error", err)
			if !pause(ctx, retryPause) {
				return
			}
		default:
			n.apply(e)
		}
	}
}

// apply applies one entry of the bucket to the table: a hold stored, or
// released (a delete), or ended (a purge, or its TTL). An entry whose key
// and value do not make a hold this node would store is skipped and
// logged.
func (n *Names) apply(e *jetstream.KVEntry) {
	skeleton, err := names.ParseKey(e.Key)
	var rec *names.Record
	if err == nil && e.Op == jetstream.KVPut {
		rec, err = decodeHold(e.Value, skeleton)
	}
	if err != nil {
		n.log.Warn("a held name in the room's bucket refused", "key", e.Key, "error", err)
		return
	}
	n.mu.Lock()
	if len(n.rev) >= maxRevisions {
		clear(n.rev)
	}
	if old := n.rev[e.Key]; e.Op == jetstream.KVPut && e.Revision > old.rev {
		n.rev[e.Key] = revision{e.Revision, rec.ID}
	} else if e.Revision > old.rev {
		delete(n.rev, e.Key)
	}
	n.mu.Unlock()
	change := names.Stored
	switch e.Op {
	case jetstream.KVDelete:
		change = names.Released
	case jetstream.KVPurge:
		change = names.Ended
	}
	if err := n.table.Apply(skeleton, rec, change, time.Now()); err != nil {
		n.log.Warn("could not take back a name this node's streams hold", "name", skeleton, "error", err)
	}
}

// Put implements names.Shared: it stores rec on skeleton's key for ttl,
// at the revision last seen if that stores a hold of rec's identity, else
// only if the key is absent; when the key has moved on, it reads it: a
// hold of rec's identity is written over, another's refuses with
// names.ErrHeld.
func (n *Names) Put(skeleton string, rec names.Record, ttl time.Duration) error {
	key := names.Key(skeleton)
	data, _ := json.Marshal(rec) // cannot fail: strings and numbers
	ctx, cancel := context.WithTimeout(context.Background(), putWait)
	defer cancel()
	n.mu.Lock()
	last := n.rev[key]
	n.mu.Unlock()
	rev, known := last.rev, last.id == rec.ID
	for range putTries {
		var err error
		var got uint64
		if known {
			got, err = n.kv.UpdateTTL(ctx, key, data, rev, ttl)
		} else {
			got, err = n.kv.Create(ctx, key, data, ttl)
		}
		if err == nil {
			n.mu.Lock()
			if got > n.rev[key].rev {
				n.rev[key] = revision{got, rec.ID}
			}
			n.mu.Unlock()
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%w: %w", names.ErrUnavailable, err)
		}
		e, err := n.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			known = false
			continue
		case err != nil:
			return fmt.Errorf("%w: %w", names.ErrUnavailable, err)
		}
		if other, err := decodeHold(e.Value, skeleton); err == nil && other.ID != rec.ID {
			return fmt.Errorf("%w: %s", names.ErrHeld, rec.Name)
		}
		rev, known = e.Revision, true // this identity's, or no hold at all
	}
	return fmt.Errorf("%w: other nodes keep changing the hold on %q", names.ErrUnavailable, rec.Name)
}

// Release implements names.Shared: a delete, which another node whose
// streams carry the name answers by taking it back.
func (n *Names) Release(skeleton string) error { return n.remove(skeleton, n.kv.Delete) }

// Free implements names.Shared: a purge, which ends the hold everywhere.
func (n *Names) Free(skeleton string) error { return n.remove(skeleton, n.kv.Purge) }

// remove ends the hold on skeleton's key with op (Delete or Purge).
func (n *Names) remove(skeleton string, op func(context.Context, string) error) error {
	key := names.Key(skeleton)
	ctx, cancel := context.WithTimeout(context.Background(), putWait)
	defer cancel()
	if err := op(ctx, key); err != nil {
		return fmt.Errorf("%w: %w", names.ErrUnavailable, err)
	}
	n.mu.Lock()
	delete(n.rev, key)
	n.mu.Unlock()
	return nil
}

// decodeHold reads a hold from a value: exactly the fields of a
// names.Record, an identity of 1 to maxIdentity characters, a name whose
// skeleton is the key's, and times after the epoch, the last not before
// the first.
func decodeHold(data []byte, skeleton string) (*names.Record, error) {
	var r names.Record
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	sk, err := names.Skeleton(r.Name)
	switch {
	case err != nil:
		return nil, err
	case sk != skeleton:
		return nil, fmt.Errorf("value names %q, not the key's %q", r.Name, skeleton)
	case r.ID == "" || len(r.ID) > maxIdentity:
		return nil, fmt.Errorf("an identity of %d bytes", len(r.ID))
	case r.Since <= 0 || r.Last < r.Since:
		return nil, errors.New("times out of order")
	}
	return &r, nil
}
