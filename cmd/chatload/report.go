package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// latencyFigures summarises a histogram in milliseconds.
type latencyFigures struct {
	Count  uint64  `json:"count"`
	P50ms  float64 `json:"p50_ms"`
	P90ms  float64 `json:"p90_ms"`
	P99ms  float64 `json:"p99_ms"`
	P999ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
}

// newLatencyFigures reads the percentiles of h (microseconds).
func newLatencyFigures(h *hist) latencyFigures {
	ms := func(us uint64) float64 { return float64(us) / 1000 }
	return latencyFigures{
		Count:  h.total.Load(),
		P50ms:  ms(h.quantile(0.50)),
		P90ms:  ms(h.quantile(0.90)),
		P99ms:  ms(h.quantile(0.99)),
		P999ms: ms(h.quantile(0.999)),
		MaxMs:  ms(h.max.Load()),
		MeanMs: h.mean() / 1000,
	}
}

// report holds every figure of a run; it is printed as one JSON line.
type report struct {
	URL         string `json:"url"`
	RunTag      string `json:"run_tag"`
	Interrupted bool   `json:"interrupted"`
	// Clean is true when nothing was lost, duplicated or reordered and every
	// stream opened.
	Clean bool `json:"clean"`

	Subs          int     `json:"subs"`
	SubsReady     int     `json:"subs_ready"`
	SubsFailed    int     `json:"subs_failed"`
	SubsEligible  int     `json:"subs_eligible"`
	SubsWithLoss  int     `json:"subs_with_loss"`
	Sources       int     `json:"sources"`
	ConnectSecs   float64 `json:"connect_seconds"`
	ConnectPerSec float64 `json:"connects_per_second"`
	HoldSecs      float64 `json:"hold_seconds"`
	SettleSecs    float64 `json:"settle_seconds"`

	Rate           float64        `json:"rate"`
	Duration       float64        `json:"duration_seconds"`
	Posters        int            `json:"posters"`
	PostsAttempted int64          `json:"posts_attempted"`
	PostsOK        int64          `json:"posts_ok"`
	PostsFailed    int64          `json:"posts_failed"`
	PostsByStatus  map[string]int `json:"posts_failed_by_status"`
	PostsUnsent    int64          `json:"posts_unsent"`
	PostsPerSec    float64        `json:"posts_per_second"`
	PostRTT        latencyFigures `json:"post_rtt"`

	Expected     int64   `json:"deliveries_expected"`
	Delivered    int64   `json:"deliveries_delivered"`
	Lost         int64   `json:"deliveries_lost"`
	Duplicated   int64   `json:"deliveries_duplicated"`
	OutOfOrder   int64   `json:"deliveries_out_of_order"`
	Unacked      int64   `json:"deliveries_unacked"`
	RunDelivered int64   `json:"deliveries_total"`
	DelivPerSec  float64 `json:"deliveries_per_second"`
	Foreign      int64   `json:"events_foreign"`
	IDMismatch   int64   `json:"events_id_mismatch"`
	BadEvents    int64   `json:"events_bad"`
	OtherTypes   int64   `json:"events_other_type"`

	// Names is set when every stream carried a name (-names).
	Names bool `json:"names"`
	// Presence and typing events received by all streams, and their bytes
	// on the wire; the per-stream figures are means over the streams that
	// opened, and the max the most one stream received.
	PresenceEvents         int64   `json:"presence_events"`
	PresenceBytes          int64   `json:"presence_bytes"`
	PresencePerStream      float64 `json:"presence_events_per_stream"`
	PresenceMaxPerStream   int64   `json:"presence_events_max_per_stream"`
	PresenceBytesPerStream float64 `json:"presence_bytes_per_stream"`
	TypingEvents           int64   `json:"typing_events"`
	TypingBytes            int64   `json:"typing_bytes"`
	BeforePre              int64   `json:"events_before_preamble"`

	Reconnects   int64          `json:"reconnects"`
	Resets       int64          `json:"resets"`
	StreamStatus map[string]int `json:"stream_status"`
	Errors       map[string]int `json:"errors"`

	Latency        latencyFigures `json:"latency"`
	ServerToArrive latencyFigures `json:"server_time_to_arrival"`

	ServerCPUSecs float64 `json:"server_cpu_seconds"`
	// ServerConnectCPUSecs is the server's CPU over the connect and hold
	// phases (opening the streams, and the presence events that follow).
	ServerConnectCPUSecs float64 `json:"server_connect_cpu_seconds"`
	ServerDelivPerCPU    float64 `json:"server_deliveries_per_cpu_second"`
	ServerUsPerDeliv     float64 `json:"server_cpu_us_per_delivery"`
	ServerDeliveries     int64   `json:"server_deliveries_delta"`
	// ServerWrites is the server's count of stream writes that carried
	// messages over the posting phase, and ServerPerWrite the messages a
	// write carried on average (0 when the server does not count writes).
	ServerWrites         int64   `json:"server_writes_delta"`
	ServerPerWrite       float64 `json:"server_messages_per_write"`
	ServerSlowDisconn    int64   `json:"server_slow_disconnects_delta"`
	ServerRSSBefore      int64   `json:"server_rss_before"`
	ServerRSSStreams     int64   `json:"server_rss_streams"`
	ServerRSSEnd         int64   `json:"server_rss_end"`
	ServerBytesPerStream float64 `json:"server_bytes_per_stream"`
	ServerGorBefore      int64   `json:"server_goroutines_before"`
	ServerGorStreams     int64   `json:"server_goroutines_streams"`
	ServerGorEnd         int64   `json:"server_goroutines_end"`

	// Processes are the server's processes of -pids (nodes and NATS
	// servers); with them the server's CPU and memory figures above are
	// their sums.
	Processes []processFigures `json:"processes,omitempty"`

	ServerBefore  *serverStats `json:"server_before"`
	ServerStreams *serverStats `json:"server_streams"`
	ServerEnd     *serverStats `json:"server_end"`

	ToolCPUSecs    float64 `json:"tool_cpu_seconds"`
	ToolUsPerDeliv float64 `json:"tool_us_per_delivery"`
	ToolMaxRSS     int64   `json:"tool_max_rss_bytes"`

	// MachineCPUSecs is the whole machine's busy CPU time over the same
	// window as ServerCPUSecs and ToolCPUSecs (posting and settle);
	// OtherCPUSecs is what other processes used then: noise.
	MachineCPUSecs float64 `json:"machine_cpu_seconds"`
	OtherCPUSecs   float64 `json:"other_processes_cpu_seconds"`
	WindowSecs     float64 `json:"measure_window_seconds"`

	// Floor holds the figures of the same load against the raw floor
	// (-floor), run right after; FloorRatio is the server's CPU per
	// delivery divided by the floor's.
	Floor      *floorFigures `json:"floor,omitempty"`
	FloorRatio float64       `json:"server_to_floor_cpu_ratio,omitempty"`
}

// processFigures are one server process's figures over a run.
type processFigures struct {
	PID  int    `json:"pid"`
	Name string `json:"name"`
	// ConnectCPUSecs is its CPU over the connect and hold phases, and
	// CPUSecs over the posting phase.
	ConnectCPUSecs float64 `json:"connect_cpu_seconds"`
	CPUSecs        float64 `json:"cpu_seconds"`
	RSSBefore      int64   `json:"rss_before"`
	RSSStreams     int64   `json:"rss_streams"`
	RSSEnd         int64   `json:"rss_end"`
}

// perProcess returns each process's figures from the three samples,
// or nil when a sample lacks the processes.
func perProcess(b, st, e *serverStats) []processFigures {
	if b == nil || st == nil || e == nil || len(b.Processes) == 0 ||
		len(st.Processes) != len(b.Processes) || len(e.Processes) != len(b.Processes) {
		return nil
	}
	out := make([]processFigures, len(b.Processes))
	for i, p := range b.Processes {
		out[i] = processFigures{
			PID: p.PID, Name: p.Name,
			ConnectCPUSecs: st.Processes[i].CPUSeconds - p.CPUSeconds,
			CPUSecs:        e.Processes[i].CPUSeconds - st.Processes[i].CPUSeconds,
			RSSBefore:      p.RSSBytes, RSSStreams: st.Processes[i].RSSBytes, RSSEnd: e.Processes[i].RSSBytes,
		}
	}
	return out
}

// fill computes the figures from the stopped run.
func (rep *report) fill(r *loadRun, toolCPU time.Duration, toolMaxRSS int64) {
	pr := &r.posts
	rep.SubsFailed = int(r.subsFailed.Load())
	rep.PostsAttempted = pr.attempted.Load()
	rep.PostsOK = pr.ok.Load()
	rep.PostsFailed = pr.failed.Load()
	rep.PostsUnsent = int64(r.maxMsgs) - rep.PostsAttempted
	pr.mu.Lock()
	rep.PostsByStatus = pr.byStatus
	pr.mu.Unlock()
	if first, last := pr.firstSend.Load(), pr.lastAck.Load(); last > first && first != 0 {
		rep.PostsPerSec = float64(rep.PostsOK) / (float64(last-first) / 1e9)
	}
	rep.PostRTT = newLatencyFigures(&pr.rtt)

	acked := make([]uint64, (r.maxMsgs+63)/64)
	for n, id := range pr.acks {
		if id != (msgID{}) {
			acked[n/64] |= 1 << (n % 64)
		}
	}
	firstPost := r.firstPost.Load()
	var lastArrival int64
	for _, s := range r.subs {
		if s == nil {
			continue
		}
		rep.Duplicated += s.dups
		rep.OutOfOrder += s.outOfOrder
		rep.Foreign += s.foreign
		rep.IDMismatch += s.idMismatch
		rep.BadEvents += s.badEvents
		rep.OtherTypes += s.otherTypes
		rep.PresenceEvents += s.presence
		rep.PresenceBytes += s.presenceBytes
		rep.PresenceMaxPerStream = max(rep.PresenceMaxPerStream, s.presence)
		rep.TypingEvents += s.typing
		rep.TypingBytes += s.typingBytes
		rep.BeforePre += s.beforePre
		rep.RunDelivered += s.delivered.Load()
		rep.Unacked += popcountAndNot(s.got, acked)
		lastArrival = max(lastArrival, s.lastArrival)
		if s.readyAt != 0 && (firstPost == 0 || s.readyAt < firstPost) {
			rep.SubsEligible++
			got := popcountAnd(s.got, acked)
			rep.Delivered += got
			if got < rep.PostsOK {
				rep.SubsWithLoss++
			}
		}
	}
	if rep.SubsReady > 0 {
		rep.PresencePerStream = float64(rep.PresenceEvents) / float64(rep.SubsReady)
		rep.PresenceBytesPerStream = float64(rep.PresenceBytes) / float64(rep.SubsReady)
	}
	rep.Expected = rep.PostsOK * int64(rep.SubsEligible)
	rep.Lost = rep.Expected - rep.Delivered
	if lastArrival > firstPost && firstPost != 0 {
		rep.DelivPerSec = float64(rep.RunDelivered) / (float64(lastArrival-firstPost) / 1e9)
	}
	rep.Reconnects = r.reconnects.Load()
	rep.Resets = r.resets.Load()

	r.errMu.Lock()
	rep.StreamStatus = map[string]int{}
	for st, n := range r.streamStatus {
		rep.StreamStatus[strconv.Itoa(st)] = n
	}
	rep.Errors = r.errorKinds
	if r.errorsOther > 0 {
		rep.Errors["(other errors)"] = r.errorsOther
	}
	r.errMu.Unlock()

	rep.Latency = newLatencyFigures(r.lat.merged())
	rep.ServerToArrive = newLatencyFigures(r.srvLat.merged())

	b, st, e := rep.ServerBefore, rep.ServerStreams, rep.ServerEnd
	if b != nil {
		rep.ServerRSSBefore, rep.ServerGorBefore = b.rss(), b.Goroutines
	}
	if st != nil {
		rep.ServerRSSStreams, rep.ServerGorStreams = st.rss(), st.Goroutines
	}
	if e != nil {
		rep.ServerRSSEnd, rep.ServerGorEnd = e.rss(), e.Goroutines
	}
	if b != nil && st != nil && rep.SubsReady > 0 && b.rss() > 0 {
		rep.ServerBytesPerStream = float64(st.rss()-b.rss()) / float64(rep.SubsReady)
	}
	if b != nil && st != nil {
		rep.ServerConnectCPUSecs = st.cpu() - b.cpu()
	}
	rep.Processes = perProcess(b, st, e)
	if st != nil && e != nil {
		rep.ServerCPUSecs = e.cpu() - st.cpu()
		rep.ServerDeliveries = e.Deliveries - st.Deliveries
		rep.ServerWrites = e.StreamWrites - st.StreamWrites
		if rep.ServerWrites > 0 {
			rep.ServerPerWrite = float64(rep.ServerDeliveries) / float64(rep.ServerWrites)
		}
		rep.ServerSlowDisconn = e.SlowDisconnects - st.SlowDisconnects
		if rep.ServerCPUSecs > 0 {
			rep.ServerDelivPerCPU = float64(rep.Delivered) / rep.ServerCPUSecs
		}
		if rep.Delivered > 0 {
			rep.ServerUsPerDeliv = rep.ServerCPUSecs * 1e6 / float64(rep.Delivered)
		}
	}
	rep.ToolCPUSecs = toolCPU.Seconds()
	if n := rep.RunDelivered + rep.Duplicated; n > 0 {
		rep.ToolUsPerDeliv = float64(toolCPU.Microseconds()) / float64(n)
	}
	rep.ToolMaxRSS = toolMaxRSS
	if rep.MachineCPUSecs > 0 {
		rep.OtherCPUSecs = max(0, rep.MachineCPUSecs-rep.ServerCPUSecs-rep.ToolCPUSecs)
	}
	rep.Clean = rep.Lost == 0 && rep.Duplicated == 0 && rep.OutOfOrder == 0 && rep.IDMismatch == 0 &&
		rep.BadEvents == 0 && rep.BeforePre == 0 && rep.SubsFailed == 0 && rep.SubsReady == rep.Subs
}

// writeJSON prints the report as one JSON line.
func (rep *report) writeJSON(w io.Writer) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// writeText prints a human summary.
func (rep *report) writeText(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	lat := func(l latencyFigures) string {
		return fmt.Sprintf("p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms  (n=%d)",
			l.P50ms, l.P90ms, l.P99ms, l.P999ms, l.MaxMs, l.Count)
	}
	p("== chatload %s (run %s)%s", rep.URL, rep.RunTag, map[bool]string{true: "  INTERRUPTED"}[rep.Interrupted])
	p("streams     %d/%d open (%d failed) over %d source address(es) in %.1fs (%.0f/s); hold %.0fs",
		rep.SubsReady, rep.Subs, rep.SubsFailed, rep.Sources, rep.ConnectSecs, rep.ConnectPerSec, rep.HoldSecs)
	if len(rep.StreamStatus) > 0 {
		p("            stream answers other than 200: %s", formatCounts(rep.StreamStatus))
		if rep.StreamStatus["429"] > 0 {
			p("            (429: the server limits streams per address: run it with -max-streams-per-addr 0, or spread with -sources)")
		}
	}
	p("posts       %d ok, %d failed%s, %d unsent of %d planned; %.1f/s achieved (asked %.1f/s by %d posters)",
		rep.PostsOK, rep.PostsFailed, formatCounts(rep.PostsByStatus), rep.PostsUnsent, rep.PostsAttempted+rep.PostsUnsent, rep.PostsPerSec, rep.Rate, rep.Posters)
	if rep.PostsByStatus["429"] > 0 {
		p("            (429: the server rate-limits posts per address: run it with -post-rate 0)")
	}
	p("post rtt    %s", lat(rep.PostRTT))
	p("deliveries  expected %d  delivered %d  lost %d  duplicated %d  out-of-order %d  (%d subscribers counted, %d with losses)",
		rep.Expected, rep.Delivered, rep.Lost, rep.Duplicated, rep.OutOfOrder, rep.SubsEligible, rep.SubsWithLoss)
	p("            %.0f/s; unacknowledged messages received %d; other events: foreign %d, other types %d, id mismatch %d, bad %d, not after preamble id %d",
		rep.DelivPerSec, rep.Unacked, rep.Foreign, rep.OtherTypes, rep.IDMismatch, rep.BadEvents, rep.BeforePre)
	p("presence    %d events (%.1f per stream, at most %d), %d bytes (%.0f per stream)%s; typing %d events, %d bytes",
		rep.PresenceEvents, rep.PresencePerStream, rep.PresenceMaxPerStream, rep.PresenceBytes, rep.PresenceBytesPerStream,
		map[bool]string{true: "; every stream named"}[rep.Names], rep.TypingEvents, rep.TypingBytes)
	if st := rep.ServerStreams; st != nil {
		p("            server roster with the streams open: %d people, %d anonymous streams", st.People, st.Anonymous)
	}
	p("reconnects  %d   resets %d", rep.Reconnects, rep.Resets)
	p("latency     %s  (post send -> arrival)", lat(rep.Latency))
	p("            %s  (server time -> arrival)", lat(rep.ServerToArrive))
	if rep.ServerEnd != nil || rep.ServerStreams != nil {
		p("server      cpu %.2fs to open the streams and hold them (connect and hold phases)", rep.ServerConnectCPUSecs)
		p("            cpu %.2fs for the posting phase -> %.0f deliveries per CPU-second, %.2f µs each (server counted %d deliveries, %d slow disconnects)",
			rep.ServerCPUSecs, rep.ServerDelivPerCPU, rep.ServerUsPerDeliv, rep.ServerDeliveries, rep.ServerSlowDisconn)
		if rep.ServerWrites > 0 {
			p("            %d writes carried them: %.2f messages a write", rep.ServerWrites, rep.ServerPerWrite)
		}
		p("            rss before %s, with streams %s, end %s -> %.0f bytes per stream; goroutines %d / %d / %d",
			mib(rep.ServerRSSBefore), mib(rep.ServerRSSStreams), mib(rep.ServerRSSEnd), rep.ServerBytesPerStream,
			rep.ServerGorBefore, rep.ServerGorStreams, rep.ServerGorEnd)
		if st := rep.ServerStreams; st != nil && st.Nodes > 1 {
			p("            (the sum over %d nodes' /stats)", st.Nodes)
		}
		for _, pr := range rep.Processes {
			p("            pid %d %s: cpu %.2fs connect and hold, %.2fs posting; rss %s before, %s with streams, %s end",
				pr.PID, pr.Name, pr.ConnectCPUSecs, pr.CPUSecs, mib(pr.RSSBefore), mib(pr.RSSStreams), mib(pr.RSSEnd))
		}
		if len(rep.Processes) > 0 {
			p("            (cpu and rss above: the sum of these %d processes)", len(rep.Processes))
		}
		if rep.ServerBefore != nil && (rep.ServerBefore.ConnectionsTotal > 0 || rep.ServerBytesPerStream < 0) {
			p("            (the server had served streams before this run: bytes per stream is only meaningful on a fresh server)")
		}
	} else {
		p("server      no /stats figures")
	}
	p("tool        cpu %.2fs (%.2f µs per delivery), max rss %s", rep.ToolCPUSecs, rep.ToolUsPerDeliv, mib(rep.ToolMaxRSS))
	if fl := rep.Floor; fl != nil {
		p("raw floor   lost %d, duplicated %d, out-of-order %d; p50 %.2f ms  p99 %.2f ms; cpu %.2fs -> %.0f deliveries per CPU-second (%.2f µs each; other processes %.2f CPU-s)",
			fl.Lost, fl.Duplicated, fl.OutOfOrder, fl.P50ms, fl.P99ms, fl.CPUSecs, fl.DelivPerCPU, fl.CPUUsPerDelivery, fl.OtherCPUSecs)
		p("            server cpu per delivery %.2f µs = %.2f × the floor's", rep.ServerUsPerDeliv, rep.FloorRatio)
	}
	if rep.MachineCPUSecs > 0 {
		p("machine     busy %.2f CPU-s over %.1fs of posting+settle, of which other processes %.2f CPU-s%s",
			rep.MachineCPUSecs, rep.WindowSecs, rep.OtherCPUSecs,
			map[bool]string{true: "  (NOISY: other load on the machine, figures unreliable)"}[rep.WindowSecs > 0 && rep.OtherCPUSecs > 0.1*rep.WindowSecs])
	}
	if len(rep.Errors) > 0 {
		p("errors:")
		for _, k := range sortedKeys(rep.Errors) {
			p("  %6d  %s", rep.Errors[k], strings.TrimSpace(k))
		}
	}
	verdict := "CLEAN: every acknowledged message reached every counted stream once, in order"
	if !rep.Clean {
		verdict = "NOT CLEAN: see lost / duplicated / out-of-order / failed streams above"
	}
	p("%s", verdict)
}

// formatCounts formats counts by key as " (key: n, ...)", or "" if empty.
func formatCounts(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
