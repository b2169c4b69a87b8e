package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"chat/internal/fanout"
	"chat/internal/idem"
	"chat/internal/journal"
	"chat/internal/limit"
	"chat/internal/presence"
	"chat/internal/record"
	"chat/internal/sse"
)

// Tuning values of the hub. Each can be changed with a flag (see main.go);
// these are the defaults.
const (
	// defaultHistory is how many messages the room keeps for new and
	// resuming clients and for GET /history. A 100-character message costs
	// about 400 bytes of heap (its entry, its strings and its encoded
	// event), so 10 000 cost about 4 MB, plus about 2 MB with -data (the
	// journal keeps each message's line for compaction); the worst case,
	// 2000 four-byte characters a message, is about 160 MB.
	defaultHistory = 10000
	// defaultBacklog is how many of the newest messages a new client (one
	// without Last-Event-ID) receives before live messages.
	defaultBacklog = 50
	// defaultClientBuffer is how many frames may wait in one client's queue
	// (a frame holds every message of one fan-out, and a writer that falls
	// behind writes all it has queued at once, so 64 frames is over a
	// second of lag at 50 messages a second). A client whose queue is full
	// is disconnected; it resumes with Last-Event-ID, so it loses nothing
	// that history still holds. Each slot costs 8 bytes per client.
	defaultClientBuffer = 64
	// defaultRetry is the reconnection delay the stream suggests to
	// EventSource through the "retry:" field.
	defaultRetry = time.Second
	// defaultHistoryLimit is how many messages GET /history returns when
	// the request gives no limit, and maxHistoryLimit the most it returns.
	defaultHistoryLimit = 50
	maxHistoryLimit     = 200
	// maxDrain bounds how many waiting posts the hub takes in one go before
	// it fans the batch out, so that one burst cannot delay delivery
	// without limit.
	maxDrain = 256
	// defaultBatchWait bounds how long the hub holds new messages while
	// the frame before them is still being written, or held after it (see
	// ChatRoom): a batch leaves at the latest this long after that frame
	// did. It binds only in a room whose frame takes long to write (5 000
	// streams on two cores); 120 ms is where such a room, measured at 50
	// messages a second, both costs less CPU per delivery and has a lower
	// p99 than a fixed 50 ms window (README, Performance).
	defaultBatchWait = 120 * time.Millisecond
)

// Tuning values of presence and typing.
const (
	// defaultPresenceInterval is the least time between two presence
	// events on a stream: a burst of joins and leaves costs each stream
	// one or two events, not one per change.
	defaultPresenceInterval = time.Second
	// defaultPresenceNames is how many names a presence event lists at
	// most; it always carries the totals, and GET /presence lists everyone.
	defaultPresenceNames = 200
	// typingInterval is the least time between two typing events on a
	// stream.
	typingInterval = time.Second
	// typingTTL is how long a name stays in the typing set after its last
	// POST /typing (its message removes it at once).
	typingTTL = 5 * time.Second
	// maxTyping bounds the names in the typing set, however many
	// addresses post /typing; new names beyond it are ignored until some
	// expire.
	maxTyping = 1000
	// typingQueue is the capacity of the channel that carries POST
	// /typing to the hub.
	typingQueue = 64
)

// Errors returned by ChatRoom methods.
var (
	// errRoomClosed means the room has shut down.
	errRoomClosed = errors.New("chat room closed")
	// errUnconfirmed means the room shut down while the journal still held
	// the message: it has its id, and the journal writes what it holds
	// before it stops, but the write was not confirmed durable in time.
	errUnconfirmed = errors.New("message not yet confirmed durable")
	// errRoomFull means the room already serves its maximum of streams.
	errRoomFull = errors.New("server full")
	// errTooManyStreams means one address already holds its maximum of
	// streams.
	errTooManyStreams = errors.New("too many streams from this address")
	// errJournalBusy means the journal's queue is full.
	errJournalBusy = errors.New("message journal busy")
	// errKeyConflict means a post reused the Idempotency-Key of an earlier
	// post that had another username or content.
	errKeyConflict = errors.New("this Idempotency-Key was already used for a different message")
	// errUnknownID means a history request named an id from another epoch
	// or one the room has not assigned.
	errUnknownID = errors.New("unknown message id")
	// errNoSuchMessage means a deletion named a message that history does
	// not hold (never posted, gone from history, or already deleted).
	errNoSuchMessage = errors.New("no such message")
)

// Message is one chat message as stored, sent to clients and returned by
// POST /post.
type Message struct {
	// ID is "<epoch>-<seq>": the history's epoch and the message's sequence
	// number in it. Only the hub assigns it.
	ID string `json:"id"`
	// Username is the sender's name, trimmed and validated.
	Username string `json:"username"`
	// Content is the message text, trimmed and validated.
	Content string `json:"content"`
	// Time is when the hub accepted the message.
	Time time.Time `json:"time"`
	// deletes is set only on a deletion (a moderator's removal of a
	// message, which takes its own place in the sequence): the id of the
	// message it removed. A deletion is never marshalled as a message.
	deletes string
}

// truncate shortens s to at most n bytes for use in error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// client is one subscriber of the room.
type client struct {
	// send is the client's buffered queue of frames. Only the hub sends on
	// it and closes it; the client's stream writer receives from it.
	send chan *fanout.Frame
	// addr is the client's address, for the per-address stream limit.
	addr string
	// slow is set by the hub, before it closes send, when it cuts the
	// client for a full queue; the writer reads it once send is closed.
	slow bool
	// name is the name the stream carries on the roster ("" for an
	// anonymous watcher).
	name string
	// headEvents is how many presence and typing events the hub put at
	// the end of the client's head (they are not chat messages).
	headEvents int
	// rosterSeen is the roster version the client's head carried; the
	// hub skips it in a presence broadcast of that same version. Only the
	// hub uses it.
	rosterSeen uint64
}

// frames returns the client's queue, receive-only.
func (c *client) frames() <-chan *fanout.Frame { return c.send }

// position says where a client wants its stream to start: after the message
// with id (epoch, seq).
type position struct {
	// id is the id as the client sent it.
	id    string
	epoch int64
	seq   uint64
}

// postRequest carries one message from a POST handler to the hub.
type postRequest struct {
	username, content string
	// msg and seq are filled in by the hub before it answers on reply.
	msg Message
	seq uint64
	// data is msg as one line of JSON (marshalMessage), marshalled once by
	// the hub for both the journal and the stream.
	data []byte
	// key is the post's Idempotency-Key ("" for none) and fp the
	// fingerprint of its username and content, computed by the poster's
	// goroutine so that the hub only compares it.
	key string
	fp  idem.Fingerprint
	// repeat is set by the hub when the post repeated an earlier one with
	// the same key: msg is then that earlier message, and nothing was
	// stored or sent.
	repeat bool
	// dups holds the posts with the same key that arrived while this one
	// was waiting for the journal; they get its outcome.
	dups []*postRequest
	// deletes, when set, makes the request a deletion of the message with
	// that id rather than a post; target is that message's sequence number.
	deletes string
	target  uint64
	// reply receives nil once the message is committed, or the reason it
	// was not. Buffered (1) so that neither the hub nor the journal ever
	// blocks on a poster that has gone away.
	reply chan error
}

// historyQuery asks the hub for one page of history: the limit messages
// just before before, just after after, or (both nil) the newest.
type historyQuery struct {
	before, after *position
	limit         int
}

// historyPage answers a historyQuery.
type historyPage struct {
	// msgs holds the messages oldest first, each as the JSON POST /post
	// returned for it. The buffers are shared with history and must not be
	// modified.
	msgs [][]byte
	// more reports whether history holds more messages beyond the page in
	// the direction asked (older for before and the newest page, newer for
	// after).
	more bool
}

// historyRequest carries a historyQuery to the hub.
type historyRequest struct {
	q historyQuery
	// reply receives the page. Buffered (1) so the hub never blocks on a
	// handler that has gone away.
	reply chan historyResult
}

// historyResult is the hub's answer to a historyRequest.
type historyResult struct {
	page historyPage
	err  error
}

// kickRequest asks the hub to disconnect the clients whose address
// matches.
type kickRequest struct {
	match func(addr string) bool
	// reply receives how many clients were disconnected. Buffered (1) so
	// the hub never blocks on a handler that has gone away.
	reply chan int
}

// joinRequest asks the hub to add a client to the room.
type joinRequest struct {
	c *client
	// from is where the client resumes, or nil for a new client.
	from *position
	// reply receives the bytes the client must be sent first, or an error.
	// Buffered (1) so the hub never blocks on a handler that has gone away.
	reply chan joinResult
}

// joinResult answers a joinRequest.
type joinResult struct {
	// head is the preamble (with any reset event) followed by the backlog,
	// one encoded message per element. The message buffers are shared
	// with history and must not be modified.
	head [][]byte
	err  error
}

// entry is one message kept in history, with its encoded event, or a
// deletion (msg.deletes is set, enc is its "delete" event and data is nil).
// A message that was deleted keeps its place with enc and data nil and
// nothing of its text.
type entry struct {
	seq uint64
	msg Message
	enc []byte
	// data is the message's JSON: the data line of enc, shared with it.
	data []byte
}

// visible reports whether e is a message that has not been deleted.
func (e *entry) visible() bool { return e.data != nil && e.msg.deletes == "" }

// newEntry returns the history entry of message seq, msg, whose JSON is
// data.
func newEntry(seq uint64, msg Message, data []byte) entry {
	enc := sse.AppendEvent(nil, sse.Event{ID: msg.ID, Data: data})
	// The event ends with data, a newline and the blank line; data holds
	// no line break, as JSON escapes them.
	end := len(enc) - 2
	return entry{seq: seq, msg: msg, enc: enc, data: enc[end-len(data) : end : end]}
}

// history is a ring of the newest committed messages, oldest first. Only
// the hub goroutine uses it.
type history struct {
	buf   []entry
	start int
	n     int
	// evicted is the sequence number of the newest message that has left
	// the ring (0 if none): a client that has seen less than it has lost
	// messages.
	evicted uint64
}

// add appends e, evicting the oldest entry when the ring is full.
func (h *history) add(e entry) {
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

// at returns the i-th oldest entry.
func (h *history) at(i int) *entry { return &h.buf[(h.start+i)%len(h.buf)] }

// after returns the index of the oldest entry whose sequence number is
// greater than seq (h.n if none).
func (h *history) after(seq uint64) int {
	return sort.Search(h.n, func(i int) bool { return h.at(i).seq > seq })
}

// find returns the entry with sequence number seq, or nil if the ring does
// not hold it.
func (h *history) find(seq uint64) *entry {
	if seq == 0 {
		return nil
	}
	if i := h.after(seq - 1); i < h.n && h.at(i).seq == seq {
		return h.at(i)
	}
	return nil
}

// RoomConfig holds the settings of a ChatRoom.
type RoomConfig struct {
	// History is how many messages are kept (defaultHistory).
	History int
	// Backlog is how many messages a new client receives (defaultBacklog).
	Backlog int
	// ClientBuffer is the capacity of each client's queue
	// (defaultClientBuffer).
	ClientBuffer int
	// Tick, when positive, is how often the hub asks the stream writers
	// of a quiet room to check their peer and heartbeat (fanout.Tick):
	// after a tick with no frame for everyone. The writers have no timer
	// of their own.
	Tick time.Duration
	// BatchWait, when positive, lets the hub hold new messages while the
	// frame before them is still being written and for a while after
	// (adaptive batching, see ChatRoom), for at most this long after that
	// frame left. Zero fans every message out at once.
	BatchWait time.Duration
	// Retry is the reconnection delay sent in the "retry:" field.
	Retry time.Duration
	// MaxStreams caps the clients in the room (0: no cap).
	MaxStreams int
	// MaxStreamsPerAddr caps the clients per address (0: no cap).
	MaxStreamsPerAddr int
	// Journal, when not nil, makes every message durable before it is
	// fanned out and its poster answered.
	Journal *journal.Journal
	// Recovered is the history to start with, oldest first (from the
	// journal). The epoch and sequence numbers continue from its last id.
	Recovered []Message
	// PresenceInterval, when positive, makes the hub send presence and
	// typing events: the roster after every stream's backlog, then at
	// most one presence event per PresenceInterval when the roster
	// changes, and at most one typing event per typingInterval when the
	// typing set does. Zero sends none (the roster is still kept for
	// Presence and the statistics).
	PresenceInterval time.Duration
	// PresenceNames caps the names a presence event lists (the totals are
	// always there).
	PresenceNames int
	// RecoveredKeys are the Idempotency-Keys of recovered messages, oldest
	// first (from the journal).
	RecoveredKeys []idem.Entry
	// MaxKeys and KeyTTL bound the Idempotency-Keys remembered beyond
	// those whose message is in history (idem.DefaultMax and
	// idem.DefaultTTL when zero).
	MaxKeys int
	KeyTTL  time.Duration
	// Epoch, when positive, is the history's epoch if Recovered is empty
	// (the journal's, which is durable before it holds a message); zero
	// starts a new epoch at the current millisecond.
	Epoch int64
}

// ChatRoom is the hub: its Run goroutine accepts messages, assigns their
// ids, keeps the history and fans messages out to every client's queue.
//
// Slow-client policy: the hub never blocks on a client. When a client's
// queue is full, the hub disconnects it (closing its queue after what is
// already queued) and counts it; the client resumes with Last-Event-ID and
// receives everything after its last message from history, or a reset
// event when history no longer holds it. No message is dropped silently.
//
// Batching (group commit applied to fan-out; the rule is fanout.Pacer's):
// messages committed while the room is idle leave at once, one frame each.
// Messages committed while the last frame is still being written (its
// writers have not all released it, but for a few stragglers) wait and
// collect into one frame, which leaves as soon as that frame has been
// written. In a saturated room, whose frames carry fanout.SaturatedFrame
// messages or more on average, the batch also waits as long again as
// writing that frame took (fanout.HoldFactor), so that the room spends at
// most half its time writing and its writers' CPU goes to fewer, larger
// writes. A batch leaves at the latest BatchWait after the last frame did.
// When the last frame to be written took longer than BatchWait, the writers
// are behind and batch from their own queues: a batch then leaves at once,
// since holding it would only add delay. A quiet room therefore sees no
// added delay, and a room that keeps up no more than the time its last
// frame takes to write, without a flag to tune. A slow client holds nobody
// back: it counts among the stragglers, its queue fills and it is
// disconnected as before.
type ChatRoom struct {
	// broadcast carries posts from POST handlers to Run (producer-consumer).
	broadcast chan *postRequest
	// register carries new clients to Run.
	register chan *joinRequest
	// unregister carries leaving clients to Run.
	unregister chan *client
	// written carries the stream writers' signal that a frame has been
	// written (fanout.Frame.Release) to Run. Buffered (1): writers never block
	// on it, and one pending signal is enough, since Run reads the
	// frame's count itself.
	written chan struct{}
	// typing carries names from POST /typing to Run.
	typing chan string
	// presenceReq carries GET /presence's requests to Run, which answers
	// each with the whole roster's JSON.
	presenceReq chan chan []byte
	// histories carries GET /history queries to Run.
	histories chan *historyRequest
	// kicks carries requests to disconnect clients (a new ban) to Run.
	kicks chan *kickRequest
	// done is closed when Run returns.
	done chan struct{}

	// mu guards clients: Run is its only writer (Lock); Run's fan-out and
	// Count read it (RLock).
	mu sync.RWMutex
	// clients is the set of registered clients.
	clients map[*client]struct{}

	// running is set by the first Run so that a second one fails loudly.
	running atomic.Bool

	cfg   RoomConfig
	stats *Stats

	// The fields below belong to the Run goroutine alone.

	// epoch identifies this history; it is part of every id.
	epoch int64
	// next is the last sequence number assigned.
	next uint64
	// last is the sequence number of the last committed message.
	last uint64
	// hist holds the newest committed messages.
	hist history
	// pending holds posts accepted but not yet durable, in order.
	pending []*postRequest
	// batch holds committed messages not yet fanned out.
	batch *fanout.Frame
	// pacer is the batching rule, with the frames in flight it watches
	// (nil when BatchWait is zero).
	pacer *fanout.Pacer
	// lastAll is when the hub last queued a frame for every client.
	lastAll time.Time
	// perAddr counts clients per address key, and for IPv6 also per
	// wider prefix (see limit.Scopes).
	perAddr map[string]int
	// timer fires when a held batch is due (dueAt); armed says it is set.
	timer *time.Timer
	armed bool
	dueAt time.Time

	// roster is who is connected: the names of the streams, and how many
	// carry none.
	roster *presence.Roster
	// typers is the set of names typing now.
	typers *presence.Typing
	// rosterGate and typingGate space out the presence and typing events.
	rosterGate, typingGate *presence.Gate
	// presenceTimer fires when a presence or typing event may go out or a
	// typing name expires; presenceDue is when it is set to fire, if
	// presenceArmed.
	presenceTimer *time.Timer
	presenceDue   time.Time
	presenceArmed bool
	// keys remembers the Idempotency-Keys of committed messages.
	keys *idem.Table
	// inflight holds the keyed posts waiting for the journal, by key.
	inflight map[string]*postRequest
	// deleting holds the sequence numbers of messages whose deletion waits
	// for the journal, so that a second deletion of one is refused.
	deleting map[uint64]bool
}

// NewChatRoom returns a room that is ready to Run.
func NewChatRoom(cfg RoomConfig, stats *Stats) *ChatRoom {
	if cfg.ClientBuffer <= 0 {
		cfg.ClientBuffer = defaultClientBuffer
	}
	if cfg.History < 0 {
		cfg.History = 0
	}
	if cfg.Retry <= 0 {
		cfg.Retry = defaultRetry
	}
	cr := &ChatRoom{
		broadcast:   make(chan *postRequest, maxDrain),
		register:    make(chan *joinRequest),
		unregister:  make(chan *client),
		written:     make(chan struct{}, 1),
		histories:   make(chan *historyRequest),
		kicks:       make(chan *kickRequest),
		deleting:    make(map[uint64]bool),
		typing:      make(chan string, typingQueue),
		presenceReq: make(chan chan []byte),
		done:        make(chan struct{}),
		clients:     make(map[*client]struct{}),
		cfg:         cfg,
		stats:       stats,
		epoch:       time.Now().UnixMilli(),
		hist:        history{buf: make([]entry, cfg.History)},
		perAddr:     make(map[string]int),
		keys:        idem.New(cfg.MaxKeys, cfg.KeyTTL),
		inflight:    make(map[string]*postRequest),
		roster:      presence.NewRoster(),
		typers:      presence.NewTyping(typingTTL, maxTyping),
		rosterGate:  presence.NewGate(cfg.PresenceInterval),
		typingGate:  presence.NewGate(typingInterval),
	}
	if cfg.BatchWait > 0 {
		cr.pacer = fanout.NewPacer(cfg.BatchWait)
	}
	if cfg.Epoch > 0 {
		cr.epoch = cfg.Epoch
	}
	for _, m := range cfg.Recovered {
		epoch, seq, err := record.ParseID(m.ID)
		if err != nil {
			continue
		}
		if cr.hist.n == 0 && seq > 0 {
			cr.hist.evicted = seq - 1
		}
		cr.epoch, cr.next, cr.last = epoch, seq, seq
		if m.deletes != "" {
			cr.applyDeletion(seq, m)
			continue
		}
		cr.hist.add(newEntry(seq, m, marshalMessage(m)))
	}
	for _, e := range cfg.RecoveredKeys {
		cr.keys.Add(e)
	}
	cr.keys.Expire(time.Now(), cr.hist.evicted)
	stats.setHistory(cr.hist.n)
	return cr
}

// Done returns a channel that is closed once the room has shut down.
func (cr *ChatRoom) Done() <-chan struct{} { return cr.done }

// Count returns the number of clients in the room.
func (cr *ChatRoom) Count() int {
	cr.mu.RLock()
	defer cr.mu.RUnlock()
	return len(cr.clients)
}

// Post hands a message to the hub and waits until it is committed (made
// durable when there is a journal, and queued for every client). It returns
// the stored message, or an error if ctx ends, the room closes or the
// journal fails.
func (cr *ChatRoom) Post(ctx context.Context, username, content string) (Message, error) {
	msg, _, err := cr.PostKeyed(ctx, username, content, "")
	return msg, err
}

// PostKeyed is Post with an Idempotency-Key (none if key is ""). When the
// room remembers the key from an earlier post with the same username and
// content, it returns that post's message with repeat set, and stores and
// sends nothing; with other username or content it returns errKeyConflict.
// Posts with the same key at the same moment store one message, and all get
// it.
func (cr *ChatRoom) PostKeyed(ctx context.Context, username, content, key string) (msg Message, repeat bool, err error) {
	req := &postRequest{username: username, content: content, key: key, reply: make(chan error, 1)}
	if key != "" {
		req.fp = idem.Sum(username, content)
	}
	err, askErr := ask(ctx, cr.done, cr.broadcast, req, req.reply)
	if askErr != nil {
		return Message{}, false, askErr
	}
	return req.msg, req.repeat, err
}

// History returns one page of history (see historyQuery), or errUnknownID
// if the query's id is from another epoch or not yet assigned, or an error
// if ctx ends or the room closes.
func (cr *ChatRoom) History(ctx context.Context, q historyQuery) (historyPage, error) {
	req := &historyRequest{q: q, reply: make(chan historyResult, 1)}
	res, err := ask(ctx, cr.done, cr.histories, req, req.reply)
	if err != nil {
		return historyPage{}, err
	}
	return res.page, res.err
}

// Delete removes the message with id from the room: the hub gives the
// deletion the next id, makes it durable (with a journal), marks the
// message deleted in history and sends every client a "delete" event. It
// returns the deletion (its ID, the id it deletes, its time), or
// errNoSuchMessage if history does not hold that message or it is already
// deleted (or being deleted), or an error if ctx ends, the room closes or
// the journal fails.
func (cr *ChatRoom) Delete(ctx context.Context, id string) (Message, error) {
	req := &postRequest{deletes: id, reply: make(chan error, 1)}
	err, askErr := ask(ctx, cr.done, cr.broadcast, req, req.reply)
	if askErr != nil {
		return Message{}, askErr
	}
	return req.msg, err
}

// ask hands req to the hub on ch and waits for the hub's answer on reply.
// It returns errRoomClosed once the room has shut down (taking an answer
// that Run gave just before it returned), or ctx's error if ctx ends
// first, so no hub method blocks forever.
func ask[Q, A any](ctx context.Context, done <-chan struct{}, ch chan<- Q, req Q, reply <-chan A) (A, error) {
	var zero A
	select {
	case ch <- req:
	case <-done:
		return zero, errRoomClosed
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	select {
	case a := <-reply:
		return a, nil
	case <-done:
		select {
		case a := <-reply:
			return a, nil
		default:
			return zero, errRoomClosed
		}
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// Kick disconnects every client whose address (its per-address key)
// match reports true, as a new ban asks, and returns how many it cut.
// Their writers send what is already queued and close the streams.
func (cr *ChatRoom) Kick(ctx context.Context, match func(addr string) bool) (int, error) {
	req := &kickRequest{match: match, reply: make(chan int, 1)}
	select {
	case cr.kicks <- req:
	case <-cr.done:
		return 0, errRoomClosed
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case n := <-req.reply:
		return n, nil
	case <-cr.done:
		return 0, errRoomClosed
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Join adds a new client from addr to the room. It returns the client and
// the bytes it must be sent before anything from its queue: the preamble, a
// reset event if from cannot be resumed, and the backlog. From then on every
// Join adds a new anonymous client from addr to the room (see JoinAs).
func (cr *ChatRoom) Join(ctx context.Context, addr string, from *position) (*client, [][]byte, error) {
	return cr.JoinAs(ctx, addr, "", from)
}

// JoinAs adds a new client from addr to the room, on the roster as name (""
// for an anonymous watcher). It returns the client and the bytes it must be
// sent before anything from its queue: the preamble, a reset event if from
// cannot be resumed, the backlog and, when the room sends presence, the
// roster (and the typing set, if anyone is typing). From then on every
// committed message arrives in the client's queue, with no gap and no
// duplicate after the backlog. A nil from means a new client.
func (cr *ChatRoom) JoinAs(ctx context.Context, addr, name string, from *position) (*client, [][]byte, error) {
	c := &client{send: make(chan *fanout.Frame, cr.cfg.ClientBuffer), addr: addr, name: name}
	req := &joinRequest{c: c, from: from, reply: make(chan joinResult, 1)}
	select {
	case cr.register <- req:
	case <-cr.done:
		return nil, nil, errRoomClosed
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	select {
	case res := <-req.reply:
		return c, res.head, res.err
	case <-cr.done:
		select {
		case res := <-req.reply:
			return c, res.head, res.err
		default:
			return nil, nil, errRoomClosed
		}
	case <-ctx.Done():
		// The hub answers promptly; wait for the answer so that a
		// client it added is removed again.
		select {
		case res := <-req.reply:
			if res.err == nil {
				cr.Leave(c)
			}
		case <-cr.done:
		}
		return nil, nil, ctx.Err()
	}
}

// Leave removes c from the room, closes its queue and releases the frames
// still in it, unwritten. Only the queue's reader (the client's stream
// writer, or whoever holds the client before one starts) calls it. It is
// safe to call more than once and after the room has shut down.
func (cr *ChatRoom) Leave(c *client) {
	select {
	case cr.unregister <- c:
	case <-cr.done:
	}
	// The hub closes the queue as it removes c (or has closed it
	// already), so this ends.
	for f := range c.send {
		f.Release()
	}
}

// Typing tells the room that name is typing. It returns errRoomClosed once
// the room has shut down, or ctx's error.
func (cr *ChatRoom) Typing(ctx context.Context, name string) error {
	select {
	case cr.typing <- name:
		return nil
	case <-cr.done:
		return errRoomClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Presence returns the whole roster as JSON (see presence.Roster.JSON). The
// bytes are shared and must not be modified.
func (cr *ChatRoom) Presence(ctx context.Context) ([]byte, error) {
	reply := make(chan []byte, 1) // buffered: the hub never waits for us
	select {
	case cr.presenceReq <- reply:
	case <-cr.done:
		return nil, errRoomClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case b := <-reply:
		return b, nil
	case <-cr.done:
		return nil, errRoomClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Run is the hub. It is the only goroutine that changes the client map, the
// history, the ids and the roster. It returns when ctx ends, after closing every
// client's queue. A room runs once.
func (cr *ChatRoom) Run(ctx context.Context) {
	if cr.running.Swap(true) {
		panic("chat: ChatRoom.Run called twice")
	}
	cr.timer = time.NewTimer(time.Hour)
	cr.timer.Stop()
	cr.presenceTimer = time.NewTimer(time.Hour)
	cr.presenceTimer.Stop()
	var ticks <-chan time.Time
	if cr.cfg.Tick > 0 {
		t := time.NewTicker(cr.cfg.Tick)
		defer t.Stop()
		ticks = t.C
	}
	defer cr.shutdown()

	var commits <-chan journal.Commit
	if cr.cfg.Journal != nil {
		commits = cr.cfg.Journal.Commits()
	}
	for {
		var due <-chan time.Time
		if cr.armed {
			due = cr.timer.C
		}
		select {
		case <-ctx.Done():
			return
		case req := <-cr.broadcast:
			cr.accept(req)
			// Take what else is already waiting, so that a burst of
			// posts leaves as one frame.
			for i := 1; i < maxDrain && len(cr.broadcast) > 0; i++ {
				cr.accept(<-cr.broadcast)
			}
			cr.deliver()
		case c := <-commits:
			cr.committed(c)
			cr.deliver()
		case <-cr.written:
			cr.deliver()
		case <-due:
			cr.armed = false
			cr.flush()
		case <-ticks:
			cr.tick()
		case req := <-cr.register:
			cr.join(req)
		case c := <-cr.unregister:
			cr.remove(c)
		case name := <-cr.typing:
			cr.typed(name)
		case reply := <-cr.presenceReq:
			reply <- cr.roster.JSON(-1)
		case <-cr.presenceTimer.C:
			cr.presenceTick()
		case req := <-cr.histories:
			page, err := cr.page(req.q)
			req.reply <- historyResult{page: page, err: err}
		case req := <-cr.kicks:
			req.reply <- cr.kick(req.match)
		}
	}
}

// accept assigns the next id to a post and commits it, or hands it to the
// journal first. A post whose key the room knows is answered at once with
// the message the key stored (or a conflict), and one whose key belongs to
// a post still waiting for the journal waits with it.
func (cr *ChatRoom) accept(req *postRequest) {
	if req.deletes != "" {
		cr.acceptDeletion(req)
		return
	}
	if req.key != "" && cr.repeated(req) {
		return
	}
	seq := cr.next + 1
	req.seq = seq
	req.msg = Message{
		ID:       record.FormatID(cr.epoch, seq),
		Username: req.username,
		Content:  req.content,
		Time:     time.Now().UTC(),
	}
	req.data = marshalMessage(req.msg)
	if j := cr.cfg.Journal; j != nil {
		data := req.data
		if req.key != "" {
			data = withKey(data, req.key)
		}
		if !j.Append(journal.Record{Epoch: cr.epoch, Seq: seq, Data: data}) {
			req.reply <- errJournalBusy
			return
		}
		cr.next = seq
		cr.pending = append(cr.pending, req)
		if req.key != "" {
			cr.inflight[req.key] = req
		}
		return
	}
	cr.next = seq
	cr.commit(req)
}

// acceptDeletion checks that history holds the message a deletion names,
// not deleted and not being deleted, gives the deletion the next id and
// commits it, or hands it to the journal first.
func (cr *ChatRoom) acceptDeletion(req *postRequest) {
	epoch, seq, err := record.ParseID(req.deletes)
	var t *entry
	if err == nil && epoch == cr.epoch {
		t = cr.hist.find(seq)
	}
	if t == nil || !t.visible() || cr.deleting[seq] {
		req.reply <- errNoSuchMessage
		return
	}
	req.target = seq
	req.seq = cr.next + 1
	req.msg = Message{ID: record.FormatID(cr.epoch, req.seq), Time: time.Now().UTC(), deletes: t.msg.ID}
	req.data = marshalDeletion(req.msg)
	if j := cr.cfg.Journal; j != nil {
		if !j.Append(journal.Record{Epoch: cr.epoch, Seq: req.seq, Data: req.data}) {
			req.reply <- errJournalBusy
			return
		}
		cr.next = req.seq
		cr.deleting[seq] = true
		cr.pending = append(cr.pending, req)
		return
	}
	cr.next = req.seq
	cr.commit(req)
}

// deletionRecord is a deletion as the journal keeps it, and as DELETE
// /messages/{id} answers it: its own id, the id it deleted, its time.
type deletionRecord struct {
	ID     string    `json:"id"`
	Delete string    `json:"delete"`
	Time   time.Time `json:"time"`
}

// marshalDeletion returns the deletion d as one line of JSON.
func marshalDeletion(d Message) []byte {
	b, _ := json.Marshal(deletionRecord{ID: d.ID, Delete: d.deletes, Time: d.Time})
	return b
}

// applyDeletion marks the message that deletion d (sequence number seq)
// names as deleted, dropping its text from history, and adds d to history.
// It returns d's encoded "delete" event.
func (cr *ChatRoom) applyDeletion(seq uint64, d Message) []byte {
	if epoch, tseq, err := record.ParseID(d.deletes); err == nil && epoch == cr.epoch {
		if t := cr.hist.find(tseq); t != nil && t.msg.deletes == "" {
			*t = entry{seq: t.seq, msg: Message{ID: t.msg.ID}}
		}
	}
	data, _ := json.Marshal(struct {
		ID string `json:"id"`
	}{d.deletes})
	enc := sse.AppendEvent(nil, sse.Event{Type: "delete", ID: d.ID, Data: data})
	cr.hist.add(entry{seq: seq, msg: d, enc: enc})
	return enc
}

// kick disconnects the clients whose address matches and returns how many.
func (cr *ChatRoom) kick(match func(addr string) bool) int {
	var gone []*client
	cr.mu.RLock()
	for c := range cr.clients {
		if match(c.addr) {
			gone = append(gone, c)
		}
	}
	cr.mu.RUnlock()
	for _, c := range gone {
		cr.remove(c)
	}
	return len(gone)
}

// repeated handles a keyed post whose key is known: it answers the post
// with the message the key stored, or with errKeyConflict, or makes it wait
// for the post with that key that the journal holds, and reports true. It
// reports false for a key it does not know.
func (cr *ChatRoom) repeated(req *postRequest) bool {
	if orig, ok := cr.inflight[req.key]; ok {
		if orig.fp != req.fp {
			req.reply <- errKeyConflict
			return true
		}
		orig.dups = append(orig.dups, req)
		return true
	}
	e, ok := cr.keys.Get(req.key)
	if !ok {
		return false
	}
	if e.FP != req.fp {
		req.reply <- errKeyConflict
		return true
	}
	// Same fingerprint: the same username and content, so the message is
	// rebuilt from them and the stored id and time, byte for byte.
	req.msg = Message{ID: e.ID, Username: req.username, Content: req.content, Time: e.Time}
	req.repeat = true
	req.reply <- nil
	return true
}

// answerDups gives the posts that waited on req its outcome.
func answerDups(req *postRequest, err error) {
	for _, d := range req.dups {
		if err == nil || errors.Is(err, errUnconfirmed) {
			d.msg, d.repeat = req.msg, true
		}
		d.reply <- err
	}
	req.dups = nil
}

// withKey returns data, a message's JSON object, with the key added as its
// last member "key": the journal's form of a keyed message.
func withKey(data []byte, key string) []byte {
	k, _ := json.Marshal(key) // a string always marshals
	out := make([]byte, 0, len(data)+len(k)+7)
	out = append(out, data[:len(data)-1]...) // without the closing brace
	out = append(out, `,"key":`...)
	out = append(out, k...)
	return append(out, '}')
}

// committed handles a journal report about the oldest pending posts.
func (cr *ChatRoom) committed(c journal.Commit) {
	n := min(c.N, len(cr.pending))
	for _, req := range cr.pending[:n] {
		if c.Err != nil {
			err := fmt.Errorf("store message: %w", c.Err)
			if req.key != "" {
				delete(cr.inflight, req.key)
			}
			if req.deletes != "" {
				delete(cr.deleting, req.target)
			}
			req.reply <- err
			answerDups(req, err)
			continue
		}
		cr.commit(req)
	}
	clear(cr.pending[:n])
	cr.pending = cr.pending[n:]
}

// commit adds an accepted message to history and to the batch, and answers
// its poster.
func (cr *ChatRoom) commit(req *postRequest) {
	if req.deletes != "" {
		cr.commitDeletion(req)
		return
	}
	e := newEntry(req.seq, req.msg, req.data)
	enc := e.enc
	cr.hist.add(e)
	cr.last = req.seq
	if cr.batch == nil {
		cr.batch = &fanout.Frame{At: req.msg.Time}
	}
	cr.batch.Data = append(cr.batch.Data, enc...)
	cr.batch.N++
	cr.stats.posted(cr.hist.n)
	if cr.typers.Stop(req.msg.Username) {
		cr.typingGate.Changed()
	}
	if req.key != "" {
		delete(cr.inflight, req.key)
		cr.keys.Add(idem.Entry{Key: req.key, FP: req.fp, Seq: req.seq, ID: req.msg.ID, Time: req.msg.Time})
		cr.keys.Expire(req.msg.Time, cr.hist.evicted)
	}
	req.reply <- nil
	answerDups(req, nil)
}

// commitDeletion applies an accepted deletion, adds its event to the batch
// and answers the moderator.
func (cr *ChatRoom) commitDeletion(req *postRequest) {
	delete(cr.deleting, req.target)
	enc := cr.applyDeletion(req.seq, req.msg)
	cr.last = req.seq
	if cr.batch == nil {
		cr.batch = &fanout.Frame{At: req.msg.Time}
	}
	cr.batch.Data = append(cr.batch.Data, enc...)
	cr.batch.N++
	cr.stats.setHistory(cr.hist.n)
	req.reply <- nil
}

// page answers a history query from the ring.
func (cr *ChatRoom) page(q historyQuery) (historyPage, error) {
	h := &cr.hist
	for _, p := range []*position{q.before, q.after} {
		if p != nil && (p.epoch != cr.epoch || p.seq > cr.last) {
			return historyPage{}, errUnknownID
		}
	}
	// Deleted messages and deletions are skipped: a page holds up to
	// limit messages that are still there.
	var msgs [][]byte
	if q.after != nil {
		i := h.after(q.after.seq)
		for ; i < h.n && len(msgs) < q.limit; i++ {
			if e := h.at(i); e.visible() {
				msgs = append(msgs, e.data)
			}
		}
		return historyPage{msgs: msgs, more: cr.visibleIn(i, h.n)}, nil
	}
	end := h.n
	if q.before != nil {
		end = 0
		if q.before.seq > 0 {
			end = h.after(q.before.seq - 1)
		}
	}
	i := end - 1
	for ; i >= 0 && len(msgs) < q.limit; i-- {
		if e := h.at(i); e.visible() {
			msgs = append(msgs, e.data)
		}
	}
	slices.Reverse(msgs)
	return historyPage{msgs: msgs, more: cr.visibleIn(0, i+1)}, nil
}

// visibleIn reports whether history entries [from, to) hold a message that
// is still there.
func (cr *ChatRoom) visibleIn(from, to int) bool {
	for i := from; i < to; i++ {
		if cr.hist.at(i).visible() {
			return true
		}
	}
	return false
}

// deliver applies the batching rule (fanout.Pacer) to the batch: it
// fans the batch out when it is due, or sets the timer for when it will be.
// Frames written are noted whether or not a batch waits, so that each
// frame's time to be written is measured when the hub hears of it.
func (cr *ChatRoom) deliver() {
	if cr.pacer == nil {
		cr.flush()
		return
	}
	now := time.Now()
	cr.pacer.Written(now)
	if cr.batch == nil {
		return
	}
	due := cr.pacer.Due(now)
	if !now.Before(due) {
		cr.flush()
		return
	}
	if cr.armed && cr.dueAt.Equal(due) {
		return
	}
	cr.timer.Reset(due.Sub(now))
	cr.armed, cr.dueAt = true, due
}

// flush fans the batch out to every client without blocking: a client whose
// queue is full is disconnected (fan-out, non-blocking send). The frame is
// then in flight until its writers release it.
func (cr *ChatRoom) flush() {
	f := cr.batch
	if f == nil {
		return
	}
	start := time.Now()
	cr.batch = nil
	if cr.armed {
		cr.timer.Stop()
		cr.armed = false
	}
	if cr.typingGate.Pending() {
		// A sender stopped typing: say so in the same write as the
		// message, when the typing interval allows, or soon after.
		if now := time.Now(); cr.cfg.PresenceInterval > 0 && cr.typingGate.Ready(now) {
			f.Data = sse.AppendEvent(f.Data, sse.Event{Type: "typing", Data: cr.typers.JSON(cr.cfg.PresenceNames)})
			cr.typingGate.Sent(now)
		} else {
			cr.schedulePresence()
		}
	}
	var slow []*client
	cr.mu.RLock()
	n := len(cr.clients)
	// Every queue the frame may enter counts before the first does, and
	// the hub holds one more until it is done queueing.
	f.Arm(n, cr.written)
	for c := range cr.clients {
		select {
		case c.send <- f:
		default:
			slow = append(slow, c)
		}
	}
	cr.mu.RUnlock()
	for _, c := range slow {
		c.slow = true
		f.Release()
		cr.remove(c)
		cr.stats.slowClient(f.N)
	}
	f.Release()
	cr.lastAll = time.Now()
	if cr.pacer != nil {
		cr.pacer.Sent(f, start)
	}
}

// tick queues fanout.Tick for every client, unless the room has queued a
// frame for everyone within the last tick (less an eighth, for jitter):
// then every writer has written or is writing, and needs no probe. A
// client whose queue is full is disconnected as slow.
func (cr *ChatRoom) tick() {
	every := cr.cfg.Tick
	if time.Since(cr.lastAll) < every-every/8 {
		return
	}
	cr.sendAll(fanout.Tick, 0)
}

// join registers a client and answers with what it must be sent first.
func (cr *ChatRoom) join(req *joinRequest) {
	c := req.c
	switch {
	case cr.cfg.MaxStreams > 0 && len(cr.clients) >= cr.cfg.MaxStreams:
		req.reply <- joinResult{err: errRoomFull}
		return
	case cr.overAddrLimit(c.addr):
		req.reply <- joinResult{err: errTooManyStreams}
		return
	}
	// Everything committed so far goes into the head, so the batch must
	// leave first or the client would receive it twice.
	cr.flush()
	head := cr.head(req.from)

	cr.mu.Lock()
	cr.clients[c] = struct{}{}
	n := len(cr.clients)
	cr.mu.Unlock()
	for _, sc := range limit.Scopes(c.addr) {
		cr.perAddr[sc.Key]++
	}
	cr.stats.joined(n)
	cr.roster.Add(c.name)
	cr.rosterChanged()
	if cr.cfg.PresenceInterval > 0 {
		head = append(head, sse.AppendEvent(nil, sse.Event{Type: "presence", Data: cr.roster.JSON(cr.cfg.PresenceNames)}))
		c.rosterSeen = cr.roster.Version()
		c.headEvents = 1
		if cr.typers.Len() > 0 {
			head = append(head, sse.AppendEvent(nil, sse.Event{Type: "typing", Data: cr.typers.JSON(cr.cfg.PresenceNames)}))
			c.headEvents++
		}
	}
	req.reply <- joinResult{head: head}
}

// overAddrLimit reports whether one more client from addr would pass
// MaxStreamsPerAddr, for addr itself or (IPv6) for a wider prefix holding
// it, whose limit is a multiple of it.
func (cr *ChatRoom) overAddrLimit(addr string) bool {
	if cr.cfg.MaxStreamsPerAddr <= 0 {
		return false
	}
	for _, sc := range limit.Scopes(addr) {
		if cr.perAddr[sc.Key] >= cr.cfg.MaxStreamsPerAddr*sc.Factor {
			return true
		}
	}
	return false
}

// head returns the start of a stream that resumes after from (nil: a new
// client): the preamble with a reset event if needed, then the backlog's
// encoded messages, shared with history rather than copied.
func (cr *ChatRoom) head(from *position) [][]byte {
	h := &cr.hist
	start := max(0, h.n-cr.cfg.Backlog)
	var reset, why string
	if from != nil {
		switch {
		case from.epoch != cr.epoch || from.seq > cr.last:
			reset, start = "unknown", 0
			why = "this server does not know that id (it restarted without its history); some messages may be missing"
		case from.seq < h.evicted:
			reset, start = "expired", 0
			why = "history no longer holds the messages after that id; some messages are missing"
		default:
			start = h.after(from.seq)
		}
	}
	pos := cr.last
	if start < h.n {
		pos = h.at(start).seq - 1
	}
	id := record.FormatID(cr.epoch, pos)
	pre := sse.AppendEvent(make([]byte, 0, 256), sse.Event{ID: id, Retry: cr.cfg.Retry})
	if reset != "" {
		data, _ := json.Marshal(struct {
			Reason      string `json:"reason"`
			LastEventID string `json:"last_event_id"`
			Message     string `json:"message"`
		}{reset, from.id, why})
		pre = sse.AppendEvent(pre, sse.Event{Type: "reset", ID: id, Data: data})
	}
	out := make([][]byte, 0, 1+h.n-start)
	out = append(out, pre)
	for i := start; i < h.n; i++ {
		e := h.at(i)
		// Deleted messages are gone; a new client, which has none of
		// them, needs no deletions either.
		if e.enc == nil || (from == nil && e.msg.deletes != "") {
			continue
		}
		out = append(out, e.enc)
	}
	return out
}

// remove deletes c from the room and closes its queue, reporting whether it
// was there.
func (cr *ChatRoom) remove(c *client) bool {
	cr.mu.Lock()
	_, ok := cr.clients[c]
	if ok {
		delete(cr.clients, c)
		close(c.send)
	}
	n := len(cr.clients)
	cr.mu.Unlock()
	if !ok {
		return false
	}
	for _, sc := range limit.Scopes(c.addr) {
		if cr.perAddr[sc.Key]--; cr.perAddr[sc.Key] <= 0 {
			delete(cr.perAddr, sc.Key)
		}
	}
	cr.stats.setClients(n)
	cr.roster.Remove(c.name)
	cr.rosterChanged()
	return true
}

// rosterChanged records a change of the roster: in the statistics, and as
// a presence event to send.
func (cr *ChatRoom) rosterChanged() {
	cr.stats.setPresence(cr.roster.People(), cr.roster.Anonymous())
	if cr.cfg.PresenceInterval > 0 {
		cr.rosterGate.Changed()
		cr.schedulePresence()
	}
}

// typed records that name is typing.
func (cr *ChatRoom) typed(name string) {
	if cr.cfg.PresenceInterval <= 0 {
		return
	}
	if cr.typers.Start(name, time.Now()) {
		cr.typingGate.Changed()
	}
	cr.schedulePresence()
}

// schedulePresence sets the presence timer for the earliest of: the
// pending presence event, the pending typing event, the next expiry in the
// typing set. It stops the timer when there is none.
func (cr *ChatRoom) schedulePresence() {
	var next time.Time
	found := false
	earliest := func(t time.Time) {
		if !found || t.Before(next) {
			next, found = t, true
		}
	}
	if cr.rosterGate.Pending() {
		earliest(cr.rosterGate.Due())
	}
	if cr.typingGate.Pending() {
		earliest(cr.typingGate.Due())
	}
	if t, ok := cr.typers.Next(); ok {
		earliest(t)
	}
	switch {
	case !found:
		if cr.presenceArmed {
			cr.presenceTimer.Stop()
			cr.presenceArmed = false
		}
	case !cr.presenceArmed || !next.Equal(cr.presenceDue):
		cr.presenceTimer.Reset(max(0, time.Until(next)))
		cr.presenceDue, cr.presenceArmed = next, true
	}
}

// presenceTick expires typing names whose time is up and sends the
// presence and typing events that are due.
func (cr *ChatRoom) presenceTick() {
	cr.presenceArmed = false
	now := time.Now()
	if cr.typers.Expire(now) {
		cr.typingGate.Changed()
	}
	if cr.rosterGate.Ready(now) {
		cr.rosterGate.Sent(now)
		f := &fanout.Frame{Data: sse.AppendEvent(nil, sse.Event{Type: "presence", Data: cr.roster.JSON(cr.cfg.PresenceNames)})}
		cr.sendAll(f, cr.roster.Version())
	}
	if cr.typingGate.Ready(now) {
		cr.typingGate.Sent(now)
		f := &fanout.Frame{Data: sse.AppendEvent(nil, sse.Event{Type: "typing", Data: cr.typers.JSON(cr.cfg.PresenceNames)})}
		cr.sendAll(f, 0)
	}
	cr.schedulePresence()
}

// sendAll queues f, a frame with no chat message, for every client but
// those whose head carried roster version skip (0: none), with the same
// slow-client policy as messages: a client whose queue is full is
// disconnected.
func (cr *ChatRoom) sendAll(f *fanout.Frame, skip uint64) {
	var slow []*client
	cr.mu.RLock()
	for c := range cr.clients {
		if skip != 0 && c.rosterSeen == skip {
			continue
		}
		select {
		case c.send <- f:
		default:
			slow = append(slow, c)
		}
	}
	cr.mu.RUnlock()
	for _, c := range slow {
		cr.remove(c)
		cr.stats.slowClient(0)
	}
}

// shutdown takes the journal's last reports, fans out what is committed,
// answers the posts still pending in the journal with errUnconfirmed (not
// errRoomClosed: the journal may still write them), closes every client's
// queue and marks the room done.
func (cr *ChatRoom) shutdown() {
	// Commits the journal has already reported are answered as such.
	if j := cr.cfg.Journal; j != nil {
	drain:
		for {
			select {
			case c := <-j.Commits():
				cr.committed(c)
			default:
				break drain
			}
		}
	}
	cr.flush()
	for _, req := range cr.pending {
		req.reply <- errUnconfirmed
		answerDups(req, errUnconfirmed)
	}
	clear(cr.inflight)
	cr.pending = nil
	cr.mu.Lock()
	for c := range cr.clients {
		close(c.send)
		delete(cr.clients, c)
	}
	cr.mu.Unlock()
	clear(cr.perAddr)
	cr.stats.setClients(0)
	cr.stats.setPresence(0, 0)
	cr.presenceTimer.Stop()
	close(cr.done)
}

// encodeMessage appends m as a chat event (its id and its JSON on one data
// line) to dst.
func encodeMessage(dst []byte, m Message) []byte {
	return sse.AppendEvent(dst, sse.Event{ID: m.ID, Data: marshalMessage(m)})
}

// marshalMessage returns m as one line of JSON, without the HTML escaping
// of encoding/json's default ("<" stays "<"): the page renders text with
// textContent, and curl users read it as it was typed.
func marshalMessage(m Message) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		// A Message always marshals; keep the event well-formed anyway.
		return []byte("{}")
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// recoveredMessages decodes the records a journal recovered into the
// messages they hold, oldest first, for RoomConfig.Recovered.
func recoveredMessages(recs []journal.Record) ([]Message, error) {
	msgs := make([]Message, 0, len(recs))
	for _, r := range recs {
		if bytes.Contains(r.Data, []byte(`"delete":`)) {
			var d deletionRecord
			if err := json.Unmarshal(r.Data, &d); err == nil && d.Delete != "" {
				msgs = append(msgs, Message{ID: d.ID, Time: d.Time, deletes: d.Delete})
				continue
			}
		}
		var m Message
		if err := json.Unmarshal(r.Data, &m); err != nil {
			return nil, fmt.Errorf("journal record %s: %w", record.FormatID(r.Epoch, r.Seq), err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// keyRecord is the part of a journal record that carries an
// Idempotency-Key: a message posted with one.
type keyRecord struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	Content  string    `json:"content"`
	Time     time.Time `json:"time"`
	Key      string    `json:"key"`
}

// recoveredKeys returns the Idempotency-Keys held by the records a journal
// recovered, oldest first, for RoomConfig.RecoveredKeys. Records without a
// key are skipped.
func recoveredKeys(recs []journal.Record) []idem.Entry {
	var keys []idem.Entry
	for _, r := range recs {
		if !bytes.Contains(r.Data, []byte(`"key":`)) {
			continue
		}
		var k keyRecord
		if err := json.Unmarshal(r.Data, &k); err != nil || k.Key == "" {
			continue
		}
		keys = append(keys, idem.Entry{Key: k.Key, FP: idem.Sum(k.Username, k.Content), Seq: r.Seq, ID: k.ID, Time: k.Time})
	}
	return keys
}
