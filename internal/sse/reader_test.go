package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// msg builds an expected Block with data.
func msg(typ, id, data string) Block {
	return Block{Event: Event{Type: typ, ID: id, Data: []byte(data)}, HasData: true}
}

// readAll parses a whole stream and returns its blocks, the reader and the
// error that ended it.
func readAll(src io.Reader) ([]Block, *Reader, error) {
	r := NewReader(src)
	var out []Block
	for {
		b, err := r.Next()
		if err != nil {
			return out, r, err
		}
		out = append(out, b)
	}
}

// TestReader checks the parser against the examples of the WHATWG
// server-sent events section and the edge cases of its algorithm, reading
// each stream whole and one byte per read (so that every line end and the
// BOM are split across reads).
func TestReader(t *testing.T) {
	withID := func(b Block) Block { b.HasID = true; return b }
	tests := []struct {
		name   string
		in     string
		want   []Block
		retry  time.Duration
		lastID string
	}{
		{
			name: "spec: stock ticker, data lines joined",
			in:   "data: YHOO\ndata: +2\ndata: 10\n\n",
			want: []Block{msg("message", "", "YHOO\n+2\n10")},
		},
		{
			name: "spec: comment, id set then cleared, two spaces keep one",
			in:   ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
			want: []Block{
				{Event: Event{Type: "message"}, Comments: []string{"test stream"}},
				withID(msg("message", "1", "first event")),
				withID(msg("message", "", "second event")),
				msg("message", "", " third event"),
			},
		},
		{
			name: "spec: empty data dispatches, unterminated block is dropped",
			in:   "data\n\ndata\ndata\n\ndata:",
			want: []Block{msg("message", "", ""), msg("message", "", "\n")},
		},
		{
			name: "spec: one space after the colon is optional",
			in:   "data:test\n\ndata: test\n\n",
			want: []Block{msg("message", "", "test"), msg("message", "", "test")},
		},
		{
			name: "server preamble, heartbeat, message and reset",
			in:   "id: 17-0\nretry: 1000\n\n: ping\n\nid: 17-5\ndata: {}\n\nevent: reset\nid: 17-5\ndata: {\"reason\":\"expired\"}\n\n",
			want: []Block{
				{Event: Event{Type: "message", ID: "17-0", Retry: time.Second}, HasID: true},
				{Event: Event{Type: "message", ID: "17-0"}, Comments: []string{"ping"}},
				withID(msg("message", "17-5", "{}")),
				withID(msg("reset", "17-5", `{"reason":"expired"}`)),
			},
			retry:  time.Second,
			lastID: "17-5",
		},
		{
			name:   "CRLF line ends",
			in:     "id: 9\r\ndata: x\r\n\r\nid: 10\r\ndata: y\r\n\r\n",
			want:   []Block{withID(msg("message", "9", "x")), withID(msg("message", "10", "y"))},
			lastID: "10",
		},
		{
			name:   "CR line ends",
			in:     "id: 9\rdata: x\r\rdata: y\r\r",
			want:   []Block{withID(msg("message", "9", "x")), msg("message", "9", "y")},
			lastID: "9",
		},
		{
			name: "mixed line ends, CR LF pair is one line end",
			in:   "data: a\r\ndata: b\rdata: c\n\r\n",
			want: []Block{msg("message", "", "a\nb\nc")},
		},
		{
			name: "LF CR is two line ends",
			in:   "data: a\n\rdata: b\n\n",
			want: []Block{msg("message", "", "a"), msg("message", "", "b")},
		},
		{
			name: "field without colon has an empty value",
			in:   "data\ndata\n\nevent\ndata: x\n\n",
			want: []Block{msg("message", "", "\n"), msg("message", "", "x")},
		},
		{
			name: "only one leading space is stripped, tabs are kept",
			in:   "data:  two\n\ndata:\tt\n\n",
			want: []Block{msg("message", "", " two"), msg("message", "", "\tt")},
		},
		{
			name: "colon in value kept, comment with no text",
			in:   ":\ndata: a: b\n\n",
			want: []Block{{Event: Event{Type: "message", Data: []byte("a: b")}, HasData: true, Comments: []string{""}}},
		},
		{
			name: "event type without data is not dispatched and does not carry over",
			in:   "event: foo\n\ndata: x\n\n",
			want: []Block{{Event: Event{Type: "foo"}}, msg("message", "", "x")},
		},
		{
			name:   "id with NUL is ignored, empty id clears",
			in:     "id: 1\n\nid: a\x00b\ndata: x\n\nid\ndata: z\n\n",
			want:   []Block{withID(Block{Event: Event{Type: "message", ID: "1"}}), msg("message", "1", "x"), withID(msg("message", "", "z"))},
			lastID: "",
		},
		{
			name:  "retry only when all digits, unknown and miscased fields ignored",
			in:    "retry: 12a\nretry: -5\nretry: \nfoo: bar\nretry: 250\nData: no\ndata: yes\n\nretry: 1 \n\n",
			want:  []Block{{Event: Event{Type: "message", Retry: 250 * time.Millisecond, Data: []byte("yes")}, HasData: true}, {Event: Event{Type: "message"}}},
			retry: 250 * time.Millisecond,
		},
		{
			name:  "retry too large for a duration is ignored",
			in:    "retry: 99999999999999999999\n\n",
			want:  []Block{{Event: Event{Type: "message"}}},
			retry: 0,
		},
		{
			name:   "unterminated block is dropped with its id",
			in:     "id: 1\ndata: a\n\nid: 2\ndata: b\n",
			want:   []Block{withID(msg("message", "1", "a"))},
			lastID: "1",
		},
		{
			name: "blank lines ending nothing are skipped",
			in:   "\n\r\n\rdata: a\n\n\n\n",
			want: []Block{msg("message", "", "a")},
		},
		{
			name: "leading BOM stripped once",
			in:   "\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n",
			want: []Block{msg("message", "", "a"), {Event: Event{Type: "message"}}},
		},
		{
			name: "partial BOM is content",
			in:   "\xEF\xBBdata: a\n\ndata: b\n\n",
			want: []Block{{Event: Event{Type: "message"}}, msg("message", "", "b")},
		},
		{
			name: "stream of only a partial BOM",
			in:   "\xEF\xBB",
		},
		{
			name: "NUL and non-UTF-8 bytes in data kept",
			in:   "data: a\x00\xff\n\n",
			want: []Block{msg("message", "", "a\x00\xff")},
		},
		{
			name: "long line grows the buffer",
			in:   "data: " + strings.Repeat("x", 3*readBuffer) + "\n\n",
			want: []Block{msg("message", "", strings.Repeat("x", 3*readBuffer))},
		},
	}
	for _, tt := range tests {
		for _, mode := range []string{"whole", "one byte per read"} {
			t.Run(tt.name+"/"+mode, func(t *testing.T) {
				var src io.Reader = strings.NewReader(tt.in)
				if mode != "whole" {
					src = iotest.OneByteReader(src)
				}
				got, r, err := readAll(src)
				if err != io.EOF {
					t.Errorf("end: %v, want io.EOF", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("blocks of %q:\n got %s\nwant %s", tt.in, fmtBlocks(got), fmtBlocks(tt.want))
				}
				if r.Retry() != tt.retry || r.LastEventID() != tt.lastID {
					t.Errorf("retry %v, last id %q; want %v, %q", r.Retry(), r.LastEventID(), tt.retry, tt.lastID)
				}
			})
		}
	}
}

// fmtBlocks formats blocks for failure messages.
func fmtBlocks(bs []Block) string {
	var b strings.Builder
	for _, x := range bs {
		fmt.Fprintf(&b, "\n  {type=%q id=%q(%t) retry=%v data=%t:%q comments=%q}", x.Type, x.ID, x.HasID, x.Retry, x.HasData, x.Data, x.Comments)
	}
	return b.String()
}

// TestReaderNextEvent checks that NextEvent skips what a browser does not
// dispatch and keeps the last event id.
func TestReaderNextEvent(t *testing.T) {
	r := NewReader(strings.NewReader("id: 3-0\nretry: 1000\n\n: ping\n\ndata: a\n\nevent: x\n\nevent: reset\ndata: b\n\n"))
	var got []string
	for {
		ev, err := r.NextEvent()
		if err != nil {
			break
		}
		got = append(got, fmt.Sprintf("%s/%s/%s", ev.Type, ev.ID, ev.Data))
	}
	if want := []string{"message/3-0/a", "reset/3-0/b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// TestReaderErrors checks that the source's error comes back unwrapped,
// after the complete blocks before it, and that an endless line is refused.
func TestReaderErrors(t *testing.T) {
	boom := errors.New("boom")
	got, _, err := readAll(io.MultiReader(strings.NewReader("data: a\n\ndata: b"), iotest.ErrReader(boom)))
	if err != boom || len(got) != 1 || string(got[0].Data) != "a" {
		t.Errorf("blocks %s, error %v; want one block and %v", fmtBlocks(got), err, boom)
	}
	if _, _, err := readAll(io.LimitReader(endless{}, MaxLine+2*readBuffer)); err != ErrLineTooLong {
		t.Errorf("endless line: %v, want ErrLineTooLong", err)
	}
}

// endless is a stream of 'x' that never ends a line.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	n := copy(p, xs)
	return n, nil
}

// xs is what endless reads.
var xs = bytes.Repeat([]byte("x"), 1<<16)

// FuzzRoundTrip encodes an event and parses it back: the reader must
// return exactly one block with what the encoder was given (field
// characters the encoder strips removed, line ends in data made LF), and
// nothing for an event with no fields.
func FuzzRoundTrip(f *testing.F) {
	f.Add("", "1-1", int64(0), []byte(`{"a":1}`))
	f.Add("reset", "7-0", int64(1500*time.Millisecond), []byte("x\r\ny\rz\n"))
	f.Add("a\rb", "1\x00\n2", int64(time.Second), []byte(""))
	f.Add("", "", int64(0), []byte("\n\n: c\n\xEF\xBB\xBFdata: x"))
	f.Add(" t", " i", int64(1), []byte(" d"))
	f.Fuzz(func(t *testing.T, typ, id string, retry int64, data []byte) {
		ev := Event{Type: typ, ID: id, Retry: time.Duration(retry), Data: data}
		wire := AppendEvent(nil, ev)
		got, r, err := readAll(bytes.NewReader(wire))
		if err != io.EOF {
			t.Fatalf("parse %q: %v", wire, err)
		}
		if typ == "" && id == "" && retry <= 0 && len(data) == 0 {
			if len(got) != 0 {
				t.Fatalf("parse %q: %s, want nothing", wire, fmtBlocks(got))
			}
			return
		}
		if len(got) != 1 {
			t.Fatalf("parse %q: %s, want one block", wire, fmtBlocks(got))
		}
		b := got[0]
		wantType := fieldSanitizer.Replace(typ)
		if wantType == "" {
			wantType = "message"
		}
		wantID := fieldSanitizer.Replace(id)
		var wantRetry time.Duration
		if retry > 0 {
			wantRetry = time.Duration(ev.Retry.Milliseconds()) * time.Millisecond
		}
		if b.Type != wantType || b.ID != wantID || b.HasID != (id != "") || b.Retry != wantRetry || r.Retry() != wantRetry {
			t.Errorf("parse %q: %s; want type %q, id %q, retry %v", wire, fmtBlocks(got), wantType, wantID, wantRetry)
		}
		if b.HasData != (len(data) > 0) || string(b.Data) != newlines.Replace(string(data)) {
			t.Errorf("parse %q: data %t %q, want %q", wire, b.HasData, b.Data, newlines.Replace(string(data)))
		}
	})
}

// FuzzReaderSplits parses arbitrary bytes whole and one byte per read: the
// blocks, the last event id and the retry must not depend on how the
// stream arrives.
func FuzzReaderSplits(f *testing.F) {
	f.Add([]byte("\xEF\xBB\xBFid: 1\r\ndata: a\r\rdata\n: c\n\nretry: 10\n\n"))
	f.Add([]byte("data: a\r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		whole, r1, err1 := readAll(bytes.NewReader(in))
		split, r2, err2 := readAll(iotest.OneByteReader(bytes.NewReader(in)))
		if err1 != io.EOF || err2 != io.EOF {
			t.Fatalf("errors %v, %v", err1, err2)
		}
		if !reflect.DeepEqual(whole, split) || r1.LastEventID() != r2.LastEventID() || r1.Retry() != r2.Retry() {
			t.Errorf("%q: whole %s\n split %s", in, fmtBlocks(whole), fmtBlocks(split))
		}
	})
}
