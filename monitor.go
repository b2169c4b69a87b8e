package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
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

	// deliveries counts messages written to clients. It is updated by
	// every stream writer after every write, so it is an atomic rather than
	// a field under mu: the writers never contend on the lock.
	deliveries atomic.Uint64
	// deliveryLatency is the time from a message's acceptance to its
	// write to a client.
	deliveryLatency *histogram
	// postLatency is the time POST /post takes to answer.
	postLatency *histogram
}

// NewStats returns zeroed statistics whose uptime starts now.
func NewStats() *Stats {
	return &Stats{
		start:           time.Now(),
		deliveryLatency: newHistogram(latencyBuckets...),
		postLatency:     newHistogram(latencyBuckets...),
	}
}

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

// left records the number of clients after one left.
func (s *Stats) left(clients int) { s.setClients(clients) }

// setClients records the number of clients.
func (s *Stats) setClients(n int) {
	s.mu.Lock()
	s.clients = n
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

// delivered records n messages written to one client.
func (s *Stats) delivered(n int) { s.deliveries.Add(uint64(n)) }

// StatsSnapshot is a copy of the statistics at one moment, as /stats
// returns it.
type StatsSnapshot struct {
	Clients          int     `json:"clients"`
	PeakClients      int     `json:"peak_clients"`
	ConnectionsTotal uint64  `json:"connections_total"`
	MessagesPosted   uint64  `json:"messages_posted"`
	Deliveries       uint64  `json:"deliveries"`
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
}

// Snapshot returns the current statistics, including the process's
// goroutines, CPU time and memory.
func (s *Stats) Snapshot() StatsSnapshot {
	s.mu.Lock()
	snap := StatsSnapshot{
		Clients:          s.clients,
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
	s.mu.Unlock()
	snap.Deliveries = s.deliveries.Load()
	snap.Goroutines = runtime.NumGoroutine()
	snap.CPUSeconds, snap.RSSBytes = processUsage()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	snap.HeapBytes = ms.HeapAlloc
	return snap
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
