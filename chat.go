package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	Journal *Store
	// Recovered is the history to start with, oldest first (from the
	// journal). The epoch and sequence numbers continue from its last id.
	Recovered []Message
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
	// perAddr counts clients per address.
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

	var commits <-chan Commit
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
	if j := cr.cfg.Journal; j != nil {
		if !j.Append(req.msg) {
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
func (cr *ChatRoom) committed(c Commit) {
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
	enc := encodeMessage(nil, req.msg)
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
	case cr.cfg.MaxStreamsPerAddr > 0 && cr.perAddr[c.addr] >= cr.cfg.MaxStreamsPerAddr:
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
	cr.perAddr[c.addr]++
	cr.stats.joined(n)
	req.reply <- joinResult{head: head}
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
	if cr.perAddr[c.addr]--; cr.perAddr[c.addr] <= 0 {
		delete(cr.perAddr, c.addr)
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

const (
	// storeQueue is how many messages Append can queue ahead of Run. Append
	// returns false while that many are waiting.
	storeQueue = 4096
	// storeCommitBuffer is the capacity of the Commits channel: how many group
	// commits Run can report before it waits for the consumer to read them.
	storeCommitBuffer = 64
)

// Store is an append-only journal of accepted messages, kept in one file that
// holds one JSON object (a Message) per line.
//
// Writing: Append queues a message and never blocks. Run is the only goroutine
// that touches the file. It takes everything queued, writes it with one write,
// makes it durable with one fsync (group commit) and then reports the group on
// Commits, so many concurrent posts share one fsync. Messages must be appended
// in id order: one epoch, and seq strictly increasing, continuing after the
// messages OpenStore recovered. Run refuses a message that would break that
// order (its Commit carries the error) rather than write it, so the journal
// always stays readable. After a failed write or fsync the store is failed for
// good: nothing more is written and every later message is reported with that
// error, because after a failed fsync the state of the kernel's page cache is
// unknown and retrying could acknowledge data that is already lost.
//
// Recovery: OpenStore reads the file line by line. A torn last line (one with
// no trailing newline, or one that is not valid JSON at the end of the file)
// is what a crash in the middle of a write leaves behind. It was never
// acknowledged, so it is logged at warn level and truncated away. Any other bad
// line (invalid JSON, an id that does not parse, or an id that does not follow
// the previous one) means the file was damaged or edited, and OpenStore refuses
// it with an error that names the file and the line.
//
// Compaction: when the file holds more than 2*keep lines, Run rewrites it with
// the last keep messages. It writes them to path+".tmp", fsyncs that file,
// renames it over path and fsyncs the directory, so a crash at any point
// leaves either the old or the new file, complete. The file therefore holds at
// most 2*keep lines plus one group, which bounds the work of recovery (it can
// hold more only after a failed rewrite, or if keep was lowered). Run
// keeps the encoded lines of the last keep messages in memory for this. If the
// rewrite fails, Run logs it, goes on appending to the old file and tries
// again after keep more lines. OpenStore removes a stale path+".tmp".
//
// Only one process may use a journal at a time; nothing enforces this.
type Store struct {
	// path is the name of the journal file.
	path string
	// keep is how many messages OpenStore returns and compaction keeps.
	keep int
	// logger receives recovery warnings and write and compaction failures.
	logger *slog.Logger
	// queue holds messages that were appended but not yet taken by Run.
	queue chan Message
	// commits carries one Commit per group, in Append order. It is never closed.
	commits chan Commit

	// mu guards closed. Append holds it shared while it queues, and Run holds
	// it exclusively to close the store, so no message can be queued after
	// Run's final drain.
	mu sync.RWMutex
	// closed is set when Run begins to shut down. Append then returns false.
	closed bool

	// The fields below belong to OpenStore and then to the Run goroutine.

	// f is the open journal. It is in append mode.
	f *os.File
	// lines is the number of lines in the file.
	lines int
	// compactAt is the line count above which Run compacts the file.
	compactAt int
	// recent holds the encoded lines (newline included) of the last keep
	// messages in the file, for compaction.
	recent journalRing[[]byte]
	// lastEpoch and lastSeq are the parts of the id of the last message in the
	// file. They are meaningful only when hasLast is true.
	lastEpoch int64
	lastSeq   uint64
	hasLast   bool
	// failed is the error of the write or fsync that failed the store, or nil.
	failed error
	// buf collects the lines of one group (or of a compacted file), and enc
	// encodes messages into it.
	buf bytes.Buffer
	enc *json.Encoder
	// errs holds each message's outcome while Run commits a group.
	errs []error
	// ends holds the end offset in buf of each line of a group.
	ends []int
}

// Commit reports that the next N appended messages were made durable
// (Err == nil) or could not be (Err != nil).
type Commit struct {
	// N is how many messages, in Append order, this Commit covers.
	N int
	// Err is nil if the N messages are durable, or why they are not.
	Err error
}

// OpenStore opens (creating if needed) the journal at path and recovers it: it
// returns the last keep messages in order (oldest first). A torn last line is
// logged at warn level and truncated away; any other bad line is an error that
// names the file and the line. keep must be at least 1. A nil logger discards
// the logs. The file stays open until Run returns; to release it without
// running the store, call Run with a context that is already done.
func OpenStore(path string, keep int, logger *slog.Logger) (*Store, []Message, error) {
	if keep < 1 {
		return nil, nil, fmt.Errorf("open journal %s: keep is %d, must be at least 1", path, keep)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	s := &Store{
		path:      path,
		keep:      keep,
		logger:    logger,
		queue:     make(chan Message, storeQueue),
		commits:   make(chan Commit, storeCommitBuffer),
		f:         f,
		compactAt: 2 * keep,
		recent:    journalRing[[]byte]{max: keep},
	}
	s.enc = json.NewEncoder(&s.buf)
	s.enc.SetEscapeHTML(false)
	msgs, err := s.recover()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	// A crash during compaction can leave the temporary file behind.
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err == nil {
		logger.Warn("removed stale journal compaction file", "path", tmp)
	} else if !errors.Is(err, fs.ErrNotExist) {
		logger.Warn("cannot remove stale journal compaction file", "path", tmp, "err", err)
	}
	// Make the file's directory entry durable in case the file was just created.
	if err := syncJournalDir(path); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	logger.Debug("journal recovered", "path", path, "lines", s.lines, "messages", len(msgs))
	return s, msgs, nil
}

// recover reads the whole journal, checks every line, truncates a torn last
// line and returns the last keep messages. It also sets lines, recent and the
// last id.
func (s *Store) recover() ([]Message, error) {
	msgs := journalRing[Message]{max: s.keep}
	r := bufio.NewReader(s.f)
	var off int64 // offset of the start of the current line
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read journal %s: %w", s.path, err)
		}
		if len(line) == 0 {
			break
		}
		var m Message
		var bad error
		if line[len(line)-1] != '\n' {
			bad = errors.New("no trailing newline")
		} else {
			bad = json.Unmarshal(line, &m)
		}
		if bad != nil {
			if _, err := r.Peek(1); err == nil {
				return nil, fmt.Errorf("journal %s line %d: %w", s.path, n, bad)
			} else if !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("read journal %s: %w", s.path, err)
			}
			if err := s.dropTornTail(n, off, len(line), bad); err != nil {
				return nil, err
			}
			break
		}
		epoch, seq, err := parseID(m.ID)
		if err != nil {
			return nil, fmt.Errorf("journal %s line %d: %w", s.path, n, err)
		}
		if s.hasLast && (epoch != s.lastEpoch || seq <= s.lastSeq) {
			return nil, fmt.Errorf("journal %s line %d: id %s does not follow %s",
				s.path, n, m.ID, formatID(s.lastEpoch, s.lastSeq))
		}
		s.lastEpoch, s.lastSeq, s.hasLast = epoch, seq, true
		msgs.push(m)
		s.recent.push(line)
		s.lines++
		off += int64(len(line))
	}
	return msgs.ordered(), nil
}

// dropTornTail logs the torn last line n, which starts at offset off and is
// size bytes long, and truncates the file before it, durably.
func (s *Store) dropTornTail(n int, off int64, size int, reason error) error {
	s.logger.Warn("dropping torn last line of journal",
		"path", s.path, "line", n, "offset", off, "bytes", size, "reason", reason)
	if err := s.f.Truncate(off); err != nil {
		return fmt.Errorf("truncate torn tail of journal %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync journal %s: %w", s.path, err)
	}
	return nil
}

// Append queues m to be written. It never blocks: it returns false when the
// queue (storeQueue = 4096) is full or the store is closed. Run reports the
// outcome later on Commits. Call Append in id order (in practice from the one
// goroutine that assigns ids); Run refuses a message whose id does not follow
// the previous one. Append is safe for concurrent use.
func (s *Store) Append(m Message) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	select {
	case s.queue <- m:
		return true
	default:
		return false
	}
}

// Commits returns the channel on which Run reports each group commit, in the
// order of Append calls: each Commit covers the next N appended messages. The
// channel holds storeCommitBuffer Commits; when it is full, Run waits for the
// consumer (and meanwhile Append fills the queue), except that Run still
// returns when its context is done. The channel is never closed.
func (s *Store) Commits() <-chan Commit {
	return s.commits
}

// Run writes queued messages until ctx ends: it takes everything queued
// (at most storeQueue messages), writes one JSON line per message, fsyncs once
// (group commit), then sends one Commit. (It sends more than one for a group
// only when some of its messages are refused, so that each Commit covers
// messages with the same outcome.) It compacts when needed. When ctx ends it
// writes what is queued, closes the file and returns; Append returns false
// from then on. The Commits for that final group, and any not yet sent, are
// sent only as far as the Commits buffer has room, in order. Call Run once.
func (s *Store) Run(ctx context.Context) {
	defer s.closeFile()
	s.maybeCompact()
	var batch []Message
	for {
		select {
		case <-ctx.Done():
			s.shutdown(nil)
			return
		case m := <-s.queue:
			batch = s.drain(append(batch[:0], m))
			commits := s.commit(batch)
			clear(batch) // drop references to the messages' strings
			for i, c := range commits {
				select {
				case s.commits <- c:
				case <-ctx.Done():
					s.shutdown(commits[i:])
					return
				}
			}
			s.maybeCompact()
		}
	}
}

// drain appends to batch whatever is queued, up to storeQueue messages in all,
// without waiting.
func (s *Store) drain(batch []Message) []Message {
	for len(batch) < storeQueue {
		select {
		case m := <-s.queue:
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

// shutdown closes the store to Append, writes what is still queued and sends
// the unsent Commits followed by the final group's, in order, as far as the
// Commits buffer has room.
func (s *Store) shutdown(unsent []Commit) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	// The queue can no longer grow and holds at most storeQueue messages, so
	// one drain takes them all.
	if batch := s.drain(nil); len(batch) > 0 {
		unsent = append(unsent, s.commit(batch)...)
	}
	for i, c := range unsent {
		select {
		case s.commits <- c:
		default:
			s.logger.Warn("journal commits not reported at shutdown: consumer not reading",
				"path", s.path, "commits", len(unsent)-i)
			return
		}
	}
}

// closeFile closes the journal file and logs a failure.
func (s *Store) closeFile() {
	if err := s.f.Close(); err != nil {
		s.logger.Error("close journal", "path", s.path, "err", err)
	}
}

// commit writes batch as one group with one write and one fsync, and returns
// the Commits that report it: one per run of consecutive messages with the
// same outcome.
func (s *Store) commit(batch []Message) []Commit {
	s.buf.Reset()
	s.errs = s.errs[:0]
	s.ends = s.ends[:0]
	epoch, seq, hasLast := s.lastEpoch, s.lastSeq, s.hasLast
	for _, m := range batch {
		e, q, err := s.encode(m, epoch, seq, hasLast)
		if err == nil {
			epoch, seq, hasLast = e, q, true
			s.ends = append(s.ends, s.buf.Len())
		}
		s.errs = append(s.errs, err)
	}
	if len(s.ends) > 0 {
		if err := s.writeGroup(); err != nil {
			s.failed = err
			s.logger.Error("journal failed: messages are no longer made durable", "path", s.path, "err", err)
			for i, e := range s.errs {
				if e == nil {
					s.errs[i] = err
				}
			}
		} else {
			data, start := s.buf.Bytes(), 0
			for _, end := range s.ends {
				s.recent.push(bytes.Clone(data[start:end]))
				start = end
			}
			s.lines += len(s.ends)
			s.lastEpoch, s.lastSeq, s.hasLast = epoch, seq, hasLast
		}
	}
	var commits []Commit
	for i, err := range s.errs {
		if i > 0 && err == s.errs[i-1] {
			commits[len(commits)-1].N++
			continue
		}
		commits = append(commits, Commit{N: 1, Err: err})
	}
	return commits
}

// encode checks that m may follow the id (epoch, seq) (any id may come first
// when hasLast is false) and appends its line to buf. It returns the parts of
// m's id, or why m is refused, or the error that failed the store.
func (s *Store) encode(m Message, epoch int64, seq uint64, hasLast bool) (int64, uint64, error) {
	if s.failed != nil {
		return 0, 0, s.failed
	}
	e, q, err := parseID(m.ID)
	if err != nil {
		return 0, 0, fmt.Errorf("journal refuses message: %w", err)
	}
	if hasLast && (e != epoch || q <= seq) {
		return 0, 0, fmt.Errorf("journal refuses message: id %s does not follow %s", m.ID, formatID(epoch, seq))
	}
	if err := s.enc.Encode(m); err != nil { // Encode writes nothing on error
		return 0, 0, fmt.Errorf("encode journal message %s: %w", m.ID, err)
	}
	return e, q, nil
}

// writeGroup writes buf to the journal and fsyncs it.
func (s *Store) writeGroup() error {
	if _, err := s.f.Write(s.buf.Bytes()); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync journal %s: %w", s.path, err)
	}
	return nil
}

// maybeCompact compacts the journal when it holds more than compactAt lines.
// After a failure it logs and sets compactAt to try again after keep more lines.
func (s *Store) maybeCompact() {
	if s.failed != nil || s.lines <= s.compactAt {
		return
	}
	before := s.lines
	if err := s.compact(); err != nil {
		if s.failed != nil {
			s.logger.Error("journal failed: messages are no longer made durable", "path", s.path, "err", err)
			return
		}
		s.compactAt = s.lines + s.keep
		s.logger.Error("journal compaction failed", "path", s.path, "lines", s.lines, "err", err)
		return
	}
	s.compactAt = 2 * s.keep
	s.logger.Debug("journal compacted", "path", s.path, "lines_before", before, "lines", s.lines)
}

// compact rewrites the journal with the last keep messages: it writes them to
// path+".tmp", fsyncs it, renames it over path and fsyncs the directory. If the
// directory cannot be synced after the rename, later appends could be lost
// with the rename in a crash, so the store fails.
func (s *Store) compact() error {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("compact journal: %w", err)
	}
	lines := s.recent.ordered()
	s.buf.Reset()
	for _, line := range lines {
		s.buf.Write(line)
	}
	if err := writeCompacted(f, s.buf.Bytes(), s.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact journal: %w", err)
	}
	// The new file is in place: append to it from now on.
	old := s.f
	s.f = f
	s.lines = len(lines)
	if err := old.Close(); err != nil {
		s.logger.Warn("close replaced journal", "path", s.path, "err", err)
	}
	if err := syncJournalDir(s.path); err != nil {
		s.failed = fmt.Errorf("compact journal: %w", err)
		return s.failed
	}
	return nil
}

// writeCompacted writes data to f, the new journal, fsyncs it and renames it
// to path.
func writeCompacted(f *os.File, data []byte, path string) error {
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	return os.Rename(f.Name(), path)
}

// syncJournalDir fsyncs the directory that holds the journal at path, which
// makes a creation or rename in it durable. Windows cannot sync a directory
// and does not need to, so there it does nothing.
func syncJournalDir(path string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	dir := filepath.Dir(path)
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync journal directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync journal directory %s: %w", dir, err)
	}
	return nil
}

// journalRing keeps the last max items pushed into it. Its zero value with
// max set is ready to use; it grows to max items only as they arrive.
type journalRing[T any] struct {
	// items holds at most max items. Once it is full, next indexes the oldest.
	items []T
	// next is where push writes once items is full.
	next int
	// max is how many items the ring keeps.
	max int
}

// push adds v, dropping the oldest item when the ring is full.
func (r *journalRing[T]) push(v T) {
	if len(r.items) < r.max {
		r.items = append(r.items, v)
		return
	}
	r.items[r.next] = v
	r.next = (r.next + 1) % r.max
}

// ordered returns a new slice with the items, oldest first.
func (r *journalRing[T]) ordered() []T {
	out := make([]T, 0, len(r.items))
	out = append(out, r.items[r.next:]...)
	return append(out, r.items[:r.next]...)
}
