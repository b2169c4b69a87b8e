// Command chat serves a real-time chat room: a web page, POST /post to send
// a message, GET /stream to receive them as Server-Sent Events, and GET
// /stats, /metrics and /healthz for operators.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"chat/internal/auth"
	"chat/internal/ban"
	"chat/internal/clusterlog"
	"chat/internal/connlimit"
	"chat/internal/flagenv"
	"chat/internal/jetstream"
	"chat/internal/journal"
	"chat/internal/limit"
	"chat/internal/roomlog"
	"chat/internal/stream"
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
	// maxHeaderFields bounds the header fields of a request (431 beyond):
	// browsers send about 20, and each field costs the server far more
	// than its bytes.
	maxHeaderFields = 100
	// streamDrain is how long shutdown lets streams finish their queued
	// writes before it cuts them.
	streamDrain = 2 * time.Second
	// journalDrain is how long shutdown waits for the journal to write and
	// sync what it holds, while the room still answers the posts it
	// commits.
	journalDrain = 5 * time.Second
	// shutdownTimeout bounds the rest of shutdown (requests in flight).
	shutdownTimeout = 2 * time.Second
)

// Cluster mode (-nats).
const (
	// natsOpenTimeout bounds a node's start: connecting, making or
	// checking the stream and loading history from it.
	natsOpenTimeout = 30 * time.Second
)

// The login throttle (see internal/auth).
const (
	// loginFailures is how many wrong keys (at POST /login or as Bearer
	// keys) one address may send per loginWindow before it gets 429; a
	// login waiting for its body counts as one until its key is known.
	// An IPv6 /56 may send 4 times as many, a /48 16 times.
	loginFailures = 5
	// loginWindow is the window loginFailures counts in.
	loginWindow = time.Minute
)

// Defaults of the flags that tune the streams and limit what one client may
// use (the limiter's own bounds are in internal/limit).
const (
	// defaultHeartbeat is how often an idle stream gets a comment line, so
	// that proxies keep it open and dead peers are found.
	defaultHeartbeat = 15 * time.Second
	// defaultWriteTimeout bounds every write to a stream: a client that
	// takes longer to accept one write is disconnected.
	defaultWriteTimeout = 10 * time.Second
	// defaultMaxContent is the longest message, in characters.
	defaultMaxContent = 2000
	// defaultMaxBody is the largest POST /post body, in bytes.
	defaultMaxBody = 16 << 10
	// defaultTypingRate is how many POST /typing one address may make per
	// second (the page sends one every 3 s at most while its person types).
	defaultTypingRate = 1
	// defaultTypingBurst is how many POST /typing one address may make at
	// once.
	defaultTypingBurst = 5
	// defaultPostRate is how many posts per second one address may make.
	defaultPostRate = 5
	// defaultPostBurst is how many posts one address may make at once.
	defaultPostBurst = 20
	// defaultMaxStreams caps the streams the server holds.
	defaultMaxStreams = 50000
	// defaultMaxStreamsPerAddr caps the streams one address holds.
	defaultMaxStreamsPerAddr = 64
	// defaultMaxConnsPerAddr caps the TCP connections one address holds
	// (streams, keep-alive connections and requests in flight): 20 000
	// file descriptors then take at least 78 addresses, and a browser
	// needs at most a handful.
	defaultMaxConnsPerAddr = 256
	// defaultMaxHeaderConnsPerAddr caps the requests of one address in
	// progress at once: connections sending request headers, and requests
	// not yet answered (waiting for their bodies, say), over HTTP/1 and
	// HTTP/2 (see connlimit.Config.InProgress; admitted streams do not
	// count). net/http spends about eight times the header bytes on
	// headers of many small fields (122 KB for 15 KB of "X-1: 1" lines),
	// so this bounds what one address can make the server hold for its
	// requests to about 8 MB. Legitimate clients need a few, but a
	// connection counts from its accept, which under load can take a
	// while: 32 refused some of a burst of 50 stream connections from one
	// address while the server was busy.
	defaultMaxHeaderConnsPerAddr = 64
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
	postBurst, typingBurst          int
	postRate, typingRate            float64
	presenceInterval                time.Duration
	presenceNames                   int
	heartbeat, statsInterval        time.Duration
	writeTimeout, batchWait         time.Duration
	pprof                           bool
	// roomKey and adminKey are the keys themselves, from the flag, the
	// environment or the key file. Never log them.
	roomKey, roomKeyFile   string
	adminKey, adminKeyFile string
	sessionLifetime        time.Duration
	// journalWait, when positive, replaces journalDrain (tests shorten
	// it).
	journalWait time.Duration
	// journalSync, when not nil, replaces the journal's fsync (tests hold
	// a commit in it).
	journalSync func(*os.File) error
	// repair is the journal -repair checks, and repairWrite is -repair-write.
	repair      string
	repairWrite bool
	// journalOptions are passed to journal.Open. No flag sets them: they are
	// a seam for tests (a journal file that fails).
	journalOptions []journal.Option
	// nats lists the NATS servers of cluster mode (empty: one node), with
	// the stream's name and replicas. The URLs may hold credentials: never
	// log them.
	nats, natsStream string
	natsReplicas     int
	// natsPublishWait, when positive, replaces the bound of a publish
	// (tests shorten it).
	natsPublishWait time.Duration
}

// env is how flags read CHAT_* environment variables. The repair mode has
// none, because a variable left set in a service's environment would turn
// every later start of the server into a repair. -coalesce is the old name
// of -batch-wait.
var env = flagenv.Config{
	Prefix:      "CHAT_",
	CmdLineOnly: []string{"repair", "repair-write"},
	Aliases:     map[string]string{"coalesce": "batch-wait"},
}

// parseFlags reads the flags, falling back to CHAT_* environment variables
// for flags not given (see env). Flags win.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c, fs := defineFlags(args[0], stderr)
	if err := env.Parse(fs, args[1:], getenv); err != nil {
		return *c, err
	}
	if err := c.check(); err != nil {
		return *c, err
	}
	return *c, c.readKeys()
}

// defineFlags returns the command's flag set, which parses into the
// returned config.
func defineFlags(name string, stderr io.Writer) (*config, *flag.FlagSet) {
	c := &config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
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
	fs.DurationVar(&c.batchWait, "batch-wait", defaultBatchWait, "longest a busy room holds a batch after the frame before it left (0: no batching)")
	fs.DurationVar(&c.batchWait, "coalesce", defaultBatchWait, "old name of -batch-wait")
	fs.StringVar(&c.data, "data", "", "journal file that keeps history across restarts (empty: memory only)")
	fs.IntVar(&c.maxStreams, "max-streams", defaultMaxStreams, "most streams open at once (0: no limit)")
	fs.IntVar(&c.maxStreamsPerAddr, "max-streams-per-addr", defaultMaxStreamsPerAddr, "most streams per client address (0: no limit)")
	fs.Float64Var(&c.postRate, "post-rate", defaultPostRate, "posts per second per client address (0: no limit)")
	fs.IntVar(&c.postBurst, "post-burst", defaultPostBurst, "posts one client address may make at once")
	fs.Float64Var(&c.typingRate, "typing-rate", defaultTypingRate, "POST /typing per second per client address (0: no limit)")
	fs.IntVar(&c.typingBurst, "typing-burst", defaultTypingBurst, "POST /typing one client address may make at once")
	fs.DurationVar(&c.presenceInterval, "presence-interval", defaultPresenceInterval, "least time between two presence events on a stream (0: no presence or typing events)")
	fs.IntVar(&c.presenceNames, "presence-names", defaultPresenceNames, "most names listed in a presence event (the totals are always sent)")
	fs.StringVar(&c.trustedProxies, "trusted-proxies", "", "comma-separated proxy addresses or prefixes whose X-Forwarded-For is believed")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file (serves HTTPS and HTTP/2 with -tls-key)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS key file")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.roomKey, "room-key", "", "key that makes the room private (prefer -room-key-file: arguments are visible to other users)")
	fs.StringVar(&c.roomKeyFile, "room-key-file", "", "file holding the room key, read once at start")
	fs.StringVar(&c.adminKey, "admin-key", "", "key that enables moderation: deleting messages and banning addresses")
	fs.StringVar(&c.adminKeyFile, "admin-key-file", "", "file holding the admin key, read once at start")
	fs.DurationVar(&c.sessionLifetime, "session-lifetime", auth.DefaultLifetime, "how long a login lasts")
	fs.IntVar(&c.maxConnsPerAddr, "max-conns-per-addr", defaultMaxConnsPerAddr, "most TCP connections per client address, closed at accept (0: no limit; trusted proxies are exempt)")
	fs.IntVar(&c.maxHeaderConns, "max-header-conns-per-addr", defaultMaxHeaderConnsPerAddr, "most requests per client address in progress at once: connections sending headers, requests not yet answered (0: no limit)")
	fs.StringVar(&c.pprofAddr, "pprof-addr", "", "serve profiles under /debug/pprof/ on this separate address, e.g. 127.0.0.1:6060 (empty: off)")
	fs.BoolVar(&c.pprof, "pprof", false, "removed: use -pprof-addr")
	fs.StringVar(&c.nats, "nats", "", "comma-separated NATS server URLs (nats://[user:pass@]host:4222): the room's history lives in a JetStream stream shared by every node (instead of -data)")
	fs.StringVar(&c.natsStream, "nats-stream", "CHAT", "with -nats: the JetStream stream that keeps the room (its subject is chat.NAME.log)")
	fs.IntVar(&c.natsReplicas, "nats-replicas", 1, "with -nats: servers that keep a copy of the stream (3 for a production cluster)")
	fs.StringVar(&c.repair, "repair", "", "check the journal at this path, report its first bad line and exit; the server does not start")
	fs.BoolVar(&c.repairWrite, "repair-write", false, "with -repair: keep the lines before the first bad one and move the rest to PATH.bad-<time>")
	return c, fs
}

// check refuses settings out of range or that do not go together.
func (c *config) check() error {
	switch {
	case c.history < 0, c.backlog < 0, c.clientBuffer < 1, c.maxContent < 1, c.maxBody < 64,
		c.maxStreams < 0, c.maxStreamsPerAddr < 0, c.postRate < 0, c.postBurst < 0,
		c.maxConnsPerAddr < 0, c.maxHeaderConns < 0,
		c.typingRate < 0, c.typingBurst < 0, c.presenceNames < 0:
		return errors.New("numeric flags must not be negative; -client-buffer and -max-content must be at least 1, -max-body at least 64")
	case c.heartbeat < 0, c.statsInterval < 0, c.writeTimeout <= 0, c.batchWait < 0, c.presenceInterval < 0:
		return errors.New("durations must not be negative, and -write-timeout must be positive")
	case c.pprof:
		return errors.New("-pprof is gone: it served profiles and goroutine stacks on the public listener; use -pprof-addr 127.0.0.1:6060")
	case c.data != "" && c.history < 1:
		return errors.New("-data needs -history of at least 1: the journal keeps the history")
	case c.nats != "" && c.data != "":
		return errors.New("-nats and -data: give one; the NATS stream keeps the room's history, and a journal would be a second source of truth")
	case c.nats != "" && c.history < 1:
		return errors.New("-nats needs -history of at least 1: it is the stream's message limit")
	case c.natsReplicas < 1 || c.natsReplicas > 5:
		return fmt.Errorf("-nats-replicas %d: want 1 to 5", c.natsReplicas)
	case !clusterlog.ValidStream(c.natsStream):
		return fmt.Errorf("-nats-stream %q: want 1 to 32 letters, digits, - or _", c.natsStream)
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return errors.New("-tls-cert and -tls-key go together")
	case c.logFormat != "text" && c.logFormat != "json":
		return fmt.Errorf("-log-format %q: want text or json", c.logFormat)
	case c.repairWrite && c.repair == "":
		return errors.New("-repair-write goes with -repair PATH")
	case c.sessionLifetime < auth.MinLifetime:
		return fmt.Errorf("-session-lifetime %v is too short: sessions must last at least %v", c.sessionLifetime, auth.MinLifetime)
	}
	return nil
}

// readKeys reads the room and admin keys from their files, if given.
func (c *config) readKeys() error {
	var err error
	if c.roomKey, err = readKey("room-key", c.roomKey, c.roomKeyFile); err != nil {
		return err
	}
	if c.adminKey, err = readKey("admin-key", c.adminKey, c.adminKeyFile); err != nil {
		return err
	}
	if c.roomKey != "" && auth.KeyEqual(c.adminKey, c.roomKey) {
		return errors.New("-admin-key must differ from -room-key")
	}
	return nil
}

// readKey returns the key that the flag -name (its value is key) or the
// flag -name-file (the file's contents, surrounding white space removed)
// gives, or "" for none. Giving both is an error. Errors never hold the key.
func readKey(name, key, file string) (string, error) {
	switch {
	case file == "":
		return key, nil
	case key != "":
		return "", fmt.Errorf("-%s and -%s-file: give one of them", name, name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("-%s-file: %w", name, err)
	}
	key = strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("-%s-file %s is empty", name, file)
	}
	return key, nil
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
// path.bad-<time> (see journal.Report.Describe). It returns an error (so
// the command exits 1) when the journal is left in a state the server
// refuses, or cannot be read or repaired.
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
	return rep.Describe(out, moved)
}

// server is what serve starts, in the order it starts it and stops it
// again at shutdown.
type server struct {
	cfg    config
	logger *slog.Logger
	stats  *Stats
	// wg waits for the journal, the room and the monitor.
	wg sync.WaitGroup
	// stopLog stops the journal and logDone is closed once it has
	// (at once without one).
	stopLog context.CancelFunc
	logDone chan struct{}
	// cluster is the room's log in NATS (-nats), shut down after the
	// room; nil otherwise.
	cluster *clusterlog.Store
	room    *ChatRoom
	// stopRoom and stopMonitor stop the room's hub and the monitor.
	stopRoom, stopMonitor context.CancelFunc
	// streams tracks the stream writers on hijacked connections.
	streams *stream.Tracker
	// shuttingDown turns /healthz to 503 once shutdown has begun.
	shuttingDown atomic.Bool
	// ln is the listener, with its per-address caps, and srv the server.
	ln  *connlimit.Listener
	srv *http.Server
}

// serve runs the server with cfg until ctx ends: it opens the log (the
// journal, with -data), starts the room and the monitor, builds the HTTP
// server, serves until ctx ends, and shuts down.
func serve(ctx context.Context, cfg config, logOut io.Writer) error {
	logger, err := newLogger(cfg, logOut)
	if err != nil {
		return err
	}
	s := &server{cfg: cfg, logger: logger, stats: NewStats(), logDone: make(chan struct{}),
		stopLog: func() {}, stopRoom: func() {}, stopMonitor: func() {}}
	defer s.stop()
	roomCfg, err := s.openLog()
	if err != nil {
		return err
	}
	s.startRoom(roomCfg)
	if err := s.build(); err != nil {
		return err
	}
	if err := s.serve(ctx); err != nil {
		return err
	}
	s.shutdown()
	return nil
}

// stop stops whatever is still running, room first, and waits for it.
func (s *server) stop() {
	s.stopRoom()
	s.stopMonitor()
	s.stopLog()
	s.wg.Wait()
	if s.cluster != nil {
		s.cluster.Shutdown()
	}
}

// openLog returns the room's configuration with the history it starts
// from: empty, or, with -data, what the journal recovered, the journal
// then running until stopLog.
func (s *server) openLog() (RoomConfig, error) {
	cfg := s.cfg
	roomCfg := RoomConfig{
		History:           cfg.history,
		Backlog:           cfg.backlog,
		ClientBuffer:      cfg.clientBuffer,
		BatchWait:         cfg.batchWait,
		Tick:              stream.TickInterval(cfg.heartbeat),
		MaxStreams:        cfg.maxStreams,
		MaxStreamsPerAddr: cfg.maxStreamsPerAddr,
		PresenceInterval:  cfg.presenceInterval,
		PresenceNames:     cfg.presenceNames,
	}
	if cfg.nats != "" {
		return s.openCluster(roomCfg)
	}
	if cfg.data == "" {
		close(s.logDone)
		return roomCfg, nil
	}
	opts := append([]journal.Option{journal.ObserveSync(s.stats.observeJournalSync)}, cfg.journalOptions...)
	store, records, err := journal.Open(cfg.data, cfg.history, s.logger, opts...)
	if err != nil {
		return roomCfg, fmt.Errorf("open journal: %w", err)
	}
	recovered, err := roomlog.Recover(records)
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
		return roomCfg, fmt.Errorf("open journal %s: %w", cfg.data, err)
	}
	if cfg.journalSync != nil {
		store.SetSync(cfg.journalSync)
	}
	roomCfg.Store, roomCfg.Recovered = roomlog.NewJournalStore(store, epoch, recovered), recovered
	s.stats.watchJournal(store.Err)
	storeCtx, stopStore := context.WithCancel(context.Background())
	s.stopLog = stopStore
	s.wg.Go(func() {
		store.Run(storeCtx)
		close(s.logDone)
	})
	s.logger.Info("journal opened", "path", cfg.data, "messages", len(recovered))
	return roomCfg, nil
}

// openCluster returns roomCfg with the room's log in the NATS stream and
// the history loaded from it (cluster mode). At shutdown the store stops
// taking posts and settles those on their way while the room still runs
// (stopLog), and closes once the room has stopped.
func (s *server) openCluster(roomCfg RoomConfig) (RoomConfig, error) {
	cfg := s.cfg
	var urls []string
	for u := range strings.SplitSeq(cfg.nats, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), natsOpenTimeout)
	defer cancel()
	store, recs, err := clusterlog.Open(ctx, clusterlog.Config{
		URLs: urls, Stream: cfg.natsStream, Replicas: cfg.natsReplicas, History: cfg.history,
		PublishWait: cfg.natsPublishWait, ClientName: "chat", Valid: validRecord(cfg.maxContent), Logger: s.logger,
	})
	if err != nil {
		return roomCfg, natsError(cfg, err)
	}
	s.cluster = store
	roomCfg.Store, roomCfg.Recovered = store, recs
	s.stats.watchCluster(store)
	drain, stopStore := context.WithCancel(context.Background())
	s.stopLog = stopStore
	s.wg.Go(func() {
		<-drain.Done()
		if !store.Drain(cmp.Or(cfg.journalWait, journalDrain)) {
			s.logger.Warn("posts still unconfirmed by NATS at shutdown: they are answered 504")
		}
		close(s.logDone)
	})
	st := store.Status()
	s.logger.Info("room log in NATS JetStream", "stream", st.Stream, "epoch", st.Epoch, "replicas", cfg.natsReplicas,
		"server", st.URL, "records", len(recs))
	return roomCfg, nil
}

// natsError returns err, the error of opening the room's log in NATS, as
// one line that names the flag to look at: -history or -nats-replicas when
// the existing stream keeps another number of messages or copies, or the
// servers cannot hold that many, -nats-stream for another conflict with
// the existing stream, else -nats. It holds no credentials (clusterlog's
// errors name servers without them).
func natsError(cfg config, err error) error {
	var ce *clusterlog.ConflictError
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &ce) && ce.Field == "max_msgs":
		return fmt.Errorf("-history %d: %w (make the stream again, or start with -history %s)", cfg.history, err, ce.Have)
	case errors.As(err, &ce) && ce.Field == "num_replicas":
		return fmt.Errorf("-nats-replicas %d: %w", cfg.natsReplicas, err)
	case errors.As(err, &ce):
		return fmt.Errorf("-nats-stream %s: %w", cfg.natsStream, err)
	case errors.As(err, &apiErr) && apiErr.ErrCode == insufficientResources:
		return fmt.Errorf("-nats-replicas %d: %w", cfg.natsReplicas, err)
	}
	return fmt.Errorf("-nats: %w", err)
}

// insufficientResources is JetStream's err_code for a stream the servers
// cannot hold, as when it asks for more replicas than there are servers.
const insufficientResources = 10074

// reach returns serverConfig.reach: the cluster store's, or nil.
func (s *server) reach() func(context.Context, *roomlog.Position) {
	if s.cluster == nil {
		return nil
	}
	return s.cluster.Reach
}

// startRoom starts the room's hub with roomCfg, and the monitor.
func (s *server) startRoom(roomCfg RoomConfig) {
	s.room = NewChatRoom(roomCfg, s.stats)
	roomCtx, stopRoom := context.WithCancel(context.Background())
	s.stopRoom = stopRoom
	s.wg.Go(func() { s.room.Run(roomCtx) })
	monCtx, stopMonitor := context.WithCancel(context.Background())
	s.stopMonitor = stopMonitor
	s.wg.Go(func() { runMonitor(monCtx, s.cfg.statsInterval, s.stats, s.logger) })
}

// build makes the HTTP server: the access gate, the bans, the handler,
// and the listener with its per-address caps.
func (s *server) build() error {
	cfg := s.cfg
	trusted, err := limit.ParseTrustedProxies(cfg.trustedProxies)
	if err != nil {
		return err
	}
	gate, err := newGate(cfg, s.logger)
	if err != nil {
		return err
	}
	if gate.Private() || gate.Moderated() {
		s.logger.Info("access", "room_key", gate.Private(), "moderation", gate.Moderated(),
			"sessions_kept", cfg.data != "", "session_lifetime", cfg.sessionLifetime.String())
	}
	bans := ban.New()
	if cfg.data != "" {
		if bans, err = ban.Open(cfg.data+".bans", time.Now()); err != nil {
			return err
		}
	}
	s.streams = stream.NewTracker()
	handler := newServer(s.room, s.stats, s.streams, &s.shuttingDown, serverConfig{
		heartbeat:     cfg.heartbeat,
		writeTimeout:  cfg.writeTimeout,
		maxContent:    cfg.maxContent,
		maxBody:       int64(cfg.maxBody),
		limiter:       limit.New(cfg.postRate, cfg.postBurst),
		typingLimiter: limit.New(cfg.typingRate, cfg.typingBurst),
		addrOf:        limit.ClientAddr(trusted),
		gate:          gate,
		bans:          bans,
		reach:         s.reach(),
	}, s.logger)
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	// The per-address caps: at accept only the peer is known, so trusted
	// proxies are exempt (they carry many clients; cap those at the
	// proxy, see contrib/nginx.conf).
	s.ln = connlimit.New(ln, connlimit.Config{PerAddr: cfg.maxConnsPerAddr, InProgress: cfg.maxHeaderConns, MaxFields: maxHeaderFields, Exempt: trusted})
	s.stats.countConnections(s.ln)
	s.srv = &http.Server{
		Handler:   s.ln.Handler(handler),
		ConnState: s.ln.ConnState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return stream.WithNetConn(s.ln.ConnContext(ctx, c), c)
		},
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2:             connlimit.HTTP2Config(),
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
		// No WriteTimeout: it would cut long-lived HTTP/2 streams. Every
		// stream write has its own deadline instead, and other responses
		// are small.
	}
	return nil
}

// serve serves (with the profiles on their own listener if asked) until
// ctx ends, and returns nil then, or the error that stopped the server.
func (s *server) serve(ctx context.Context) error {
	cfg := s.cfg
	if cfg.pprofAddr != "" {
		stopPprof, err := servePprof(cfg.pprofAddr, s.logger)
		if err != nil {
			_ = s.ln.Close()
			return err
		}
		defer stopPprof()
	}
	scheme := "http"
	if cfg.tlsCert != "" {
		scheme = "https"
	}
	s.logger.Info("listening", "addr", s.ln.Addr().String(), "url", scheme+"://"+displayAddr(s.ln.Addr()))
	serveErr := make(chan error, 1)
	go func() {
		if cfg.tlsCert != "" {
			serveErr <- s.srv.ServeTLS(s.ln, cfg.tlsCert, cfg.tlsKey)
		} else {
			serveErr <- s.srv.Serve(s.ln)
		}
	}()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		return nil
	}
}

// shutdown stops accepting first. Then it stops the journal while the room
// still runs, so that every post the journal made durable is answered 201
// (posts after that get 503 and are not stored). If the journal takes
// longer than journalDrain (a hung fsync), the room answers the posts and
// deletions it still holds 202: they are written before the process
// exits, but not confirmed. Then it ends every stream: the room closes
// each client's queue, writers finish what is queued and close their
// connections; writers still blocked after streamDrain are cut. Last it
// waits for the requests in flight, up to shutdownTimeout.
func (s *server) shutdown() {
	s.logger.Info("shutting down")
	s.shuttingDown.Store(true)
	_ = s.ln.Close()
	s.stopLog()
	select {
	case <-s.logDone:
	case <-time.After(cmp.Or(s.cfg.journalWait, journalDrain)):
		s.logger.Warn("journal did not stop in time")
	}
	s.stopRoom()
	if !s.streams.Wait(streamDrain) {
		s.streams.Interrupt()
		s.streams.Wait(time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	s.stopMonitor()
	s.logger.Info("stopped", "messages", s.stats.Snapshot().MessagesPosted)
}

// newGate returns the gate for the keys in cfg. Sessions are signed with a
// secret kept beside the journal (PATH.secret, mode 0600) with -data, so
// they survive restarts, or else with a random one. With -data, a change
// of keys since the last start (to no keys included) replaces the secret,
// which ends every session for good (see auth.LoadSessions).
func newGate(cfg config, logger *slog.Logger) (*auth.Gate, error) {
	g := &auth.Gate{Keys: auth.Keys{Room: cfg.roomKey, Admin: cfg.adminKey}}
	var err error
	if cfg.data != "" {
		var rotated bool
		if g.Sessions, rotated, err = auth.LoadSessions(cfg.data+".secret", g.Keys, cfg.sessionLifetime); rotated {
			logger.Warn("the keys changed since the last start: every session has ended")
		}
	} else if g.Private() || g.Moderated() {
		var secret []byte
		if secret, err = auth.NewSecret(); err == nil {
			g.Sessions, err = auth.NewSessions(secret, g.Keys, cfg.sessionLifetime)
		}
	}
	if err != nil {
		return nil, err
	}
	if g.Private() || g.Moderated() {
		g.Failures = auth.NewThrottle(loginFailures, loginWindow)
	}
	return g, nil
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
