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
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"chat/internal/auth"
	"chat/internal/ban"
	"chat/internal/clusterlog"
	"chat/internal/clusterstate"
	"chat/internal/config"
	"chat/internal/connlimit"
	"chat/internal/identity"
	"chat/internal/journal"
	"chat/internal/limit"
	"chat/internal/moderation"
	"chat/internal/nameguard"
	"chat/internal/names"
	"chat/internal/roomlog"
	"chat/internal/stream"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "%s\n", err)
		os.Exit(1)
	}
}

// settings is what serve runs with: the command line, and seams that no
// flag sets, for tests.
type settings struct {
	config.Config
	// journalWait, when positive, replaces config.JournalDrain (tests shorten
	// it).
	journalWait time.Duration
	// journalSync, when not nil, replaces the journal's fsync (tests hold
	// a commit in it).
	journalSync func(*os.File) error
	// journalOptions are passed to journal.Open (tests pass a journal file
	// that fails).
	journalOptions []journal.Option
	// natsPublishWait, when positive, replaces the bound of a publish
	// (tests shorten it).
	natsPublishWait time.Duration
}

// parseFlags reads the command line and the CHAT_* environment (see
// config.Parse).
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	c, err := config.Parse(args, getenv, stderr)
	return settings{Config: c}, err
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
	if cfg.Repair != "" {
		return journal.RunRepair(cfg.Repair, cfg.RepairWrite, time.Now(), stdout)
	}
	return serve(ctx, cfg, stderr)
}

// server is what serve starts, in the order it starts it and stops it
// again at shutdown.
type server struct {
	cfg    settings
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
	// shared is the node's part in the room's state that the nodes of a
	// cluster share (clusterstate), stopped before cluster; nil otherwise.
	shared *clusterstate.Node
	room   *ChatRoom
	// stopRoom and stopMonitor stop the room's hub and the monitor,
	// stopNames the keeper of the held names (after the streams).
	stopRoom, stopMonitor, stopNames context.CancelFunc
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
func serve(ctx context.Context, cfg settings, logOut io.Writer) error {
	logger, err := cfg.Logger(logOut)
	if err != nil {
		return err
	}
	s := &server{cfg: cfg, logger: logger, stats: NewStats(), logDone: make(chan struct{}),
		stopLog: func() {}, stopRoom: func() {}, stopMonitor: func() {}, stopNames: func() {}}
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
	s.stopNames()
	s.wg.Wait()
	if s.shared != nil {
		s.shared.Stop()
	}
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
		History:           cfg.History,
		Backlog:           cfg.Backlog,
		ClientBuffer:      cfg.ClientBuffer,
		BatchWait:         cfg.BatchWait,
		Tick:              stream.TickInterval(cfg.Heartbeat),
		MaxStreams:        cfg.MaxStreams,
		MaxStreamsPerAddr: cfg.MaxStreamsPerAddr,
		PresenceInterval:  cfg.PresenceInterval,
		PresenceNames:     cfg.PresenceNames,
	}
	if cfg.NATS != "" {
		return s.openCluster(roomCfg)
	}
	if cfg.Data == "" {
		close(s.logDone)
		return roomCfg, nil
	}
	opts := append([]journal.Option{journal.ObserveSync(s.stats.observeJournalSync)}, cfg.journalOptions...)
	j, store, recovered, err := roomlog.OpenJournal(cfg.Data, cfg.History, s.logger, opts...)
	if err != nil {
		return roomCfg, err
	}
	if cfg.journalSync != nil {
		j.SetSync(cfg.journalSync)
	}
	roomCfg.Store, roomCfg.Recovered = store, recovered
	s.stats.watchJournal(j.Err)
	storeCtx, stopStore := context.WithCancel(context.Background())
	s.stopLog = stopStore
	s.wg.Go(func() {
		j.Run(storeCtx)
		close(s.logDone)
	})
	s.logger.Info("journal opened", "path", cfg.Data, "messages", len(recovered))
	return roomCfg, nil
}

// openCluster returns roomCfg with the room's log in the NATS stream and
// the history loaded from it (cluster mode). At shutdown the store stops
// taking posts and settles those on their way while the room still runs
// (stopLog), and closes once the room has stopped.
func (s *server) openCluster(roomCfg RoomConfig) (RoomConfig, error) {
	cfg := s.cfg
	ctx, cancel := context.WithTimeout(context.Background(), config.NatsOpenTimeout)
	defer cancel()
	store, recs, err := clusterlog.Open(ctx, clusterlog.Config{
		URLs: cfg.NATSURLs(), Stream: cfg.NATSStream, Replicas: cfg.NATSReplicas, History: cfg.History,
		PublishWait: cfg.natsPublishWait, ClientName: "chat", Valid: validRecord(cfg.MaxContent), Logger: s.logger,
	})
	if err != nil {
		return roomCfg, cfg.NATSError(err)
	}
	s.cluster = store
	roomCfg.Store, roomCfg.Recovered = store, recs
	s.stats.watchCluster(store)
	drain, stopStore := context.WithCancel(context.Background())
	s.stopLog = stopStore
	s.wg.Go(func() {
		<-drain.Done()
		if !store.Drain(cmp.Or(cfg.journalWait, config.JournalDrain)) {
			s.logger.Warn("posts still unconfirmed by NATS at shutdown: they are answered 504")
		}
		close(s.logDone)
	})
	st := store.Status()
	s.logger.Info("room log in NATS JetStream", "stream", st.Stream, "epoch", st.Epoch, "replicas", cfg.NATSReplicas,
		"server", st.URL, "records", len(recs))
	return roomCfg, nil
}

// startRoom starts the room's hub with roomCfg, and the monitor.
func (s *server) startRoom(roomCfg RoomConfig) {
	s.room = NewChatRoom(roomCfg, s.stats)
	roomCtx, stopRoom := context.WithCancel(context.Background())
	s.stopRoom = stopRoom
	s.wg.Go(func() { s.room.Run(roomCtx) })
	monCtx, stopMonitor := context.WithCancel(context.Background())
	s.stopMonitor = stopMonitor
	s.wg.Go(func() { runMonitor(monCtx, s.cfg.StatsInterval, s.stats, s.logger) })
}

// build makes the HTTP server: the access gate, the bans, the handler,
// and the listener with its per-address caps.
func (s *server) build() error {
	cfg := s.cfg
	trusted, err := limit.ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return err
	}
	gate, err := s.newGate()
	if err != nil {
		return err
	}
	bans, err := s.bans(gate)
	if err != nil {
		return err
	}
	s.streams = stream.NewTracker()
	sc := serverConfig{
		heartbeat:     cfg.Heartbeat,
		writeTimeout:  cfg.WriteTimeout,
		maxContent:    cfg.MaxContent,
		maxBody:       int64(cfg.MaxBody),
		limiter:       limit.New(cfg.PostRate, cfg.PostBurst),
		typingLimiter: limit.New(cfg.TypingRate, cfg.TypingBurst),
		addrOf:        limit.ClientAddr(trusted),
		gate:          gate,
		bans:          bans,
	}
	if s.cluster != nil {
		sc.reach = s.cluster.Reach
	}
	if sc.guard, sc.names, err = s.openNames(sc); err != nil {
		return err
	}
	handler := newServer(s.room, s.stats, s.streams, &s.shuttingDown, sc, s.logger)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	// The per-address caps: at accept only the peer is known, so trusted
	// proxies are exempt (they carry many clients; cap those at the
	// proxy, see contrib/nginx.conf).
	s.ln = connlimit.New(ln, connlimit.Config{PerAddr: cfg.MaxConnsPerAddr, InProgress: cfg.MaxHeaderConns, MaxFields: config.MaxHeaderFields, Exempt: trusted})
	s.stats.countConnections(s.ln)
	s.srv = &http.Server{
		Handler:   s.ln.Handler(handler),
		ConnState: s.ln.ConnState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return stream.WithNetConn(s.ln.ConnContext(ctx, c), c)
		},
		ReadHeaderTimeout: config.ReadHeaderTimeout,
		ReadTimeout:       config.ReadTimeout,
		IdleTimeout:       config.IdleTimeout,
		MaxHeaderBytes:    config.MaxHeaderBytes,
		HTTP2:             connlimit.HTTP2Config(),
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
		// No WriteTimeout: it would cut long-lived HTTP/2 streams. Every
		// stream write has its own deadline instead, and other responses
		// are small.
	}
	return nil
}

// bans returns the ban list: in a cluster the one the nodes share, after
// joining the room's shared state (clusterstate.Join, which also signs
// gate's sessions with the room's secret); with -data the one kept beside
// the journal; else one in memory.
func (s *server) bans(gate *auth.Gate) (moderation.Bans, error) {
	if s.cluster == nil && s.cfg.Data != "" {
		return ban.Open(s.cfg.Data+".bans", time.Now())
	} else if s.cluster == nil {
		return ban.New(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), config.NatsOpenTimeout)
	defer cancel()
	var err error
	s.shared, err = clusterstate.Join(ctx, clusterstate.Config{JS: s.cluster.JS(), Stream: s.cfg.NATSStream,
		Replicas: s.cfg.NATSReplicas, Logger: s.logger}, s.room, gate)
	if err != nil {
		return nil, fmt.Errorf("-nats: room state: %w", err)
	}
	return s.shared.Bans, nil
}

// openNames opens the identity secret and the held names (nameguard.Open)
// and, with -data, starts their keeper, which stopNames ends. In cluster
// mode the nodes share both (clusterstate.Node.Names): the secret, unless
// -identity-secret-file gives one, and the holds are the room's.
func (s *server) openNames(sc serverConfig) (*nameguard.Guard, *names.Table, error) {
	cfg := s.cfg
	opts := names.Options{Hold: cfg.NameHold}
	var issuer *identity.Issuer
	var table *names.Table
	var err error
	if s.shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), config.NatsOpenTimeout)
		defer cancel()
		issuer, table, err = s.shared.Names(ctx, opts, cfg.IdentitySecretFile)
	} else {
		issuer, table, err = nameguard.Open(cfg.Data, cfg.IdentitySecretFile, opts, time.Now())
	}
	if err != nil {
		return nil, nil, err
	}
	guard := nameguard.New(nameguard.Config{Issuer: issuer, Table: table, Rate: sc.limiter, AddrOf: sc.addrOf, Logger: s.logger})
	if cfg.Data != "" { // a table in memory has nothing to save
		ctx, stop := context.WithCancel(context.Background())
		s.stopNames = stop
		s.wg.Go(func() { guard.Keep(ctx) })
	}
	return guard, table, nil
}

// newGate returns the access gate for the keys. With -data its sessions
// are signed with a secret kept beside the journal (PATH.secret, mode
// 0600), so that they survive restarts until the keys change.
func (s *server) newGate() (*auth.Gate, error) {
	cfg := s.cfg
	gateCfg := auth.GateConfig{Keys: auth.Keys{Room: cfg.RoomKey, Admin: cfg.AdminKey},
		Lifetime: cfg.SessionLifetime, Failures: config.LoginFailures, Window: config.LoginWindow}
	if cfg.Data != "" {
		gateCfg.SecretPath = cfg.Data + ".secret"
	}
	gate, rotated, err := auth.NewGate(gateCfg)
	if rotated {
		s.logger.Warn("the keys changed since the last start: every session has ended")
	}
	if err == nil && (gate.Private() || gate.Moderated()) {
		s.logger.Info("access", "room_key", gate.Private(), "moderation", gate.Moderated(),
			"sessions_kept", cfg.Data != "" || cfg.NATS != "", "session_lifetime", cfg.SessionLifetime.String())
	}
	return gate, err
}

// serve serves (with the profiles on their own listener if asked) until
// ctx ends, and returns nil then, or the error that stopped the server.
func (s *server) serve(ctx context.Context) error {
	cfg := s.cfg
	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, s.logger)
		if err != nil {
			_ = s.ln.Close()
			return err
		}
		defer stopPprof()
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	s.logger.Info("listening", "addr", s.ln.Addr().String(), "url", scheme+"://"+config.DisplayAddr(s.ln.Addr()))
	serveErr := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			serveErr <- s.srv.ServeTLS(s.ln, cfg.TLSCert, cfg.TLSKey)
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
// longer than config.JournalDrain (a hung fsync), the room answers the posts and
// deletions it still holds 202: they are written before the process
// exits, but not confirmed. Then it ends every stream: the room closes
// each client's queue, writers finish what is queued and close their
// connections; writers still blocked after config.StreamDrain are cut. Last it
// waits for the requests in flight, up to config.ShutdownTimeout.
func (s *server) shutdown() {
	s.logger.Info("shutting down")
	s.shuttingDown.Store(true)
	_ = s.ln.Close()
	s.stopLog()
	select {
	case <-s.logDone:
	case <-time.After(cmp.Or(s.cfg.journalWait, config.JournalDrain)):
		s.logger.Warn("journal did not stop in time")
	}
	s.stopRoom()
	if !s.streams.Wait(config.StreamDrain) {
		s.streams.Interrupt()
		s.streams.Wait(time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), config.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	s.stopNames()
	s.stopMonitor()
	s.logger.Info("stopped", "messages", s.stats.Snapshot().MessagesPosted)
}
