package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"chat/internal/journal"
	"chat/internal/limit"
	"chat/internal/sse"
)

// Tuning values of the hub. Each can be changed with a flag (see main.go);
// these are the defaults.
const (
	// defaultHistory is how many messages the room keeps for new and
	// resuming clients.
	defaultHistory = 1000
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
	// maxDrain bounds how many waiting posts the hub takes in one go before
	// it fans the batch out, so that one burst cannot delay delivery
	// without limit.
	maxDrain = 256
)

// Errors returned by ChatRoom methods.
var (
	// errRoomClosed means the room has shut down.
	errRoomClosed = errors.New("chat room closed")
	// errRoomFull means the room already serves its maximum of streams.
	errRoomFull = errors.New("server full")
	// errTooManyStreams means one address already holds its maximum of
	// streams.
	errTooManyStreams = errors.New("too many streams from this address")
	// errJournalBusy means the journal's queue is full.
	errJournalBusy = errors.New("message journal busy")
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
}

// formatID returns the id of message seq in the history that began at epoch.
func formatID(epoch int64, seq uint64) string {
	return strconv.FormatInt(epoch, 10) + "-" + strconv.FormatUint(seq, 10)
}

// parseID splits an id of the form "<epoch>-<seq>" (both decimal, without
// signs) into its parts.
func parseID(id string) (epoch int64, seq uint64, err error) {
	e, s, ok := strings.Cut(id, "-")
	if !ok || e == "" || s == "" || e[0] == '+' || s[0] == '+' {
		return 0, 0, fmt.Errorf("id %q is not of the form <epoch>-<seq>", truncate(id, 40))
	}
	epoch, err = strconv.ParseInt(e, 10, 64)
	if err != nil || epoch < 0 {
		return 0, 0, fmt.Errorf("id %q has a bad epoch", truncate(id, 40))
	}
	seq, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("id %q has a bad sequence number", truncate(id, 40))
	}
	return epoch, seq, nil
}

// truncate shortens s to at most n bytes for use in error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// frame is one or more encoded chat events that the hub hands to every
// client at once. Its bytes are shared by all clients and never change after
// the hub sends it.
type frame struct {
	// data holds the events exactly as they go on the wire.
	data []byte
	// n is the number of chat messages in data.
	n int
	// at is when the oldest message in data was accepted.
	at time.Time
}

// client is one subscriber of the room.
type client struct {
	// send is the client's buffered queue of frames. Only the hub sends on
	// it and closes it; the client's stream writer receives from it.
	send chan *frame
	// addr is the client's address, for the per-address stream limit.
	addr string
	// slow is set by the hub, before it closes send, when it cuts the
	// client for a full queue; the writer reads it once send is closed.
	slow bool
}

// frames returns the client's queue, receive-only.
func (c *client) frames() <-chan *frame { return c.send }

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
	// reply receives nil once the message is committed, or the reason it
	// was not. Buffered (1) so that neither the hub nor the journal ever
	// blocks on a poster that has gone away.
	reply chan error
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

// entry is one message kept in history, with its encoded event.
type entry struct {
	seq uint64
	msg Message
	enc []byte
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

// RoomConfig holds the settings of a ChatRoom.
type RoomConfig struct {
	// History is how many messages are kept (defaultHistory).
	History int
	// Backlog is how many messages a new client receives (defaultBacklog).
	Backlog int
	// ClientBuffer is the capacity of each client's queue
	// (defaultClientBuffer).
	ClientBuffer int
	// Coalesce, when positive, makes the hub wait up to this long after a
	// message before fanning it out, so that messages arriving meanwhile
	// share one write per client. Zero fans out at once.
	Coalesce time.Duration
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
type ChatRoom struct {
	// broadcast carries posts from POST handlers to Run (producer-consumer).
	broadcast chan *postRequest
	// register carries new clients to Run.
	register chan *joinRequest
	// unregister carries leaving clients to Run.
	unregister chan *client
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
	batch *frame
	// perAddr counts clients per address key, and for IPv6 also per
	// wider prefix (see limit.Scopes).
	perAddr map[string]int
	// timer fires when a coalesced batch is due.
	timer *time.Timer
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
		broadcast:  make(chan *postRequest, maxDrain),
		register:   make(chan *joinRequest),
		unregister: make(chan *client),
		done:       make(chan struct{}),
		clients:    make(map[*client]struct{}),
		cfg:        cfg,
		stats:      stats,
		epoch:      time.Now().UnixMilli(),
		hist:       history{buf: make([]entry, cfg.History)},
		perAddr:    make(map[string]int),
	}
	if cfg.Epoch > 0 {
		cr.epoch = cfg.Epoch
	}
	for _, m := range cfg.Recovered {
		epoch, seq, err := parseID(m.ID)
		if err != nil {
			continue
		}
		if cr.hist.n == 0 && seq > 0 {
			cr.hist.evicted = seq - 1
		}
		cr.epoch, cr.next, cr.last = epoch, seq, seq
		cr.hist.add(entry{seq: seq, msg: m, enc: encodeMessage(nil, m)})
	}
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
	req := &postRequest{username: username, content: content, reply: make(chan error, 1)}
	select {
	case cr.broadcast <- req:
	case <-cr.done:
		return Message{}, errRoomClosed
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
	select {
	case err := <-req.reply:
		return req.msg, err
	case <-cr.done:
		// Run may have answered just before it returned.
		select {
		case err := <-req.reply:
			return req.msg, err
		default:
			return Message{}, errRoomClosed
		}
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// Join adds a new client from addr to the room. It returns the client and
// the bytes it must be sent before anything from its queue: the preamble, a
// reset event if from cannot be resumed, and the backlog. From then on every
// committed message arrives in the client's queue, with no gap and no
// duplicate after the backlog. A nil from means a new client.
func (cr *ChatRoom) Join(ctx context.Context, addr string, from *position) (*client, [][]byte, error) {
	c := &client{send: make(chan *frame, cr.cfg.ClientBuffer), addr: addr}
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

// Leave removes c from the room and closes its queue. It is safe to call
// more than once and after the room has shut down.
func (cr *ChatRoom) Leave(c *client) {
	select {
	case cr.unregister <- c:
	case <-cr.done:
	}
}

// Run is the hub. It is the only goroutine that changes the client map, the
// history and the ids. It returns when ctx ends, after closing every
// client's queue. A room runs once.
func (cr *ChatRoom) Run(ctx context.Context) {
	if cr.running.Swap(true) {
		panic("chat: ChatRoom.Run called twice")
	}
	cr.timer = time.NewTimer(time.Hour)
	cr.timer.Stop()
	defer cr.shutdown()

	var commits <-chan journal.Commit
	if cr.cfg.Journal != nil {
		commits = cr.cfg.Journal.Commits()
	}
	for {
		var due <-chan time.Time
		if cr.batch != nil {
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
			if cr.cfg.Coalesce <= 0 {
				cr.flush()
			}
		case c := <-commits:
			cr.committed(c)
			if cr.cfg.Coalesce <= 0 {
				cr.flush()
			}
		case <-due:
			cr.flush()
		case req := <-cr.register:
			cr.join(req)
		case c := <-cr.unregister:
			cr.remove(c)
		}
	}
}

// accept assigns the next id to a post and commits it, or hands it to the
// journal first.
func (cr *ChatRoom) accept(req *postRequest) {
	seq := cr.next + 1
	req.seq = seq
	req.msg = Message{
		ID:       formatID(cr.epoch, seq),
		Username: req.username,
		Content:  req.content,
		Time:     time.Now().UTC(),
	}
	req.data = marshalMessage(req.msg)
	if j := cr.cfg.Journal; j != nil {
		if !j.Append(journal.Record{Epoch: cr.epoch, Seq: seq, Data: req.data}) {
			req.reply <- errJournalBusy
			return
		}
		cr.next = seq
		cr.pending = append(cr.pending, req)
		return
	}
	cr.next = seq
	cr.commit(req)
}

// committed handles a journal report about the oldest pending posts.
func (cr *ChatRoom) committed(c journal.Commit) {
	n := min(c.N, len(cr.pending))
	for _, req := range cr.pending[:n] {
		if c.Err != nil {
			req.reply <- fmt.Errorf("store message: %w", c.Err)
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
	enc := sse.AppendEvent(nil, sse.Event{ID: req.msg.ID, Data: req.data})
	cr.hist.add(entry{seq: req.seq, msg: req.msg, enc: enc})
	cr.last = req.seq
	if cr.batch == nil {
		cr.batch = &frame{at: req.msg.Time}
		if cr.cfg.Coalesce > 0 {
			cr.timer.Reset(cr.cfg.Coalesce)
		}
	}
	cr.batch.data = append(cr.batch.data, enc...)
	cr.batch.n++
	cr.stats.posted(cr.hist.n)
	req.reply <- nil
}

// flush fans the batch out to every client without blocking: a client whose
// queue is full is disconnected (fan-out, non-blocking send).
func (cr *ChatRoom) flush() {
	f := cr.batch
	if f == nil {
		return
	}
	cr.batch = nil
	cr.timer.Stop()
	var slow []*client
	cr.mu.RLock()
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
		cr.remove(c)
		cr.stats.slowClient(f.n)
	}
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
	id := formatID(cr.epoch, pos)
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
		out = append(out, h.at(i).enc)
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
	return true
}

// shutdown takes the journal's last reports, fans out what is committed,
// answers the posts still pending with errRoomClosed, closes every client's
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
		req.reply <- errRoomClosed
	}
	cr.pending = nil
	cr.mu.Lock()
	for c := range cr.clients {
		close(c.send)
		delete(cr.clients, c)
	}
	cr.mu.Unlock()
	clear(cr.perAddr)
	cr.stats.setClients(0)
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
		var m Message
		if err := json.Unmarshal(r.Data, &m); err != nil {
			return nil, fmt.Errorf("journal record %s: %w", formatID(r.Epoch, r.Seq), err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}
