package sse

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"
)

// Limits of the Reader.
const (
	// readBuffer is the Reader's initial buffer size; it grows for longer
	// lines.
	readBuffer = 4096
	// MaxLine bounds one line (without its line end) that the Reader
	// accepts; a longer one ends the stream with ErrLineTooLong.
	MaxLine = 16 << 20
)

// ErrLineTooLong is returned by Reader.Next for a line longer than MaxLine.
var ErrLineTooLong = errors.New("sse: line too long")

// bom is the UTF-8 byte order mark a stream may start with.
var bom = []byte{0xEF, 0xBB, 0xBF}

// Block is one block of a stream: the lines up to a blank line, as Reader
// parsed them. A browser dispatches a Block as an event only if HasData is
// true; the others (the server's id-only preamble, a comment-only
// heartbeat, a block of unknown fields) still change the stream's state or
// show that it is alive, so Reader returns them too.
type Block struct {
	// Event is what a browser would see: Type is the event type, "message"
	// when the block named none; ID is the stream's last event ID after the
	// block (the value a MessageEvent's lastEventId carries, kept across
	// blocks); Retry is the reconnection time the block set, 0 if it set
	// none; Data is the data lines joined with "\n", nil if there were none.
	Event
	// HasData is true when the block had at least one data field (possibly
	// empty): only such a block is dispatched as an event.
	HasData bool
	// HasID is true when the block had an id field that was not ignored
	// (one holding NUL is).
	HasID bool
	// Comments holds the text of the block's comment lines (lines that
	// start with ':'), with the colon and one following space removed, in
	// order: a heartbeat ": ping" is "ping".
	Comments []string
}

// Reader parses a text/event-stream as the WHATWG event stream
// interpretation algorithm does: lines end in CRLF, LF or CR; a leading
// byte order mark is skipped; a line starting with ':' is a comment; a
// line without ':' is a field with an empty value; one space after the
// colon is removed; data fields are joined with "\n"; an id holding NUL is
// ignored; retry is applied only when it is all ASCII digits; unknown
// fields are ignored; a blank line ends a block, and a block cut off by the
// end of the stream is discarded. A Reader reads from its source only when
// it has no complete line buffered, so a stream that pauses after an event
// yields that event at once. It is not safe for concurrent use.
type Reader struct {
	// r is the stream.
	r io.Reader
	// buf[start:end] holds bytes read from r and not yet parsed.
	buf        []byte
	start, end int
	// scanned counts the bytes from start known to hold no line end, so a
	// long line arriving in many reads is scanned once.
	scanned int
	// err is the error r returned; it is reported once buf holds no
	// complete line.
	err error
	// bomDone is set once the stream's start was checked for a BOM.
	bomDone bool
	// skipLF is set after a line ended in CR: an LF right after it is the
	// rest of that line end.
	skipLF bool
	// idBuf is the last event ID buffer; lastID the stream's last event ID
	// string, set from idBuf at every blank line.
	idBuf, lastID string
	// retry is the reconnection time last set by the stream, 0 if none.
	retry time.Duration
	// data is the data buffer of the block being read.
	data []byte
}

// NewReader returns a Reader of the stream r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, buf: make([]byte, readBuffer)}
}

// LastEventID returns the stream's last event ID as of the last complete
// block: what an EventSource would send as Last-Event-ID on reconnecting.
func (r *Reader) LastEventID() string { return r.lastID }

// Retry returns the reconnection time the stream last set with a valid
// retry field, or 0 if it set none.
func (r *Reader) Retry() time.Duration { return r.retry }

// Next returns the next block of the stream, whether or not it holds data
// (see Block). Blank lines that end no line are skipped. At the end of the
// stream it returns the source's error (io.EOF for a clean end), unwrapped,
// and discards any incomplete block.
func (r *Reader) Next() (Block, error) {
	var b Block
	r.data = r.data[:0]
	lines := 0
	for {
		line, err := r.readLine()
		if err != nil {
			return Block{}, err
		}
		if len(line) == 0 {
			if lines == 0 {
				continue
			}
			r.lastID = r.idBuf
			b.ID = r.lastID
			if b.Type == "" {
				b.Type = "message"
			}
			if b.HasData {
				b.Data = bytes.Clone(r.data[:len(r.data)-1])
				if b.Data == nil {
					b.Data = []byte{}
				}
			}
			return b, nil
		}
		lines++
		if line[0] == ':' {
			c := line[1:]
			if len(c) > 0 && c[0] == ' ' {
				c = c[1:]
			}
			b.Comments = append(b.Comments, string(c))
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			b.Type = string(value)
		case "data":
			r.data = append(append(r.data, value...), '\n')
			b.HasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				r.idBuf = string(value)
				b.HasID = true
			}
		case "retry":
			if ms, ok := parseDigits(value); ok {
				r.retry = time.Duration(ms) * time.Millisecond
				b.Retry = r.retry
			}
		}
	}
}

// NextEvent returns the next block that a browser would dispatch as an
// event (one with data), skipping the others; errors are as for Next.
func (r *Reader) NextEvent() (Event, error) {
	for {
		b, err := r.Next()
		if err != nil {
			return Event{}, err
		}
		if b.HasData {
			return b.Event, nil
		}
	}
}

// parseDigits parses a non-empty run of ASCII digits as milliseconds; it
// refuses anything else and values too large for a time.Duration.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n > int64(time.Duration(1<<63-1)/time.Millisecond) {
		return 0, false
	}
	return n, true
}

// readLine returns the next line without its line end. The slice points
// into r.buf and is valid until the next call.
func (r *Reader) readLine() ([]byte, error) {
	for {
		avail := r.buf[r.start:r.end]
		if !r.bomDone {
			if len(avail) < len(bom) && r.err == nil && bytes.HasPrefix(bom, avail) {
				r.fill()
				continue
			}
			if bytes.HasPrefix(avail, bom) {
				r.start += len(bom)
				avail = avail[len(bom):]
			}
			r.bomDone = true
		}
		if r.skipLF && len(avail) > 0 {
			r.skipLF = false
			if avail[0] == '\n' {
				r.start++
				avail = avail[1:]
			}
		}
		if i := indexEOL(avail[r.scanned:]); i >= 0 {
			i += r.scanned
			r.start += i + 1
			r.scanned = 0
			r.skipLF = avail[i] == '\r'
			return avail[:i], nil
		}
		r.scanned = len(avail)
		if r.err != nil {
			return nil, r.err
		}
		r.fill()
	}
}

// fill reads more of the stream into r.buf, first moving the unparsed
// bytes to its front and growing it if they fill it.
func (r *Reader) fill() {
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	if r.end == len(r.buf) {
		if r.end > MaxLine {
			r.err = ErrLineTooLong
			return
		}
		r.buf = append(r.buf, make([]byte, min(len(r.buf), MaxLine+1-len(r.buf)))...)
	}
	n, err := r.r.Read(r.buf[r.end:])
	r.end += n
	if err != nil {
		r.err = err
	}
}

// indexEOL returns the index of the first CR or LF in b, or -1. It is
// indexLineEnd written for long inputs: two vectorised searches.
func indexEOL(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
		return j
	}
	return i
}
