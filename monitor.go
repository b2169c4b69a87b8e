package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"chat/internal/clusterlog"
	"chat/internal/config"
	"chat/internal/httpx"
	"chat/internal/presence"
)

// Stats holds the server's counters. The hub, the handlers and the stream
// writers update it; /stats, /metrics and the monitor read it.
type Stats struct {
	// mu guards every field below it.
	mu sync.Mutex
	// start is when the server started.
	start time.Time
	// clients is the number of clients in the room now.
	clients int
	// peakClients is the highest clients has been.
	peakClients int
	// connectionsTotal counts streams ever opened.
	connectionsTotal uint64
	// messagesPosted counts committed messages.
	messagesPosted uint64
	// slowDropped counts messages that did not fit in a slow client's
	// queue (the client was disconnected and resumes from history).
	slowDropped uint64
	// slowDisconnects counts clients disconnected for being slow.
	slowDisconnects uint64
	// postsRejected counts posts answered with an error.
	postsRejected uint64
	// streamsRejected counts streams refused by a limit.
	streamsRejected uint64
	// historySize is the number of messages in history.
	historySize int
	// people is the number of names on this node's streams; anonymous
	// the number of its streams without a name.
	people, anonymous int
	// room is the whole room's presence in a cluster: this node's streams
	// and the other nodes' shares.
	room presence.Totals

	// deliveries counts messages written to clients. It is updated by
	// every stream writer after every write, so it is an atomic rather than
	// a field under mu: the writers never contend on the lock.
	deliveries atomic.Uint64
	// writes counts the stream writes that carried chat messages, so
	// that deliveries/writes is how many messages a write carried (the
	// batching's effect). Updated with deliveries, by the same writers.
	writes atomic.Uint64
	// deliveryLatency is the time from a message's acceptance to its
	// write to a client.
	deliveryLatency *histogram
	// postLatency is the time POST /post takes to answer.
	postLatency *histogram

	// conns reports the connections the listener counts, set by
	// countConnections before serving starts (nil: none).
	conns connCounter
	// journalErr reports the journal's state: nil while it works, or the
	// error that failed it. It is nil when there is no journal (no -data).
	// watchJournal sets it before the server serves; it is not changed
	// after, so it needs no lock.
	journalErr func() error
	// journalSyncs is the time each fsync of the journal takes; its count
	// is the number of fsyncs.
	journalSyncs *histogram
	// cluster reports the node's NATS state when the room's log is in
	// NATS (nil otherwise). watchCluster sets it before the server serves.
	cluster clusterWatch
}

// clusterWatch is what the statistics read of a log in NATS: its state,
// and why it cannot take posts now (nil when it can).
type clusterWatch interface {
	Status() clusterlog.Status
	Health() error
}

// watchCluster makes the statistics report c's state (/stats "nats",
// /metrics chat_nats_*, /healthz). Call it once, before the server serves.
func (s *Stats) watchCluster(c clusterWatch) { s.cluster = c }

// clusterFailure returns why the node's NATS log cannot take posts now, or
// nil when it can or when there is none.
func (s *Stats) clusterFailure() error {
	if s.cluster == nil {
		return nil
	}
	return s.cluster.Health()
}

// connCounter is what the listener reports about connections: how many are
// open and how many its per-address caps refused.
type connCounter interface {
	Open() int
	Refused() uint64
}

// countConnections makes the statistics report c's figures. Call it before
// the server starts serving.
func (s *Stats) countConnections(c connCounter) { s.conns = c }

// NewStats returns zeroed statistics whose uptime starts now.
func NewStats() *Stats {
	return &Stats{
		start:           time.Now(),
		deliveryLatency: newHistogram(latencyBuckets...),
		postLatency:     newHistogram(latencyBuckets...),
		journalSyncs:    newHistogram(syncBuckets...),
	}
}

// watchJournal makes the statistics report the state of the journal whose
// Err method is journalErr (/stats "journal", /metrics chat_journal_failed,
// /healthz). Call it once, before the server serves.
func (s *Stats) watchJournal(journalErr func() error) { s.journalErr = journalErr }

// journalFailure returns the error that failed the journal, or nil while it
// works or when there is none.
func (s *Stats) journalFailure() error {
	if s.journalErr == nil {
		return nil
	}
	return s.journalErr()
}

// observeJournalSync records one fsync of the journal that took d. The
// journal calls it (journal.ObserveSync).
func (s *Stats) observeJournalSync(d time.Duration) { s.journalSyncs.observe(d, 1) }

// posted records a committed message and the resulting history size.
func (s *Stats) posted(historySize int) {
	s.mu.Lock()
	s.messagesPosted++
	s.historySize = historySize
	s.mu.Unlock()
}

// setHistory records the history size.
func (s *Stats) setHistory(n int) {
	s.mu.Lock()
	s.historySize = n
	s.mu.Unlock()
}

// joined records a new stream and the resulting number of clients.
func (s *Stats) joined(clients int) {
	s.mu.Lock()
	s.connectionsTotal++
	s.clients = clients
	s.peakClients = max(s.peakClients, clients)
	s.mu.Unlock()
}

// setClients records the number of clients.
func (s *Stats) setClients(n int) {
	s.mu.Lock()
	s.clients = n
	s.mu.Unlock()
}

// setPresence records the people online and the anonymous streams, on
// this node and in the room.
func (s *Stats) setPresence(local, room presence.Totals) {
	s.mu.Lock()
	s.people, s.anonymous, s.room = local.People, local.Anonymous, room
	s.mu.Unlock()
}

// slowClient records a client disconnected because a frame of n messages
// did not fit in its queue.
func (s *Stats) slowClient(n int) {
	s.mu.Lock()
	s.slowDisconnects++
	s.slowDropped += uint64(n)
	s.mu.Unlock()
}

// rejectedPost records a post answered with an error.
func (s *Stats) rejectedPost() {
	s.mu.Lock()
	s.postsRejected++
	s.mu.Unlock()
}

// rejectedStream records a stream refused by a limit.
func (s *Stats) rejectedStream() {
	s.mu.Lock()
	s.streamsRejected++
	s.mu.Unlock()
}

// delivered records one write that carried n messages to one client (a
// write without messages, n 0, is not counted).
func (s *Stats) delivered(n int) {
	if n > 0 {
		s.deliveries.Add(uint64(n))
		s.writes.Add(1)
	}
}

// StatsSnapshot is a copy of the statistics at one moment, as /stats
// returns it.
type StatsSnapshot struct {
	Clients          int     `json:"clients"`
	People           int     `json:"people"`
	Anonymous        int     `json:"anonymous"`
	PeakClients      int     `json:"peak_clients"`
	ConnectionsTotal uint64  `json:"connections_total"`
	MessagesPosted   uint64  `json:"messages_posted"`
	Deliveries       uint64  `json:"deliveries"`
	StreamWrites     uint64  `json:"stream_writes"`
	SlowDropped      uint64  `json:"slow_dropped_messages"`
	SlowDisconnects  uint64  `json:"slow_disconnects"`
	PostsRejected    uint64  `json:"posts_rejected"`
	StreamsRejected  uint64  `json:"streams_rejected"`
	HistorySize      int     `json:"history_size"`
	UptimeSeconds    float64 `json:"uptime_seconds"`
	Goroutines       int     `json:"goroutines"`
	CPUSeconds       float64 `json:"cpu_seconds"`
	RSSBytes         uint64  `json:"rss_bytes"`
	HeapBytes        uint64  `json:"heap_bytes"`
	// ConnectionsOpen and ConnectionsRefused are the listener's: TCP
	// connections open now that count against the per-address caps, and
	// those the caps closed at accept.
	ConnectionsOpen    int    `json:"connections_open"`
	ConnectionsRefused uint64 `json:"connections_refused"`
	// Journal is "ok", or "failed" once a write or fsync of the journal has
	// failed; it is absent without a journal, and so is JournalFsyncs, the
	// number of fsyncs of the journal.
	Journal       string  `json:"journal,omitempty"`
	JournalFsyncs *uint64 `json:"journal_fsyncs,omitempty"`
	// NATS is the node's NATS state when the room's log is in NATS:
	// connected, the server, reconnects, the last sequence read, the
	// posts in flight, and why it cannot take posts now, if it cannot.
	NATS *clusterlog.Status `json:"nats,omitempty"`
	// Room is the whole room in a cluster (with NATS): the people and
	// anonymous streams on every node, every node's streams, and how
	// many nodes the figures come from (this one and those whose shares
	// it has). The other figures are this node's.
	Room *RoomTotals `json:"room,omitempty"`
}

// RoomTotals are the figures of the whole room, in a cluster.
type RoomTotals struct {
	People    int `json:"people"`
	Anonymous int `json:"anonymous"`
	Streams   int `json:"streams"`
	Nodes     int `json:"nodes"`
}

// Snapshot returns the current statistics, including the process's
// goroutines, CPU time and memory.
func (s *Stats) Snapshot() StatsSnapshot {
	s.mu.Lock()
	snap := StatsSnapshot{
		Clients:          s.clients,
		People:           s.people,
		Anonymous:        s.anonymous,
		PeakClients:      s.peakClients,
		ConnectionsTotal: s.connectionsTotal,
		MessagesPosted:   s.messagesPosted,
		SlowDropped:      s.slowDropped,
		SlowDisconnects:  s.slowDisconnects,
		PostsRejected:    s.postsRejected,
		StreamsRejected:  s.streamsRejected,
		HistorySize:      s.historySize,
		UptimeSeconds:    time.Since(s.start).Seconds(),
	}
	room := RoomTotals(s.room)
	s.mu.Unlock()
	snap.Deliveries = s.deliveries.Load()
	snap.StreamWrites = s.writes.Load()
	if s.conns != nil {
		snap.ConnectionsOpen, snap.ConnectionsRefused = s.conns.Open(), s.conns.Refused()
	}
	snap.Goroutines = runtime.NumGoroutine()
	snap.CPUSeconds, snap.RSSBytes = processUsage()
	snap.HeapBytes = heapBytes()
	if s.journalErr != nil {
		snap.Journal = "ok"
		if s.journalErr() != nil {
			snap.Journal = "failed"
		}
		n := s.journalSyncs.count()
		snap.JournalFsyncs = &n
	}
	if s.cluster != nil {
		st := s.cluster.Status()
		snap.NATS = &st
		snap.Room = &room
	}
	return snap
}

// heapMetric is the runtime/metrics name of the bytes in allocated heap
// objects: MemStats.HeapAlloc.
const heapMetric = "/memory/classes/heap/objects:bytes"

// heapBytes returns the bytes of allocated heap objects (what
// runtime.MemStats.HeapAlloc reports) from runtime/metrics, which reads it
// without stopping the world, unlike runtime.ReadMemStats: /stats and
// /metrics are polled, and must not pause every goroutine each time.
func heapBytes() uint64 {
	s := [1]metrics.Sample{{Name: heapMetric}}
	metrics.Read(s[:])
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// processUsage returns the CPU time (user and system) and the resident set
// size of this process, read from /proc on Linux. Elsewhere it returns
// zeros.
func processUsage() (cpuSeconds float64, rssBytes uint64) {
	const clockTicks = 100 // USER_HZ, 100 on every Linux architecture Go supports
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		// Fields after the command name, which is in parentheses and may
		// contain spaces: state is field 3, utime 14, stime 15.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			f := bytes.Fields(b[i+1:])
			if len(f) > 12 {
				ut, _ := strconv.ParseUint(string(f[11]), 10, 64)
				st, _ := strconv.ParseUint(string(f[12]), 10, 64)
				cpuSeconds = float64(ut+st) / clockTicks
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := bytes.Fields(b); len(f) > 1 {
			pages, _ := strconv.ParseUint(string(f[1]), 10, 64)
			rssBytes = pages * uint64(os.Getpagesize())
		}
	}
	return cpuSeconds, rssBytes
}

// runMonitor logs one line of statistics every interval until ctx ends,
// then returns. It logs nothing if interval is not positive.
func runMonitor(ctx context.Context, interval time.Duration, stats *Stats, logger *slog.Logger) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s := stats.Snapshot()
			logger.Info("stats",
				"clients", s.Clients,
				"people", s.People,
				"peak_clients", s.PeakClients,
				"messages", s.MessagesPosted,
				"deliveries", s.Deliveries,
				"slow_disconnects", s.SlowDisconnects,
				"posts_rejected", s.PostsRejected,
				"history", s.HistorySize,
				"goroutines", s.Goroutines,
				"rss_mib", s.RSSBytes>>20,
			)
		}
	}
}

// histogram counts observations of a duration in fixed buckets. It is safe
// for concurrent use without a lock: every field is atomic, so the stream
// writers that observe on every write never contend on a mutex.
type histogram struct {
	// bounds are the upper bounds of the buckets, in seconds, ascending.
	bounds []float64
	// counts[i] counts observations <= bounds[i] and > bounds[i-1];
	// counts[len(bounds)] counts the rest.
	counts []atomic.Uint64
	// sumMicros is the sum of all observations, in microseconds.
	sumMicros atomic.Uint64
}

// newHistogram returns a histogram with the given bucket bounds (seconds).
func newHistogram(bounds ...float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// latencyBuckets are the bucket bounds of the latency histograms.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// syncBuckets are the bucket bounds of the journal's fsync histogram: from
// 100 µs (a fast SSD) to 10 s (a disk that is failing).
var syncBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// observe records n observations of d.
func (h *histogram) observe(d time.Duration, n int) {
	s := d.Seconds()
	i := 0
	for i < len(h.bounds) && s > h.bounds[i] {
		i++
	}
	h.counts[i].Add(uint64(n))
	h.sumMicros.Add(uint64(max(d.Microseconds(), 0)) * uint64(n))
}

// count returns the number of observations.
func (h *histogram) count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// write writes the histogram in the Prometheus text format.
func (h *histogram) write(w io.Writer, name, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", name, formatValue(b), cum)
	}
	cum += h.counts[len(h.bounds)].Load()
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, cum)
	fmt.Fprintf(w, "%s_sum %s\n", name, formatValue(float64(h.sumMicros.Load())/1e6))
	fmt.Fprintf(w, "%s_count %d\n", name, cum)
}

// formatValue formats a sample value: a whole number in plain decimal
// ("9678848", where strconv's shortest form would give "9.678848e+06"),
// anything else in the shortest form that reads back exactly ("+Inf" and
// "NaN" included, as the format spells them).
func formatValue(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// handleStats serves the statistics as JSON.
func handleStats(stats *Stats) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		_ = httpx.Encode(w, http.StatusOK, stats.Snapshot())
	})
}

// handleHealth answers 200 while the server can take posts, and 503 once
// its journal has failed (every post would get 500 until a restart), with the
// error that failed it, while its NATS log cannot be reached (posts get
// 503), with the reason, or once shutdown has begun (shuttingDown is set).
// A load balancer that checks it sends nobody to a server that cannot store
// a message.
func handleHealth(shuttingDown *atomic.Bool, stats *Stats) http.Handler {
	type response struct {
		Status string `json:"status"`
		Error  string `json:"error,omitempty"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if err := stats.journalFailure(); err != nil {
			_ = httpx.Encode(w, http.StatusServiceUnavailable, response{Status: "journal failed", Error: err.Error()})
			return
		}
		if err := stats.clusterFailure(); err != nil {
			_ = httpx.Encode(w, http.StatusServiceUnavailable, response{Status: "nats unavailable", Error: err.Error()})
			return
		}
		if shuttingDown.Load() {
			_ = httpx.Encode(w, http.StatusServiceUnavailable, response{Status: "shutting down"})
			return
		}
		_ = httpx.Encode(w, http.StatusOK, response{Status: "ok"})
	})
}

// handleMetrics serves the statistics in the Prometheus text exposition
// format (version 0.0.4).
func handleMetrics(stats *Stats) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		s := stats.Snapshot()
		metric := func(name, typ, help string, v float64) {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, typ, name, formatValue(v))
		}
		metric("chat_clients", "gauge", "Streams connected now.", float64(s.Clients))
		metric("chat_people", "gauge", "Distinct names on the streams connected now.", float64(s.People))
		metric("chat_anonymous_streams", "gauge", "Streams connected now without a name.", float64(s.Anonymous))
		metric("chat_clients_peak", "gauge", "Most streams connected at once.", float64(s.PeakClients))
		metric("chat_connections_total", "counter", "Streams opened.", float64(s.ConnectionsTotal))
		metric("chat_messages_total", "counter", "Messages accepted and sent out.", float64(s.MessagesPosted))
		metric("chat_deliveries_total", "counter", "Messages written to stream clients.", float64(s.Deliveries))
		metric("chat_stream_writes_total", "counter", "Writes to stream clients that carried messages (deliveries per write is the batching).", float64(s.StreamWrites))
		metric("chat_slow_dropped_messages_total", "counter", "Messages that did not fit a slow client's queue (the client was disconnected and resumes from history).", float64(s.SlowDropped))
		metric("chat_slow_disconnects_total", "counter", "Clients disconnected for being slow.", float64(s.SlowDisconnects))
		metric("chat_posts_rejected_total", "counter", "Posts answered with an error.", float64(s.PostsRejected))
		metric("chat_streams_rejected_total", "counter", "Streams refused by a limit or as cross-site.", float64(s.StreamsRejected))
		metric("chat_tcp_connections", "gauge", "TCP connections open that count against the per-address caps.", float64(s.ConnectionsOpen))
		metric("chat_tcp_connections_refused_total", "counter", "TCP connections closed at accept by the per-address caps.", float64(s.ConnectionsRefused))
		metric("chat_history_messages", "gauge", "Messages held in history.", float64(s.HistorySize))
		metric("chat_uptime_seconds", "gauge", "Seconds since the server started.", s.UptimeSeconds)
		metric("chat_goroutines", "gauge", "Goroutines in the process.", float64(s.Goroutines))
		metric("process_cpu_seconds_total", "counter", "User and system CPU time spent.", s.CPUSeconds)
		metric("process_resident_memory_bytes", "gauge", "Resident memory size.", float64(s.RSSBytes))
		metric("chat_heap_bytes", "gauge", "Bytes of allocated heap objects.", float64(s.HeapBytes))
		stats.deliveryLatency.write(w, "chat_delivery_latency_seconds", "Time from a message's acceptance to its write to a client.")
		stats.postLatency.write(w, "chat_post_duration_seconds", "Time to handle POST /post, from request to answer.")
		if s.Journal != "" {
			failed := 0.0
			if s.Journal == "failed" {
				failed = 1
			}
			metric("chat_journal_failed", "gauge", "1 once a write or fsync of the journal has failed (posts then get 500), else 0.", failed)
			metric("chat_journal_fsyncs_total", "counter", "Fsyncs of the journal.", float64(*s.JournalFsyncs))
			stats.journalSyncs.write(w, "chat_journal_fsync_duration_seconds", "Time each fsync of the journal takes.")
		}
		if n := s.NATS; n != nil {
			connected := 0.0
			if n.Connected && n.Error == "" {
				connected = 1
			}
			metric("chat_nats_connected", "gauge", "1 while the node is connected to NATS and reads the room's stream, else 0 (posts then get 503).", connected)
			metric("chat_nats_reconnects_total", "counter", "NATS connections made after the first.", float64(n.Reconnects))
			metric("chat_nats_last_sequence", "gauge", "Stream sequence of the last record the node read.", float64(n.LastSeq))
			metric("chat_nats_in_flight", "gauge", "Posts and deletions published and not yet settled.", float64(n.InFlight))
		}
		if rt := s.Room; rt != nil {
			metric("chat_room_people", "gauge", "Distinct names on the streams of every node of the room.", float64(rt.People))
			metric("chat_room_anonymous_streams", "gauge", "Streams without a name on every node of the room.", float64(rt.Anonymous))
			metric("chat_room_streams", "gauge", "Streams connected to every node of the room.", float64(rt.Streams))
			metric("chat_room_nodes", "gauge", "Nodes of the room seen: this one and those whose presence it has.", float64(rt.Nodes))
		}
	})
}

// servePprof serves the profiling endpoints on their own listener at addr
// until the returned function is called, which closes it and waits for its
// goroutine. A non-loopback addr is allowed (a private network's, say) but
// logged as a warning: the profiles are unauthenticated.
func servePprof(addr string, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof: listen on %s: %w", addr, err)
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err != nil || !ap.Addr().IsLoopback() {
		logger.Warn("profiles are served on a non-loopback address, without authentication", "addr", ln.Addr().String())
	}
	logger.Info("pprof listening", "addr", ln.Addr().String())
	srv := &http.Server{
		Handler:           handlePprof(),
		ReadHeaderTimeout: config.ReadHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		_ = srv.Serve(ln)
		close(done)
	}()
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}

// handlePprof returns the profiling endpoints of net/http/pprof under
// /debug/pprof/, for the separate -pprof-addr listener only: they expose
// goroutine stacks and command lines and never go on the public listener.
func handlePprof() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", handleNotFound())
	return mux
}
