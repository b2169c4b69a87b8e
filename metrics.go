package main

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

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
		metric("chat_clients_peak", "gauge", "Most streams connected at once.", float64(s.PeakClients))
		metric("chat_connections_total", "counter", "Streams opened.", float64(s.ConnectionsTotal))
		metric("chat_messages_total", "counter", "Messages accepted and sent out.", float64(s.MessagesPosted))
		metric("chat_deliveries_total", "counter", "Messages written to stream clients.", float64(s.Deliveries))
		metric("chat_slow_dropped_messages_total", "counter", "Messages that did not fit a slow client's queue (the client was disconnected and resumes from history).", float64(s.SlowDropped))
		metric("chat_slow_disconnects_total", "counter", "Clients disconnected for being slow.", float64(s.SlowDisconnects))
		metric("chat_posts_rejected_total", "counter", "Posts answered with an error.", float64(s.PostsRejected))
		metric("chat_streams_rejected_total", "counter", "Streams refused by a limit.", float64(s.StreamsRejected))
		metric("chat_history_messages", "gauge", "Messages held in history.", float64(s.HistorySize))
		metric("chat_uptime_seconds", "gauge", "Seconds since the server started.", s.UptimeSeconds)
		metric("chat_goroutines", "gauge", "Goroutines in the process.", float64(s.Goroutines))
		metric("process_cpu_seconds_total", "counter", "User and system CPU time spent.", s.CPUSeconds)
		metric("process_resident_memory_bytes", "gauge", "Resident memory size.", float64(s.RSSBytes))
		metric("chat_heap_bytes", "gauge", "Bytes of allocated heap objects.", float64(s.HeapBytes))
		stats.deliveryLatency.write(w, "chat_delivery_latency_seconds", "Time from a message's acceptance to its write to a client.")
		stats.postLatency.write(w, "chat_post_duration_seconds", "Time to handle POST /post, from request to answer.")
	})
}
