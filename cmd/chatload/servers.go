package main

// The figures of the servers under load: GET /stats of every node of -url,
// summed, and, with -pids, the CPU time and memory of the server's
// processes on this machine (nodes and NATS servers), read from /proc.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serverStats is the part of GET /stats the report uses, summed over the
// nodes that answered, with the processes of -pids at the same moment.
type serverStats struct {
	Clients             int64   `json:"clients"`
	People              int64   `json:"people"`
	Anonymous           int64   `json:"anonymous"`
	PeakClients         int64   `json:"peak_clients"`
	ConnectionsTotal    int64   `json:"connections_total"`
	MessagesPosted      int64   `json:"messages_posted"`
	Deliveries          int64   `json:"deliveries"`
	StreamWrites        int64   `json:"stream_writes"`
	SlowDroppedMessages int64   `json:"slow_dropped_messages"`
	SlowDisconnects     int64   `json:"slow_disconnects"`
	PostsRejected       int64   `json:"posts_rejected"`
	HistorySize         int64   `json:"history_size"`
	UptimeSeconds       float64 `json:"uptime_seconds"`
	Goroutines          int64   `json:"goroutines"`
	CPUSeconds          float64 `json:"cpu_seconds"`
	RSSBytes            int64   `json:"rss_bytes"`
	HeapBytes           int64   `json:"heap_bytes"`

	// Nodes is how many nodes' /stats were summed.
	Nodes int `json:"nodes"`
	// Processes are the processes of -pids, in its order.
	Processes []procStat `json:"processes,omitempty"`
}

// procStat is one server process at one moment.
type procStat struct {
	PID        int     `json:"pid"`
	Name       string  `json:"name"`        // its command name
	CPUSeconds float64 `json:"cpu_seconds"` // user and system time since it started
	RSSBytes   int64   `json:"rss_bytes"`
}

// add adds the counters of one node's st to s (the uptime is the
// longest).
func (s *serverStats) add(st *serverStats) {
	s.Clients += st.Clients
	s.People += st.People
	s.Anonymous += st.Anonymous
	s.PeakClients += st.PeakClients
	s.ConnectionsTotal += st.ConnectionsTotal
	s.MessagesPosted += st.MessagesPosted
	s.Deliveries += st.Deliveries
	s.StreamWrites += st.StreamWrites
	s.SlowDroppedMessages += st.SlowDroppedMessages
	s.SlowDisconnects += st.SlowDisconnects
	s.PostsRejected += st.PostsRejected
	s.HistorySize += st.HistorySize
	s.UptimeSeconds = max(s.UptimeSeconds, st.UptimeSeconds)
	s.Goroutines += st.Goroutines
	s.CPUSeconds += st.CPUSeconds
	s.RSSBytes += st.RSSBytes
	s.HeapBytes += st.HeapBytes
	s.Nodes++
}

// cpu returns the server's CPU seconds: the processes' of -pids when
// there are any, else what the nodes said.
func (s *serverStats) cpu() float64 {
	if len(s.Processes) == 0 {
		return s.CPUSeconds
	}
	var sum float64
	for _, p := range s.Processes {
		sum += p.CPUSeconds
	}
	return sum
}

// rss returns the server's resident memory: the processes' of -pids when
// there are any, else what the nodes said.
func (s *serverStats) rss() int64 {
	if len(s.Processes) == 0 {
		return s.RSSBytes
	}
	var sum int64
	for _, p := range s.Processes {
		sum += p.RSSBytes
	}
	return sum
}

// fetchStats reads GET /stats of every node of -url and sums them, and
// reads the processes of -pids. It returns nil if no node answered and
// there are no processes.
func (r *loadRun) fetchStats(ctx context.Context, client *http.Client) *serverStats {
	var sum *serverStats
	for _, t := range r.targets {
		if st := r.fetchNodeStats(ctx, client, t.statsURL); st != nil {
			if sum == nil {
				sum = &serverStats{}
			}
			sum.add(st)
		}
	}
	if len(r.pids) == 0 {
		return sum
	}
	if sum == nil {
		sum = &serverStats{}
	}
	for _, pid := range r.pids {
		p, err := readProc(pid)
		if err != nil {
			r.warnf("-pids: %v", err)
		}
		sum.Processes = append(sum.Processes, p)
	}
	return sum
}

// fetchNodeStats reads one node's GET /stats; it returns nil if the node
// has none.
func (r *loadRun) fetchNodeStats(ctx context.Context, client *http.Client, statsURL string) *serverStats {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, statsURL, nil)
	if err != nil {
		return nil
	}
	resp, err := client.Do(req)
	if err != nil {
		r.logf("stats: %v", err)
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.logf("stats: %s: status %d", statsURL, resp.StatusCode)
		return nil
	}
	var st serverStats
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		r.logf("stats: %s: %v", statsURL, err)
		return nil
	}
	return &st
}

// parsePIDs parses -pids: comma-separated process ids.
func parsePIDs(list string) ([]int, error) {
	var pids []int
	for f := range strings.SplitSeq(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("%q is not a process id", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// errProcStat is the error of a /proc/PID/stat line that cannot be read.
var errProcStat = errors.New("malformed /proc/PID/stat")

// parseProcStat reads a /proc/PID/stat line: the command name, the user
// and system CPU time in clock ticks, and the resident set in pages. The
// name is in parentheses and may hold anything, parentheses and spaces
// included: it ends at the last ')'.
func parseProcStat(b []byte) (name string, utime, stime, rssPages int64, err error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, 0, 0, errProcStat
	}
	// After the name: state (field 3), …, utime (14), stime (15), …,
	// rss (24).
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 22 {
		return "", 0, 0, 0, errProcStat
	}
	var n [3]int64
	for i, field := range []string{f[11], f[12], f[21]} {
		if n[i], err = strconv.ParseInt(field, 10, 64); err != nil || n[i] < 0 {
			return "", 0, 0, 0, errProcStat
		}
	}
	return string(b[open+1 : end]), n[0], n[1], n[2], nil
}
