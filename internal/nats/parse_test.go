package nats

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// splitReader returns its data in two reads, split at n.
type splitReader struct {
	data []byte
	n    int
	done int
}

// Read returns the bytes up to the split, then the rest.
func (r *splitReader) Read(p []byte) (int, error) {
	if r.done >= len(r.data) {
		return 0, io.EOF
	}
	end := len(r.data)
	if r.done < r.n {
		end = r.n
	}
	k := copy(p, r.data[r.done:end])
	r.done += k
	return k, nil
}

// parseAll parses a stream until it ends and returns its frames and the
// error that ended it (nil for a clean EOF).
func parseAll(r io.Reader, maxPayload int) ([]frame, error) {
	p := newParser(r)
	p.maxPayload = maxPayload
	var out []frame
	for {
		f, err := p.next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
}

// serverStream holds one of every operation a server sends, with the
// payload edge cases: CRLF inside, zero length, a header block with a
// status, lowercase operation names and tabs between arguments.
const serverStream = "INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n" +
	"MSG foo.bar 9 5\r\nhello\r\n" +
	"MSG foo.bar 9 _INBOX.r.1 4\r\na\r\nb\r\n" +
	"MSG empty 1 0\r\n\r\n" +
	"HMSG h.s 2 24 29\r\nNATS/1.0\r\nA: 1\r\nA: 2\r\n\r\nworld\r\n" +
	"HMSG _INBOX.x.2 3 16 16\r\nNATS/1.0 503\r\n\r\n\r\n" +
	"PING\r\nPONG\r\n+OK\r\n-ERR 'Authorization Violation'\r\n" +
	"msg\tlow\t4\t2\r\nhi\r\n" +
	"hmsg hb 5 _INBOX.fc 54 54\r\nNATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 7\r\n\r\n\r\n"

// wantFrames are the frames of serverStream.
func wantFrames() []frame {
	msg := func(sid uint64, subj, reply, data string, raw string) frame {
		f := frame{op: opMsg, sid: sid, msg: &Msg{Subject: subj, Reply: reply, Data: []byte(data)}}
		if raw != "" {
			f.raw = []byte(raw)
		}
		return f
	}
	return []frame{
		{op: opInfo, text: `{"server_id":"x","max_payload":1048576}`},
		msg(9, "foo.bar", "", "hello", ""),
		msg(9, "foo.bar", "_INBOX.r.1", "a\r\nb", ""),
		msg(1, "empty", "", "", ""),
		msg(2, "h.s", "", "world", "NATS/1.0\r\nA: 1\r\nA: 2\r\n\r\n"),
		msg(3, "_INBOX.x.2", "", "", "NATS/1.0 503\r\n\r\n"),
		{op: opPing}, {op: opPong}, {op: opOK},
		{op: opErr, text: "Authorization Violation"},
		msg(4, "low", "", "hi", ""),
		msg(5, "hb", "_INBOX.fc", "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 7\r\n\r\n"),
	}
}

// TestParseSplitAtEveryByte parses the same stream whole, one byte per
// read, and split in two at every byte boundary, and wants the same frames
// each time.
func TestParseSplitAtEveryByte(t *testing.T) {
	want := wantFrames()
	check := func(name string, r io.Reader) {
		t.Helper()
		got, err := parseAll(r, defaultMaxPayload)
		if err != nil {
			t.Fatalf("%s: parse error %v after %d frames", name, err, len(got))
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d frames, want %d", name, len(got), len(want))
		}
		for i := range want {
			if !framesEqual(got[i], want[i]) {
				t.Errorf("%s: frame %d = %+v (msg %+v), want %+v (msg %+v)", name, i, got[i], got[i].msg, want[i], want[i].msg)
			}
		}
	}
	check("whole", strings.NewReader(serverStream))
	check("one byte per read", iotest.OneByteReader(strings.NewReader(serverStream)))
	for n := 1; n < len(serverStream); n++ {
		check("split", &splitReader{data: []byte(serverStream), n: n})
	}
}

// framesEqual compares frames, treating nil and empty byte slices alike.
func framesEqual(a, b frame) bool {
	if a.op != b.op || a.sid != b.sid || a.text != b.text || !bytes.Equal(a.raw, b.raw) || (a.raw == nil) != (b.raw == nil) {
		return false
	}
	if (a.msg == nil) != (b.msg == nil) {
		return false
	}
	if a.msg == nil {
		return true
	}
	return a.msg.Subject == b.msg.Subject && a.msg.Reply == b.msg.Reply && bytes.Equal(a.msg.Data, b.msg.Data)
}

// TestParseRejects feeds malformed and hostile input and wants an
// ErrProtocol error (or an unexpected EOF for a cut stream), never a panic
// or a frame.
func TestParseRejects(t *testing.T) {
	long := "MSG " + strings.Repeat("a", maxControlLine) + " 1 1\r\nx\r\n"
	tests := []struct {
		name, in string
		eof      bool
	}{
		{"unknown operation", "HELLO world\r\n", false},
		{"negative size", "MSG a 1 -5\r\n", false},
		{"non-numeric size", "MSG a 1 abc\r\nabc\r\n", false},
		{"size with sign", "MSG a 1 +3\r\nabc\r\n", false},
		{"huge size", "MSG a 1 99999999999999999999\r\n", false},
		{"size over max_payload", "MSG a 1 70000\r\n", false},
		{"size over max_payload in HMSG", "HMSG a 1 12 70000\r\n", false},
		{"header size over total", "HMSG a 1 20 10\r\n0123456789\r\n", false},
		{"negative header size", "HMSG a 1 -1 10\r\n", false},
		{"bad sid", "MSG a x1 1\r\nx\r\n", false},
		{"too few arguments", "MSG a 1\r\n", false},
		{"too many arguments", "MSG a 1 r x 1\r\nx\r\n", false},
		{"HMSG too few arguments", "HMSG a 1 12\r\n", false},
		{"payload longer than its size", "MSG a 1 3\r\nabcd\r\n", false},
		{"payload without CRLF", "MSG a 1 3\r\nabcXY", false},
		{"control line too long", long, false},
		{"INFO line beyond the buffer", "INFO " + strings.Repeat("x", maxInfoLine+10) + "\r\n", false},
		{"cut payload", "MSG a 1 10\r\nabc", true},
		{"cut control line", "MSG a 1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAll(strings.NewReader(tt.in), 1024)
			if len(got) != 0 {
				t.Errorf("parse(%q) gave frames %+v", tt.in, got)
			}
			if tt.eof {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("parse(%q) error = %v, want unexpected EOF", tt.in, err)
				}
				return
			}
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("parse(%q) error = %v, want ErrProtocol", tt.in, err)
			}
		})
	}
}

// TestParseMaxPayloadSlack accepts a message up to max_payload plus the
// slack JetStream's added headers need, and not one byte more.
func TestParseMaxPayloadSlack(t *testing.T) {
	mk := func(n int) string {
		return "MSG a 1 " + strconv.Itoa(n) + "\r\n" + strings.Repeat("x", n) + "\r\n"
	}
	if got, err := parseAll(strings.NewReader(mk(1024+payloadSlack)), 1024); err != nil || len(got) != 1 {
		t.Errorf("message of max_payload+slack: frames %d, error %v; want 1, nil", len(got), err)
	}
	if _, err := parseAll(strings.NewReader(mk(1024+payloadSlack+1)), 1024); !errors.Is(err, ErrProtocol) {
		t.Errorf("message of max_payload+slack+1: error %v, want ErrProtocol", err)
	}
}

// TestParseHeader checks header blocks: status lines, repeated keys, case
// kept, values trimmed, and the malformed blocks that are refused.
func TestParseHeader(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   Header
		status int
		desc   string
		bad    bool
	}{
		{name: "empty", in: "NATS/1.0\r\n\r\n"},
		{name: "keys", in: "NATS/1.0\r\nNats-Msg-Id: abc\r\nX: 1\r\nX:2\r\nx: low\r\n\r\n",
			want: Header{"Nats-Msg-Id": {"abc"}, "X": {"1", "2"}, "x": {"low"}}},
		{name: "value with colon and spaces", in: "NATS/1.0\r\nA:  b: c  \r\n\r\n", want: Header{"A": {"b: c"}}},
		{name: "empty value", in: "NATS/1.0\r\nA:\r\n\r\n", want: Header{"A": {""}}},
		{name: "no responders", in: "NATS/1.0 503\r\n\r\n", status: 503},
		{name: "heartbeat", in: "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\nNats-Last-Stream: 9\r\n\r\n",
			want: Header{"Nats-Last-Consumer": {"3"}, "Nats-Last-Stream": {"9"}}, status: 100, desc: "Idle Heartbeat"},
		{name: "flow control", in: "NATS/1.0 100 FlowControl Request\r\n\r\n", status: 100, desc: "FlowControl Request"},
		{name: "no version", in: "HTTP/1.1\r\n\r\n", bad: true},
		{name: "nothing", in: "", bad: true},
		{name: "not terminated", in: "NATS/1.0\r\nA: 1\r\n", bad: true},
		{name: "LF only", in: "NATS/1.0\nA: 1\n\n", bad: true},
		{name: "line without colon", in: "NATS/1.0\r\nbroken\r\n\r\n", bad: true},
		{name: "empty key", in: "NATS/1.0\r\n: v\r\n\r\n", bad: true},
		{name: "key with space", in: "NATS/1.0\r\nA B: v\r\n\r\n", bad: true},
		{name: "status not digits", in: "NATS/1.0 5x3\r\n\r\n", bad: true},
		{name: "status too short", in: "NATS/1.0 50\r\n\r\n", bad: true},
		{name: "status glued to text", in: "NATS/1.0 503abc\r\n\r\n", bad: true},
		{name: "version glued", in: "NATS/1.01\r\n\r\n", bad: true},
		{name: "bytes after the end", in: "NATS/1.0\r\n\r\nxx", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, status, desc, err := ParseHeader([]byte(tt.in))
			if tt.bad {
				if !errors.Is(err, errBadHeader) {
					t.Errorf("ParseHeader(%q) error = %v, want a bad header error", tt.in, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(h, tt.want) || status != tt.status || desc != tt.desc {
				t.Errorf("ParseHeader(%q) = %v, %d, %q, %v; want %v, %d, %q, nil", tt.in, h, status, desc, err, tt.want, tt.status, tt.desc)
			}
		})
	}
}

// TestAppendHeader checks the exact bytes of an encoded header block (keys
// sorted, values in order) and that a key or value that would break the
// block is refused.
func TestAppendHeader(t *testing.T) {
	got, err := appendHeader(nil, Header{"Nats-Msg-Id": {"k1"}, "A": {"x", "y"}})
	want := "NATS/1.0\r\nA: x\r\nA: y\r\nNats-Msg-Id: k1\r\n\r\n"
	if err != nil || string(got) != want {
		t.Errorf("appendHeader = %q, %v; want %q", got, err, want)
	}
	if h, _, _, err := ParseHeader(got); err != nil || h.Get("A") != "x" || len(h.Values("A")) != 2 {
		t.Errorf("ParseHeader(appendHeader(…)) = %v, %v", h, err)
	}
	for _, h := range []Header{
		{"A": {"x\r\nInjected: 1"}},
		{"A": {"x\nB: 1"}},
		{"A": {"nul\x00"}},
		{"A:B": {"x"}},
		{"A B": {"x"}},
		{"": {"x"}},
		{"Ä": {"x"}},
	} {
		if b, err := appendHeader(nil, h); err == nil {
			t.Errorf("appendHeader(%q) = %q, want an error", h, b)
		}
	}
}
