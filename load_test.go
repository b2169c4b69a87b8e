//go:build load

package main

// The load-heavy abuse tests, behind the load build tag so that go test on
// a laptop stays quick. .ci/run runs the tests of the files with this tag
// in a step of their own; by hand:
//
//	go test -race -tags load -run 'Load|KernelMemory|SlowBodyCut' .
//
// They run the real binary (skipped under -short), open at most a few
// thousand loopback connections from several source addresses (all of
// 127.0.0.0/8 is local), measure what the server holds (RSS, kernel TCP
// memory) and log their figures; or, for TestSlowBodyCut, take 15 s.
// This file holds the connection floods, the never-reading streams and the
// slow body; load_held_test.go the requests held with their bodies
// missing and the idle connections.

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

	"chat/internal/config"
)

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
	bin := chatBinary(t)
	p := startChatProc(t, bin)
	addr := p.addr()
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
		if len(served) != config.DefaultMaxConnsPerAddr || refused != attempts-config.DefaultMaxConnsPerAddr {
			t.Errorf("%s: %d connections served, %d refused; want %d and %d", ip, len(served), refused, config.DefaultMaxConnsPerAddr, attempts-config.DefaultMaxConnsPerAddr)
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
	s := p.stats(t)
	rssHeld := procRSS(t, pid)
	if want := uint64(3 * (attempts - config.DefaultMaxConnsPerAddr)); s.ConnectionsRefused != want {
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
	return sendOnConns(addr, localIP, n, b.Bytes())
}

// sendOnConns opens n connections to addr from localIP (64 at a time),
// writes payload on each and returns those opened, open.
func sendOnConns(addr, localIP string, n int, payload []byte) []net.Conn {
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
	bin := chatBinary(t)
	const floods, size, target = 2000, 15000, 64 << 20
	measure := func(args ...string) (growth int64, refused uint64) {
		p := startChatProc(t, bin, args...)
		addr := p.addr()
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
		s := p.stats(t)
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

// sockstat returns the kernel's TCP memory in bytes and the orphaned TCP
// sockets, from /proc/net/sockstat.
func sockstat(t *testing.T) (mem int64, orphans int) {
	t.Helper()
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		t.Skipf("no /proc/net/sockstat: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch f[i] {
			case "mem":
				mem = v * int64(os.Getpagesize())
			case "orphan":
				orphans = int(v)
			}
		}
	}
	return mem, orphans
}

// serverQueued returns how many sockets with local port port (the
// server's side of its connections) and a peer in 127.0.1.0/24 (the
// streams of TestUnreadStreamsKernelMemory) exist, and the bytes queued in
// their send queues, from /proc/net/tcp.
func serverQueued(t *testing.T, port int) (sockets int, queued int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	{
		for line := range strings.Lines(string(b)) {
			fs := strings.Fields(line)
			// The remote address is hex in host (little-endian) order:
			// 127.0.1.x is "xx01007F".
			if len(fs) < 5 || !strings.HasSuffix(strings.Split(fs[2], ":")[0], "01007F") {
				continue
			}
			_, lport, ok := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(lport, 16, 32); !ok || err != nil || int(p) != port {
				continue
			}
			tx, _, _ := strings.Cut(fs[4], ":")
			n, _ := strconv.ParseInt(tx, 16, 64)
			sockets++
			queued += n
		}
	}
	return sockets, queued
}

// TestUnreadStreamsKernelMemory holds the 100 never-reading
// streams that resume from an unknown id, so each is sent the whole
// history (1 000 messages of 2 000 characters, about 6 MB), and reads the
// kernel's TCP memory: under 256 KiB per stream while held, and, once the
// write timeout cuts them, the server's sockets gone (reset, no orphans
// holding unsent data) within a second. The clients keep their sockets
// open, never reading, as an attacker would; each has a 16 KiB receive
// buffer so that the figures are the server's.
func TestUnreadStreamsKernelMemory(t *testing.T) {
	bin := chatBinary(t)
	const history = 1000
	p := startChatProc(t, bin, "-write-timeout", "2s", "-history", strconv.Itoa(history))
	addr := p.addr()
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)

	content := strings.Repeat("€", 2000)
	poster := clientFrom(t, "127.0.0.9")
	body, _ := json.Marshal(map[string]string{"username": "filler", "content": content})
	for i := range history {
		if r := mustSend(t, poster, "POST", p.URL+"/post", "application/json", string(body), nil); r.status != http.StatusCreated {
			t.Fatalf("post %d: %d %s", i, r.status, r.body)
		}
	}
	poster.CloseIdleConnections()
	baseMem, baseOrphans := sockstat(t)

	const streams = 100
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range streams {
		ip := fmt.Sprintf("127.0.1.%d", 1+i/25) // 25 per address, within every per-address cap
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: waitTimeout}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).SetReadBuffer(16 << 10)
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 1-1\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every stream to join", func() bool { return p.stats(t).Clients == streams })
	// Held: poll while the server's writes are blocked, keep the peak.
	var peak int64
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		m, _ := sockstat(t)
		peak = max(peak, m)
	}
	_, heldQueued := serverQueued(t, port)
	perStream := (peak - baseMem) / streams
	// The cut: the write timeout ends every stream. The room may drop a
	// blocked stream (its queue full of the hub's own events) before its
	// write times out, so a socket is reset up to one write timeout after
	// its stream leaves the count: the cut is within writeTimeout of this.
	waitFor(t, "the write timeout to cut every stream", func() bool { return p.stats(t).Clients == 0 })
	const writeTimeout = 2 * time.Second
	cut := time.Now()
	var gone time.Duration = -1
	var afterMem int64
	var afterOrphans, afterSockets int
	for time.Since(cut) < writeTimeout+3*time.Second {
		afterMem, afterOrphans = sockstat(t)
		var q int64
		afterSockets, q = serverQueued(t, port)
		// Orphans are counted machine-wide (others share it), so only
		// the server's own sockets decide.
		if afterSockets == 0 && q == 0 {
			gone = time.Since(cut)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	goneText := gone.Round(time.Millisecond).String()
	if gone < 0 {
		goneText = "not within 5 s"
	}
	t.Logf("%d never-reading streams resuming %d messages of 2 000 characters: kernel TCP memory %.1f MiB → %.1f MiB held (%.0f KiB per stream, target < 256), server send queues %.1f MiB; after the cut: server sockets gone %s after the streams left the count (target < write timeout 2 s + 1 s), %d orphans (baseline %d), TCP memory %.1f MiB (the clients' own unread receive buffers remain until they close)",
		streams, history, float64(baseMem)/(1<<20), float64(peak)/(1<<20), float64(perStream)/1024, float64(heldQueued)/(1<<20),
		goneText, afterOrphans, baseOrphans, float64(afterMem)/(1<<20))
	// /proc/net/sockstat counts every TCP socket of the machine, which
	// others share: the figure asserted on is the server's own sockets'
	// send queues, which sockstat's growth matches on a quiet machine.
	if q := heldQueued / streams; q >= 256<<10 {
		t.Errorf("%.0f KiB queued in the server's socket per held stream, want < 256 KiB", float64(q)/1024)
	}
	if perStream >= 256<<10 {
		t.Logf("note: sockstat grew %.0f KiB per stream; other processes on this machine may be using TCP memory too", float64(perStream)/1024)
	}
	if gone < 0 || gone > writeTimeout+time.Second {
		t.Errorf("server sockets still held %v after the cut (%d sockets, %d orphans); want gone within 1 s", time.Since(cut).Round(time.Millisecond), afterSockets, afterOrphans)
	}
}

// TestSlowBodyCut checks that a POST whose body trickles in is cut by
// ReadTimeout (15 s) and stores nothing. It takes about 15 s, so it runs in
// parallel with the other slow tests and not in -short mode; a hook to
// shorten config.ReadTimeout in tests would make it quick.
func TestSlowBodyCut(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 15 s (ReadTimeout)")
	}
	t.Parallel()
	ts := startServer(t)
	start := time.Now()
	body := `{"username":"slow","content":"` + strings.Repeat("z", 900) + `"}`
	conn, err := dialRaw(ts.addr(), "", fmt.Sprintf("POST /post HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(body)-1; i++ { // never the last byte
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte{body[i]}); err != nil {
					return
				}
			}
		}
	}()
	checkCut(t, conn, start, config.ReadTimeout)
	if st := ts.stats(t); st.MessagesPosted != 0 {
		t.Errorf("messages_posted = %d, want 0", st.MessagesPosted)
	}
}
