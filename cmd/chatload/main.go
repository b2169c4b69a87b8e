// Command chatload is the load tool of the chat server. It opens many SSE
// streams on GET /stream with raw HTTP/1.1, posts uniquely marked messages
// to POST /post at a fixed rate, checks that every subscriber received every
// acknowledged message exactly once and in order, measures the latency from
// post send to arrival, and samples the server's GET /stats before and after
// to report its CPU per delivery and memory per stream.
//
// Usage:
//
//	go run ./cmd/chatload -url http://127.0.0.1:6969 -subs 1000 -rate 50 -duration 10s
//
// With several nodes of one room (cluster mode), -url takes a list: the
// streams and the posts are spread over the nodes, and a stream whose node
// cannot be reached moves on to the next one, resuming with Last-Event-ID
// (-failover opens every stream on the first node and moves them only when
// it goes). The server's figures are then the sum of every node's /stats;
// -pids names the server's processes on this machine (the nodes and their
// NATS servers), whose CPU time and memory, read from /proc, are counted
// instead, each process's share shown.
//
// Progress goes to stderr; a human summary and then one JSON line with all
// figures go to stdout (-json prints only the JSON line).
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Run tuning.
const (
	maxInflightConnects = 512              // streams being opened at once during the connect phase
	subsPerSource       = 20000            // default streams per source address (ephemeral ports are ~28k)
	connectGrace        = 30 * time.Second // wait for stragglers after the last stream was started
	stopTimeout         = 15 * time.Second // wait for subscribers to exit at the end
	histShards          = 64
	maxErrorKinds       = 20 // distinct error messages kept for the report
)

func main() {
	code, err := run(context.Background(), os.Args, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chatload: %s\n", err)
	}
	os.Exit(code)
}

// config holds the parsed flags.
type config struct {
	url         string
	postURL     string
	failover    bool
	subs        int
	rate        float64
	duration    time.Duration
	posters     int
	hold        time.Duration
	ramp        float64
	sources     int
	settle      time.Duration
	jsonOnly    bool
	allowRemote bool
	progress    time.Duration
	insecure    bool
	strict      bool
	cpuProfile  string
	floor       bool
	serveFloor  string
	names       bool
	pids        string
}

// loadRun is the shared state of one run.
type loadRun struct {
	cfg    config
	stderr io.Writer
	quiet  bool

	// targets are the servers of -url, in order, and postTargets those
	// of -post-url (the same by default); statistics are the sum of the
	// targets'.
	targets     []*target
	postTargets []*target
	tlsConf     *tls.Config
	sourceIPs   []net.IP // source addresses for streams, empty for the default
	pids        []int    // the server's processes (-pids)

	runTag  string // random tag that marks this run's messages
	marker  []byte // `"content":"load <runTag> ` as it appears in event data
	maxMsgs int    // messages this run may post

	subs   []*subscriber
	subsWG sync.WaitGroup
	lat    *shardedHist
	srvLat *shardedHist
	posts  postResults

	stopping atomic.Bool
	stopCh   chan struct{}
	phase    atomic.Value // string

	launched   atomic.Int64
	subsReady  atomic.Int64
	subsFailed atomic.Int64
	connected  atomic.Int64
	reconnects atomic.Int64
	resets     atomic.Int64
	firstPost  atomic.Int64 // Unix ns of the first post sent

	errMu        sync.Mutex
	streamStatus map[int]int    // non-200 answers to GET /stream
	errorKinds   map[string]int // error messages (first maxErrorKinds kinds)
	errorsOther  int
}

// run parses args, runs the load and writes the report. It returns the
// process exit code: 0, 1 on a fatal error, 2 on bad usage, 3 when -strict
// finds lost, duplicated or reordered deliveries, 130 when interrupted.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	go func() {
		<-ctx.Done()
		cancel() // a second interrupt kills at once
	}()

	var cfg config
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.url, "url", "http://127.0.0.1:6969", "base URL of the chat server, or comma-separated URLs of several nodes of one room: streams are spread over them and move to the next when theirs cannot be reached; the server's figures are the sum of every node's /stats")
	fs.StringVar(&cfg.pids, "pids", "", "comma-separated ids of the server's processes on this machine (its nodes and their NATS servers): the server's CPU time and memory are the sum of theirs, read from /proc, instead of the nodes' /stats")
	fs.StringVar(&cfg.postURL, "post-url", "", "comma-separated base URLs to spread the posts over (default: -url)")
	fs.BoolVar(&cfg.failover, "failover", false, "open every stream on the first -url and move it to the next only when its node cannot be reached")
	fs.IntVar(&cfg.subs, "subs", 100, "number of SSE subscribers")
	fs.Float64Var(&cfg.rate, "rate", 10, "messages posted per second (all posters together)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "posting time (0: no posting)")
	fs.IntVar(&cfg.posters, "posters", 0, "concurrent posting workers, each with one request in flight (0: max(4, rate/4), at most 64)")
	fs.DurationVar(&cfg.hold, "hold", 0, "keep the streams open this long with no posting before posting starts (idle memory)")
	fs.Float64Var(&cfg.ramp, "ramp", 2000, "streams opened per second during the connect phase (0: as fast as possible)")
	fs.IntVar(&cfg.sources, "sources", 0, "spread streams over source addresses 127.0.0.1..127.0.0.K (0: ceil(subs/20000))")
	fs.DurationVar(&cfg.settle, "settle", 5*time.Second, "how long to wait after the last post for deliveries")
	fs.BoolVar(&cfg.jsonOnly, "json", false, "print only the final JSON line on stdout (and no progress)")
	fs.BoolVar(&cfg.allowRemote, "allow-remote", false, "allow a target that is not loopback")
	fs.DurationVar(&cfg.progress, "progress", 5*time.Second, "interval of progress lines on stderr (0: none)")
	fs.BoolVar(&cfg.insecure, "insecure", false, "skip TLS certificate verification for https URLs")
	fs.BoolVar(&cfg.strict, "strict", false, "exit with status 3 if any delivery was lost, duplicated or out of order")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write the tool's own CPU profile to this file")
	fs.BoolVar(&cfg.floor, "floor", false, "after the run, run the same load against the raw floor (a child process writing pre-encoded events to every stream from one goroutine) and report the server's CPU per delivery as a ratio to the floor's")
	fs.StringVar(&cfg.serveFloor, "serve-floor", "", "serve the raw floor on this address instead of running load")
	fs.BoolVar(&cfg.names, "names", false, "give every stream its own name (GET /stream?name=load-<run>-<n>), so that each one joins the presence roster")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chatload [flags]\n\nLoad tool of the chat server: SSE subscribers plus paced posters.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, nil
	}
	progressSet := false
	fs.Visit(func(f *flag.Flag) { progressSet = progressSet || f.Name == "progress" })
	if cfg.jsonOnly && !progressSet {
		cfg.progress = 0
	}
	if cfg.serveFloor != "" {
		if err := serveFloor(ctx, cfg.serveFloor, stdout); err != nil {
			return 1, err
		}
		return 0, nil
	}
	if cfg.posters == 0 {
		cfg.posters = min(64, max(4, int(math.Ceil(cfg.rate/4))))
	}
	if cfg.subs < 0 || cfg.rate < 0 || cfg.duration < 0 || cfg.posters < 1 || cfg.ramp < 0 || cfg.sources < 0 || cfg.settle < 0 || cfg.hold < 0 {
		return 2, errors.New("negative values are not allowed")
	}

	r, err := newLoadRun(cfg, stderr)
	if err != nil {
		return 2, err
	}
	if limit, err := raiseFileLimit(); err != nil {
		r.logf("cannot raise RLIMIT_NOFILE: %v", err)
	} else if need := uint64(cfg.subs + cfg.posters + 64); limit != 0 && limit < need {
		r.warnf("RLIMIT_NOFILE is %d (hard limit), below the ~%d that -subs %d needs: streams past that will fail", limit, need, cfg.subs)
	}

	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: connectTimeout}).DialContext,
		TLSClientConfig:     r.tlsConf,
		MaxIdleConnsPerHost: cfg.posters + 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: transport}
	defer transport.CloseIdleConnections()

	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return 1, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 1, err
		}
		defer pprof.StopCPUProfile()
	}
	rep := r.execute(ctx, client)
	if cfg.floor && ctx.Err() == nil {
		rep.compareFloor(ctx, r, client)
	}
	rep.Interrupted = ctx.Err() != nil
	if !r.quiet {
		rep.writeText(stdout)
	}
	if err := rep.writeJSON(stdout); err != nil {
		return 1, err
	}
	if rep.Interrupted {
		return 130, nil
	}
	if cfg.strict && !rep.Clean {
		return 3, nil
	}
	return 0, nil
}

// newLoadRun returns the state of one run of cfg.
func newLoadRun(cfg config, stderr io.Writer) (*loadRun, error) {
	r := &loadRun{
		cfg:          cfg,
		stderr:       stderr,
		quiet:        cfg.jsonOnly,
		stopCh:       make(chan struct{}),
		lat:          newShardedHist(histShards),
		srvLat:       newShardedHist(histShards),
		streamStatus: map[int]int{},
		errorKinds:   map[string]int{},
	}
	r.phase.Store("start")
	if err := r.setTarget(); err != nil {
		return nil, err
	}
	pids, err := parsePIDs(cfg.pids)
	if err != nil {
		return nil, fmt.Errorf("-pids: %w", err)
	}
	for _, pid := range pids {
		if _, err := readProc(pid); err != nil {
			return nil, fmt.Errorf("-pids: %w", err)
		}
	}
	r.pids = pids
	var tag [4]byte
	rand.Read(tag[:])
	r.runTag = "r" + hex.EncodeToString(tag[:])
	r.marker = []byte(`"content":"load ` + r.runTag + ` `)
	if cfg.rate > 0 && cfg.duration > 0 {
		r.maxMsgs = int(math.Ceil(cfg.rate * cfg.duration.Seconds()))
	}
	r.posts.byStatus = map[string]int{}
	r.posts.acks = make([]msgID, r.maxMsgs)
	return r, nil
}

// compareFloor runs the same load as r against a raw floor started for it
// and adds the floor's figures, and the server's CPU per delivery as a
// ratio to the floor's, to rep.
func (rep *report) compareFloor(ctx context.Context, r *loadRun, client *http.Client) {
	fc, err := startFloor(ctx)
	if err != nil {
		r.warnf("%v", err)
		return
	}
	defer fc.stop()
	cfg := r.cfg
	cfg.url, cfg.postURL, cfg.pids = fc.url, "", ""
	fr, err := newLoadRun(cfg, r.stderr)
	if err != nil {
		r.warnf("floor: %v", err)
		return
	}
	r.logf("raw floor at %s: the same load again", fc.url)
	frep := fr.execute(ctx, client)
	rep.Floor = newFloorFigures(frep)
	if rep.ServerUsPerDeliv > 0 && frep.ServerUsPerDeliv > 0 {
		rep.FloorRatio = rep.ServerUsPerDeliv / frep.ServerUsPerDeliv
	}
}

// target is one server the run talks to: where its connections dial,
// the Host header they send, and its paths.
type target struct {
	dialAddr   string // host:port every connection dials
	hostHeader string
	streamPath string
	postURL    string
	statsURL   string
	ip         net.IP // the host's address, nil for a name
}

// parseTarget checks and resolves one base URL (of -url or -post-url).
func parseTarget(raw string, allowRemote bool) (*target, string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, "", fmt.Errorf("bad URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, "", fmt.Errorf("bad URL %q: scheme must be http or https", raw)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	ip := net.ParseIP(host)
	isLocalhost := strings.EqualFold(strings.TrimSuffix(host, "."), "localhost")
	if !isLocalhost && (ip == nil || !ip.IsLoopback()) && !allowRemote {
		return nil, "", fmt.Errorf("refusing target %q: not a loopback address (127.0.0.0/8, ::1, localhost); use -allow-remote", host)
	}
	dialHost := host
	if isLocalhost {
		dialHost, ip = "127.0.0.1", net.IPv4(127, 0, 0, 1)
	}
	t := &target{dialAddr: net.JoinHostPort(dialHost, port), hostHeader: appendHostHeader(host, port, u.Scheme), ip: ip}
	base := strings.TrimRight(u.Path, "/")
	t.streamPath = base + "/stream"
	origin := u.Scheme + "://" + t.dialAddr
	t.postURL = origin + base + "/post"
	t.statsURL = origin + base + "/stats"
	return t, u.Scheme + " " + host, nil
}

// parseTargets parses a comma-separated list of base URLs, all of one
// scheme; it returns the targets and, for https, the first host.
func parseTargets(list string, allowRemote bool) ([]*target, string, error) {
	var out []*target
	var first, scheme string
	for raw := range strings.SplitSeq(list, ",") {
		if strings.TrimSpace(raw) == "" {
			continue
		}
		t, sh, err := parseTarget(raw, allowRemote)
		if err != nil {
			return nil, "", err
		}
		sc, host, _ := strings.Cut(sh, " ")
		if scheme == "" {
			scheme, first = sc, host
		} else if sc != scheme {
			return nil, "", fmt.Errorf("URLs %q mix http and https", list)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, "", errors.New("no URL")
	}
	if scheme == "https" {
		return out, first, nil
	}
	return out, "", nil
}

// setTarget checks and resolves -url and -post-url and picks the source
// addresses.
func (r *loadRun) setTarget() error {
	var err error
	var tlsHost string
	if r.targets, tlsHost, err = parseTargets(r.cfg.url, r.cfg.allowRemote); err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	r.postTargets = r.targets
	if r.cfg.postURL != "" {
		if r.postTargets, _, err = parseTargets(r.cfg.postURL, r.cfg.allowRemote); err != nil {
			return fmt.Errorf("-post-url: %w", err)
		}
	}
	if tlsHost != "" {
		r.tlsConf = &tls.Config{ServerName: tlsHost, InsecureSkipVerify: r.cfg.insecure, NextProtos: []string{"http/1.1"}}
	}
	ip := r.targets[0].ip

	k := r.cfg.sources
	if k == 0 {
		k = max(1, (r.cfg.subs+subsPerSource-1)/subsPerSource)
	}
	k = min(k, 254)
	if ip4 := ip.To4(); ip4 != nil && ip4[0] == 127 {
		if k > 1 {
			for i := range k {
				r.sourceIPs = append(r.sourceIPs, net.IPv4(127, 0, 0, byte(1+i)))
			}
		}
	} else if k > 1 {
		r.warnf("-sources %d ignored: the target is not an IPv4 loopback address", k)
	}
	return nil
}

// execute runs the phases: connect, hold, post, settle, stop.
func (r *loadRun) execute(ctx context.Context, client *http.Client) *report {
	rep := &report{
		URL:      r.cfg.url,
		RunTag:   r.runTag,
		Subs:     r.cfg.subs,
		Sources:  max(1, len(r.sourceIPs)),
		Rate:     r.cfg.rate,
		Duration: r.cfg.duration.Seconds(),
		Posters:  r.cfg.posters,
		HoldSecs: r.cfg.hold.Seconds(),
		Names:    r.cfg.names,
	}
	r.newSubscribers()
	progressDone := make(chan struct{})
	progressCtx, stopProgress := context.WithCancel(ctx)
	go func() {
		defer close(progressDone)
		r.progressLoop(progressCtx)
	}()
	defer func() {
		stopProgress()
		<-progressDone
	}()

	r.phase.Store("stats")
	rep.ServerBefore = r.fetchStats(ctx, client)

	// Connect phase.
	r.phase.Store("connect")
	connectStart := time.Now()
	r.connectAll(ctx)
	rep.ConnectSecs = time.Since(connectStart).Seconds()
	rep.SubsReady = int(r.subsReady.Load())
	if rep.SubsReady > 0 {
		rep.ConnectPerSec = float64(rep.SubsReady) / rep.ConnectSecs
	}
	if r.cfg.subs > 0 {
		r.logf("connected %d/%d streams in %.1fs (%d failed)", rep.SubsReady, r.cfg.subs, rep.ConnectSecs, r.subsFailed.Load())
	}

	// Hold phase: streams open, nothing posted.
	if r.cfg.hold > 0 && ctx.Err() == nil {
		r.phase.Store("hold")
		sleepCtx(ctx, r.cfg.hold)
	} else if r.cfg.subs > 0 {
		sleepCtx(ctx, 500*time.Millisecond) // let the server settle after the last stream
	}
	rep.ServerStreams = r.fetchStats(ctx, client)
	cpu0, _ := selfUsage()
	busy0 := machineBusy()
	window0 := time.Now()

	// Posting and settle phases.
	var postEnd time.Time
	if r.maxMsgs > 0 && ctx.Err() == nil {
		r.phase.Store("post")
		r.runPosters(ctx, client)
		postEnd = time.Now()
		r.phase.Store("settle")
		r.waitSettle(ctx)
		rep.SettleSecs = time.Since(postEnd).Seconds()
	}
	rep.ServerEnd = r.fetchStats(context.WithoutCancel(ctx), client)
	cpu1, maxRSS := selfUsage()
	rep.WindowSecs = time.Since(window0).Seconds()
	if busy0 > 0 {
		rep.MachineCPUSecs = (machineBusy() - busy0).Seconds()
	}

	// Stop.
	r.phase.Store("stop")
	r.stop()
	rep.fill(r, cpu1-cpu0, maxRSS)
	return rep
}

// newSubscribers creates the subscribers (before anything reads r.subs).
func (r *loadRun) newSubscribers() {
	r.subs = make([]*subscriber, r.cfg.subs)
	for i := range r.subs {
		s := &subscriber{r: r, idx: i, lat: r.lat.shard(i), srvLat: r.srvLat.shard(i)}
		if !r.cfg.failover {
			s.target = i % len(r.targets)
		}
		if len(r.sourceIPs) > 0 {
			s.laddr = &net.TCPAddr{IP: r.sourceIPs[i%len(r.sourceIPs)]}
		}
		r.subs[i] = s
	}
}

// connectAll starts every subscriber, at most -ramp per second and
// maxInflightConnects at once, and waits until each is streaming or failed.
func (r *loadRun) connectAll(ctx context.Context) {
	sem := make(chan struct{}, maxInflightConnects)
	start := time.Now()
	for i, s := range r.subs {
		if r.cfg.ramp > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / r.cfg.ramp * float64(time.Second)))); d > 0 {
				if !sleepCtx(ctx, d) {
					break
				}
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		r.launched.Add(1)
		r.subsWG.Go(func() {
			s.run(func(ok bool) {
				if ok {
					r.subsReady.Add(1)
				}
				<-sem
			})
		})
	}
	deadline := time.Now().Add(connectGrace)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if r.subsReady.Load()+r.subsFailed.Load() >= r.launched.Load() {
			return
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
	if ctx.Err() == nil {
		r.warnf("gave up waiting: %d of %d streams still not open after %v", r.launched.Load()-r.subsReady.Load()-r.subsFailed.Load(), r.launched.Load(), connectGrace)
	}
}

// waitSettle waits until every stream that was ready has received every
// acknowledged message, or -settle has passed.
func (r *loadRun) waitSettle(ctx context.Context) {
	deadline := time.Now().Add(r.cfg.settle)
	target := r.posts.ok.Load() * r.subsReady.Load()
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if r.deliveredSoFar() >= target {
			return
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
}

// deliveredSoFar sums the unique run deliveries of all subscribers.
func (r *loadRun) deliveredSoFar() int64 {
	var n int64
	for _, s := range r.subs {
		if s != nil {
			n += s.delivered.Load()
		}
	}
	return n
}

// stop closes every stream and waits for the subscribers to exit.
func (r *loadRun) stop() {
	r.stopping.Store(true)
	close(r.stopCh)
	for _, s := range r.subs {
		s.closeConn()
	}
	done := make(chan struct{})
	go func() {
		r.subsWG.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(stopTimeout):
		r.warnf("some subscribers did not stop within %v; their figures are left out", stopTimeout)
	}
}

// sleep waits for d or until the run stops.
func (r *loadRun) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.stopCh:
	}
}

// sleepCtx waits for d; it reports false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// progressLoop prints a progress line every -progress until ctx ends.
func (r *loadRun) progressLoop(ctx context.Context) {
	if r.cfg.progress <= 0 {
		return
	}
	t := time.NewTicker(r.cfg.progress)
	defer t.Stop()
	start := time.Now()
	var lastDeliv int64
	lastAt := start
	prev, cur, window := new(hist), new(hist), new(hist)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			deliv := r.deliveredSoFar()
			rate := float64(deliv-lastDeliv) / now.Sub(lastAt).Seconds()
			lastDeliv, lastAt = deliv, now
			r.lat.snapshot(cur)
			window.diff(cur, prev)
			prev, cur = cur, prev
			latency := ""
			if window.total.Load() > 0 {
				latency = fmt.Sprintf(" | latency p50 %.1f p99 %.1f max %.1f ms",
					float64(window.quantile(0.5))/1000, float64(window.quantile(0.99))/1000, float64(window.max.Load())/1000)
			}
			fmt.Fprintf(r.stderr, "[%6.1fs] %-7s streams open %d ready %d/%d failed %d | posts ok %d failed %d | deliveries %d (%.0f/s)%s | reconnects %d resets %d\n",
				now.Sub(start).Seconds(), r.phase.Load(), r.connected.Load(), r.subsReady.Load(), r.cfg.subs, r.subsFailed.Load(),
				r.posts.ok.Load(), r.posts.failed.Load(), deliv, rate, latency, r.reconnects.Load(), r.resets.Load())
		}
	}
}

// noteStreamError records an error for the report.
func (r *loadRun) noteStreamError(err error) {
	if err == nil || errors.Is(err, errStopping) || r.stopping.Load() {
		return
	}
	var se *statusError
	if errors.As(err, &se) {
		return // counted by status
	}
	msg := err.Error()
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if _, ok := r.errorKinds[msg]; ok || len(r.errorKinds) < maxErrorKinds {
		r.errorKinds[msg]++
	} else {
		r.errorsOther++
	}
}

// noteStreamStatus counts a non-200 answer to GET /stream.
func (r *loadRun) noteStreamStatus(status int) {
	r.errMu.Lock()
	r.streamStatus[status]++
	r.errMu.Unlock()
}

// logf prints an informational line on stderr unless -json.
func (r *loadRun) logf(format string, args ...any) {
	if !r.quiet {
		fmt.Fprintf(r.stderr, "chatload: "+format+"\n", args...)
	}
}

// warnf prints a warning on stderr.
func (r *loadRun) warnf(format string, args ...any) {
	fmt.Fprintf(r.stderr, "chatload: warning: "+format+"\n", args...)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// popcountAnd counts the bits set in both a and b.
func popcountAnd(a, b []uint64) int64 {
	var n int
	for i := range min(len(a), len(b)) {
		n += bits.OnesCount64(a[i] & b[i])
	}
	return int64(n)
}

// popcountAndNot counts the bits set in a but not in b.
func popcountAndNot(a, b []uint64) int64 {
	var n int
	for i := range a {
		w := a[i]
		if i < len(b) {
			w &^= b[i]
		}
		n += bits.OnesCount64(w)
	}
	return int64(n)
}
