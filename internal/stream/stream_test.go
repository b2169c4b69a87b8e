package stream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"chat/internal/fanout"
)

// ioTimeout bounds every wait on a real network in these tests.
const ioTimeout = 10 * time.Second

// testClient is a client whose queue the test fills and closes, as the
// hub would.
type testClient struct {
	q    chan *fanout.Frame
	slow bool
	// left is closed when the writer leaves the room.
	left chan struct{}
}

// newClient returns a client with a queue of n frames.
func newClient(n int) *testClient {
	return &testClient{q: make(chan *fanout.Frame, n), left: make(chan struct{})}
}

// Frames returns the queue.
func (c *testClient) Frames() <-chan *fanout.Frame { return c.q }

// Slow reports whether the test cut the client as slow.
func (c *testClient) Slow() bool { return c.slow }

// counters records what the writer counts.
type counters struct {
	mu sync.Mutex
	// writes holds the n of every Delivered call.
	writes []int
	// latencies counts the messages Latency was told of.
	latencies int
}

// Delivered records a write of n messages.
func (c *counters) Delivered(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, n)
}

// Latency records n messages.
func (c *counters) Latency(_ time.Duration, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latencies += n
}

// snapshot returns the recorded writes and latency count.
func (c *counters) snapshot() ([]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.writes...), c.latencies
}

// testConfig returns a config whose Leave closes the client's left
// channel (once).
func testConfig(cnt *counters, heartbeat, writeTimeout time.Duration) *Config {
	return &Config{
		Heartbeat:    heartbeat,
		WriteTimeout: writeTimeout,
		Counters:     cnt,
		Leave:        func(c Client) { close(c.(*testClient).left) },
		Tracker:      NewTracker(),
	}
}

// frame returns a frame of data holding n messages, accepted now.
func frame(data string, n int) *fanout.Frame {
	return &fanout.Frame{Data: []byte(data), N: n, At: time.Now()}
}

// readAll reads r until EOF or an error in a goroutine and returns a
// channel with what it read and the error that ended it.
func readAll(r io.Reader) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		b, err := io.ReadAll(r)
		ch <- readResult{string(b), err}
	}()
	return ch
}

// readResult is what readAll read.
type readResult struct {
	data string
	err  error
}

// TestServeConnBytes runs a writer on an in-memory connection: the head
// and each queued frame go out byte for byte, the head's messages and
// each frame's are counted, and once the hub closes the queue the writer
// leaves the room and closes the connection.
func TestServeConnBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, peer := net.Pipe()
		c, cnt := newClient(4), &counters{}
		got := readAll(peer)
		done := make(chan struct{})
		go func() {
			testConfig(cnt, time.Minute, time.Minute).ServeConn(srv, c, Head{
				Bufs:     [][]byte{[]byte(": hello\n\n"), []byte("id: 1-1\ndata: a\n\n"), []byte("id: 1-2\ndata: b\n\n"), []byte("event: presence\ndata: {}\n\n")},
				Messages: 2,
				Events:   1,
			})
			close(done)
		}()
		synctest.Wait()
		c.q <- frame("id: 1-3\ndata: c\n\n", 1)
		c.q <- frame("event: typing\ndata: []\n\n", 0)
		close(c.q)
		<-done
		<-c.left
		want := ": hello\n\nid: 1-1\ndata: a\n\nid: 1-2\ndata: b\n\nevent: presence\ndata: {}\n\nid: 1-3\ndata: c\n\nevent: typing\ndata: []\n\n"
		if r := <-got; r.data != want || r.err != nil {
			t.Errorf("stream = %q, %v\nwant %q and EOF", r.data, r.err, want)
		}
		writes, lat := cnt.snapshot()
		total := 0
		for _, n := range writes {
			total += n
		}
		if total != 3 || lat != 1 {
			t.Errorf("counted %d messages delivered (%v), %d with a latency; want 3, and 1 (the frame's)", total, writes, lat)
		}
	})
}

// TestHeadInPieces checks that a long head goes out in pieces of about
// maxWriteBatch bytes, each counted with the messages it holds (not the
// preamble, not the trailing events).
func TestHeadInPieces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, peer := net.Pipe()
		c, cnt := newClient(1), &counters{}
		big := strings.Repeat("x", maxWriteBatch/2+1)
		bufs := [][]byte{[]byte(": hi\n\n")}
		for range 5 {
			bufs = append(bufs, []byte("data: "+big+"\n\n"))
		}
		bufs = append(bufs, []byte("event: presence\ndata: {}\n\n"))
		want := len(bytes.Join(bufs, nil)) // the writer consumes bufs
		got := readAll(peer)
		go testConfig(cnt, time.Minute, time.Minute).ServeConn(srv, c, Head{Bufs: bufs, Messages: 5, Events: 1})
		synctest.Wait()
		close(c.q)
		<-c.left
		if r := <-got; len(r.data) != want {
			t.Errorf("read %d bytes, want %d", len(r.data), want)
		}
		// Each message is over half a batch, so each piece holds one,
		// the first with the preamble and the last with the event.
		if writes, _ := cnt.snapshot(); !equal(writes, []int{1, 1, 1, 1, 1}) {
			t.Errorf("pieces counted %v, want [1 1 1 1 1]", writes)
		}
	})
}

// equal reports whether a and b hold the same numbers.
func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestBatchedWrite checks that frames queued while the writer is stuck in
// a write go out together in its next write, counted as one write.
func TestBatchedWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, peer := net.Pipe()
		defer peer.Close()
		c, cnt := newClient(8), &counters{}
		go testConfig(cnt, time.Minute, time.Hour).ServeConn(srv, c, Head{Bufs: [][]byte{[]byte(": hi\n\n")}})
		buf := make([]byte, 1<<10)
		read := func() string {
			n, _ := peer.Read(buf)
			return string(buf[:n])
		}
		if got := read(); got != ": hi\n\n" {
			t.Fatalf("head = %q", got)
		}
		c.q <- frame("data: 1\n\n", 1)
		synctest.Wait() // the writer is blocked writing 1: nobody reads
		c.q <- frame("data: 2\n\n", 1)
		c.q <- frame("data: 3\n\n", 1)
		if first, second := read(), read(); first != "data: 1\n\n" || second != "data: 2\n\ndata: 3\n\n" {
			t.Errorf("writes = %q, %q; want 1, then 2 and 3 together", first, second)
		}
		close(c.q)
		<-c.left
		if writes, lat := cnt.snapshot(); !equal(writes, []int{0, 1, 2}) || lat != 3 {
			t.Errorf("counted writes %v, latencies %d; want [0 1 2] and 3", writes, lat)
		}
	})
}

// TestTick checks the hub's tick: every tick probes the peer, and a
// stream idle for the heartbeat interval gets a heartbeat, one that is not
// gets nothing; a peer that has gone ends the stream.
func TestTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hb = 10 * time.Second
		srv, peer := net.Pipe()
		c, cnt := newClient(4), &counters{}
		got := make(chan string, 4)
		go func() {
			buf := make([]byte, 64)
			for {
				n, err := peer.Read(buf)
				if err != nil {
					close(got)
					return
				}
				got <- string(buf[:n])
			}
		}()
		go testConfig(cnt, hb, time.Minute).ServeConn(srv, c, Head{Bufs: [][]byte{[]byte(": hi\n\n")}})
		if s := <-got; s != ": hi\n\n" {
			t.Fatalf("head = %q", s)
		}
		c.q <- fanout.Tick // just written: a probe, nothing to write
		synctest.Wait()
		time.Sleep(TickInterval(hb)) // the fake clock of the bubble
		c.q <- fanout.Tick           // idle for a tick, not for a heartbeat
		synctest.Wait()
		if len(got) != 0 {
			t.Fatalf("a tick before the heartbeat was due wrote %q", <-got)
		}
		time.Sleep(hb - TickInterval(hb))
		c.q <- fanout.Tick
		if s := <-got; s != ": ping\n\n" {
			t.Errorf("heartbeat = %q, want %q", s, ": ping\n\n")
		}
		// The peer goes; the next probe notices and the writer leaves.
		peer.Close()
		time.Sleep(TickInterval(hb))
		c.q <- fanout.Tick
		<-c.left
	})
}

// TestTickInterval checks the tick for a heartbeat interval: the
// heartbeat divided evenly so that it is at most probeInterval, 2 s.
func TestTickInterval(t *testing.T) {
	for _, tt := range []struct{ hb, want time.Duration }{
		{0, 2 * time.Second},
		{time.Second, time.Second},
		{2 * time.Second, 2 * time.Second},
		{5 * time.Second, 5 * time.Second / 3},
		{6 * time.Second, 2 * time.Second},
		{15 * time.Second, 1875 * time.Millisecond},
		{16 * time.Second, 2 * time.Second},
	} {
		if got := TickInterval(tt.hb); got != tt.want {
			t.Errorf("TickInterval(%v) = %v, want %v", tt.hb, got, tt.want)
		}
	}
}

// TestTickProbesAfterWrite closes the client's end of a real TCP stream
// and then sends it a message: the write succeeds (the peer's reset comes
// back later), and the tick right after it must still probe and find the
// peer gone, or a room with a message every few seconds keeps a closed
// tab until the second write after the close.
func TestTickProbesAfterWrite(t *testing.T) {
	srv, cl := loopbackPair(t)
	c, cnt := newClient(4), &counters{}
	go testConfig(cnt, time.Minute, time.Minute).ServeConn(srv, c, Head{Bufs: [][]byte{[]byte(": hi\n\n")}})
	head := make([]byte, len(": hi\n\n"))
	if _, err := io.ReadFull(cl, head); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	c.q <- frame("data: a\n\n", 1)
	// The write of a succeeds (the head's Delivered, then a's); then the
	// tick comes alone.
	deadline := time.Now().Add(ioTimeout)
	for writes, _ := cnt.snapshot(); len(writes) < 2; writes, _ = cnt.snapshot() {
		if time.Now().After(deadline) {
			t.Fatalf("the write after the close was not counted within %v (writes %v)", ioTimeout, writes)
		}
		time.Sleep(time.Millisecond)
	}
	c.q <- fanout.Tick
	select {
	case <-c.left:
	case <-time.After(ioTimeout):
		t.Fatal("the tick after a write to a closed peer did not end the stream")
	}
}

// finConn is the server's end of a net.Pipe whose peer has sent its FIN
// once fin is closed: reads then return io.EOF while writes still reach
// the peer, as on TCP.
type finConn struct {
	net.Conn
	fin chan struct{}
}

// Read returns io.EOF after the FIN, or else reads the pipe.
func (c *finConn) Read(p []byte) (int, error) {
	select {
	case <-c.fin:
		return 0, io.EOF
	default:
		return c.Conn.Read(p)
	}
}

// TestTickBatchedProbes checks that a tick the writer takes from its queue
// together with frames, into one write, still probes the peer.
func TestTickBatchedProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, peer := net.Pipe()
		defer peer.Close()
		conn := &finConn{Conn: srv, fin: make(chan struct{})}
		c := newClient(4)
		go testConfig(&counters{}, time.Minute, time.Minute).ServeConn(conn, c, Head{Bufs: [][]byte{[]byte(": hi\n\n")}})
		buf := make([]byte, 64)
		if n, err := peer.Read(buf); string(buf[:n]) != ": hi\n\n" || err != nil {
			t.Fatalf("head = %q, %v", buf[:n], err)
		}
		c.q <- frame("data: a\n\n", 1)
		synctest.Wait() // the writer is blocked writing a: b and the tick queue up
		c.q <- frame("data: b\n\n", 1)
		c.q <- fanout.Tick
		close(conn.fin)
		go func() { _, _ = io.Copy(io.Discard, peer) }()
		<-c.left // a deadlock of the bubble if the tick is lost
	})
}

// TestWriteTimeout checks that a peer that stops reading is cut after
// the write timeout, and the client leaves the room.
func TestWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, peer := net.Pipe()
		defer peer.Close()
		c := newClient(4)
		start := time.Now()
		go testConfig(&counters{}, time.Minute, 3*time.Second).ServeConn(srv, c, Head{Bufs: [][]byte{[]byte(": hi\n\n")}})
		<-c.left // nobody reads even the head
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("cut after %v, want the write timeout, 3s", d)
		}
	})
}

// loopbackPair returns the two ends of a TCP connection over loopback.
func loopbackPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	_ = client.SetDeadline(time.Now().Add(ioTimeout))
	return server, client
}

// TestEndings checks how a stream's connection closes over TCP: after a
// shutdown that sent everything, gracefully (the client reads all, then
// EOF); after a cut for being slow, with a reset, so the kernel drops
// what it has not sent.
func TestEndings(t *testing.T) {
	for _, tt := range []struct {
		name  string
		slow  bool
		reset bool
	}{
		{"drained", false, false},
		{"slow", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, cl := loopbackPair(t)
			c := newClient(2)
			c.q <- frame("data: last\n\n", 1)
			c.slow = tt.slow
			close(c.q)
			testConfig(&counters{}, time.Minute, time.Minute).ServeConn(srv, c, Head{Bufs: [][]byte{[]byte(": hi\n\n")}})
			<-c.left
			b, err := io.ReadAll(cl)
			if reset := errors.Is(err, syscall.ECONNRESET); reset != tt.reset {
				t.Errorf("read %q, %v; want a reset: %v", b, err, tt.reset)
			}
			if !tt.reset && string(b) != ": hi\n\ndata: last\n\n" {
				t.Errorf("read %q, want everything", b)
			}
		})
	}
}

// requestStream sends GET /stream to ts on a new connection, which it
// returns; the test's end closes it.
func requestStream(t *testing.T, ts *httptest.Server) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(conn, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestServeHijacked serves a stream over real HTTP/1.1: the response head
// is exact, the writer outlives the handler on the hijacked connection,
// the tracker waits for it, and after Wait a new stream is refused.
func TestServeHijacked(t *testing.T) {
	cnt := &counters{}
	cfg := testConfig(cnt, time.Minute, time.Minute)
	clients := make(chan *testClient, 2)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := newClient(4)
		clients <- c
		cfg.Serve(w, r, c, Head{Bufs: [][]byte{[]byte(": hi\n\n")}}, r.RemoteAddr)
	}))
	defer ts.Close()
	conn := requestStream(t, ts)
	br := bufio.NewReader(conn)
	want := "HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nContent-Type: text/event-stream\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n: hi\n\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
		t.Fatalf("response = %q, %v\nwant %q", got, err, want)
	}
	c := <-clients
	c.q <- frame("data: x\n\n", 1)
	if line, err := br.ReadString('\n'); line != "data: x\n" || err != nil {
		t.Errorf("after the head: %q, %v", line, err)
	}
	if cfg.Tracker.Wait(10 * time.Millisecond) {
		t.Fatal("the tracker did not wait for a running writer")
	}
	close(c.q) // the room shuts down
	if !cfg.Tracker.Wait(ioTimeout) {
		t.Fatal("the tracker did not see the writer end")
	}
	<-c.left
	// After Wait, a new stream is refused: it leaves and is closed.
	if b, _ := io.ReadAll(requestStream(t, ts)); len(b) != 0 {
		t.Errorf("a stream after shutdown got %q", b)
	}
	<-(<-clients).left
}

// TestTrackerInterrupt checks that Interrupt cuts a writer stuck on a
// client that does not read, so that shutdown ends.
func TestTrackerInterrupt(t *testing.T) {
	cfg := testConfig(&counters{}, time.Minute, time.Hour)
	clients := make(chan *testClient, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := newClient(64)
		clients <- c
		cfg.Serve(w, r, c, Head{Bufs: [][]byte{[]byte(": hi\n\n")}}, r.RemoteAddr)
	}))
	defer ts.Close()
	requestStream(t, ts)
	c := <-clients
	// Fill the socket buffers: the client never reads, so the writer
	// blocks in a write, with an hour's timeout.
	big := strings.Repeat("x", 60<<10)
	for range 40 {
		c.q <- frame("data: "+big+"\n\n", 1)
	}
	if cfg.Tracker.Wait(50 * time.Millisecond) {
		t.Fatal("a writer stuck in a write ended by itself")
	}
	cfg.Tracker.Interrupt()
	if !cfg.Tracker.Wait(ioTimeout) {
		t.Fatal("Interrupt did not end the stuck writer")
	}
	<-c.left
}
