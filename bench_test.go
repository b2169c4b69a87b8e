package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

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
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(c, "GET /stream HTTP/1.1\r\nHost: bench\r\n\r\n")
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
			ts := startServerB(b, "-backlog", "0")
			addr := strings.TrimPrefix(ts.URL, "http://")
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
			waitForB(b, func() bool { return ts.room() == subs })
			client := newPostClient(addr)
			start := time.Now()
			for b.Loop() {
				if err := client.post(`{"username":"bench","content":"hello"}`); err != nil {
					b.Fatal(err)
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
		ts := startServerB(b, "-backlog", "0", "-heartbeat", "0")
		addr := strings.TrimPrefix(ts.URL, "http://")
		before := memInUse()
		conns := benchClients(b, addr, streams)
		waitForB(b, func() bool { return ts.room() == streams })
		after := memInUse()
		b.ReportMetric(float64(after-before)/streams, "bytes/stream")
		for _, c := range conns {
			c.Close()
		}
		ts.stopB()
	}
}

// memInUse returns the heap in use plus the goroutine stacks, after a GC.
func memInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// benchServer is a server started for a benchmark.
type benchServer struct {
	URL    string
	cancel context.CancelFunc
	done   chan error
	roomFn func() int
	stop   sync.Once
}

// room returns the number of clients in the room.
func (s *benchServer) room() int { return s.roomFn() }

// stopB stops the server and waits for run to return.
func (s *benchServer) stopB() {
	s.stop.Do(func() {
		s.cancel()
		<-s.done
	})
}

// startServerB starts the server for a benchmark, through serve so that the
// benchmark can see the room.
func startServerB(b *testing.B, flags ...string) *benchServer {
	b.Helper()
	args := append([]string{"chat", "-addr", "127.0.0.1:0", "-stats-interval", "0", "-post-rate", "0", "-max-streams-per-addr", "0", "-max-conns-per-addr", "0", "-max-header-conns-per-addr", "0"}, flags...)
	cfg, err := parseFlags(args, func(string) string { return "" }, nil)
	if err != nil {
		b.Fatal(err)
	}
	logs := newLogWatcher()
	ctx, cancel := context.WithCancel(context.Background())
	s := &benchServer{cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- serve(ctx, cfg, logs) }()
	select {
	case addr := <-logs.addr:
		s.URL = "http://" + addr
	case err := <-s.done:
		b.Fatalf("serve: %v", err)
	}
	s.roomFn = func() int {
		// The number of clients, from /stats over the network like any
		// other client would see it.
		c := newPostClient(strings.TrimPrefix(s.URL, "http://"))
		n, _ := c.clients()
		return n
	}
	b.Cleanup(s.stopB)
	return s
}

// waitForB polls cond until it holds, for at most waitTimeout.
func waitForB(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %v", waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// postClient posts and reads statistics over one keep-alive connection.
type postClient struct {
	base string
	c    *http.Client
}

// newPostClient returns a client of the server at addr.
func newPostClient(addr string) *postClient {
	return &postClient{base: "http://" + addr, c: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
}

// post sends body as JSON to /post and expects 201.
func (p *postClient) post(body string) error {
	resp, err := p.c.Post(p.base+"/post", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /post: status %d", resp.StatusCode)
	}
	return nil
}

// clients returns the number of connected clients from /stats.
func (p *postClient) clients() (int, error) {
	resp, err := p.c.Get(p.base + "/stats")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var s StatsSnapshot
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s.Clients, err
}
