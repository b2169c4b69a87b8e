//go:build load

package main

// The load tests of requests held with their bodies missing and of idle
// connections, over HTTP/1.1 and HTTP/2, measuring the server's live heap
// and RSS (see load_test.go for the tag and how CI runs them).

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chat/internal/config"
)

// heldHeader returns the header lines of a POST /post that declares a
// 100-byte body, with fields tiny "X-<i>: <i>" fields besides.
func heldHeader(fields int) string {
	var b strings.Builder
	b.WriteString("POST /post HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n")
	for i := range fields {
		fmt.Fprintf(&b, "X-%d: %d\r\n", i, i)
	}
	b.WriteString("\r\n")
	return b.String()
}

// holdHTTP1 opens n connections to addr from localIP, each sending the
// headers of a POST with fields extra fields and never its body, and
// returns them open.
func holdHTTP1(addr, localIP string, n, fields int) []net.Conn {
	return sendOnConns(addr, localIP, n, []byte(heldHeader(fields)))
}

// holdHTTP2 sends n POST /post requests to base over HTTP/2 from localIP,
// spread over conns connections (one client each), each with fields
// extra header fields and a body that never comes. It returns how many
// were answered (refused) by the time all were sent and the server had
// had a moment, and a function that ends the rest.
func holdHTTP2(t *testing.T, base, localIP string, n, conns, fields int) (answered *atomic.Int64, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	answered = &atomic.Int64{}
	var wg sync.WaitGroup
	var pipes []*io.PipeWriter
	for range conns {
		tr := clientTransport(localIP, true)
		c := &http.Client{Transport: tr}
		for range n / conns {
			pr, pw := io.Pipe()
			pipes = append(pipes, pw)
			req, err := http.NewRequestWithContext(ctx, "POST", base+"/post", pr)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = 100
			req.Header.Set("Content-Type", "application/json")
			for i := range fields {
				req.Header.Set(fmt.Sprintf("X-%d", i), fmt.Sprint(i))
			}
			wg.Go(func() {
				resp, err := c.Do(req)
				if err == nil {
					answered.Add(1)
					resp.Body.Close()
				}
			})
		}
		t.Cleanup(tr.CloseIdleConnections)
	}
	return answered, func() {
		cancel()
		for _, pw := range pipes {
			pw.Close()
		}
		wg.Wait()
	}
}

// idleConns opens n connections to base from localIP, each with its own
// client, makes one request on each and leaves them open and idle. Over
// HTTP/2 the request is a POST of 1 MiB to a path that answers 404
// without reading it (a 413 would close the connection), so that the
// server reads the largest frames the client sends; over HTTP/1.1 it is a
// GET /healthz. It returns how many were answered as expected and a
// function that closes the connections.
func idleConns(t *testing.T, base, localIP string, n int, http2 bool) (answered *atomic.Int64, stop func()) {
	t.Helper()
	var trs []*http.Transport
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	body := strings.Repeat("x", 1<<20)
	answered = &atomic.Int64{}
	for range n {
		tr := clientTransport(localIP, http2)
		trs = append(trs, tr)
		c := &http.Client{Transport: tr, Timeout: waitTimeout}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			want := http.StatusOK
			r, err := c.Get(base + "/healthz")
			if http2 {
				want = http.StatusNotFound
				r, err = c.Post(base+"/nowhere", "text/plain", strings.NewReader(body))
			}
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body.Close()
			if r.StatusCode == want && (r.ProtoMajor == 2) == http2 {
				answered.Add(1)
			}
		})
	}
	wg.Wait()
	return answered, func() {
		for _, tr := range trs {
			tr.CloseIdleConnections()
		}
	}
}

// peakRSS samples the resident memory of pid for the given time and
// returns the largest value.
func peakRSS(t *testing.T, pid int, d time.Duration) int64 {
	var peak int64
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		peak = max(peak, procRSS(t, pid))
	}
	return peak
}

// liveHeap returns the bytes in live heap objects of the server whose
// profiles are served at pprof, after a garbage collection (the heap
// profile's gc=1 runs one).
func liveHeap(t *testing.T, pprof string) int64 {
	t.Helper()
	r := mustSend(t, http.DefaultClient, "GET", "http://"+pprof+"/debug/pprof/heap?gc=1&debug=1", "", "", nil)
	m := regexp.MustCompile(`(?m)^# HeapAlloc = (\d+)$`).FindSubmatch(r.body)
	if m == nil {
		t.Fatalf("no HeapAlloc in the heap profile: %.200s", r.body)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// loadTarget is a server binary run for a load test, with its profiles
// served (to read its live heap) and a client from another address.
type loadTarget struct {
	p     *chatProc
	base  string // the server's URL, https:// over TLS
	pprof string // the profiling listener's address
	other *http.Client
}

// startLoadTarget runs bin with args, over TLS if certFile is set.
func startLoadTarget(t *testing.T, bin, certFile, keyFile string, args ...string) *loadTarget {
	t.Helper()
	args = append([]string{"-pprof-addr", "127.0.0.1:0"}, args...)
	if certFile != "" {
		args = append(args, "-tls-cert", certFile, "-tls-key", keyFile)
	}
	lt := &loadTarget{p: startChatProc(t, bin, args...)}
	m := pprofRE.FindStringSubmatch(lt.p.logs.String())
	if m == nil {
		t.Fatalf("no pprof address in the log:\n%s", lt.p.logs)
	}
	lt.pprof, lt.base = m[1], lt.p.URL
	if certFile != "" {
		lt.base = strings.Replace(lt.p.URL, "http://", "https://", 1)
	}
	lt.other = tlsClient(t, false)
	return lt
}

// loadFigures is what an attack made the server hold.
type loadFigures struct {
	heap, peakRSS int64  // live heap and peak RSS growth, in bytes
	goroutines    int    // goroutines more
	refused       uint64 // connections refused at accept
}

// measure runs attack against lt (which returns a function that ends it)
// and returns what the server holds 2 s into it: its live heap after a
// collection, its goroutines and the connections refused at accept, each
// against the figures from before, and the peak RSS growth meanwhile.
// Another address must be served meanwhile.
func (lt *loadTarget) measure(t *testing.T, attack func() (stop func())) loadFigures {
	t.Helper()
	pid := lt.p.cmd.Process.Pid
	s0 := getStats(t, lt.other, lt.base)
	rss0, heap0 := procRSS(t, pid), liveHeap(t, lt.pprof)
	defer attack()()
	peak := peakRSS(t, pid, 2*time.Second)
	heap := liveHeap(t, lt.pprof)
	s := getStats(t, lt.other, lt.base)
	if r := mustSend(t, lt.other, "GET", lt.base+"/healthz", "", "", nil); r.status != http.StatusOK {
		t.Errorf("GET /healthz from another address during the attack: %d", r.status)
	}
	return loadFigures{heap - heap0, peak - rss0, s.Goroutines - s0.Goroutines, s.ConnectionsRefused - s0.ConnectionsRefused}
}

// mib returns n bytes in MiB.
func mib(n int64) float64 { return float64(n) / (1 << 20) }

// TestHeldRequestsLoad makes one address hold requests whose bodies never
// come, shaped as the attacks on the per-address memory bound were: over
// HTTP/1.1, 200 connections each holding a POST with 1 500 header fields,
// then with the most fields allowed (100); over HTTP/2, 2 000 streams on
// 10 clients with 400 fields, then 100. While they are held, the server's
// live heap (after a collection) may have grown by less than heldTarget,
// the bound -max-header-conns-per-addr keeps (64 requests of 15 KB of
// tiny fields, at about 120 KB each), and its goroutines by less than
// 400 (64 requests held, and those being refused); another address is
// served meanwhile. The peak RSS growth, which also holds the garbage of
// the requests refused and the collector's headroom, is logged.
func TestHeldRequestsLoad(t *testing.T) {
	const heldTarget = 8 << 20
	bin := chatBinary(t)
	certFile, keyFile := writeTestCert(t, t.TempDir())
	for _, tt := range []struct {
		name  string
		http2 bool
		// n requests with extra header fields besides Content-Type and
		// Content-Length (and, over HTTP/2, the client's Accept-Encoding
		// and User-Agent), each declaring a body that never comes.
		n, extra int
	}{
		{"HTTP1.1: 200 requests × 1 500 fields", false, 200, 1500},
		{"HTTP1.1: 200 requests × 100 fields", false, 200, 98},
		{"HTTP2: 2 000 requests × 400 fields", true, 2000, 400},
		{"HTTP2: 2 000 requests × 100 fields", true, 2000, 96},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var lt *loadTarget
			var answered func() int64
			attack := func() func() {
				conns := holdHTTP1(lt.p.addr(), "127.0.0.2", tt.n, tt.extra)
				answered = func() int64 { return 0 }
				return func() {
					for _, c := range conns {
						c.Close()
					}
				}
			}
			if tt.http2 {
				lt = startLoadTarget(t, bin, certFile, keyFile)
				attack = func() func() {
					a, stop := holdHTTP2(t, lt.base, "127.0.0.2", tt.n, 10, tt.extra)
					answered = a.Load
					return stop
				}
			} else {
				lt = startLoadTarget(t, bin, "", "")
			}
			f := lt.measure(t, attack)
			t.Logf("%s from one address: live heap +%.1f MiB (target < %d), goroutines +%d, peak RSS +%.1f MiB; %d connections refused at accept, %d requests answered at once",
				tt.name, mib(f.heap), heldTarget>>20, f.goroutines, mib(f.peakRSS), f.refused, answered())
			if f.heap >= heldTarget {
				t.Errorf("%s: live heap grew %.1f MiB, want < %d MiB", tt.name, mib(f.heap), heldTarget>>20)
			}
			if f.goroutines >= 400 {
				t.Errorf("%s: %d more goroutines, want < 400", tt.name, f.goroutines)
			}
		})
	}
}

// TestIdleConnectionsLoad measures what idle connections of one address
// hold, which -max-conns-per-addr bounds: 200 plain HTTP/1.1 keep-alive
// connections after one GET each, and 200 HTTP/2 connections after one
// 1 MiB upload each (which makes the server read the largest frames the
// client sends: net/http's HTTP/2 framer keeps a read buffer as large as
// the largest frame it has read, 512 KiB from Go's client under
// net/http's default settings). Each may hold less than connTarget of
// live heap; the figure for the default cap is logged.
func TestIdleConnectionsLoad(t *testing.T) {
	const n, connTarget = 200, 96 << 10
	bin := chatBinary(t)
	certFile, keyFile := writeTestCert(t, t.TempDir())
	for _, tt := range []struct {
		name  string
		http2 bool
	}{
		{"HTTP1.1 after a GET", false},
		{"HTTP2 after a 1 MiB upload", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var lt *loadTarget
			if tt.http2 {
				lt = startLoadTarget(t, bin, certFile, keyFile)
			} else {
				lt = startLoadTarget(t, bin, "", "")
			}
			var answered *atomic.Int64
			f := lt.measure(t, func() func() {
				a, stop := idleConns(t, lt.base, "127.0.0.2", n, tt.http2)
				answered = a
				return stop
			})
			per := f.heap / n
			t.Logf("%d idle connections from one address, %s (%d answered): live heap +%.1f KiB each (target < %d), %.1f MiB for the %d the default cap allows; goroutines +%d, peak RSS +%.1f MiB",
				n, tt.name, answered.Load(), float64(per)/1024, connTarget>>10, mib(per*config.DefaultMaxConnsPerAddr), config.DefaultMaxConnsPerAddr, f.goroutines, mib(f.peakRSS))
			if answered.Load() != n {
				t.Errorf("%d of %d connections answered, want all", answered.Load(), n)
			}
			if per >= connTarget {
				t.Errorf("%s: %.1f KiB of live heap per idle connection, want < %d KiB", tt.name, float64(per)/1024, connTarget>>10)
			}
		})
	}
}
