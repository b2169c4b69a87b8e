package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"chat/internal/config"
	"chat/internal/fanout"
	"chat/internal/idem"
	"chat/internal/limit"
	"chat/internal/names"
	"chat/internal/presence"
	"chat/internal/query"
	"chat/internal/roomlog"
	"chat/internal/sse"
)

// Tuning values of the hub that no flag changes (the flags' defaults are
// in internal/config).
const (
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
	// typingQueue is the capacity of the channel that carries POST
	// /typing to the hub.
	typingQueue = 64
)

// Errors returned by ChatRoom methods.
var (
	// errRoomClosed means the room has shut down (query.ErrClosed).
	errRoomClosed = query.ErrClosed
	// errRoomFull means the room already serves its maximum of streams.
	errRoomFull = errors.New("server full")
	// errTooManyStreams means one address already holds its maximum of
	// streams.
	errTooManyStreams = errors.New("too many streams from this address")

	// The room's log answers posts, deletions and history queries with
	// these (see roomlog for what each means).
	errUnconfirmed = roomlog.ErrUnconfirmed
	errJournalBusy = roomlog.ErrBusy
	errUnavailable = roomlog.ErrUnavailable
	errFateUnknown = roomlog.ErrFateUnknown
	errKeyConflict = roomlog.ErrKeyConflict
	errDeleted     = roomlog.ErrDeleted
	errUnknownID   = roomlog.ErrUnknownID
)

// Message is one chat message as stored, sent to clients and returned by
// POST /post (the room's log defines it).
type Message = roomlog.Message

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
	// hold is the hold on name the stream carries, closed as it leaves
	// (nil: none); its handler sets it before the stream starts.
	hold *names.Stream
}

// frames returns the client's queue, receive-only.
func (c *client) frames() <-chan *fanout.Frame { return c.send }

// RoomConfig holds the settings of a ChatRoom.
type RoomConfig struct {
	// History is how many messages are kept (config.DefaultHistory).
	History int
	// Backlog is how many messages a new client receives (config.DefaultBacklog).
	Backlog int
	// ClientBuffer is the capacity of each client's queue
	// (config.DefaultClientBuffer).
	ClientBuffer int
	// Tick, when positive, is how often the hub asks every stream writer
	// to check its peer and heartbeat (fanout.Tick), busy room or quiet
	// (stream.TickInterval). The writers have no timer of their own.
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
	// Store orders and keeps the room's records (see roomlog.Store): a
	// roomlog.JournalStore makes every message durable before it is
	// fanned out and its poster answered. Nil keeps them in memory, in a
	// new epoch that begins now.
	Store roomlog.Store
	// Recovered is the history to start with, oldest first (what the
	// store kept, roomlog.Recover). The ids continue from its last.
	Recovered []roomlog.Record
	// PresenceInterval, when positive, makes the hub send presence and
	// typing events: the roster after every stream's backlog, then at
	// most one presence event per PresenceInterval when the roster
	// changes, and at most one typing event a second when the typing set
	// does. Zero sends none (the roster is still kept for Presence and the
	// statistics).
	PresenceInterval time.Duration
	// PresenceNames caps the names a presence event lists (the totals are
	// always there).
	PresenceNames int
	// MaxKeys and KeyTTL bound the Idempotency-Keys remembered beyond
	// those whose message is in history (idem.DefaultMax and
	// idem.DefaultTTL when zero).
	MaxKeys int
	KeyTTL  time.Duration
}

// ChatRoom is the hub. Its Run goroutine is the single writer of the
// room's state: it hands posts and deletions to the room's log (roomlog),
// which has its store order them and tells Run of each record committed,
// in order and whoever proposed it; Run puts each into the next batch,
// answers its poster and fans the batch out to every client's buffered
// queue without blocking (producer-consumer in, fan-out out). Every other
// question (a join, a page of history, a kick, the roster) reaches Run as
// a function it runs, through one path (query.Ask).
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
	// broadcast carries posts and deletions from the handlers to Run
	// (producer-consumer).
	broadcast chan *roomlog.Proposal
	// queries carries every other question to Run (joins, history pages,
	// kicks, the roster), each with the function Run answers it with.
	queries chan *query.Func
	// unregister carries leaving clients to Run.
	unregister chan *client
	// written carries the stream writers' signal that a frame has been
	// written (fanout.Frame.Release) to Run. Buffered (1): writers never block
	// on it, and one pending signal is enough, since Run reads the
	// frame's count itself.
	written chan struct{}
	// typing carries names from POST /typing to Run.
	typing chan string
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

	// log holds the committed records: history, ids, Idempotency-Keys,
	// and the store that orders and keeps them.
	log *roomlog.Log
	// batch holds committed messages not yet fanned out.
	batch *fanout.Frame
	// pacer is the batching rule, with the frames in flight it watches
	// (nil when BatchWait is zero).
	pacer *fanout.Pacer
	// perAddr counts clients per address key, and for IPv6 also per
	// wider prefix, against MaxStreamsPerAddr.
	perAddr *limit.Tally
	// timer fires when a held batch is due (dueAt); armed says it is set.
	timer *time.Timer
	armed bool
	dueAt time.Time

	// board is who is connected and who is typing, with the rule and the
	// timer for when presence and typing events go out.
	board *presence.Board
}

// NewChatRoom returns a room that is ready to Run.
func NewChatRoom(cfg RoomConfig, stats *Stats) *ChatRoom {
	if cfg.ClientBuffer <= 0 {
		cfg.ClientBuffer = config.DefaultClientBuffer
	}
	if cfg.History < 0 {
		cfg.History = 0
	}
	if cfg.Retry <= 0 {
		cfg.Retry = defaultRetry
	}
	if cfg.Store == nil {
		cfg.Store = roomlog.NewMemoryStore(time.Now().UnixMilli())
	}
	cr := &ChatRoom{
		broadcast:  make(chan *roomlog.Proposal, maxDrain),
		queries:    make(chan *query.Func),
		unregister: make(chan *client),
		written:    make(chan struct{}, 1),
		typing:     make(chan string, typingQueue),
		done:       make(chan struct{}),
		clients:    make(map[*client]struct{}),
		cfg:        cfg,
		stats:      stats,
		perAddr:    limit.NewTally(cfg.MaxStreamsPerAddr),
		board:      presence.NewBoard(cfg.PresenceInterval, cfg.PresenceNames),
	}
	if cfg.BatchWait > 0 {
		cr.pacer = fanout.NewPacer(cfg.BatchWait)
	}
	cr.log = roomlog.New(cfg.Store, roomlog.Config{
		History:   cfg.History,
		Recovered: cfg.Recovered,
		MaxKeys:   cfg.MaxKeys,
		KeyTTL:    cfg.KeyTTL,
		Committed: cr.committed,
	})
	stats.setHistory(cr.log.Len())
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
// sends nothing; with other username or content it returns errKeyConflict,
// and errDeleted if that message has since been deleted. Posts with the
// same key at the same moment store one message, and all get it.
func (cr *ChatRoom) PostKeyed(ctx context.Context, username, content, key string) (msg Message, repeat bool, err error) {
	return cr.PostBy(ctx, "", username, content, key)
}

// PostBy is PostKeyed from the identity author ("" for none), which the
// stored message keeps: its author may edit and delete it.
func (cr *ChatRoom) PostBy(ctx context.Context, author, username, content, key string) (msg Message, repeat bool, err error) {
	p := &roomlog.Proposal{}
	p.Username, p.Content, p.Key, p.Author = username, content, key, author
	if key != "" {
		p.FP = idem.Sum(username, content)
	}
	answered, err := cr.Propose(ctx, p)
	if !answered {
		return Message{}, false, err
	}
	return p.Message, p.Repeat, err
}

// Propose hands p, a record proposed here (a post, an author's or a
// moderator's deletion, an edit: see roomlog.Proposal), to the hub and
// returns the log's answer to it, with answered set; or, when ctx ends or
// the room closes first, that error, and p must not be read (the hub may
// still hold it). A deletion or an edit is made durable (with a journal),
// applied to history and sent to every client as its own event.
func (cr *ChatRoom) Propose(ctx context.Context, p *roomlog.Proposal) (answered bool, err error) {
	p.Reply = make(chan error, 1)
	err, askErr := query.Ask(ctx, cr.done, cr.broadcast, p, p.Reply, nil)
	if askErr != nil {
		return false, askErr
	}
	return true, err
}

// History returns one page of history (see roomlog.Query), or errUnknownID
// if the query's id is from another epoch or not yet assigned, or an error
// if ctx ends or the room closes.
func (cr *ChatRoom) History(ctx context.Context, q roomlog.Query) (roomlog.Page, error) {
	var page roomlog.Page
	var err error
	run := func() {
		if cr.log.SettleReady() { // the query may name an id another node served
			cr.deliver()
		}
		page, err = cr.log.Page(q)
	}
	if askErr := cr.call(ctx, run, nil); askErr != nil {
		return roomlog.Page{}, askErr
	}
	return page, err
}

// call has Run call run and waits until it has (query.Call), with undo for
// a caller whose ctx ends meanwhile.
func (cr *ChatRoom) call(ctx context.Context, run, undo func()) error {
	return query.Call(ctx, cr.done, cr.queries, run, undo)
}

// Kick disconnects every client whose address (its per-address key)
// match reports true, as a new ban asks, and returns how many it cut.
// Their writers send what is already queued and close the streams.
func (cr *ChatRoom) Kick(ctx context.Context, match func(addr string) bool) (int, error) {
	var n int
	err := cr.call(ctx, func() { n = cr.kick(match) }, nil)
	return n, err
}

// Join adds a new anonymous client from addr to the room (see JoinAs).
func (cr *ChatRoom) Join(ctx context.Context, addr string, from *roomlog.Position) (*client, [][]byte, error) {
	return cr.JoinAs(ctx, addr, "", from)
}

// JoinAs adds a new client from addr to the room, on the roster as name (""
// for an anonymous watcher). It returns the client and the bytes it must be
// sent before anything from its queue: the preamble, a reset event if from
// cannot be resumed, the backlog and, when the room sends presence, the
// roster (and the typing set, if anyone is typing). From then on every
// committed message arrives in the client's queue, with no gap and no
// duplicate after the backlog. A nil from means a new client. If ctx ends
// after the hub added the client, the client is removed again.
func (cr *ChatRoom) JoinAs(ctx context.Context, addr, name string, from *roomlog.Position) (*client, [][]byte, error) {
	c := &client{send: make(chan *fanout.Frame, cr.cfg.ClientBuffer), addr: addr, name: name}
	var head [][]byte
	var err error
	askErr := cr.call(ctx, func() { head, err = cr.join(c, from) }, func() {
		if err == nil {
			cr.Leave(c)
		}
	})
	if askErr != nil {
		return nil, nil, askErr
	}
	return c, head, err
}

// CanJoin returns the error JoinAs would return now for a client from addr
// (errRoomFull, errTooManyStreams, errRoomClosed), or nil, without adding
// anything to the room; or ctx's error.
func (cr *ChatRoom) CanJoin(ctx context.Context, addr string) error {
	var err error
	if askErr := cr.call(ctx, func() { err = cr.admits(addr) }, nil); askErr != nil {
		return askErr
	}
	return err
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
	var b []byte
	if err := cr.call(ctx, func() { b = cr.board.Roster.JSON(-1) }, nil); err != nil {
		return nil, err
	}
	return b, nil
}

// Share runs f in the hub with the room's presence board, then records
// what changed: the node of a cluster reads its own share and merges the
// other nodes' shares this way. It returns errRoomClosed once the room has
// shut down, or ctx's error.
func (cr *ChatRoom) Share(ctx context.Context, f func(*presence.Board)) error {
	return cr.call(ctx, func() { f(cr.board); cr.rosterChanged() }, nil)
}

// Run is the hub. It is the only goroutine that changes the client map, the
// log (history, ids, keys) and the roster. It returns when ctx ends, after
// closing every client's queue. A room runs once.
func (cr *ChatRoom) Run(ctx context.Context) {
	if cr.running.Swap(true) {
		panic("chat: ChatRoom.Run called twice")
	}
	cr.timer = time.NewTimer(time.Hour)
	cr.timer.Stop()
	var ticks <-chan time.Time
	if cr.cfg.Tick > 0 {
		t := time.NewTicker(cr.cfg.Tick)
		defer t.Stop()
		ticks = t.C
	}
	defer cr.shutdown()

	reports := cr.log.Reports()
	for {
		var due <-chan time.Time
		if cr.armed {
			due = cr.timer.C
		}
		select {
		case <-ctx.Done():
			return
		case p := <-cr.broadcast:
			cr.log.Propose(p)
			// Take what else is already waiting, so that a burst of
			// posts leaves as one frame.
			for i := 1; i < maxDrain && len(cr.broadcast) > 0; i++ {
				cr.log.Propose(<-cr.broadcast)
			}
			cr.deliver()
		case c := <-reports:
			cr.log.Settle(c)
			cr.deliver()
		case <-cr.written:
			cr.deliver()
		case <-due:
			cr.armed = false
			cr.flush()
		case <-ticks:
			cr.tick()
		case q := <-cr.queries:
			q.Answer()
		case c := <-cr.unregister:
			cr.remove(c)
		case name := <-cr.typing:
			cr.board.Typing(name, time.Now())
			cr.schedulePresence()
		case <-cr.board.Timer():
			cr.presenceTick()
		}
	}
}

// committed adds a record the log has committed (a message, a deletion's
// "delete" event or an edit's "edit" event) to the batch, before its poster is answered, and counts
// it. The log calls it, in Run's goroutine, for every record in order,
// whoever proposed it.
func (cr *ChatRoom) committed(r *roomlog.Record, event []byte) {
	if cr.batch == nil {
		cr.batch = &fanout.Frame{At: r.Time}
	}
	cr.batch.Data = append(cr.batch.Data, event...)
	cr.batch.N++
	if r.Deletes != "" || r.Edits != "" {
		cr.stats.setHistory(cr.log.Len())
		return
	}
	cr.stats.posted(cr.log.Len())
	cr.board.Posted(r.Username)
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
	// A sender stopped typing: say so in the same write as the message,
	// when the typing interval allows, or soon after.
	if ev, waiting := cr.board.TypingNow(start); ev != nil {
		f.Data = append(f.Data, ev...)
	} else if waiting {
		cr.schedulePresence()
	}
	for _, c := range cr.queue(f, 0, true) {
		c.slow = true
		f.Release()
		cr.remove(c)
		cr.stats.slowClient(f.N)
	}
	f.Release()
	if cr.pacer != nil {
		cr.pacer.Sent(f, start)
	}
}

// tick queues fanout.Tick for every client, however busy the room: a
// write to a closed peer usually succeeds, so only the writer's probe on
// the tick finds it in time. A client whose queue is full is disconnected
// as slow.
func (cr *ChatRoom) tick() { cr.sendAll(fanout.Tick, 0) }

// join registers c, resuming at from, and returns what it must be sent
// first; or errRoomFull or errTooManyStreams.
func (cr *ChatRoom) join(c *client, from *roomlog.Position) ([][]byte, error) {
	if err := cr.admits(c.addr); err != nil {
		return nil, err
	}
	// Everything committed so far (and what a shared log has read: the
	// client may resume at an id another node served) goes into the
	// head, so the batch must leave first or it would arrive twice.
	cr.log.SettleReady()
	cr.flush()
	head := cr.head(from)

	cr.mu.Lock()
	cr.clients[c] = struct{}{}
	n := len(cr.clients)
	cr.mu.Unlock()
	cr.perAddr.Add(c.addr)
	cr.stats.joined(n)
	events, version := cr.board.Join(c.name)
	cr.rosterChanged()
	if events != nil {
		head = append(head, events...)
		c.rosterSeen, c.headEvents = version, len(events)
	}
	return head, nil
}

// admits returns nil if one more client from addr may join, or
// errRoomFull or errTooManyStreams.
func (cr *ChatRoom) admits(addr string) error {
	switch {
	case cr.cfg.MaxStreams > 0 && len(cr.clients) >= cr.cfg.MaxStreams:
		return errRoomFull
	case cr.perAddr.Full(addr):
		return errTooManyStreams
	}
	return nil
}

// head returns the start of a stream that resumes after from (nil: a new
// client): the preamble with a reset event if needed, then the log's
// replay, shared with history rather than copied.
func (cr *ChatRoom) head(from *roomlog.Position) [][]byte {
	r := cr.log.Replay(from, cr.cfg.Backlog)
	pre := sse.AppendEvent(make([]byte, 0, 256), sse.Event{ID: r.ID, Retry: cr.cfg.Retry})
	pre = append(pre, r.ResetEvent...)
	// Room for the presence and typing events join adds.
	out := make([][]byte, 0, 1+len(r.Events)+2)
	out = append(out, pre)
	return append(out, r.Events...)
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
	cr.perAddr.Remove(c.addr)
	cr.stats.setClients(n)
	cr.board.Leave(c.name)
	cr.rosterChanged()
	return true
}

// rosterChanged records a change of the roster: in the statistics, and as
// a presence event to send.
func (cr *ChatRoom) rosterChanged() {
	cr.stats.setPresence(cr.board.Totals())
	cr.schedulePresence()
}

// schedulePresence sets the board's timer for its next event or typing
// expiry.
func (cr *ChatRoom) schedulePresence() { cr.board.Schedule(time.Now()) }

// presenceTick sends the presence and typing events that are due.
func (cr *ChatRoom) presenceTick() {
	presence, version, typing := cr.board.Due(time.Now())
	if presence != nil {
		cr.sendAll(&fanout.Frame{Data: presence}, version)
	}
	if typing != nil {
		cr.sendAll(&fanout.Frame{Data: typing}, 0)
	}
	cr.schedulePresence()
}

// sendAll queues f, a frame with no chat message, for every client but
// those whose head carried roster version skip (0: none), with the same
// slow-client policy as messages: a client whose queue is full is
// disconnected.
func (cr *ChatRoom) sendAll(f *fanout.Frame, skip uint64) {
	for _, c := range cr.queue(f, skip, false) {
		cr.remove(c)
		cr.stats.slowClient(0)
	}
}

// queue queues f for every client but those whose head carried roster
// version skip (0: none), without blocking (fan-out, non-blocking send),
// and returns the clients whose queue was full. With arm, f first counts
// every queue it may enter, and one more for the hub until its Release.
func (cr *ChatRoom) queue(f *fanout.Frame, skip uint64, arm bool) (slow []*client) {
	cr.mu.RLock()
	defer cr.mu.RUnlock()
	if arm {
		f.Arm(len(cr.clients), cr.written)
	}
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
	return slow
}

// shutdown settles what the store has already reported, fans out what is
// committed, has the log answer the posts its store still holds
// (errUnconfirmed, not errRoomClosed: the journal may still write them),
// closes every client's queue and marks the room done.
func (cr *ChatRoom) shutdown() {
	cr.log.Stop()
	cr.flush()
	cr.mu.Lock()
	for c := range cr.clients {
		close(c.send)
		delete(cr.clients, c)
	}
	cr.mu.Unlock()
	cr.perAddr.Clear()
	cr.stats.setClients(0)
	cr.stats.setPresence(presence.Totals{}, presence.Totals{})
	cr.board.Stop()
	close(cr.done)
}
