package clusterstate

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"sync"
	"time"

	"chat/internal/jetstream"
	"chat/internal/presence"
	"chat/internal/text"
)

// Sharer is the room's hub as presence sharing sees it.
type Sharer interface {
	// Share runs f in the hub with the room's presence board, or returns
	// an error once the room has shut down (or ctx's).
	Share(ctx context.Context, f func(*presence.Board)) error
}

// Presence shares this node's presence with the other nodes of the room
// and merges theirs into the room's (see the package comment). Its two
// goroutines run until Stop.
type Presence struct {
	kv   *jetstream.KV
	room Sharer
	// node is this node's key in the bucket: random, made at start.
	node string
	log  *slog.Logger
	// cancel ends the goroutines, and wg waits for them.
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// heard is the last share of another node this node merged, and when.
type heard struct {
	data []byte
	at   time.Time
}

// emptyShare is the share a node leaves at shutdown.
var emptyShare = []byte(`{"people":[],"anonymous":0,"more_people":0,"more_streams":0,"typing":[]}`)

// SharePresence opens the presence bucket (within ctx) and starts sharing
// room's presence: one goroutine publishes this node's share when the
// room's board says it changed, at most every shareInterval, and renews it
// every shareRenew; another watches the bucket and hands every other
// node's share to the room's hub (presence.Board.SetRemote), and takes it
// away again (DropRemote) when the node leaves, its share expires, or
// nothing was heard of it for staleAfter.
func SharePresence(ctx context.Context, cfg Config, room Sharer) (*Presence, error) {
	kv, err := openBucket(ctx, cfg, "presence", true)
	if err != nil {
		return nil, err
	}
	w, err := kv.Watch(ctx, "")
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	p := &Presence{kv: kv, room: room, node: rand.Text()[:16], log: cfg.logger(), cancel: cancel}
	p.wg.Go(func() { p.publish(rctx) })
	p.wg.Go(func() {
		defer w.Stop()
		p.watch(rctx, w)
	})
	return p, nil
}

// Node returns this node's key in the presence bucket.
func (p *Presence) Node() string { return p.node }

// Stop ends the sharing and leaves an empty share that expires after
// leaveTTL, so that the other nodes take this node's people off their
// rosters at once.
func (p *Presence) Stop() {
	p.cancel()
	p.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), putWait)
	defer cancel()
	if _, err := p.kv.PutTTL(ctx, p.node, emptyShare, leaveTTL); err != nil {
		p.log.Warn("could not tell the other nodes that this node leaves: its people leave their rosters when its share expires", "error", err)
	}
}

// publish publishes this node's share until ctx ends or the room shuts
// down: after a change, at most every shareInterval (a change after a
// quiet second goes at once), and unchanged every shareRenew. A publish
// that fails is tried again shareInterval later.
func (p *Presence) publish(ctx context.Context) {
	var changes <-chan struct{}
	if err := p.room.Share(ctx, func(b *presence.Board) { changes = b.Changes() }); err != nil {
		return
	}
	var last []byte
	// lastPut is the last publish, lastChange the last one of a change
	// (or the last failure).
	var lastPut, lastChange time.Time
	pending, failing := true, false
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		next := lastPut.Add(shareRenew)
		if pending {
			next = lastChange.Add(shareInterval)
		}
		if now.Before(next) {
			timer.Reset(next.Sub(now))
			select {
			case <-ctx.Done():
				return
			case <-changes:
				pending = true
			case <-timer.C:
			}
			continue
		}
		var share []byte
		if err := p.room.Share(ctx, func(b *presence.Board) { share = b.LocalShare() }); err != nil {
			return
		}
		changed := !bytes.Equal(share, last)
		if !changed && now.Sub(lastPut) < shareRenew {
			pending = false // changed and changed back
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, putWait)
		_, err := p.kv.PutTTL(pctx, p.node, share, shareTTL)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			p.log.Warn("could not publish this node's presence to the other nodes; trying again", "error", err)
		case err == nil && failing:
			p.log.Info("this node's presence published again")
		}
		failing, pending = err != nil, err != nil
		if err == nil {
			last, lastPut = share, now
		}
		if changed || err != nil {
			lastChange = now
		}
	}
}

// watch hands the other nodes' shares to the room's hub, as the bucket's
// watcher w delivers them, until ctx ends or the room shuts down.
func (p *Presence) watch(ctx context.Context, w *jetstream.KVWatcher) {
	v := &watchState{seen: make(map[string]*heard), refused: make(map[string][]byte)}
	for {
		nctx, cancel := context.WithTimeout(ctx, shareRenew)
		e, err := w.Next(nctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if !p.dropStale(ctx, v.seen, time.Now()) {
			return
		}
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			continue
		case err != nil:
			p.log.Warn("could not read the other nodes' presence; trying again", "error", err)
			if !pause(ctx, retryPause) {
				return
			}
			continue
		case e.Key == p.node:
			continue
		}
		if !p.apply(ctx, v, e) {
			return
		}
	}
}

// watchState is what the watcher remembers of the other nodes: the last
// share merged of each (seen), and the last share refused of each, which
// is not logged again when it is renewed (refused, forgotten when it holds
// maxRefused).
type watchState struct {
	seen    map[string]*heard
	refused map[string][]byte
}

// maxRefused bounds watchState.refused.
const maxRefused = 4 * presence.MaxNodes

// apply hands one entry of the presence bucket, another node's share or
// its removal, to the room's hub, and reports false once the room has shut
// down. A share that does not parse or that the board cannot take is
// refused with a warning (once for the same share), and the node's earlier
// share dropped.
func (p *Presence) apply(ctx context.Context, v *watchState, e *jetstream.KVEntry) bool {
	node, now := e.Key, time.Now()
	if h := v.seen[node]; h != nil && e.Op == jetstream.KVPut && bytes.Equal(h.data, e.Value) {
		h.at = now // renewed
		return true
	}
	refuse := func(err error) {
		if !bytes.Equal(v.refused[node], e.Value) {
			p.log.Warn("another node's presence refused", "node", node, "error", err)
		}
		if len(v.refused) >= maxRefused {
			clear(v.refused)
		}
		v.refused[node] = e.Value
	}
	var s *presence.Share
	var err error
	if e.Op == jetstream.KVPut {
		if s, err = presence.ParseShare(e.Value, validName); err != nil {
			refuse(err)
		}
	}
	if s != nil {
		var serr error
		if err := p.room.Share(ctx, func(b *presence.Board) { serr = b.SetRemote(node, s) }); err != nil {
			return false
		}
		if serr == nil {
			v.seen[node] = &heard{data: e.Value, at: now}
			return true
		}
		refuse(serr)
	}
	if v.seen[node] == nil {
		return true
	}
	delete(v.seen, node)
	return p.room.Share(ctx, func(b *presence.Board) { b.DropRemote(node) }) == nil
}

// dropStale drops the shares not heard of for staleAfter at now, and
// reports false once the room has shut down.
func (p *Presence) dropStale(ctx context.Context, seen map[string]*heard, now time.Time) bool {
	for node, h := range seen {
		if now.Sub(h.at) < staleAfter {
			continue
		}
		delete(seen, node)
		p.log.Warn("another node's presence neither renewed nor removed: dropped", "node", node)
		if err := p.room.Share(ctx, func(b *presence.Board) { b.DropRemote(node) }); err != nil {
			return false
		}
	}
	return true
}

// validName checks a name in another node's share: a name this node would
// accept, in the form it stores.
func validName(name string) error {
	got, err := text.Name("name", name)
	if err == nil && got != name {
		err = errors.New("not in the form a node stores")
	}
	return err
}
