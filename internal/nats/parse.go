package nats

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Limits of the parser.
const (
	// maxControlLine bounds a control line (the operation and its
	// arguments, without CRLF) other than INFO.
	maxControlLine = 4096
	// maxInfoLine bounds an INFO line, whose JSON lists the cluster's URLs
	// and so grows with the cluster.
	maxInfoLine = 64 << 10
	// readBuffer is the size of the connection's read buffer; it must
	// hold the longest line the parser accepts.
	readBuffer = maxInfoLine + 2
	// defaultMaxPayload is the server's default max_payload, the limit
	// until the server's INFO says otherwise.
	defaultMaxPayload = 1 << 20
	// hardMaxPayload is the largest max_payload a server may set, so the
	// most one message may make the client allocate.
	hardMaxPayload = 64 << 20
	// payloadSlack is how far an incoming message may exceed max_payload:
	// JetStream adds headers (stream, subject, sequence, time) to a stored
	// message that may itself be max_payload long.
	payloadSlack = 64 << 10
)

// ErrProtocol is wrapped by every error about bytes a server sent that
// break the protocol; the connection is dropped after one.
var ErrProtocol = errors.New("nats: protocol error")

// opKind is a server operation.
type opKind int

// The operations a server sends.
const (
	opInfo opKind = iota + 1
	opMsg
	opPing
	opPong
	opOK
	opErr
)

// frame is one parsed server operation.
type frame struct {
	op opKind
	// sid and msg are set for MSG and HMSG. msg.Header is the raw header
	// block in raw, not parsed yet.
	sid uint64
	msg *Msg
	raw []byte
	// text is INFO's JSON or -ERR's message without its quotes.
	text string
}

// parser reads server operations from a buffered reader. It reads a
// control line only whole and bounded (maxControlLine, maxInfoLine), parses
// sizes by hand, and reads a payload only after checking its size against
// maxPayload, so no input makes it panic or allocate more than the limits.
type parser struct {
	r *bufio.Reader
	// maxPayload is the largest header block plus payload accepted, from
	// the server's INFO (payloadSlack is added on top).
	maxPayload int
}

// newParser returns a parser reading r with the default max_payload.
func newParser(r io.Reader) *parser {
	return &parser{r: bufio.NewReaderSize(r, readBuffer), maxPayload: defaultMaxPayload}
}

// protoErr returns an ErrProtocol error with the formatted detail.
func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// next reads one operation. An I/O error is returned as it is; anything
// malformed is an ErrProtocol error.
func (p *parser) next() (frame, error) {
	line, err := p.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return frame{}, protoErr("control line longer than %d bytes", maxInfoLine)
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
	name, args, _ := bytes.Cut(line, []byte(" "))
	if i := bytes.IndexByte(name, '\t'); i >= 0 {
		name, args = line[:i], line[i+1:]
	}
	if !bytes.EqualFold(name, []byte("INFO")) && len(line) > maxControlLine {
		return frame{}, protoErr("control line longer than %d bytes", maxControlLine)
	}
	switch {
	case bytes.EqualFold(name, []byte("MSG")):
		return p.msg(args, false)
	case bytes.EqualFold(name, []byte("HMSG")):
		return p.msg(args, true)
	case bytes.EqualFold(name, []byte("PING")):
		return frame{op: opPing}, nil
	case bytes.EqualFold(name, []byte("PONG")):
		return frame{op: opPong}, nil
	case bytes.EqualFold(name, []byte("+OK")):
		return frame{op: opOK}, nil
	case bytes.EqualFold(name, []byte("-ERR")):
		text := string(bytes.Trim(bytes.TrimSpace(args), "'"))
		return frame{op: opErr, text: text}, nil
	case bytes.EqualFold(name, []byte("INFO")):
		return frame{op: opInfo, text: string(bytes.TrimSpace(args))}, nil
	}
	return frame{}, protoErr("unknown operation %q", truncate(name, 16))
}

// msg parses the arguments of MSG (subject sid [reply] size) or HMSG
// (subject sid [reply] header-size total-size) and reads the payload.
func (p *parser) msg(args []byte, hdr bool) (frame, error) {
	var a [5][]byte
	n := splitArgs(args, a[:])
	min := 3
	if hdr {
		min = 4
	}
	if n < min || n > min+1 {
		return frame{}, protoErr("bad MSG arguments %q", truncate(args, 64))
	}
	sid, err := parseSize(a[1], 19)
	if err != nil {
		return frame{}, protoErr("bad sid: %v", err)
	}
	m := &Msg{Subject: string(a[0])}
	if n == min+1 {
		m.Reply = string(a[2])
	}
	hsize, total := 0, 0
	if total, err = parseSize(a[n-1], 10); err != nil {
		return frame{}, protoErr("bad size: %v", err)
	}
	if hdr {
		if hsize, err = parseSize(a[n-2], 10); err != nil {
			return frame{}, protoErr("bad header size: %v", err)
		}
		if hsize > total {
			return frame{}, protoErr("header size %d over total size %d", hsize, total)
		}
	}
	if total > p.maxPayload+payloadSlack || total > hardMaxPayload+payloadSlack {
		return frame{}, protoErr("message of %d bytes over max_payload %d", total, p.maxPayload)
	}
	buf := make([]byte, total+2)
	if _, err := io.ReadFull(p.r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	if buf[total] != '\r' || buf[total+1] != '\n' {
		return frame{}, protoErr("payload not followed by CRLF")
	}
	f := frame{op: opMsg, sid: uint64(sid), msg: m}
	if hdr {
		f.raw = buf[:hsize:hsize]
	}
	m.Data = buf[hsize:total:total]
	return f, nil
}

// splitArgs splits b at runs of spaces and tabs into a, returning how many
// arguments there are (counting any beyond len(a)).
func splitArgs(b []byte, a [][]byte) int {
	n := 0
	for i := 0; i < len(b); {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		start := i
		for i < len(b) && b[i] != ' ' && b[i] != '\t' {
			i++
		}
		if i > start {
			if n < len(a) {
				a[n] = b[start:i]
			}
			n++
		}
	}
	return n
}

// parseSize parses a non-negative decimal number of at most maxDigits
// digits (so it cannot overflow), with no sign or other characters.
func parseSize(b []byte, maxDigits int) (int, error) {
	if len(b) == 0 || len(b) > maxDigits {
		return 0, fmt.Errorf("%q is not a number of 1 to %d digits", truncate(b, 24), maxDigits)
	}
	n := uint64(0)
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a number", truncate(b, 24))
		}
		n = n*10 + uint64(c-'0')
	}
	if n > 1<<62 {
		return 0, fmt.Errorf("%q is too large", truncate(b, 24))
	}
	return int(n), nil
}

// truncate returns at most n bytes of b, for error messages.
func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
