//go:build soak

package main

// The soak test: thousands of streams, continuous connect and disconnect
// churn and steady posting for minutes, over real HTTP on loopback. Run it
// with
//
//	go test -tags soak -run TestSoak -timeout 15m -v .
//
// (-v prints the figures). Its size and length come from flags or, failing
// them, environment variables: -soak.duration (CHAT_SOAK_DURATION, default
// 5m), -soak.clients (CHAT_SOAK_CLIENTS, 5000 streams in all),
// -soak.churners (CHAT_SOAK_CHURNERS, 500 of them reconnect continually)
// and -soak.rate (CHAT_SOAK_RATE, 10 posts per second).

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chat/internal/record"
	"chat/internal/sse"
)

var (
	soakDuration = flag.Duration("soak.duration", soakEnv("CHAT_SOAK_DURATION", 5*time.Minute, time.ParseDuration), "length of the soak test")
	soakClients  = flag.Int("soak.clients", soakEnv("CHAT_SOAK_CLIENTS", 5000, strconv.Atoi), "streams open in the soak test")
	soakChurners = flag.Int("soak.churners", soakEnv("CHAT_SOAK_CHURNERS", 500, strconv.Atoi), "streams of the soak test that disconnect and resume continually")
	soakRate     = flag.Float64("soak.rate", soakEnv("CHAT_SOAK_RATE", 10.0, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }), "posts per second in the soak test")
)

// soakEnv returns the environment variable key parsed by parse, or def if
// it is unset or does not parse.
func soakEnv[T any](key string, def T, parse func(string) (T, error)) T {
	if v, err := parse(os.Getenv(key)); err == nil {
		return v
	}
	return def
}

// soakSample is the process's state at one moment.
type soakSample struct {
	at         time.Duration
	goroutines int
	heap, rss  uint64
	stats      StatsSnapshot
}

// String formats the sample for the log.
func (s soakSample) String() string {
	return fmt.Sprintf("t=%-6v goroutines=%-6d heap=%-6.1fMiB rss=%-6.1fMiB clients=%-5d messages=%-6d deliveries=%-9d conns=%-6d slow=%d",
		s.at.Round(time.Second), s.goroutines, float64(s.heap)/(1<<20), float64(s.rss)/(1<<20),
		s.stats.Clients, s.stats.MessagesPosted, s.stats.Deliveries, s.stats.ConnectionsTotal, s.stats.SlowDisconnects)
}

// soakFailures collects what went wrong in goroutines, which must not
// fail the test themselves.
type soakFailures struct {
	mu   sync.Mutex
	n    int
	some []string
}

// add records a failure; the first few are kept in full.
func (f *soakFailures) add(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if len(f.some) < 20 {
		f.some = append(f.some, fmt.Sprintf(format, args...))
	}
}

// report fails t if anything was recorded.
func (f *soakFailures) report(t *testing.T, what string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n > 0 {
		t.Errorf("%d %s failures, first ones:\n  %s", f.n, what, strings.Join(f.some, "\n  "))
	}
}

// soakEvents reads a stream's events after the preamble and calls onMessage
// with the sequence number of each chat message, and onReset for a reset
// event. It returns the error that ended the stream.
func soakEvents(r *sse.Reader, epoch string, onMessage func(seq uint64) error, onReset func()) error {
	for {
		b, err := r.Next()
		if err != nil {
			return err
		}
		var seq uint64
		if b.HasID {
			e, s, ok := strings.Cut(b.ID, "-")
			if !ok || e != epoch {
				return fmt.Errorf("id %q not of epoch %s", b.ID, epoch)
			}
			if seq, err = strconv.ParseUint(s, 10, 64); err != nil {
				return fmt.Errorf("id %q: %w", b.ID, err)
			}
		}
		switch {
		case b.Type == "reset":
			onReset()
		case b.HasData:
			if !b.HasID {
				return errors.New("message without id")
			}
			if err := onMessage(seq); err != nil {
				return err
			}
		}
	}
}

// takeSample forces a garbage collection and samples the process.
func takeSample(t *testing.T, ts *testServer, start time.Time) soakSample {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	_, rss := processUsage()
	return soakSample{time.Since(start), runtime.NumGoroutine(), ms.HeapAlloc, rss, ts.stats(t)}
}

// TestSoak holds -soak.clients streams for -soak.duration while
// -soak.churners of them disconnect (cleanly, by reset or by half-close)
// and resume with Last-Event-ID every 0.5-10 s, and one poster posts
// -soak.rate messages a second. It checks that every stream that stayed
// connected got every message, in order, once; that every resumed stream
// continued exactly where it stopped; and that goroutines and memory at
// the end are where they were after warm-up.
func TestSoak(t *testing.T) {
	duration, clients, churners, rate := *soakDuration, *soakClients, *soakChurners, *soakRate
	if churners > clients {
		churners = clients
	}
	steadyN := clients - churners
	t.Logf("soak: %d streams (%d churning) for %v, %.1f posts/s", clients, churners, duration, rate)
	ts := startServer(t, "-post-rate", "0", "-max-streams-per-addr", "0", "-max-conns-per-addr", "0")
	addr := ts.addr()
	goroutinesBefore := baselineGoroutines()
	var failures soakFailures

	// The first message gives the epoch of every id.
	m := ts.post(t, "soak", "epoch probe")
	e, _, _ := record.ParseID(m.ID)
	epoch := strconv.FormatInt(e, 10)

	// Steady streams: connected before the posting starts, read to the
	// end. Each must see every message after the probe, in order.
	type steady struct {
		s     *rawStream
		last  atomic.Uint64
		count atomic.Uint64
		done  chan struct{}
	}
	streams := make([]*steady, steadyN)
	connectStart := time.Now()
	{
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 8 {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= steadyN {
						return
					}
					ip := fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250)
					s, status, err := dialStream(addr, ip, "Last-Event-ID: "+epoch+"-1\r\n")
					if err != nil || status != 200 {
						failures.add("steady stream %d: status %d, %v", i, status, err)
						return
					}
					streams[i] = &steady{s: s, done: make(chan struct{})}
					streams[i].last.Store(1)
				}
			})
		}
		wg.Wait()
	}
	for _, st := range streams {
		if st == nil {
			failures.report(t, "connect")
			t.FailNow()
		}
	}
	t.Logf("%d steady streams connected in %v", steadyN, time.Since(connectStart).Round(time.Millisecond))
	for i, st := range streams {
		go func() {
			defer close(st.done)
			err := soakEvents(st.s.ev, epoch, func(seq uint64) error {
				if want := st.last.Load() + 1; seq != want {
					return fmt.Errorf("got message %d, want %d", seq, want)
				}
				st.last.Store(seq)
				st.count.Add(1)
				return nil
			}, func() { failures.add("steady stream %d: reset event", i) })
			if !errors.Is(err, net.ErrClosed) {
				failures.add("steady stream %d ended after message %d: %v", i, st.last.Load(), err)
			}
		}()
	}

	stop := make(chan struct{})
	var workers sync.WaitGroup

	// Churners: connect, read for a while, go away in one of three ways,
	// resume from the last id seen.
	var reconnects, resets, churnMessages atomic.Int64
	for c := range churners {
		workers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			ip := fmt.Sprintf("127.1.%d.%d", 1+c/250, 1+c%250)
			var last uint64 // 0: nothing seen yet
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				extra := ""
				if last > 0 {
					extra = fmt.Sprintf("Last-Event-ID: %s-%d\r\n", epoch, last)
				}
				s, status, err := dialStream(addr, ip, extra)
				if err != nil || status != 200 {
					failures.add("churner %d round %d: status %d, %v", c, round, status, err)
					return
				}
				if round > 0 {
					reconnects.Add(1)
				}
				resumed := last > 0
				stay := 500*time.Millisecond + time.Duration(rng.Int64N(int64(9500*time.Millisecond)))
				_ = s.conn.SetReadDeadline(time.Now().Add(stay))
				err = soakEvents(s.ev, epoch, func(seq uint64) error {
					if resumed && seq != last+1 {
						return fmt.Errorf("resumed after %d but got %d", last, seq)
					}
					resumed = true
					last = seq
					churnMessages.Add(1)
					return nil
				}, func() { resets.Add(1) })
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					failures.add("churner %d round %d: stream ended after message %d: %v", c, round, last, err)
				}
				switch tc := s.conn.(*net.TCPConn); round % 3 {
				case 0:
					tc.Close()
				case 1:
					_ = tc.SetLinger(0)
					tc.Close()
				case 2:
					_ = tc.CloseWrite()
					tc.Close()
				}
			}
		})
	}

	// Warm-up, then the reference sample.
	start := time.Now()
	warmup := min(max(duration/10, 5*time.Second), 30*time.Second)

	// The poster: steady posts at the rate, each checked.
	var posted atomic.Uint64
	posted.Store(1) // the epoch probe
	var worstPost atomic.Int64
	workers.Go(func() {
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		client := &http.Client{Timeout: waitTimeout}
		defer client.CloseIdleConnections()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			at := time.Now()
			r, err := send(client, "POST", ts.URL+"/post", "application/json", fmt.Sprintf(`{"username":"soak","content":"message %d"}`, i), nil)
			if err != nil || r.status != http.StatusCreated {
				failures.add("post %d: %d %s %v", i, r.status, r.body, err)
				continue
			}
			posted.Add(1)
			if d := int64(time.Since(at)); d > worstPost.Load() {
				worstPost.Store(d)
			}
		}
	})

	sampleEvery := max(duration/10, time.Second)
	sampler := time.NewTicker(sampleEvery)
	endAt := time.After(duration)
	warm := time.After(warmup)
	var ref soakSample
loop:
	for {
		select {
		case <-warm:
			ref = takeSample(t, ts, start)
			t.Logf("reference %v", ref)
		case <-sampler.C:
			t.Logf("sample    %v", takeSample(t, ts, start))
		case <-endAt:
			break loop
		}
	}
	sampler.Stop()
	end := takeSample(t, ts, start)
	t.Logf("end       %v", end)
	close(stop)
	workers.Wait()

	// Every steady stream catches up with the last message and has seen
	// each one exactly once.
	final := posted.Load()
	caughtUp := func() bool {
		for _, st := range streams {
			if st.last.Load() < final && !isClosed(st.done) {
				return false
			}
		}
		return true
	}
	if !caughtUp() {
		waitWithin(t, 30*time.Second, "steady streams to catch up", caughtUp)
	}
	behind := 0
	for i, st := range streams {
		if got := st.count.Load(); st.last.Load() != final || got != final-1 {
			behind++
			if behind <= 5 {
				t.Errorf("steady stream %d: %d messages, last %d; want %d, last %d", i, got, st.last.Load(), final-1, final)
			}
		}
	}
	snap := ts.stats(t)
	failures.report(t, "stream")
	t.Logf("messages posted %d (%.1f/s), deliveries %d, steady streams complete %d/%d, churn reconnects %d (resets %d, %d messages), slow disconnects %d, worst post %v, cpu %.1fs",
		final, float64(final)/duration.Seconds(), snap.Deliveries, steadyN-behind, steadyN, reconnects.Load(), resets.Load(), churnMessages.Load(),
		snap.SlowDisconnects, time.Duration(worstPost.Load()).Round(time.Microsecond), snap.CPUSeconds)
	t.Logf("goroutines: %d before streams, %d after warm-up, %d at end", goroutinesBefore, ref.goroutines, end.goroutines)
	t.Logf("heap: %.1f MiB after warm-up, %.1f MiB at end; rss: %.1f MiB after warm-up, %.1f MiB at end",
		float64(ref.heap)/(1<<20), float64(end.heap)/(1<<20), float64(ref.rss)/(1<<20), float64(end.rss)/(1<<20))

	if resets.Load() != 0 {
		t.Errorf("%d resets on resume, want 0 (history covers every pause)", resets.Load())
	}
	if snap.SlowDisconnects != 0 {
		t.Errorf("slow_disconnects = %d, want 0", snap.SlowDisconnects)
	}
	if float64(final) < 0.9*rate*duration.Seconds() {
		t.Errorf("posted %d messages in %v, want about %.0f", final, duration, rate*duration.Seconds())
	}
	// Growth beyond noise: goroutines vary by the churners between two
	// connections; memory by the garbage collector's pacing.
	if end.goroutines > ref.goroutines+churners/10+50 {
		t.Errorf("goroutines grew from %d to %d", ref.goroutines, end.goroutines)
	}
	if end.heap > ref.heap+ref.heap/4+16<<20 {
		t.Errorf("heap grew from %.1f MiB to %.1f MiB", float64(ref.heap)/(1<<20), float64(end.heap)/(1<<20))
	}
	if end.rss > ref.rss+ref.rss/4+64<<20 {
		t.Errorf("rss grew from %.1f MiB to %.1f MiB", float64(ref.rss)/(1<<20), float64(end.rss)/(1<<20))
	}

	// Everything is released once the streams close.
	for _, st := range streams {
		st.s.conn.Close()
	}
	for _, st := range streams {
		<-st.done
	}
	waitWithin(t, time.Minute, "clients to leave", func() bool { return ts.stats(t).Clients == 0 })
	waitWithin(t, time.Minute, "goroutines back to their number before the streams", func() bool {
		http.DefaultClient.CloseIdleConnections()
		return runtime.NumGoroutine() <= goroutinesBefore+5
	})
	t.Logf("after closing: %v", takeSample(t, ts, start))
}

// isClosed reports whether ch is closed.
func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
