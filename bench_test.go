package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"chat/internal/config"
	"chat/internal/roomlog"
	"chat/internal/sse"
)

// BenchmarkEncodeMessage measures encoding one chat message into its SSE
// bytes, which happens once per message whatever the number of clients.
func BenchmarkEncodeMessage(b *testing.B) {
	m := Message{ID: "1795632509130-42", Username: "alice", Content: strings.Repeat("hello world ", 10), Time: time.Now()}
	var buf []byte
	for b.Loop() {
		buf = roomlog.AppendMessageEvent(buf[:0], m)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkAppendEvent measures the event encoder alone on multi-line data.
func BenchmarkAppendEvent(b *testing.B) {
	ev := sse.Event{ID: "1-1", Data: []byte(strings.Repeat("line of text\n", 8))}
	buf := make([]byte, 0, 512)
	for b.Loop() {
		buf = sse.AppendEvent(buf[:0], ev)
	}
}

// BenchmarkFanOut measures the hub: one message posted and queued for
// every client, with a goroutine per client draining its queue. It reports
// deliveries (message × client) per second.
func BenchmarkFanOut(b *testing.B) {
	for _, clients := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			room := NewChatRoom(RoomConfig{History: 100, ClientBuffer: 1024}, NewStats())
			go room.Run(ctx)
			var wg sync.WaitGroup
			for range clients {
				c, _, err := room.Join(ctx, "bench", nil)
				if err != nil {
					b.Fatal(err)
				}
				wg.Go(func() {
					for range c.frames() {
					}
				})
			}
			start := time.Now()
			for b.Loop() {
				if _, err := room.Post(ctx, "alice", "hello"); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			cancel()
			wg.Wait()
			b.ReportMetric(float64(b.N)*float64(clients)/elapsed.Seconds(), "deliveries/s")
		})
	}
}

// benchClients opens n raw stream connections to addr and returns them,
// after reading each one's response head.
func benchClients(b *testing.B, addr string, n int) []net.Conn {
	b.Helper()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := dialRaw(addr, "", "GET /stream HTTP/1.1\r\nHost: bench\r\n\r\n")
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	return conns
}

// BenchmarkPostToDelivery measures the whole path over loopback: a POST,
// then its event read by every subscriber. It reports deliveries per second
// and the mean time from post to the last subscriber's read.
func BenchmarkPostToDelivery(b *testing.B) {
	for _, subs := range []int{10, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			ts := startBenchServer(b, "-backlog", "0")
			addr := ts.addr()
			conns := benchClients(b, addr, subs)
			readers := make([]*sse.Reader, subs)
			for i, c := range conns {
				readers[i] = sse.NewReader(c)
				defer c.Close()
			}
			// Each reader signals every message it reads.
			got := make(chan struct{}, subs*16)
			for _, r := range readers {
				go func() {
					for {
						if _, err := r.NextEvent(); err != nil {
							return
						}
						got <- struct{}{}
					}
				}()
			}
			waitFor(b, "every subscriber to join", func() bool { return ts.stats(b).Clients == subs })
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			start := time.Now()
			for b.Loop() {
				if r, err := postJSON(client, ts.URL, "bench", "hello", nil); err != nil || r.status != http.StatusCreated {
					b.Fatalf("POST /post: %d %v", r.status, err)
				}
				for range subs {
					<-got
				}
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)*float64(subs)/elapsed.Seconds(), "deliveries/s")
			b.ReportMetric(float64(elapsed.Microseconds())/float64(b.N), "µs/post-to-all")
		})
	}
}

// BenchmarkStreamMemory opens idle streams and reports the memory the
// server process holds per stream (heap in use plus goroutine stacks,
// measured after a GC, client side included, which is small: a socket and
// no goroutine).
func BenchmarkStreamMemory(b *testing.B) {
	const streams = 2000
	for b.Loop() {
		ts := startBenchServer(b, "-backlog", "0", "-heartbeat", "0")
		addr := ts.addr()
		before := memInUse()
		conns := benchClients(b, addr, streams)
		waitFor(b, "every stream to join", func() bool { return ts.stats(b).Clients == streams })
		after := memInUse()
		b.ReportMetric(float64(after-before)/streams, "bytes/stream")
		for _, c := range conns {
			c.Close()
		}
		ts.stop(b)
	}
}

// memInUse returns the heap in use plus the goroutine stacks, after a GC.
func memInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// startBenchServer starts the server for a benchmark with flags: with
// presence events on, as the server runs by default, and no per-address
// cap, so that one address may open thousands of streams.
func startBenchServer(b *testing.B, flags ...string) *testServer {
	b.Helper()
	return startServer(b, append([]string{"-presence-interval", config.DefaultPresenceInterval.String(), "-max-header-conns-per-addr", "0"}, flags...)...)
}
