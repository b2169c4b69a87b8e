package main

// The raw floor: the least a server can spend to deliver the load, to
// measure the chat server against. It speaks just enough of the chat
// server's protocol for the load tool (GET /stream, POST /post, GET
// /stats), encodes each message once, and writes it to every stream with
// one write per stream, from one goroutine, with nothing else per stream
// (no goroutine, no queue, no timer). The load tool runs it as a child
// process (-floor), so that its CPU is counted the way the server's is.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Floor tuning.
const (
	// floorQueue is how many messages may wait for the floor's writer;
	// posts beyond it are refused with 503 (the writer has fallen behind).
	floorQueue = 1 << 16
	// floorStartTimeout bounds how long the child floor takes to listen.
	floorStartTimeout = 10 * time.Second
)

// floorEvent is one encoded message for the floor's writer.
type floorEvent struct {
	seq  uint64
	data []byte
}

// floorConn is one stream of the floor.
type floorConn struct {
	net.Conn
	// after is the sequence number the stream's preamble named: it gets
	// only later messages.
	after uint64
}

// floorServer is the raw floor's state.
type floorServer struct {
	start time.Time
	epoch int64
	queue chan floorEvent

	// mu guards seq, conns and joined.
	mu     sync.Mutex
	seq    uint64
	conns  []*floorConn
	joined int64

	deliveries atomic.Int64
}

// serveFloor runs the raw floor on addr until ctx ends. It prints the
// address it listens on to stdout as "floor listening on ADDR".
func serveFloor(ctx context.Context, addr string, stdout io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	f := &floorServer{start: time.Now(), epoch: time.Now().UnixMilli(), queue: make(chan floorEvent, floorQueue)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream", f.handleStream)
	mux.HandleFunc("POST /post", f.handlePost)
	mux.HandleFunc("GET /stats", f.handleStats)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "floor listening on %s\n", ln.Addr())
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		f.write()
	}()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	err = srv.Serve(ln)
	close(f.queue)
	<-writerDone
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// write is the floor's one writer: each message, once encoded, goes to
// every stream that joined before it, one write per stream.
func (f *floorServer) write() {
	var conns []*floorConn
	for ev := range f.queue {
		f.mu.Lock()
		conns = append(conns[:0], f.conns...)
		f.mu.Unlock()
		var n, dead int64
		for _, c := range conns {
			if c.after >= ev.seq {
				continue
			}
			if _, err := c.Write(ev.data); err != nil {
				c.Close()
				c.after = ^uint64(0)
				dead++
				continue
			}
			n++
		}
		f.deliveries.Add(n)
		if dead > 0 {
			f.mu.Lock()
			f.conns = slices.DeleteFunc(f.conns, func(c *floorConn) bool { return c.after == ^uint64(0) })
			f.mu.Unlock()
		}
	}
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
}

// handleStream takes the connection over and adds it to the writer's
// streams after writing the response head and the preamble.
func (f *floorServer) handleStream(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
	_ = conn.SetDeadline(time.Time{})
	f.mu.Lock()
	defer f.mu.Unlock()
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n" +
		"id: " + strconv.FormatInt(f.epoch, 10) + "-" + strconv.FormatUint(f.seq, 10) + "\nretry: 1000\n\n"
	if _, err := io.WriteString(conn, head); err != nil {
		conn.Close()
		return
	}
	f.conns = append(f.conns, &floorConn{Conn: conn, after: f.seq})
	f.joined++
}

// handlePost numbers and encodes a message and queues it for the writer.
func (f *floorServer) handlePost(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Username string `json:"username"`
		Content  string `json:"content"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&in); err != nil {
		http.Error(w, `{"error":"bad json"}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.seq++
	msg := struct {
		ID       string    `json:"id"`
		Username string    `json:"username"`
		Content  string    `json:"content"`
		Time     time.Time `json:"time"`
	}{strconv.FormatInt(f.epoch, 10) + "-" + strconv.FormatUint(f.seq, 10), in.Username, in.Content, time.Now().UTC()}
	data, _ := json.Marshal(msg)
	ev := floorEvent{seq: f.seq, data: append(append(append([]byte("id: "+msg.ID+"\ndata: "), data...), '\n'), '\n')}
	select {
	case f.queue <- ev:
	default:
		f.mu.Unlock()
		http.Error(w, `{"error":"writer behind"}`, http.StatusServiceUnavailable)
		return
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	w.Write(data)
}

// handleStats answers with the fields of the chat server's /stats that the
// load tool reads.
func (f *floorServer) handleStats(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	st := serverStats{Clients: int64(len(f.conns)), ConnectionsTotal: f.joined, MessagesPosted: int64(f.seq)}
	f.mu.Unlock()
	st.Deliveries = f.deliveries.Load()
	st.StreamWrites = st.Deliveries // one write per delivery, always
	st.UptimeSeconds = time.Since(f.start).Seconds()
	st.Goroutines = int64(runtime.NumGoroutine())
	cpu, _ := selfUsage()
	st.CPUSeconds = cpu.Seconds()
	st.RSSBytes = currentRSS()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.HeapBytes = int64(ms.HeapAlloc)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}

// currentRSS returns this process's resident set size from /proc (Linux),
// or 0.
func currentRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, ok := parseUint(f[1])
	if !ok {
		return 0
	}
	return int64(pages) * int64(os.Getpagesize())
}

// floorChild is a raw floor running as a child process of the load tool.
type floorChild struct {
	cmd *exec.Cmd
	url string
}

// startFloor starts this program as a raw floor on a free loopback port
// and returns it once it listens.
func startFloor(ctx context.Context) (*floorChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start floor: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "-serve-floor", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start floor: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start floor: %w", err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
		io.Copy(io.Discard, out)
	}()
	select {
	case s := <-line:
		addr, ok := strings.CutPrefix(strings.TrimSpace(s), "floor listening on ")
		if !ok {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, fmt.Errorf("start floor: unexpected output %q", s)
		}
		return &floorChild{cmd: cmd, url: "http://" + addr}, nil
	case <-time.After(floorStartTimeout):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, errors.New("start floor: it did not start listening")
	}
}

// stop ends the child and waits for it.
func (c *floorChild) stop() {
	c.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() {
		c.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// floorFigures is what the report keeps of the run against the floor.
type floorFigures struct {
	URL               string  `json:"url"`
	Lost              int64   `json:"deliveries_lost"`
	Duplicated        int64   `json:"deliveries_duplicated"`
	OutOfOrder        int64   `json:"deliveries_out_of_order"`
	Delivered         int64   `json:"deliveries_delivered"`
	P50ms             float64 `json:"p50_ms"`
	P99ms             float64 `json:"p99_ms"`
	CPUSecs           float64 `json:"cpu_seconds"`
	DelivPerCPU       float64 `json:"deliveries_per_cpu_second"`
	CPUUsPerDelivery  float64 `json:"cpu_us_per_delivery"`
	OtherCPUSecs      float64 `json:"other_processes_cpu_seconds"`
	ToolUsPerDelivery float64 `json:"tool_us_per_delivery"`
}

// newFloorFigures keeps the floor's figures from its report.
func newFloorFigures(rep *report) *floorFigures {
	return &floorFigures{
		URL:               rep.URL,
		Lost:              rep.Lost,
		Duplicated:        rep.Duplicated,
		OutOfOrder:        rep.OutOfOrder,
		Delivered:         rep.Delivered,
		P50ms:             rep.Latency.P50ms,
		P99ms:             rep.Latency.P99ms,
		CPUSecs:           rep.ServerCPUSecs,
		DelivPerCPU:       rep.ServerDelivPerCPU,
		CPUUsPerDelivery:  rep.ServerUsPerDeliv,
		OtherCPUSecs:      rep.OtherCPUSecs,
		ToolUsPerDelivery: rep.ToolUsPerDeliv,
	}
}
