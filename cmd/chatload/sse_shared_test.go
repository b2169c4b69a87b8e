package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"chat/internal/sse"
)

// TestSSEParserAgreesWithShared feeds every case of sseTests to the load
// tool's parser and to the shared internal/sse parser: both must dispatch
// the same events (type, data, last event id) and end with the same retry
// and comment count. The tool's parser also reports a dispatch for blank
// lines that end nothing, which the shared one skips, so empty dispatches
// are not compared.
func TestSSEParserAgreesWithShared(t *testing.T) {
	for _, tt := range sseTests {
		t.Run(tt.name, func(t *testing.T) {
			var mine []gotEvent
			p := collectParser(&mine)
			if err := p.feed([]byte(tt.in)); err != nil {
				t.Fatal(err)
			}
			mine = slices.DeleteFunc(mine, func(e gotEvent) bool { return e.empty })

			r := sse.NewReader(strings.NewReader(tt.in))
			var shared []gotEvent
			var comments int64
			for {
				b, err := r.Next()
				if err != nil {
					break
				}
				comments += int64(len(b.Comments))
				if b.HasData {
					typ := b.Type
					if typ == "message" {
						typ = "" // the tool keeps the type buffer as sent
					}
					shared = append(shared, ev(typ, string(b.Data), b.ID))
				}
			}
			if !slices.Equal(mine, shared) {
				t.Errorf("parse %q:\n tool   %v\n shared %v", tt.in, mine, shared)
			}
			retry := int64(-1)
			if r.Retry() > 0 {
				retry = r.Retry().Milliseconds()
			}
			if p.retry != retry || p.comments != comments {
				t.Errorf("parse %q: tool retry %d comments %d, shared %d, %d", tt.in, p.retry, p.comments, retry, comments)
			}
		})
	}
}

// capturedStream returns the bytes of a stream as the server writes them:
// the preamble, then n chat messages of the server's JSON shape with a
// heartbeat after every 50.
func capturedStream(n int) []byte {
	b := sse.AppendEvent(nil, sse.Event{ID: "1795632509130-0", Retry: time.Second})
	t := time.Date(2026, 12, 1, 21, 0, 0, 123456789, time.UTC)
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("1795632509130-%d", i)
		data := fmt.Sprintf(`{"id":%q,"username":"load-%d","content":"message %d from the load tool, %s","time":%q}`,
			id, i%100, i, strings.Repeat("x", 40), t.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano))
		b = sse.AppendEvent(b, sse.Event{ID: id, Data: []byte(data)})
		if i%50 == 0 {
			b = append(b, ": ping\n\n"...)
		}
	}
	return b
}

// BenchmarkStreamParse parses the same captured stream with the load
// tool's allocation-free parser (fed 32 KiB at a time, as its read loop
// does from its bufio buffer) and with the shared internal/sse Reader: the
// tool keeps its own parser while the shared one costs it CPU.
func BenchmarkStreamParse(b *testing.B) {
	const messages = 2000
	stream := capturedStream(messages)
	b.Run("parser=chatload", func(b *testing.B) {
		var n int
		p := newSSEParser(func(ev *sseEvent) {
			if !ev.Empty {
				n++
			}
		})
		b.SetBytes(int64(len(stream)))
		b.ReportAllocs()
		for b.Loop() {
			n = 0
			p.reset()
			for rest := stream; len(rest) > 0; {
				k := min(len(rest), 32<<10)
				if err := p.feed(rest[:k]); err != nil {
					b.Fatal(err)
				}
				rest = rest[k:]
			}
			if n != messages {
				b.Fatalf("%d events, want %d", n, messages)
			}
		}
	})
	b.Run("parser=internal/sse", func(b *testing.B) {
		b.SetBytes(int64(len(stream)))
		b.ReportAllocs()
		for b.Loop() {
			r := sse.NewReader(bytes.NewReader(stream))
			n := 0
			for {
				_, err := r.NextEvent()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
			if n != messages {
				b.Fatalf("%d events, want %d", n, messages)
			}
		}
	})
}
