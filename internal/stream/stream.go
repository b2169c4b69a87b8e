// Package stream writes a chat room's Server-Sent Events streams: one
// writer per subscriber, the only code that writes to its connection,
// which sends the stream's head and then every frame the hub queues for
// it, probes for a closed peer and writes heartbeats on the hub's tick.
// On HTTP/1.x the writer takes the connection over from net/http and runs
// in a goroutine of its own, which is all an idle stream then costs; on
// HTTP/2 the request's handler is the writer. A Tracker lets shutdown wait
// for the hijacked writers. The package knows the hub only through the
// Client and Counters interfaces and a leave function.
package stream

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"chat/internal/fanout"
)

// Tuning values of the writers.
const (
	// maxWriteBatch bounds how many bytes of queued frames one write takes,
	// and the size of the pieces a stream's head (a resume's replay of
	// history, up to megabytes) is written in, each within the write
	// deadline.
	maxWriteBatch = 64 << 10
	// sendBuffer is the kernel send buffer of a stream's socket
	// (SO_SNDBUF; Linux doubles it for its bookkeeping). Without it the
	// kernel grows the buffer to megabytes for a client that never reads,
	// and a few hundred such streams pin gigabytes of kernel memory.
	sendBuffer = 64 << 10
	// probeWindow is how long a stream writer waits, at each probe of a
	// connection it cannot peek at (not TCP, or no MSG_PEEK), for its
	// peer's end-of-file before deciding the peer is still there.
	probeWindow = time.Millisecond
	// probeInterval is the longest time between two checks of a hijacked
	// stream for a closed peer, whatever the room does: the hub ticks at
	// least this often. A closed browser tab leaves the room within this
	// time, plus the presence interval for the others to be told.
	probeInterval = 2 * time.Second
)

// heartbeat is the comment line an idle stream receives.
var heartbeat = []byte(": ping\n\n")

// Client is the hub's side of one stream.
type Client interface {
	// Frames returns the client's queue. Only the hub sends on it and
	// closes it: when it removes the client, and when the room shuts down
	// (after what is queued).
	Frames() <-chan *fanout.Frame
	// Slow reports, once the queue is closed, whether the hub closed it
	// because the client was too slow to keep up.
	Slow() bool
}

// Counters counts what the writers write. The writers call it from their
// own goroutines, after every write.
type Counters interface {
	// Delivered counts one write that carried n chat messages (a write of
	// none counts nothing).
	Delivered(n int)
	// Latency records that n chat messages were written d after the
	// oldest of them was accepted.
	Latency(d time.Duration, n int)
}

// Config is what every stream writer of a server shares.
type Config struct {
	// Heartbeat is the interval of heartbeat comments on an idle stream
	// (0: none).
	Heartbeat time.Duration
	// WriteTimeout bounds every write: a client that takes longer to
	// accept one is cut.
	WriteTimeout time.Duration
	// Counters counts the writes.
	Counters Counters
	// Leave removes a client from the room and releases the frames left
	// in its queue; a writer calls it once, as it ends.
	Leave func(Client)
	// Tracker tracks the writers on hijacked connections.
	Tracker *Tracker
	// Logger receives a debug line as each stream closes (nil: none).
	Logger *slog.Logger
}

// Head is what a stream is sent before anything from its queue.
type Head struct {
	// Bufs are written in order.
	Bufs [][]byte
	// Messages is how many of Bufs are chat messages (the backlog): those
	// just before the last Events.
	Messages int
	// Events is how many of Bufs, at the end, are presence and typing
	// events.
	Events int
}

// TickInterval returns the interval of the hub's tick for a heartbeat
// interval: the tick serves both the probe for a closed peer and the
// heartbeat, so it is the heartbeat interval divided evenly so that it
// ticks at least every probeInterval (15 s: 1.875 s).
func TickInterval(heartbeat time.Duration) time.Duration {
	if heartbeat <= 0 {
		return probeInterval
	}
	return heartbeat / time.Duration((heartbeat+probeInterval-1)/probeInterval)
}

// SetHeaders sets the headers of a stream response in h.
func SetHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
}

// Serve answers r with the stream of c, which has joined the room, from
// addr (for the log). On HTTP/1.x it takes the connection over from
// net/http (Hijack), writes the head from the caller's goroutine and
// returns, leaving one writer goroutine, tracked by cfg.Tracker; on HTTP/2
// it is the writer and returns when the stream ends. Either way the
// client leaves the room when its stream ends.
func (cfg *Config) Serve(w http.ResponseWriter, r *http.Request, c Client, head Head, addr string) {
	SetHeaders(w.Header())
	s := &writer{cfg: cfg, c: c}
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 {
		if conn, _, err := rc.Hijack(); err == nil {
			_ = conn.SetDeadline(time.Time{})
			boundSendBuffer(conn)
			s.out = &rawConn{Conn: conn}
			head.Bufs = append([][]byte{responseHead(w.Header())}, head.Bufs...)
			// The head goes out from the handler's goroutine: its
			// stack is large already, and the writer's stays at the
			// runtime's smallest this way.
			if !cfg.Tracker.add(conn) {
				_ = conn.Close()
				cfg.Leave(c)
				return
			}
			if !s.open(head) {
				s.out.abort()
				cfg.Leave(c)
				cfg.Tracker.done(conn)
				return
			}
			go s.serveHijacked(conn, addr)
			return
		}
	}
	if nc, ok := r.Context().Value(netConnKey{}).(net.Conn); ok {
		boundSendBuffer(nc) // the connection's, shared by its streams
	}
	w.WriteHeader(http.StatusOK)
	s.out = &responseConn{w: w, rc: rc}
	if s.open(head) {
		s.run(r.Context().Done())
	} else {
		cfg.Leave(c)
		s.end()
	}
	cfg.logClosed(addr)
}

// logClosed logs, at debug level, that the stream from addr closed.
func (cfg *Config) logClosed(addr string) {
	if cfg.Logger != nil {
		cfg.Logger.Debug("stream closed", "addr", addr)
	}
}

// ServeConn writes the stream of c, which has joined the room, to conn, a
// connection that carries nothing else (head holds whatever must precede
// the events), and returns when the stream ends, with conn closed and the
// client gone from the room. The writer is the one Serve runs on a
// hijacked connection; cfg.Tracker is not used.
func (cfg *Config) ServeConn(conn net.Conn, c Client, head Head) {
	s := &writer{cfg: cfg, c: c, out: &rawConn{Conn: conn}}
	if !s.open(head) {
		cfg.Leave(c)
		s.end()
		return
	}
	s.run(nil)
}

// writer is one subscriber's writer: the only goroutine that writes to its
// connection.
type writer struct {
	cfg *Config
	c   Client
	out conn
	// deadlineSet is when the write deadline was last moved.
	deadlineSet time.Time
	// lastWrite is when the stream last wrote anything.
	lastWrite time.Time
	// drained is set when the stream ends because the room shut down and
	// everything queued went out: the one ending that closes the
	// connection gracefully rather than with abort (a reset).
	drained bool
}

// batchPool holds buffers for writes that join several queued frames.
var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// serveHijacked runs the stream on a hijacked connection, which the
// tracker tracks, and logs its end.
func (s *writer) serveHijacked(conn net.Conn, addr string) {
	defer s.cfg.Tracker.done(conn)
	s.run(nil)
	s.cfg.logClosed(addr)
}

// run writes everything from the client's queue, until the client goes
// (gone, or a failed write), or the hub closes the queue (it does when the
// client is removed and when the room shuts down; what is still queued
// goes out first); then the client leaves the room and the connection is
// closed. The writer has no timer: the hub queues its tick (fanout.Tick)
// for every client, busy or not, on which the writer probes its peer and
// writes a heartbeat when one is due. It waits on the queue alone, or on
// the queue and gone (HTTP/2).
func (s *writer) run(gone <-chan struct{}) {
	defer s.end()
	defer s.cfg.Leave(s.c)
	queue := s.c.Frames()
	if gone == nil {
		// A hijacked stream: nothing but the queue to wait on, so a
		// plain receive, the cheapest wake-up there is.
		for {
			f, ok := <-queue
			if !ok {
				s.closed()
				return
			}
			if !s.handle(f) {
				return
			}
		}
	}
	for {
		select {
		case f, ok := <-queue:
			if !ok {
				s.closed()
				return
			}
			if !s.handle(f) {
				return
			}
		case <-gone:
			return
		}
	}
}

// closed notes that the hub closed the queue after what was queued: for
// a shutdown, which ends the stream gracefully, or a cut for being slow,
// which ends it with a reset.
func (s *writer) closed() { s.drained = !s.c.Slow() }

// handle writes f, or handles the hub's tick, and reports whether the
// stream goes on.
func (s *writer) handle(f *fanout.Frame) bool {
	if f.Tick {
		return s.tick()
	}
	return s.send(f) == nil
}

// The helpers below keep run's own stack frame small: a stream's goroutine
// then fits in the runtime's smallest stack, which is most of what an idle
// stream costs.

// end closes the stream's connection: gracefully after a shutdown that
// sent everything, with abort (a reset) after any cut.
//
//go:noinline
func (s *writer) end() {
	if s.drained {
		s.out.close()
	} else {
		s.out.abort()
	}
}

// open writes the head and reports whether it went out. A resume's head
// can hold all of history (megabytes), so it goes out in pieces of about
// maxWriteBatch bytes, one writev each, each written within the write
// deadline: a client too slow for one piece is cut like any slow client,
// and resumes after the last message it got.
//
//go:noinline
func (s *writer) open(head Head) bool {
	// The messages are the buffers in [lo, hi): before them the response
	// head and the preamble, after them the presence and typing events.
	bufs := head.Bufs
	hi := len(bufs) - head.Events
	lo := hi - head.Messages
	now := time.Now()
	for start := 0; start < len(bufs); {
		end, size := start, 0
		for end < len(bufs) && (end == start || size+len(bufs[end]) <= maxWriteBatch) {
			size += len(bufs[end])
			end++
		}
		if s.extendDeadline(now) != nil || s.out.writeBuffers(bufs[start:end]) != nil {
			return false
		}
		s.cfg.Counters.Delivered(max(0, min(end, hi)-max(start, lo)))
		start = end
		now = time.Now()
	}
	s.lastWrite = now
	return true
}

// tick handles one tick of the hub: it probes for a closed peer, and once
// the stream has been idle for the heartbeat interval (less half a tick,
// for jitter) it writes a heartbeat. It reports false when the stream must
// end.
//
// The probe runs on every tick, even just after a write: a write to a peer
// that has closed usually succeeds (the peer's reset comes back later),
// so only the second write after the close would fail, and in a room with
// a message every few seconds that comes late. On TCP the probe is one
// system call that does not wait (peerGone).
//
//go:noinline
func (s *writer) tick() bool {
	if !s.out.alive() {
		return false
	}
	hb := s.cfg.Heartbeat
	if hb > 0 && time.Since(s.lastWrite) >= hb-TickInterval(hb)/2 {
		if _, err := s.write(heartbeat, 0); err != nil {
			return false
		}
	}
	return true
}

// send writes f and whatever else is already queued (up to maxWriteBatch
// bytes) with one write, and releases the frames (fanout.Frame.Release):
// f once written, the others as they are copied into the write, which
// takes a pooled buffer. A tick among them is handled after the write.
func (s *writer) send(f *fanout.Frame) error {
	queue := s.c.Frames()
	if len(queue) == 0 {
		now, err := s.write(f.Data, f.N)
		f.Release()
		if err == nil {
			s.cfg.Counters.Latency(now.Sub(f.At), f.N)
		}
		return err
	}
	bp := batchPool.Get().(*[]byte)
	buf, n := append((*bp)[:0], f.Data...), f.N
	oldest := f.At
	f.Release()
	ticked := false
	for len(queue) > 0 && len(buf) < maxWriteBatch {
		next, ok := <-queue
		if !ok {
			break
		}
		buf, n = append(buf, next.Data...), n+next.N // a tick adds nothing
		ticked = ticked || next.Tick
		next.Release()
		if oldest.IsZero() { // f held no message (presence, typing)
			oldest = next.At
		}
	}
	now, err := s.write(buf, n)
	if err == nil {
		s.cfg.Counters.Latency(now.Sub(oldest), n)
	}
	*bp = buf[:0]
	batchPool.Put(bp)
	if err == nil && ticked && !s.tick() {
		return errGone
	}
	return err
}

// errGone is send's error when a tick batched with the frames found the
// peer gone.
var errGone = errors.New("stream: peer gone")

// write writes p, which holds n chat messages, within the write timeout.
// It reads the clock once, before the write, and returns that time, which
// is also the stream's last write for the heartbeat.
func (s *writer) write(p []byte, n int) (time.Time, error) {
	now := time.Now()
	if err := s.extendDeadline(now); err != nil {
		return now, err
	}
	if err := s.out.write(p); err != nil {
		return now, err
	}
	s.lastWrite = now
	s.cfg.Counters.Delivered(n)
	return now, nil
}

// extendDeadline moves the write deadline to WriteTimeout from now, but
// only when a quarter of the timeout has passed since it last did: moving
// it costs a timer update, and a busy stream writes many times a second.
// Every write therefore has between 3/4 of WriteTimeout and all of it.
func (s *writer) extendDeadline(now time.Time) error {
	if now.Sub(s.deadlineSet) < s.cfg.WriteTimeout/4 {
		return nil
	}
	s.deadlineSet = now
	return s.out.setWriteDeadline(now.Add(s.cfg.WriteTimeout))
}
