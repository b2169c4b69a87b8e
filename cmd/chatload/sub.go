package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Subscriber tuning.
const (
	readBufSize       = 4096             // bufio buffer per stream
	connectTimeout    = 15 * time.Second // dial + request + response headers
	initialAttempts   = 3                // tries to open a stream during the connect phase
	maxReconnectDelay = 2 * time.Second  // cap of the backoff between failed reconnects
)

// Field keys scanned for in each event's JSON data.
var (
	keyID   = []byte(`"id":"`)
	keyTime = []byte(`"time":"`)
)

// subscriber is one SSE client. Its counters are owned by its goroutine and
// read by others only after it has exited, except the atomics.
type subscriber struct {
	r     *loadRun
	idx   int
	laddr net.Addr // source address, or nil
	// target is the index in r.targets of the server the stream is on;
	// it moves to the next after a failed attempt to connect.
	target int

	mu   sync.Mutex // guards conn
	conn net.Conn

	br      *bufio.Reader
	parser  *sseParser
	chunked bool
	chunk   chunkedDecoder
	req     []byte
	now     int64 // arrival time (Unix ns) of the bytes being parsed

	lat    *hist // post send -> arrival, µs
	srvLat *hist // server message time -> arrival, µs

	readyAt     int64 // Unix ns of the first preamble, 0 until then
	lastArrival int64 // Unix ns of the last run message received
	preambleID  []byte
	preamble    bool // the current connection's preamble has been seen
	prePos      msgID
	checkPre    bool  // events must come after prePos (cleared by a reset)
	beforePre   int64 // events at or before their connection's preamble position
	last        msgID
	haveLast    bool
	got         []uint64 // bitset of run message numbers received

	// delivered counts unique run messages received (read by progress).
	delivered atomic.Int64
	// connectedNow is 1 while a stream is open (read by progress).
	connectedNow atomic.Bool

	events     int64 // default-type events
	dups       int64 // run messages received again
	outOfOrder int64 // events whose id is not above the previous one
	foreign    int64 // default events that are not this run's messages
	idMismatch int64 // JSON id differs from the SSE id field
	badEvents  int64 // unparsable ids or run markers
	resets     int64
	reconnects int64
	otherTypes int64
	// presence and typing count the presence and typing events, and
	// presenceBytes and typingBytes their size on the wire.
	presence, presenceBytes int64
	typing, typingBytes     int64
}

// setConn publishes the open connection so stop can close it; it fails
// once the run is stopping.
func (s *subscriber) setConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.r.stopping.Load() {
		return false
	}
	s.conn = c
	return true
}

// closeConn closes the current connection, if any.
func (s *subscriber) closeConn() {
	s.mu.Lock()
	c := s.conn
	s.conn = nil
	s.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// run opens the stream and keeps it open until the run stops, reconnecting
// with Last-Event-ID whenever the server closes it. ready is called once,
// when the first preamble arrives or when the subscriber gives up.
func (s *subscriber) run(ready func(ok bool)) {
	readyCalled := false
	signal := func(ok bool) {
		if !readyCalled {
			readyCalled = true
			ready(ok)
		}
	}
	defer signal(false)
	s.parser = newSSEParser(s.onEvent)
	for attempt := 1; ; attempt++ {
		retryAfter, err := s.connect()
		if err == nil {
			break
		}
		s.r.noteStreamError(err)
		if attempt >= initialAttempts || s.r.stopping.Load() {
			s.r.subsFailed.Add(1)
			return
		}
		s.r.sleep(max(retryAfter, time.Duration(attempt)*500*time.Millisecond))
	}
	for {
		err := s.readLoop(signal)
		s.closeConn()
		if s.connectedNow.Swap(false) {
			s.r.connected.Add(-1)
		}
		if s.r.stopping.Load() {
			return
		}
		if err != nil && !errors.Is(err, io.EOF) {
			s.r.noteStreamError(err)
		}
		s.reconnects++
		s.r.reconnects.Add(1)
		delay := time.Duration(0)
		for {
			if delay > 0 {
				s.r.sleep(delay)
			}
			if s.r.stopping.Load() {
				return
			}
			retryAfter, err := s.connect()
			if err == nil {
				break
			}
			s.r.noteStreamError(err)
			delay = min(max(2*delay, 100*time.Millisecond, retryAfter), maxReconnectDelay)
		}
	}
}

// statusError is a non-200 answer to GET /stream.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("stream status %d: %s", e.status, e.body)
}

// connect dials, sends the request and reads the response headers. On
// success the stream is ready for readLoop.
func (s *subscriber) connect() (retryAfter time.Duration, err error) {
	r := s.r
	d := net.Dialer{Timeout: connectTimeout, LocalAddr: s.laddr}
	t := r.targets[s.target]
	c, err := d.Dial("tcp", t.dialAddr)
	if err != nil {
		s.target = (s.target + 1) % len(r.targets)
		return 0, err
	}
	if r.tlsConf != nil {
		c = tls.Client(c, r.tlsConf)
	}
	if !s.setConn(c) {
		c.Close()
		return 0, errStopping
	}
	fail := func(e error) (time.Duration, error) {
		s.closeConn()
		return retryAfter, e
	}
	c.SetDeadline(time.Now().Add(connectTimeout))
	s.req = append(s.req[:0], "GET "...)
	s.req = append(s.req, t.streamPath...)
	if r.cfg.names {
		s.req = fmt.Appendf(s.req, "?name=load-%s-%d", r.runTag, s.idx)
	}
	s.req = append(s.req, " HTTP/1.1\r\nHost: "...)
	s.req = append(s.req, t.hostHeader...)
	s.req = append(s.req, "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: chatload\r\n"...)
	if len(s.parser.lastID) > 0 {
		s.req = append(s.req, "Last-Event-ID: "...)
		s.req = append(s.req, s.parser.lastID...)
		s.req = append(s.req, "\r\n"...)
	}
	s.req = append(s.req, "\r\n"...)
	if _, err := c.Write(s.req); err != nil {
		return fail(err)
	}
	if s.br == nil {
		s.br = bufio.NewReaderSize(c, readBufSize)
	} else {
		s.br.Reset(c)
	}
	h, err := readResponseHead(s.br)
	if err != nil {
		return fail(err)
	}
	retryAfter = h.retryAfter
	if h.status != 200 {
		body := make([]byte, min(max(h.contentLength, 0), 512))
		n, _ := io.ReadFull(s.br, body)
		r.noteStreamStatus(h.status)
		return fail(&statusError{h.status, string(bytes.TrimSpace(body[:n]))})
	}
	c.SetDeadline(time.Time{})
	s.chunked = h.chunked
	s.chunk = chunkedDecoder{}
	s.parser.reset()
	s.preamble = false
	s.connectedNow.Store(true)
	r.connected.Add(1)
	return 0, nil
}

// errStopping ends a connection attempt made while the run stops.
var errStopping = errors.New("stopping")

// responseHead is what connect needs from the response headers.
type responseHead struct {
	status        int
	chunked       bool
	contentLength int
	retryAfter    time.Duration
}

// readResponseHead parses an HTTP/1.x status line and headers.
func readResponseHead(br *bufio.Reader) (responseHead, error) {
	h := responseHead{contentLength: -1}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return h, fmt.Errorf("read status line: %w", err)
	}
	line = bytes.TrimRight(line, "\r\n")
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return h, fmt.Errorf("bad status line %q", line)
	}
	st, ok := parseUint(line[9:12])
	if !ok {
		return h, fmt.Errorf("bad status line %q", line)
	}
	h.status = int(st)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return h, fmt.Errorf("read headers: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return h, nil
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		name, value := line[:c], bytes.TrimSpace(line[c+1:])
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			h.chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Content-Length")):
			if n, ok := parseUint(value); ok {
				h.contentLength = int(min(n, 1<<30))
			}
		case bytes.EqualFold(name, []byte("Retry-After")):
			if n, ok := parseUint(value); ok {
				h.retryAfter = time.Duration(min(n, 3600)) * time.Second
			}
		}
	}
}

// readLoop parses the stream until it ends. Each read is handed to the
// parser straight from the bufio buffer.
func (s *subscriber) readLoop(ready func(bool)) error {
	br := s.br
	for {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				return err
			}
		}
		b, _ := br.Peek(br.Buffered())
		s.now = time.Now().UnixNano()
		var err error
		if s.chunked {
			err = s.chunk.feed(b, s.parser)
		} else {
			err = s.parser.feed(b)
		}
		br.Discard(len(b))
		if err != nil {
			return err
		}
		if s.readyAt != 0 {
			ready(true)
		}
		if s.chunked && s.chunk.done() {
			return io.EOF
		}
	}
}

// onEvent handles one SSE dispatch.
func (s *subscriber) onEvent(ev *sseEvent) {
	if ev.Empty {
		if !s.preamble {
			s.preamble = true
			s.prePos, s.checkPre = parseMsgID(ev.ID)
			if s.readyAt == 0 {
				s.readyAt = s.now
				s.preambleID = append(s.preambleID[:0], ev.ID...)
			}
		}
		return
	}
	if len(ev.Type) > 0 && string(ev.Type) != "message" {
		// The server writes "event: T\ndata: D\n\n" for these.
		size := int64(len("event: \ndata: \n\n") + len(ev.Type) + len(ev.Data))
		switch string(ev.Type) {
		case "reset":
			s.resets++
			s.r.resets.Add(1)
			s.haveLast = false // the history is replayed from its start
			s.checkPre = false
		case "presence":
			s.presence++
			s.presenceBytes += size
		case "typing":
			s.typing++
			s.typingBytes += size
		default:
			s.otherTypes++
		}
		return
	}
	s.events++
	id, ok := parseMsgID(ev.ID)
	if !ok {
		s.badEvents++
		return
	}
	if s.checkPre && !s.prePos.less(id) {
		s.beforePre++
	}
	inOrder := !s.haveLast || s.last.less(id)
	if inOrder {
		s.last, s.haveLast = id, true
	}
	data := ev.Data
	if jid, ok := jsonStringField(data, keyID); !ok || !bytes.Equal(jid, ev.ID) {
		s.idMismatch++
	}
	i := bytes.Index(data, s.r.marker)
	if i < 0 {
		s.foreign++
		if !inOrder {
			s.outOfOrder++
		}
		return
	}
	sent, rest, ok1 := scanUint(data[i+len(s.r.marker):])
	if !ok1 || len(rest) == 0 || rest[0] != ' ' {
		s.badEvents++
		return
	}
	n, rest, ok2 := scanUint(rest[1:])
	if !ok2 || len(rest) == 0 || rest[0] != '"' || n >= uint64(s.r.maxMsgs) {
		s.badEvents++
		return
	}
	if s.got == nil {
		s.got = make([]uint64, (s.r.maxMsgs+63)/64)
	}
	w, bit := n/64, uint64(1)<<(n%64)
	if s.got[w]&bit != 0 {
		s.dups++
		return
	}
	s.got[w] |= bit
	if !inOrder {
		s.outOfOrder++
	}
	s.delivered.Add(1)
	s.lastArrival = s.now
	s.lat.add(micros(s.now - int64(sent)))
	if ts, ok := jsonStringField(data, keyTime); ok {
		if t, ok := parseRFC3339Nano(ts); ok {
			s.srvLat.add(micros(s.now - t))
		}
	}
}

// micros converts a nanosecond interval to microseconds, clamping negatives.
func micros(ns int64) uint64 {
	if ns <= 0 {
		return 0
	}
	return uint64(ns / 1000)
}

// appendHostHeader formats host:port for the Host header, omitting the
// scheme's default port.
func appendHostHeader(host, port, scheme string) string {
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, port)
}
