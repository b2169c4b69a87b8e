package main

// Tests of the connections and streams the server cuts: the timeouts and
// header cap of the HTTP server, a client that sends its headers a byte at
// a time, a stream nobody reads (-write-timeout), and clients that vanish
// with a reset.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"chat/internal/config"
)

// TestServerTimeouts checks the connection bounds: idle keep-alive
// connections close after about 30 s (config.IdleTimeout), and headers are capped
// at 16 KiB.
func TestServerTimeouts(t *testing.T) {
	if config.IdleTimeout > 30*time.Second || config.IdleTimeout < 10*time.Second {
		t.Errorf("idleTimeout = %v, want about 30 s", config.IdleTimeout)
	}
	if config.MaxHeaderBytes > 16<<10 {
		t.Errorf("maxHeaderBytes = %d, want at most 16 KiB", config.MaxHeaderBytes)
	}
	ts := startServer(t)
	// 17 KiB of headers plus net/http's 4 KiB allowance for the request
	// line is refused with 431.
	r := mustSend(t, http.DefaultClient, "GET", ts.URL+"/stats", "", "", map[string]string{"X-Big": strings.Repeat("x", 21<<10)})
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("21 KiB of headers: status %d, want 431", r.status)
	}
}

// TestSlowHeadersCut is the slowloris defence: a client that sends its
// request headers a byte at a time, forever, or connects and sends
// nothing, is cut by ReadHeaderTimeout (5 s), not left to hold a connection
// and a goroutine. It takes about 5 s and runs in parallel with the other
// slow tests.
func TestSlowHeadersCut(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	for _, tt := range []struct {
		name    string
		dribble bool
	}{{"dribble", true}, {"silent", false}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", ts.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			stop := make(chan struct{})
			defer close(stop)
			// The dribble: one byte every 50 ms, paced by a ticker; it
			// ends when a write fails or the test ends.
			go func() {
				if !tt.dribble {
					return
				}
				if _, err := io.WriteString(conn, "GET /stats HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
					return
				}
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if _, err := conn.Write([]byte("a")); err != nil {
							return
						}
					}
				}
			}()
			checkCut(t, conn, start, config.ReadHeaderTimeout)
		})
	}
}

// TestUnreadStreamCut checks -write-timeout: a client that opens a stream
// and never reads is disconnected once a write to it blocks longer than
// the timeout, even though its queue never fills (so it is not the
// slow-client rule that cuts it), and its writer goroutine ends.
func TestUnreadStreamCut(t *testing.T) {
	ts := startServer(t, "-write-timeout", "300ms", "-client-buffer", "100000", "-history", "10",
		"-max-content", "20000", "-max-body", "100000")
	before := baselineGoroutines()
	s, status, err := dialStream(ts.addr(), "", "")
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /stream: %d, %v", status, err)
	}
	defer s.conn.Close()
	waitFor(t, "the client to join", func() bool { return ts.stats(t).Clients == 1 })
	big := strings.Repeat("w", 16000)
	start := time.Now()
	posts := 0
	for ts.stats(t).Clients != 0 {
		if posts >= 5000 || time.Since(start) > waitTimeout {
			t.Fatalf("client that never reads still connected after %d posts of 16 kB in %v", posts, time.Since(start).Round(time.Millisecond))
		}
		ts.post(t, "w", big)
		posts++
	}
	t.Logf("cut after %d posts of 16 kB in %v", posts, time.Since(start).Round(time.Millisecond))
	if st := ts.stats(t); st.SlowDisconnects != 0 {
		t.Errorf("slow_disconnects = %d, want 0: the queue limit cut the client, not the write timeout", st.SlowDisconnects)
	}
	settleGoroutines(t, "after the write timeout", before+2)
}

// TestVanishingClients opens 1000 streams whose clients then vanish with a
// TCP reset and no further traffic: every stream must be noticed (at the
// next heartbeat, as nothing else is written) and its client and goroutine
// freed, while the clients that stay receive every message in order.
func TestVanishingClients(t *testing.T) {
	ts := startServer(t, "-heartbeat", "50ms")
	addr := ts.addr()
	const vanishing, staying, before, after = 1000, 3, 20, 20
	stayers := make([]*subscriber, staying)
	for i := range stayers {
		stayers[i] = subscribe(t, ts.URL, "")
	}
	waitFor(t, "the staying clients", func() bool { return ts.stats(t).Clients == staying })
	base := baselineGoroutines()

	conns := make([]*net.TCPConn, vanishing)
	var wg sync.WaitGroup
	errs := make(chan error, vanishing)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < vanishing; i += 4 {
				s, status, err := dialStream(addr, "", "")
				if err != nil || status != http.StatusOK {
					errs <- fmt.Errorf("stream %d: status %d, %v", i, status, err)
					return
				}
				conns[i] = s.conn.(*net.TCPConn)
			}
		})
	}
	wg.Wait()
	close(errs)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, "every client to join", func() bool { return ts.stats(t).Clients == vanishing+staying })

	var posted []Message
	for i := range before {
		posted = append(posted, ts.post(t, "p", fmt.Sprint("before ", i)))
	}
	for _, c := range conns {
		_ = c.SetLinger(0)
		c.Close()
	}
	start := time.Now()
	waitFor(t, "the vanished clients to leave", func() bool { return ts.stats(t).Clients == staying })
	t.Logf("%d reset streams noticed within %v", vanishing, time.Since(start).Round(time.Millisecond))
	settleGoroutines(t, "after the resets", base+3)
	for i := range after {
		posted = append(posted, ts.post(t, "p", fmt.Sprint("after ", i)))
	}
	for i, s := range stayers {
		got, _ := s.messages(t, len(posted))
		if fmt.Sprint(ids(got)) != fmt.Sprint(ids(posted)) {
			t.Errorf("staying client %d got %v, want %v", i, ids(got), ids(posted))
		}
	}
	if st := ts.stats(t); st.SlowDisconnects != 0 || st.ConnectionsTotal != vanishing+staying {
		t.Errorf("stats: slow_disconnects %d, connections_total %d; want 0, %d", st.SlowDisconnects, st.ConnectionsTotal, vanishing+staying)
	}
}
