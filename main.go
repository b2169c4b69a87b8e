// Command chat serves a real-time chat room: a web page, POST /post to send
// a message, GET /stream to receive them as Server-Sent Events, and GET
// /stats, /metrics and /healthz for operators.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"chat/internal/journal"
	"chat/internal/limit"
)

// Server timeouts and shutdown bounds.
const (
	// readHeaderTimeout cuts clients that dribble their request headers.
	readHeaderTimeout = 5 * time.Second
	// readTimeout bounds reading a whole request, body included.
	readTimeout = 15 * time.Second
	// idleTimeout closes idle keep-alive connections.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds request headers.
	maxHeaderBytes = 64 << 10
	// streamDrain is how long shutdown lets streams finish their queued
	// writes before it cuts them.
	streamDrain = 2 * time.Second
	// shutdownTimeout bounds the rest of shutdown (requests in flight).
	shutdownTimeout = 2 * time.Second
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "%s\n", err)
		os.Exit(1)
	}
}

// config holds everything the command line sets.
type config struct {
	addr, data, logFormat, logLevel string
	tlsCert, tlsKey, trustedProxies string
	history, backlog, clientBuffer  int
	maxContent, maxBody             int
	maxStreams, maxStreamsPerAddr   int
	postBurst                       int
	postRate                        float64
	heartbeat, statsInterval        time.Duration
	writeTimeout, coalesce          time.Duration
	pprof                           bool
	// repair is the journal -repair checks, and repairWrite is -repair-write.
	repair      string
	repairWrite bool
	// journalOptions are passed to journal.Open. No flag sets them: they are
	// a seam for tests (a journal file that fails).
	journalOptions []journal.Option
}

// cmdLineOnly holds the flags that have no environment variable: the
// repair mode, because a variable left set in a service's environment would
// turn every later start of the server into a repair.
var cmdLineOnly = map[string]bool{"repair": true, "repair-write": true}

// parseFlags reads the flags, falling back to CHAT_* environment variables
// for flags not given. Flags win.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", ":6969", "address to listen on")
	fs.IntVar(&c.history, "history", defaultHistory, "messages kept in history")
	fs.IntVar(&c.backlog, "backlog", defaultBacklog, "messages a new client receives from history")
	fs.IntVar(&c.clientBuffer, "client-buffer", defaultClientBuffer, "frames queued per client before it is disconnected as slow")
	fs.DurationVar(&c.heartbeat, "heartbeat", defaultHeartbeat, "interval of heartbeat comments on idle streams (0: none)")
	fs.DurationVar(&c.statsInterval, "stats-interval", 5*time.Second, "interval of the statistics log line (0: off)")
	fs.IntVar(&c.maxContent, "max-content", defaultMaxContent, "longest message, in characters")
	fs.IntVar(&c.maxBody, "max-body", defaultMaxBody, "largest POST body, in bytes")
	fs.DurationVar(&c.writeTimeout, "write-timeout", defaultWriteTimeout, "time a stream client has to accept one write")
	fs.DurationVar(&c.coalesce, "coalesce", 0, "wait up to this long to send several messages in one write (0: send at once)")
	fs.StringVar(&c.data, "data", "", "journal file that keeps history across restarts (empty: memory only)")
	fs.IntVar(&c.maxStreams, "max-streams", defaultMaxStreams, "most streams open at once (0: no limit)")
	fs.IntVar(&c.maxStreamsPerAddr, "max-streams-per-addr", defaultMaxStreamsPerAddr, "most streams per client address (0: no limit)")
	fs.Float64Var(&c.postRate, "post-rate", defaultPostRate, "posts per second per client address (0: no limit)")
	fs.IntVar(&c.postBurst, "post-burst", defaultPostBurst, "posts one client address may make at once")
	fs.StringVar(&c.trustedProxies, "trusted-proxies", "", "comma-separated proxy addresses or prefixes whose X-Forwarded-For is believed")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file (serves HTTPS and HTTP/2 with -tls-key)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS key file")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&c.pprof, "pprof", false, "serve profiles under /debug/pprof/")
	fs.StringVar(&c.repair, "repair", "", "check the journal at this path, report its first bad line and exit; the server does not start")
	fs.BoolVar(&c.repairWrite, "repair-write", false, "with -repair: keep the lines before the first bad one and move the rest to PATH.bad-<time>")
	fs.VisitAll(func(f *flag.Flag) {
		if !cmdLineOnly[f.Name] {
			f.Usage += " (env " + envName(f.Name) + ")"
		}
	})
	if err := fs.Parse(args[1:]); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && !given[f.Name] && !cmdLineOnly[f.Name] && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	if err != nil {
		return c, err
	}
	switch {
	case c.history < 0, c.backlog < 0, c.clientBuffer < 1, c.maxContent < 1, c.maxBody < 64,
		c.maxStreams < 0, c.maxStreamsPerAddr < 0, c.postRate < 0, c.postBurst < 0:
		return c, errors.New("numeric flags must not be negative; -client-buffer and -max-content must be at least 1, -max-body at least 64")
	case c.heartbeat < 0, c.statsInterval < 0, c.writeTimeout <= 0, c.coalesce < 0:
		return c, errors.New("durations must not be negative, and -write-timeout must be positive")
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return c, errors.New("-tls-cert and -tls-key go together")
	case c.logFormat != "text" && c.logFormat != "json":
		return c, fmt.Errorf("-log-format %q: want text or json", c.logFormat)
	case c.repairWrite && c.repair == "":
		return c, errors.New("-repair-write goes with -repair PATH")
	}
	return c, nil
}

// envName returns the environment variable that backs a flag.
func envName(flagName string) string {
	return "CHAT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newLogger returns the logger the flags ask for.
func newLogger(c config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// run starts the server and blocks until ctx ends or a SIGINT or SIGTERM
// arrives, then shuts down: it stops accepting, ends every stream, waits
// for requests in flight and returns.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.repair != "" {
		return repairJournal(cfg.repair, cfg.repairWrite, time.Now(), stdout)
	}
	return serve(ctx, cfg, stderr)
}

// repairJournal checks the journal at path offline and writes what it found
// to out; with write it also moves everything from the first bad line on to
// path.bad-<time>. It returns an error (so the command exits 1) when the
// journal is left in a state the server refuses, or cannot be read or
// repaired. A torn last line alone is not an error: the server drops it.
func repairJournal(path string, write bool, now time.Time, out io.Writer) error {
	var rep journal.Report
	var moved string
	var err error
	if write {
		rep, moved, err = journal.Repair(path, now)
	} else {
		rep, err = journal.Check(path)
	}
	if err != nil {
		return err
	}
	lines := rep.Good + rep.Rest.Lines
	if rep.Sound() {
		ids := "no records"
		if rep.Good > 0 {
			ids = "ids " + rep.First + " to " + rep.Last
		}
		fmt.Fprintf(out, "journal %s: %d lines, %d bytes, %s: sound\n", path, lines, rep.Size, ids)
		return nil
	}
	bad := rep.Bad
	reason := bad.Err.Error()
	if bad.Torn {
		reason = "torn last line (" + reason + ")"
	}
	fmt.Fprintf(out, "journal %s: %d lines, %d bytes\nline %d at byte %d: %s\n", path, lines, rep.Size, bad.Line, bad.Offset, reason)
	keep := "no line (the server starts a new epoch)"
	if rep.Good > 0 {
		keep = fmt.Sprintf("lines 1-%d", rep.Good)
		fmt.Fprintf(out, "  lines 1-%d are good (%d bytes): ids %s to %s\n", rep.Good, rep.GoodBytes, rep.First, rep.Last)
	}
	fmt.Fprintf(out, "  lines %d-%d (%d bytes) from there on:", bad.Line, lines, rep.Rest.Bytes)
	epochs := slices.Sorted(maps.Keys(rep.Rest.Epochs))
	other := false
	for _, e := range epochs {
		fmt.Fprintf(out, " %d with ids of epoch %d,", rep.Rest.Epochs[e], e)
		other = other || (rep.Good > 0 && e != rep.Epoch) || len(epochs) > 1
	}
	fmt.Fprintf(out, " %d without an id\n", rep.Rest.NoID)
	if other {
		fmt.Fprintf(out, "  ids of more than one epoch: another server wrote into this journal at the same time\n")
	}
	switch {
	case moved != "":
		fmt.Fprintf(out, "moved lines %d-%d to %s\njournal %s keeps %s; the server starts from there\n", bad.Line, lines, moved, path, keep)
		return nil
	case bad.Torn:
		fmt.Fprintf(out, "the server drops a torn last line by itself and starts with %s\n", keep)
		return nil
	}
	fmt.Fprintf(out, "-repair-write keeps %s and moves lines %d-%d to %s.bad-<time>\n", keep, bad.Line, lines, path)
	return fmt.Errorf("journal %s is damaged at line %d: the server will not start on it", path, bad.Line)
}

// serve runs the server with cfg until ctx ends.
func serve(ctx context.Context, cfg config, logOut io.Writer) error {
	logger, err := newLogger(cfg, logOut)
	if err != nil {
		return err
	}
	trusted, err := limit.ParseTrustedProxies(cfg.trustedProxies)
	if err != nil {
		return err
	}

	stats := NewStats()
	roomCfg := RoomConfig{
		History:           cfg.history,
		Backlog:           cfg.backlog,
		ClientBuffer:      cfg.clientBuffer,
		Coalesce:          cfg.coalesce,
		MaxStreams:        cfg.maxStreams,
		MaxStreamsPerAddr: cfg.maxStreamsPerAddr,
	}
	var wg sync.WaitGroup
	storeCtx, stopStore := context.WithCancel(context.Background())
	storeDone := make(chan struct{}) // closed when the journal has stopped
	if cfg.data == "" {
		close(storeDone)
	}
	defer func() {
		stopStore()
		wg.Wait()
	}()
	if cfg.data != "" {
		opts := append([]journal.Option{journal.ObserveSync(stats.observeJournalSync)}, cfg.journalOptions...)
		store, records, err := journal.Open(cfg.data, cfg.history, logger, opts...)
		if err != nil {
			return fmt.Errorf("open journal: %w", err)
		}
		recovered, err := recoveredMessages(records)
		if err != nil {
			// Run with a done context closes the file.
			done, cancel := context.WithCancel(context.Background())
			cancel()
			store.Run(done)
			return fmt.Errorf("open journal %s: %w", cfg.data, err)
		}
		roomCfg.Journal, roomCfg.Recovered = store, recovered
		stats.watchJournal(store.Err)
		wg.Go(func() {
			store.Run(storeCtx)
			close(storeDone)
		})
		logger.Info("journal opened", "path", cfg.data, "messages", len(recovered))
	}
	room := NewChatRoom(roomCfg, stats)
	roomCtx, stopRoom := context.WithCancel(context.Background())
	defer stopRoom()
	wg.Go(func() { room.Run(roomCtx) })

	monCtx, stopMonitor := context.WithCancel(context.Background())
	defer stopMonitor()
	wg.Go(func() { runMonitor(monCtx, cfg.statsInterval, stats, logger) })

	streams := newStreamTracker()
	var shuttingDown atomic.Bool
	handler := newServer(room, stats, streams, &shuttingDown, serverConfig{
		heartbeat:    cfg.heartbeat,
		writeTimeout: cfg.writeTimeout,
		maxContent:   cfg.maxContent,
		maxBody:      int64(cfg.maxBody),
		pprof:        cfg.pprof,
		limiter:      limit.New(cfg.postRate, cfg.postBurst),
		addrOf:       limit.ClientAddr(trusted),
	}, logger)

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		// No WriteTimeout: it would cut long-lived HTTP/2 streams. Every
		// stream write has its own deadline instead, and other responses
		// are small.
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	scheme := "http"
	if cfg.tlsCert != "" {
		scheme = "https"
	}
	logger.Info("listening", "addr", ln.Addr().String(), "url", scheme+"://"+displayAddr(ln.Addr()))

	serveErr := make(chan error, 1)
	go func() {
		if cfg.tlsCert != "" {
			serveErr <- srv.ServeTLS(ln, cfg.tlsCert, cfg.tlsKey)
		} else {
			serveErr <- srv.Serve(ln)
		}
	}()

	select {
	case err := <-serveErr:
		stopRoom()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shuttingDown.Store(true)

	// Stop accepting first. Then stop the journal while the room still
	// runs, so that every post the journal made durable is answered 201
	// (posts after that get 503 and are not stored). Then end every stream:
	// the room closes each client's queue, writers finish what is queued
	// and close their connections; writers still blocked after streamDrain
	// are cut.
	_ = ln.Close()
	stopStore()
	select {
	case <-storeDone:
	case <-time.After(streamDrain):
		logger.Warn("journal did not stop in time")
	}
	stopRoom()
	if !streams.wait(streamDrain) {
		streams.interrupt()
		streams.wait(time.Second)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	stopMonitor()
	logger.Info("stopped", "messages", stats.Snapshot().MessagesPosted)
	return nil
}

// displayAddr returns addr in a form a browser accepts ("localhost:6969"
// for a wildcard address).
func displayAddr(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
