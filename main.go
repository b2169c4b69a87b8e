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
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"chat/internal/connlimit"
	"chat/internal/journal"
	"chat/internal/limit"
)

// Server timeouts and shutdown bounds.
const (
	// readHeaderTimeout cuts clients that dribble their request headers.
	readHeaderTimeout = 5 * time.Second
	// readTimeout bounds reading a whole request, body included.
	readTimeout = 15 * time.Second
	// idleTimeout closes idle keep-alive connections: long enough for a
	// page's next post, short enough that idle connections do not pile up
	// (each holds a file descriptor and about 15 KiB).
	idleTimeout = 30 * time.Second
	// maxHeaderBytes bounds request headers (net/http allows 4 KiB more
	// for the request line). Browsers send 1-2 KiB.
	maxHeaderBytes = 16 << 10
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
	pprofAddr                       string
	history, backlog, clientBuffer  int
	maxContent, maxBody             int
	maxStreams, maxStreamsPerAddr   int
	maxConnsPerAddr, maxHeaderConns int
	postBurst                       int
	postRate                        float64
	heartbeat, statsInterval        time.Duration
	writeTimeout, coalesce          time.Duration
	pprof                           bool
}

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
	fs.IntVar(&c.maxConnsPerAddr, "max-conns-per-addr", defaultMaxConnsPerAddr, "most TCP connections per client address, closed at accept (0: no limit; trusted proxies are exempt)")
	fs.IntVar(&c.maxHeaderConns, "max-header-conns-per-addr", defaultMaxHeaderConnsPerAddr, "most connections per client address sending request headers at once (0: no limit)")
	fs.StringVar(&c.pprofAddr, "pprof-addr", "", "serve profiles under /debug/pprof/ on this separate address, e.g. 127.0.0.1:6060 (empty: off)")
	fs.BoolVar(&c.pprof, "pprof", false, "removed: use -pprof-addr")
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += " (env " + envName(f.Name) + ")"
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
		if v := getenv(envName(f.Name)); v != "" && !given[f.Name] && err == nil {
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
		c.maxStreams < 0, c.maxStreamsPerAddr < 0, c.postRate < 0, c.postBurst < 0,
		c.maxConnsPerAddr < 0, c.maxHeaderConns < 0:
		return c, errors.New("numeric flags must not be negative; -client-buffer and -max-content must be at least 1, -max-body at least 64")
	case c.heartbeat < 0, c.statsInterval < 0, c.writeTimeout <= 0, c.coalesce < 0:
		return c, errors.New("durations must not be negative, and -write-timeout must be positive")
	case c.pprof:
		return c, errors.New("-pprof is gone: it served profiles and goroutine stacks on the public listener; use -pprof-addr 127.0.0.1:6060")
	case c.data != "" && c.history < 1:
		return c, errors.New("-data needs -history of at least 1: the journal keeps the history")
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return c, errors.New("-tls-cert and -tls-key go together")
	case c.logFormat != "text" && c.logFormat != "json":
		return c, fmt.Errorf("-log-format %q: want text or json", c.logFormat)
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
	return serve(ctx, cfg, stderr)
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
		store, records, err := journal.Open(cfg.data, cfg.history, logger)
		if err != nil {
			return fmt.Errorf("open journal: %w", err)
		}
		recovered, err := recoveredMessages(records)
		epoch, marked := store.Epoch()
		if err == nil && !marked {
			// A new journal: make its epoch durable before anyone sees it.
			epoch = time.Now().UnixMilli()
			err = store.MarkEpoch(epoch)
		}
		if err != nil {
			// Run with a done context closes the file.
			done, cancel := context.WithCancel(context.Background())
			cancel()
			store.Run(done)
			return fmt.Errorf("open journal %s: %w", cfg.data, err)
		}
		roomCfg.Journal, roomCfg.Recovered, roomCfg.Epoch = store, recovered, epoch
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
		limiter:      limit.New(cfg.postRate, cfg.postBurst),
		addrOf:       limit.ClientAddr(trusted),
	}, logger)

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	// The per-address caps: at accept only the peer is known, so trusted
	// proxies are exempt (they carry many clients; cap those at the
	// proxy, see contrib/nginx.conf).
	counted := connlimit.New(ln, connlimit.Config{
		PerAddr: cfg.maxConnsPerAddr,
		Parsing: cfg.maxHeaderConns,
		Exempt:  trusted,
	})
	stats.countConnections(counted)
	srv := &http.Server{
		Handler:   counted.Handler(handler),
		ConnState: counted.ConnState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return withNetConn(counted.ConnContext(ctx, c), c)
		},
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		// No WriteTimeout: it would cut long-lived HTTP/2 streams. Every
		// stream write has its own deadline instead, and other responses
		// are small.
	}
	if cfg.pprofAddr != "" {
		stopPprof, err := servePprof(cfg.pprofAddr, logger)
		if err != nil {
			_ = ln.Close()
			stopRoom()
			return err
		}
		defer stopPprof()
	}
	scheme := "http"
	if cfg.tlsCert != "" {
		scheme = "https"
	}
	logger.Info("listening", "addr", ln.Addr().String(), "url", scheme+"://"+displayAddr(ln.Addr()))

	serveErr := make(chan error, 1)
	go func() {
		if cfg.tlsCert != "" {
			serveErr <- srv.ServeTLS(counted, cfg.tlsCert, cfg.tlsKey)
		} else {
			serveErr <- srv.Serve(counted)
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
		ReadHeaderTimeout: readHeaderTimeout,
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
