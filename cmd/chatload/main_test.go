package main

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// gotEvent is a copy of an sseEvent for comparison.
type gotEvent struct {
	typ, data, id string
	empty         bool
}

func (e gotEvent) String() string {
	if e.empty {
		return fmt.Sprintf("(empty id=%q)", e.id)
	}
	return fmt.Sprintf("(type=%q data=%q id=%q)", e.typ, e.data, e.id)
}

// collectParser returns a parser that appends copies of its events to out.
func collectParser(out *[]gotEvent) *sseParser {
	return newSSEParser(func(ev *sseEvent) {
		*out = append(*out, gotEvent{string(ev.Type), string(ev.Data), string(ev.ID), ev.Empty})
	})
}

// ev and empty build expected events.
func ev(typ, data, id string) gotEvent { return gotEvent{typ: typ, data: data, id: id} }
func empty(id string) gotEvent         { return gotEvent{id: id, empty: true} }

var sseTests = []struct {
	name     string
	in       string
	want     []gotEvent
	retry    int64
	comments int64
}{
	{
		name: "server preamble and one message",
		in: "retry: 1000\nid: 17-4\n\n" +
			"id: 17-5\ndata: {\"id\":\"17-5\",\"username\":\"a\",\"content\":\"hi\",\"time\":\"t\"}\n\n",
		want:  []gotEvent{empty("17-4"), ev("", `{"id":"17-5","username":"a","content":"hi","time":"t"}`, "17-5")},
		retry: 1000,
	},
	{
		name:     "several events in one read, heartbeat comment",
		in:       "id: 1-1\ndata: a\n\n: ping\n\nid: 1-2\ndata: b\n\n",
		want:     []gotEvent{ev("", "a", "1-1"), empty("1-1"), ev("", "b", "1-2")},
		comments: 1,
	},
	{
		name: "CRLF line ends",
		in:   "id: 9\r\ndata: x\r\n\r\nid: 10\r\ndata: y\r\n\r\n",
		want: []gotEvent{ev("", "x", "9"), ev("", "y", "10")},
	},
	{
		name: "CR line ends",
		in:   "id: 9\rdata: x\r\rdata: y\r\r",
		want: []gotEvent{ev("", "x", "9"), ev("", "y", "9")},
	},
	{
		name: "mixed line ends",
		in:   "data: a\r\ndata: b\rdata: c\n\r\n",
		want: []gotEvent{ev("", "a\nb\nc", "")},
	},
	{
		name: "multi-line data",
		in:   "data: line1\ndata: line2\ndata:\ndata\n\n",
		want: []gotEvent{ev("", "line1\nline2\n\n", "")},
	},
	{
		name: "reset event",
		in:   "event: reset\nid: 5-0\ndata: {\"reason\":\"expired\"}\n\n",
		want: []gotEvent{ev("reset", `{"reason":"expired"}`, "5-0")},
	},
	{
		name: "only one leading space is stripped, no space is fine",
		in:   "data:  two\n\ndata:none\n\n",
		want: []gotEvent{ev("", " two", ""), ev("", "none", "")},
	},
	{
		name: "empty data field still dispatches",
		in:   "data\n\ndata:\n\n",
		want: []gotEvent{ev("", "", ""), ev("", "", "")},
	},
	{
		name: "event type without data is not dispatched and is reset",
		in:   "event: foo\n\ndata: x\n\n",
		want: []gotEvent{empty(""), ev("", "x", "")},
	},
	{
		name: "id with NUL is ignored, empty id clears",
		in:   "id: a\x00b\ndata: x\n\nid: 7\ndata: y\n\nid\ndata: z\n\n",
		want: []gotEvent{ev("", "x", ""), ev("", "y", "7"), ev("", "z", "")},
	},
	{
		name:  "bad retry ignored, unknown fields ignored",
		in:    "retry: 12a\nfoo: bar\nretry: 250\nData: no\ndata: yes\n\n",
		want:  []gotEvent{ev("", "yes", "")},
		retry: 250,
	},
	{
		name: "unterminated event is not dispatched",
		in:   "data: a\n\ndata: b\n",
		want: []gotEvent{ev("", "a", "")},
	},
	{
		name: "leading BOM stripped once",
		in:   "\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n",
		want: []gotEvent{ev("", "a", ""), empty("")},
	},
	{
		name: "partial BOM prefix is content",
		in:   "\xEFdata: a\n\ndata: b\n\n",
		want: []gotEvent{empty(""), ev("", "b", "")},
	},
	{
		name:     "colon in value and comment-only stream",
		in:       ":hello\ndata: a:b: c\n\n",
		want:     []gotEvent{ev("", "a:b: c", "")},
		comments: 1,
	},
}

// splits returns ways to cut in into feed calls: whole, byte by byte, every
// two-way cut and a few random multi-way cuts.
func splits(in string) [][]string {
	out := [][]string{{in}}
	var bytewise []string
	for i := range len(in) {
		bytewise = append(bytewise, in[i:i+1])
	}
	out = append(out, bytewise)
	for i := 1; i < len(in); i++ {
		out = append(out, []string{in[:i], in[i:]})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		var parts []string
		rest := in
		for len(rest) > 0 {
			n := 1 + rng.IntN(min(len(rest), 7))
			parts, rest = append(parts, rest[:n]), rest[n:]
		}
		out = append(out, parts)
	}
	return out
}

func TestSSEParser(t *testing.T) {
	for _, tt := range sseTests {
		t.Run(tt.name, func(t *testing.T) {
			for _, parts := range splits(tt.in) {
				var got []gotEvent
				p := collectParser(&got)
				for _, part := range parts {
					if err := p.feed([]byte(part)); err != nil {
						t.Fatalf("feed(%q) error: %v", part, err)
					}
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("parse %q split as %q:\n got %v\nwant %v", tt.in, parts, got, tt.want)
				}
				wantRetry := tt.retry
				if wantRetry == 0 {
					wantRetry = -1
				}
				if p.retry != wantRetry || p.comments != tt.comments {
					t.Fatalf("parse %q: retry=%d comments=%d, want %d, %d", tt.in, p.retry, p.comments, wantRetry, tt.comments)
				}
			}
		})
	}
}

func TestSSEParserResetKeepsLastID(t *testing.T) {
	var got []gotEvent
	p := collectParser(&got)
	p.feed([]byte("id: 3-9\ndata: a\n\ndata: partial"))
	p.reset()
	p.feed([]byte("data: b\n\n"))
	want := []gotEvent{ev("", "a", "3-9"), ev("", "b", "3-9")}
	if !slices.Equal(got, want) {
		t.Errorf("after reset: got %v, want %v", got, want)
	}
}

// chunk encodes s as an HTTP/1.1 chunked body with chunks of at most size
// bytes, a chunk extension and a trailer.
func chunk(s string, size int) string {
	var b strings.Builder
	for len(s) > 0 {
		n := min(size, len(s))
		fmt.Fprintf(&b, "%X;ext=1\r\n%s\r\n", n, s[:n])
		s = s[n:]
	}
	b.WriteString("0\r\nX-Trailer: 1\r\n\r\n")
	return b.String()
}

func TestChunkedDecoder(t *testing.T) {
	for _, tt := range sseTests {
		for _, size := range []int{1, 3, 16, 4096} {
			body := chunk(tt.in, size)
			for _, parts := range splits(body) {
				var got []gotEvent
				p := collectParser(&got)
				var c chunkedDecoder
				for _, part := range parts {
					if err := c.feed([]byte(part), p); err != nil {
						t.Fatalf("%s: chunked feed(%q): %v", tt.name, part, err)
					}
				}
				if !slices.Equal(got, tt.want) || !c.done() {
					t.Fatalf("%s: chunked (size %d) split as %q: got %v done=%v, want %v", tt.name, size, parts, got, c.done(), tt.want)
				}
			}
		}
	}
}

func TestChunkedDecoderErrors(t *testing.T) {
	for _, in := range []string{"zz\r\n", "\r\n", "3\r\nabcX", ";x\r\n"} {
		var c chunkedDecoder
		p := newSSEParser(func(*sseEvent) {})
		if err := c.feed([]byte(in), p); err == nil {
			t.Errorf("chunked feed(%q) = nil error, want one", in)
		}
	}
}

func TestHistIndexBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	values := []uint64{0, 1, 127, 128, 255, 256, 257, 511, 512, 1000, 1 << 20, histMaxVal}
	for range 10000 {
		values = append(values, rng.Uint64N(1<<uint(rng.IntN(37)+1)))
	}
	prev := -1
	for _, v := range slices.Sorted(slices.Values(values)) {
		i := histIndex(v)
		lo, hi := histBounds(i)
		if v < lo || v > hi || i < prev || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d with bounds [%d, %d] (previous index %d)", v, i, lo, hi, prev)
		}
		if v >= 2*histSub && float64(hi-lo+1)/float64(lo) > 1.0/histSub+1e-12 {
			t.Fatalf("bucket %d [%d, %d] wider than 1/%d", i, lo, hi, histSub)
		}
		prev = i
	}
}

func TestHistQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values func() []uint64
	}{
		{"exact small values", func() []uint64 {
			var v []uint64
			for i := range 200 {
				v = append(v, uint64(i+1))
			}
			return v
		}},
		{"uniform 1..100000", func() []uint64 {
			var v []uint64
			for i := range 100000 {
				v = append(v, uint64(i+1))
			}
			return v
		}},
		{"log-normal", func() []uint64 {
			rng := rand.New(rand.NewPCG(5, 6))
			var v []uint64
			for range 50000 {
				v = append(v, uint64(math.Exp(rng.NormFloat64()*1.5+8)))
			}
			return v
		}},
		{"one value", func() []uint64 { return []uint64{1234567} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			values := tt.values()
			sh := newShardedHist(4)
			for i, v := range values {
				sh.shard(i).add(v)
			}
			h := sh.merged()
			sorted := slices.Sorted(slices.Values(values))
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
				rank := int(math.Ceil(q * float64(len(sorted))))
				want := sorted[max(rank, 1)-1]
				got := h.quantile(q)
				tol := math.Max(float64(want)/histSub, 0.5)
				if math.Abs(float64(got)-float64(want)) > tol {
					t.Errorf("quantile(%v) = %d, want %d ± %.1f", q, got, want, tol)
				}
			}
			if got := h.max.Load(); got != sorted[len(sorted)-1] {
				t.Errorf("max = %d, want %d", got, sorted[len(sorted)-1])
			}
			if got := h.total.Load(); got != uint64(len(values)) {
				t.Errorf("total = %d, want %d", got, len(values))
			}
		})
	}
}

func TestParseRFC3339Nano(t *testing.T) {
	for _, in := range []string{
		"2026-11-25T18:20:01.123456789Z",
		"2026-11-25T18:20:01.1Z",
		"2026-11-25T18:20:01Z",
		"2024-02-29T23:59:59.999999Z",
		"1970-01-01T00:00:00Z",
		"2000-03-01T00:00:00.5+02:00",
		"1999-12-31T23:00:00-05:30",
		"2026-11-25 18:20:01Z", // not RFC 3339: both must fail
	} {
		want, werr := time.Parse(time.RFC3339Nano, in)
		got, ok := parseRFC3339Nano([]byte(in))
		if (werr == nil) != ok || (ok && got != want.UnixNano()) {
			t.Errorf("parseRFC3339Nano(%q) = %d, %v; want %d (err %v)", in, got, ok, want.UnixNano(), werr)
		}
	}
}

func TestScanHelpers(t *testing.T) {
	data := []byte(`{"id":"1764094637123-42","username":"u\"x","content":"load r1 99 7","time":"2026-11-25T18:20:01Z"}`)
	tests := []struct {
		key, want string
		ok        bool
	}{
		{`"id":"`, "1764094637123-42", true},
		{`"username":"`, `u\"x`, true},
		{`"time":"`, "2026-11-25T18:20:01Z", true},
		{`"missing":"`, "", false},
	}
	for _, tt := range tests {
		got, ok := jsonStringField(data, []byte(tt.key))
		if string(got) != tt.want || ok != tt.ok {
			t.Errorf("jsonStringField(%s) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
	if id, ok := parseMsgID([]byte("1764094637123-42")); !ok || id != (msgID{1764094637123, 42}) {
		t.Errorf("parseMsgID = %v, %v", id, ok)
	}
	for _, bad := range []string{"", "-1", "1-", "1-x", "12"} {
		if _, ok := parseMsgID([]byte(bad)); ok {
			t.Errorf("parseMsgID(%q) ok, want failure", bad)
		}
	}
	if !(msgID{1, 9}).less(msgID{1, 10}) || !(msgID{1, 99}).less(msgID{2, 1}) || (msgID{2, 1}).less(msgID{2, 1}) {
		t.Error("msgID.less orders wrongly")
	}
}

func TestReadResponseHead(t *testing.T) {
	tests := []struct {
		in   string
		want responseHead
	}{
		{"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", responseHead{status: 200, contentLength: -1}},
		{"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n", responseHead{status: 200, chunked: true, contentLength: -1}},
		{"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 20\r\n\r\n", responseHead{status: 503, contentLength: 20, retryAfter: 2 * time.Second}},
		{"HTTP/1.0 429 Too Many\nRetry-After:1\n\n", responseHead{status: 429, contentLength: -1, retryAfter: time.Second}},
	}
	for _, tt := range tests {
		got, err := readResponseHead(bufio.NewReader(strings.NewReader(tt.in)))
		if err != nil || got != tt.want {
			t.Errorf("readResponseHead(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	if _, err := readResponseHead(bufio.NewReader(strings.NewReader("SSH-2.0\r\n\r\n"))); err == nil {
		t.Error("readResponseHead(garbage) = nil error")
	}
}

// TestSubscriberAccounting feeds a stream to a subscriber and checks the
// duplicate, order and latency bookkeeping.
func TestSubscriberAccounting(t *testing.T) {
	r := &loadRun{runTag: "rT", maxMsgs: 8, lat: newShardedHist(1), srvLat: newShardedHist(1)}
	r.marker = []byte(`"content":"load rT `)
	s := &subscriber{r: r, lat: r.lat.shard(0), srvLat: r.srvLat.shard(0)}
	s.parser = newSSEParser(s.onEvent)
	msg := func(seq, n int) string {
		return fmt.Sprintf("id: 5-%d\ndata: {\"id\":\"5-%d\",\"username\":\"u\",\"content\":\"load rT 1000000 %d\",\"time\":\"1970-01-01T00:00:00.001Z\"}\n\n", seq, seq, n)
	}
	stream := "retry: 1000\nid: 5-0\n\n" +
		"id: 5-1\ndata: {\"id\":\"5-1\",\"username\":\"u\",\"content\":\"other\",\"time\":\"x\"}\n\n" +
		msg(2, 0) + msg(3, 1) + msg(3, 1) + msg(5, 3) + msg(4, 2) +
		"event: reset\nid: 5-0\ndata: {}\n\n" +
		"id: 5-6\ndata: {\"id\":\"5-7\",\"content\":\"load rT 1 4\"}\n\n"
	s.now = 3_000_000 // 2 ms after the send time 1 ms
	if err := s.parser.feed([]byte(stream)); err != nil {
		t.Fatal(err)
	}
	// A second connection whose preamble says 5-6 may not replay 5-6.
	s.parser.reset()
	s.preamble = false
	if err := s.parser.feed([]byte("id: 5-6\n\n" + msg(6, 5) + msg(7, 6))); err != nil {
		t.Fatal(err)
	}
	if string(s.preambleID) != "5-0" || s.readyAt != 3_000_000 {
		t.Errorf("preamble id %q at %d, want 5-0 at 3000000", s.preambleID, s.readyAt)
	}
	checks := []struct {
		name      string
		got, want int64
	}{
		{"delivered", s.delivered.Load(), 7},
		{"dups", s.dups, 1},
		{"outOfOrder", s.outOfOrder, 2}, // 5-4 after 5-5, and 5-6 again after 5-6
		{"foreign", s.foreign, 1},
		{"resets", s.resets, 1},
		{"idMismatch", s.idMismatch, 1},
		{"events", s.events, 9},
		{"beforePre", s.beforePre, 1}, // 5-6 on the connection whose preamble is 5-6
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if got := r.lat.merged().quantile(0.5); got < 2000 || got > 2020 {
		t.Errorf("latency p50 = %d µs, want 2000 within 1%%", got)
	}
	if got := r.srvLat.merged().quantile(0.5); got < 2000 || got > 2020 {
		t.Errorf("server latency p50 = %d µs, want 2000 within 1%%", got)
	}
}
