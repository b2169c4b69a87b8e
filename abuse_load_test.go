package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The load-style tests below run the real binary (skipped under -short),
// open at most a few thousand loopback connections from several source
// addresses (all of 127.0.0.0/8 is local), and log their figures.

// procRSS returns the resident memory of process pid, in bytes.
func procRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// procStats returns p's /stats.
func procStats(t *testing.T, p *chatProc) StatsSnapshot {
	t.Helper()
	r := mustSend(t, http.DefaultClient, "GET", p.URL+"/stats", "", "", nil)
	var s StatsSnapshot
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatalf("GET /stats: %v: %s", err, r.body)
	}
	return s
}

// holdConns opens n keep-alive connections to addr from localIP, each
// after one answered GET /healthz, and returns those that were served
// and how many were refused (closed or reset without an answer).
func holdConns(addr, localIP string, n int) (served []net.Conn, refused int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: waitTimeout}
			c, err := d.Dial("tcp", addr)
			ok := err == nil
			if ok {
				_ = c.SetDeadline(time.Now().Add(waitTimeout))
				_, err = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
				var resp *http.Response
				if err == nil {
					resp, err = http.ReadResponse(bufio.NewReader(c), nil)
				}
				ok = err == nil && resp.StatusCode == http.StatusOK
				if ok {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					_ = c.SetDeadline(time.Time{})
				} else {
					c.Close()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if ok {
				served = append(served, c)
			} else {
				refused++
			}
		})
	}
	wg.Wait()
	return served, refused
}

// TestConnCapLoad attacks with the connection flood: three
// addresses each try 2 000 keep-alive connections against the default
// -max-conns-per-addr (256). Each holds exactly its cap, the rest are
// refused and counted, and a fourth address is served at once.
func TestConnCapLoad(t *testing.T) {
	bin := buildChat(t, t.TempDir())
	p := startChatProc(t, bin)
	addr := strings.TrimPrefix(p.URL, "http://")
	pid := p.cmd.Process.Pid
	rssBefore := procRSS(t, pid)
	const attempts = 2000
	var all []net.Conn
	defer func() {
		for _, c := range all {
			c.Close()
		}
	}()
	start := time.Now()
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		served, refused := holdConns(addr, ip, attempts)
		all = append(all, served...)
		if len(served) != defaultMaxConnsPerAddr || refused != attempts-defaultMaxConnsPerAddr {
			t.Errorf("%s: %d connections served, %d refused; want %d and %d", ip, len(served), refused, defaultMaxConnsPerAddr, attempts-defaultMaxConnsPerAddr)
		}
	}
	flood := time.Since(start)
	// A fourth address, while the three hold their caps.
	fourth := clientFrom(t, "127.0.0.5")
	var worst time.Duration
	for range 20 {
		t0 := time.Now()
		r, err := send(fourth, "GET", p.URL+"/healthz", "", "", nil)
		if err != nil || r.status != http.StatusOK {
			t.Fatalf("GET /healthz from a fourth address: %v %d", err, r.status)
		}
		worst = max(worst, time.Since(t0))
		fourth.CloseIdleConnections()
	}
	s := procStats(t, p)
	rssHeld := procRSS(t, pid)
	if want := uint64(3 * (attempts - defaultMaxConnsPerAddr)); s.ConnectionsRefused != want {
		t.Errorf("connections_refused = %d, want %d", s.ConnectionsRefused, want)
	}
	t.Logf("3 addresses × %d attempts in %v: %d held, %d refused (connections_open %d); /healthz from a fourth address: worst of 20 %v; RSS %.1f → %.1f MiB",
		attempts, flood.Round(time.Millisecond), len(all), s.ConnectionsRefused, s.ConnectionsOpen, worst.Round(time.Microsecond),
		float64(rssBefore)/(1<<20), float64(rssHeld)/(1<<20))
}

// headerFlood opens n connections to addr from localIP that each send
// about size bytes of request headers as tiny "X-<i>: <i>" fields and
// never the blank line that ends them. It returns the connections, open.
func headerFlood(addr, localIP string, n, size int) []net.Conn {
	var b bytes.Buffer
	b.WriteString("GET /healthz HTTP/1.1\r\nHost: t\r\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "X-%d: %d\r\n", i, i)
	}
	payload := b.Bytes()
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: waitTimeout}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				return
			}
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Write(payload)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	return conns
}

// TestHeaderFloodLoad sends the header flood, 2 000 connections
// from one address each holding ~15 KB of tiny header fields (just under
// the 16 KiB cap) without ending them, and checks that the server's RSS
// grows by less than 64 MiB. With the caps off (-max-conns-per-addr 0
// -max-header-conns-per-addr 0) it logs what the flood costs unbounded.
func TestHeaderFloodLoad(t *testing.T) {
	bin := buildChat(t, t.TempDir())
	const floods, size, target = 2000, 15000, 64 << 20
	measure := func(args ...string) (growth int64, refused uint64) {
		p := startChatProc(t, bin, args...)
		addr := strings.TrimPrefix(p.URL, "http://")
		pid := p.cmd.Process.Pid
		before := procRSS(t, pid)
		conns := headerFlood(addr, "127.0.0.2", floods, size)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		// The peak: the server has read what each connection sent (well
		// within the 5 s header timeout).
		var peak atomic.Int64
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			peak.Store(max(peak.Load(), procRSS(t, pid)))
			time.Sleep(50 * time.Millisecond)
		}
		s := procStats(t, p)
		p.kill(t)
		return peak.Load() - before, s.ConnectionsRefused
	}
	growth, refused := measure()
	t.Logf("defaults: %d floods of %d bytes from one address: RSS grew %.1f MiB (target < 64), %d refused at accept", floods, size, float64(growth)/(1<<20), refused)
	if growth >= target {
		t.Errorf("RSS grew %.1f MiB under the header flood, want < 64 MiB", float64(growth)/(1<<20))
	}
	if os.Getenv("CHAT_ABUSE_COMPARE") != "" {
		off, _ := measure("-max-conns-per-addr", "0", "-max-header-conns-per-addr", "0")
		t.Logf("caps off: RSS grew %.1f MiB", float64(off)/(1<<20))
	}
}
