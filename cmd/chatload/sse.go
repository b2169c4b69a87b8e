package main

import (
	"bytes"
	"errors"
)

// maxSSELine bounds one SSE line carried across reads; the server's messages
// are far smaller, so a longer line means a broken stream.
const maxSSELine = 1 << 20

// errSSELineTooLong is returned by sseParser.feed when a line exceeds maxSSELine.
var errSSELineTooLong = errors.New("sse line too long")

// sseEvent is one dispatch of an SSE stream. Its slices point into the
// parser's buffers and are valid only during the emit call.
type sseEvent struct {
	// Type is the event type buffer; empty means the default type "message".
	Type []byte
	// Data is the data buffer without its final LF.
	Data []byte
	// ID is the last event ID buffer at dispatch time.
	ID []byte
	// Empty is true for a dispatch point (blank line) whose data buffer was
	// empty: the WHATWG algorithm dispatches nothing then, but the last
	// event ID is still updated (the server's preamble is such an event).
	Empty bool
}

// sseParser is an incremental, allocation-free (once warm) parser of the
// text/event-stream format as specified by WHATWG HTML §9.2.6: fields id,
// event, data and retry, comments, multi-line data, and CRLF, CR or LF line
// ends, with any split of the input across feed calls.
type sseParser struct {
	// emit receives every dispatch, including empty ones (see sseEvent.Empty).
	emit func(ev *sseEvent)

	line   []byte // partial line carried over from the previous feed
	data   []byte // data buffer (each data field appends value + LF)
	typ    []byte // event type buffer
	lastID []byte // last event ID buffer
	ev     sseEvent

	// retry is the last valid retry field in milliseconds, or -1.
	retry int64
	// comments counts comment lines (e.g. the server's ": ping").
	comments int64

	sawCR   bool // the previous feed ended with CR: skip a leading LF
	bomDone bool // the stream start has been checked for a UTF-8 BOM
	bomSeen int  // BOM bytes matched so far at the stream start
}

// newSSEParser returns a parser that calls emit for every dispatch.
func newSSEParser(emit func(ev *sseEvent)) *sseParser {
	return &sseParser{emit: emit, retry: -1}
}

// reset prepares the parser for a new stream (a reconnection): buffers are
// emptied, but the last event ID is kept, as an EventSource keeps it.
func (p *sseParser) reset() {
	p.line = p.line[:0]
	p.data = p.data[:0]
	p.typ = p.typ[:0]
	p.sawCR = false
	p.bomDone = false
	p.bomSeen = 0
}

// bom is the UTF-8 byte order mark a stream may start with.
var bom = []byte{0xEF, 0xBB, 0xBF}

// feed parses the next bytes of the stream.
func (p *sseParser) feed(b []byte) error {
	if !p.bomDone {
		for len(b) > 0 && p.bomSeen < len(bom) {
			if b[0] != bom[p.bomSeen] {
				// Not a BOM: the bytes matched so far are ordinary content.
				p.line = append(p.line, bom[:p.bomSeen]...)
				p.bomSeen = len(bom)
				break
			}
			p.bomSeen++
			b = b[1:]
		}
		if p.bomSeen < len(bom) {
			return nil // need more bytes to decide
		}
		p.bomDone = true
	}
	if p.sawCR && len(b) > 0 {
		p.sawCR = false
		if b[0] == '\n' {
			b = b[1:]
		}
	}
	for len(b) > 0 {
		i := indexEOL(b)
		if i < 0 {
			if len(p.line)+len(b) > maxSSELine {
				return errSSELineTooLong
			}
			p.line = append(p.line, b...)
			return nil
		}
		line := b[:i]
		if len(p.line) > 0 {
			if len(p.line)+i > maxSSELine {
				return errSSELineTooLong
			}
			p.line = append(p.line, line...)
			line = p.line
		}
		cr := b[i] == '\r'
		b = b[i+1:]
		if cr {
			if len(b) == 0 {
				p.sawCR = true
			} else if b[0] == '\n' {
				b = b[1:]
			}
		}
		p.processLine(line)
		p.line = p.line[:0]
	}
	return nil
}

// indexEOL returns the index of the first CR or LF in b, or -1.
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

// processLine applies one complete line (without its line end).
func (p *sseParser) processLine(line []byte) {
	if len(line) == 0 {
		p.dispatch()
		return
	}
	if line[0] == ':' {
		p.comments++
		return
	}
	field, value := line, []byte(nil)
	if c := bytes.IndexByte(line, ':'); c >= 0 {
		field, value = line[:c], line[c+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "data":
		p.data = append(p.data, value...)
		p.data = append(p.data, '\n')
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.lastID = append(p.lastID[:0], value...)
		}
	case "event":
		p.typ = append(p.typ[:0], value...)
	case "retry":
		if n, ok := parseDigits(value); ok {
			p.retry = n
		}
	}
}

// dispatch handles a blank line.
func (p *sseParser) dispatch() {
	ev := &p.ev
	ev.ID = p.lastID
	if len(p.data) == 0 {
		p.typ = p.typ[:0]
		ev.Type, ev.Data, ev.Empty = nil, nil, true
		p.emit(ev)
		return
	}
	ev.Type, ev.Data, ev.Empty = p.typ, p.data[:len(p.data)-1], false
	p.emit(ev)
	p.data = p.data[:0]
	p.typ = p.typ[:0]
}

// parseDigits parses a non-empty run of ASCII digits.
func parseDigits(b []byte) (int64, bool) {
	if len(b) > 18 {
		return 0, false
	}
	n, ok := parseUint(b)
	return int64(n), ok
}

// Chunked transfer decoder states.
const (
	chSize    = iota // reading the hex chunk size
	chExt            // skipping chunk extensions up to LF
	chData           // inside chunk data
	chDataEnd        // expecting CRLF after chunk data
	chTrailer        // reading trailer lines after the last chunk
	chDone           // the body ended
)

// errChunked reports a malformed chunked body.
var errChunked = errors.New("malformed chunked encoding")

// chunkedDecoder is an incremental decoder of an HTTP/1.1 chunked body that
// passes the payload bytes straight to an SSE parser without copying.
type chunkedDecoder struct {
	state     int
	size      uint64 // chunk size being parsed, then bytes left in the chunk
	digits    int
	lineBytes int // length of the current trailer line
}

// done reports whether the terminating chunk and trailer have been read.
func (c *chunkedDecoder) done() bool { return c.state == chDone }

// feed decodes b, handing chunk payloads to p.
func (c *chunkedDecoder) feed(b []byte, p *sseParser) error {
	for len(b) > 0 {
		switch c.state {
		case chSize:
			ch := b[0]
			b = b[1:]
			switch {
			case ch >= '0' && ch <= '9', ch >= 'a' && ch <= 'f', ch >= 'A' && ch <= 'F':
				if c.digits == 15 {
					return errChunked
				}
				c.size = c.size<<4 | uint64(unhex(ch))
				c.digits++
			case ch == ';' || ch == ' ' || ch == '\t':
				if c.digits == 0 {
					return errChunked
				}
				c.state = chExt
			case ch == '\r':
			case ch == '\n':
				if c.digits == 0 {
					return errChunked
				}
				c.endSizeLine()
			default:
				return errChunked
			}
		case chExt:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return nil
			}
			b = b[i+1:]
			c.endSizeLine()
		case chData:
			n := uint64(len(b))
			if n > c.size {
				n = c.size
			}
			if err := p.feed(b[:n]); err != nil {
				return err
			}
			b = b[n:]
			c.size -= n
			if c.size == 0 {
				c.state = chDataEnd
			}
		case chDataEnd:
			ch := b[0]
			b = b[1:]
			switch ch {
			case '\r':
			case '\n':
				c.state, c.size, c.digits = chSize, 0, 0
			default:
				return errChunked
			}
		case chTrailer:
			ch := b[0]
			b = b[1:]
			switch ch {
			case '\r':
			case '\n':
				if c.lineBytes == 0 {
					c.state = chDone
				}
				c.lineBytes = 0
			default:
				c.lineBytes++
			}
		case chDone:
			return nil
		}
	}
	return nil
}

// endSizeLine moves on after a complete chunk-size line.
func (c *chunkedDecoder) endSizeLine() {
	if c.size == 0 {
		c.state, c.lineBytes = chTrailer, 0
		return
	}
	c.state = chData
}

// unhex returns the value of a hex digit.
func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
