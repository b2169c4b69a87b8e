// Package config is the chat server's command line: the settings it runs
// with, one flag each with a CHAT_* environment variable to fall back on
// (internal/flagenv), their defaults, the checks that refuse settings out
// of range or that do not go together, and the keys read from their files.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"chat/internal/auth"
	"chat/internal/clusterlog"
	"chat/internal/flagenv"
	"chat/internal/jetstream"
	"chat/internal/names"
)

// Defaults of the flags that tune the room's hub.
const (
	// DefaultHistory is how many messages the room keeps for new and
	// resuming clients and for GET /history. A 100-character message costs
	// about 400 bytes of heap (its entry, its strings and its encoded
	// event), so 10 000 cost about 4 MB, plus about 2 MB with -data (the
	// journal keeps each message's line for compaction); the worst case,
	// 2000 four-byte characters a message, is about 160 MB.
	DefaultHistory = 10000
	// DefaultBacklog is how many of the newest messages a new client (one
	// without Last-Event-ID) receives before live messages.
	DefaultBacklog = 50
	// DefaultClientBuffer is how many frames may wait in one client's queue
	// (a frame holds every message of one fan-out, and a writer that falls
	// behind writes all it has queued at once, so 64 frames is over a
	// second of lag at 50 messages a second). A client whose queue is full
	// is disconnected; it resumes with Last-Event-ID, so it loses nothing
	// that history still holds. Each slot costs 8 bytes per client.
	DefaultClientBuffer = 64
	// DefaultBatchWait bounds how long the hub holds new messages while
	// the frame before them is still being written, or held after it (the
	// hub's batching, in chat.go): a batch leaves at the latest this long after that frame
	// did. It binds only in a room whose frame takes long to write (5 000
	// streams on two cores); 120 ms is where such a room, measured at 50
	// messages a second, both costs less CPU per delivery and has a lower
	// p99 than a fixed 50 ms window (docs/performance.md).
	DefaultBatchWait = 120 * time.Millisecond
	// DefaultPresenceInterval is the least time between two presence
	// events on a stream: a burst of joins and leaves costs each stream
	// one or two events, not one per change.
	DefaultPresenceInterval = time.Second
	// DefaultPresenceNames is how many names a presence event lists at
	// most; it always carries the totals, and GET /presence lists everyone.
	DefaultPresenceNames = 200
)

// Defaults of the flags that tune the streams and limit what one client may
// use (the limiter's own bounds are in internal/limit).
const (
	// DefaultHeartbeat is how often an idle stream gets a comment line, so
	// that proxies keep it open (closed peers are found by the probe on
	// the hub's tick, see stream.TickInterval).
	DefaultHeartbeat = 15 * time.Second
	// DefaultWriteTimeout bounds every write to a stream: a client that
	// takes longer to accept one write is disconnected.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxContent is the longest message, in characters.
	DefaultMaxContent = 2000
	// DefaultMaxBody is the largest POST /post body, in bytes.
	DefaultMaxBody = 16 << 10
	// DefaultTypingRate is how many POST /typing one address may make per
	// second (the page sends one every 3 s at most while its person types).
	DefaultTypingRate = 1
	// DefaultTypingBurst is how many POST /typing one address may make at
	// once.
	DefaultTypingBurst = 5
	// DefaultPostRate is how many posts per second one address may make.
	DefaultPostRate = 5
	// DefaultPostBurst is how many posts one address may make at once.
	DefaultPostBurst = 20
	// DefaultMaxStreams caps the streams the server holds.
	DefaultMaxStreams = 50000
	// DefaultMaxStreamsPerAddr caps the streams one address holds.
	DefaultMaxStreamsPerAddr = 64
	// DefaultMaxConnsPerAddr caps the TCP connections one address holds
	// (streams, keep-alive connections and requests in flight): 20 000
	// file descriptors then take at least 78 addresses, and a browser
	// needs at most a handful.
	DefaultMaxConnsPerAddr = 256
	// DefaultMaxHeaderConnsPerAddr caps the requests of one address in
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
	DefaultMaxHeaderConnsPerAddr = 64
)

// Config holds everything the command line sets.
type Config struct {
	Addr, Data, LogFormat, LogLevel string
	TLSCert, TLSKey, TrustedProxies string
	PprofAddr                       string
	History, Backlog, ClientBuffer  int
	MaxContent, MaxBody             int
	MaxStreams, MaxStreamsPerAddr   int
	MaxConnsPerAddr, MaxHeaderConns int
	PostBurst, TypingBurst          int
	PostRate, TypingRate            float64
	PresenceInterval                time.Duration
	PresenceNames                   int
	Heartbeat, StatsInterval        time.Duration
	WriteTimeout, BatchWait         time.Duration
	// NameHold is how long a name stays held after its last use (-name-hold),
	// and IdentitySecretFile the file of the secret that signs identity
	// cookies ("": PATH.identity with -data, else random).
	NameHold           time.Duration
	IdentitySecretFile string
	// RoomKey and AdminKey are the keys themselves, from the flag, the
	// environment or the key file. Never log them.
	RoomKey, RoomKeyFile   string
	AdminKey, AdminKeyFile string
	SessionLifetime        time.Duration
	// Repair is the journal -repair checks, and RepairWrite is
	// -repair-write.
	Repair      string
	RepairWrite bool
	// NATS lists the NATS servers of cluster mode (empty: one node), with
	// the stream's name and replicas. The URLs may hold credentials: never
	// log them.
	NATS, NATSStream string
	NATSReplicas     int
	// pprof is the removed -pprof, which check refuses with a pointer to
	// -pprof-addr.
	pprof bool
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

// Parse reads the flags of args (args[0] is the command's name), falling
// back to CHAT_* environment variables from getenv for flags not given
// (flags win), checks them and reads the key files. Usage and flag errors
// go to stderr; -h returns flag.ErrHelp.
func Parse(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c, fs := define(args[0], stderr)
	if err := env.Parse(fs, args[1:], getenv); err != nil {
		return *c, err
	}
	if err := c.check(); err != nil {
		return *c, err
	}
	return *c, c.readKeys()
}

// define returns the command's flag set, which parses into the returned
// config.
func define(name string, stderr io.Writer) (*Config, *flag.FlagSet) {
	c := &Config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", ":6969", "address to listen on")
	fs.IntVar(&c.History, "history", DefaultHistory, "messages kept in history")
	fs.IntVar(&c.Backlog, "backlog", DefaultBacklog, "messages a new client receives from history")
	fs.IntVar(&c.ClientBuffer, "client-buffer", DefaultClientBuffer, "frames queued per client before it is disconnected as slow")
	fs.DurationVar(&c.Heartbeat, "heartbeat", DefaultHeartbeat, "interval of heartbeat comments on idle streams (0: none)")
	fs.DurationVar(&c.StatsInterval, "stats-interval", 5*time.Second, "interval of the statistics log line (0: off)")
	fs.IntVar(&c.MaxContent, "max-content", DefaultMaxContent, "longest message, in characters")
	fs.IntVar(&c.MaxBody, "max-body", DefaultMaxBody, "largest POST body, in bytes")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", DefaultWriteTimeout, "time a stream client has to accept one write")
	fs.DurationVar(&c.BatchWait, "batch-wait", DefaultBatchWait, "longest a busy room holds a batch after the frame before it left (0: no batching)")
	fs.DurationVar(&c.BatchWait, "coalesce", DefaultBatchWait, "old name of -batch-wait")
	fs.StringVar(&c.Data, "data", "", "journal file that keeps history across restarts (empty: memory only)")
	fs.IntVar(&c.MaxStreams, "max-streams", DefaultMaxStreams, "most streams open at once (0: no limit)")
	fs.IntVar(&c.MaxStreamsPerAddr, "max-streams-per-addr", DefaultMaxStreamsPerAddr, "most streams per client address (0: no limit)")
	fs.Float64Var(&c.PostRate, "post-rate", DefaultPostRate, "posts per second per client address (0: no limit)")
	fs.IntVar(&c.PostBurst, "post-burst", DefaultPostBurst, "posts one client address may make at once")
	fs.Float64Var(&c.TypingRate, "typing-rate", DefaultTypingRate, "POST /typing per second per client address (0: no limit)")
	fs.IntVar(&c.TypingBurst, "typing-burst", DefaultTypingBurst, "POST /typing one client address may make at once")
	fs.DurationVar(&c.PresenceInterval, "presence-interval", DefaultPresenceInterval, "least time between two presence events on a stream (0: no presence or typing events)")
	fs.IntVar(&c.PresenceNames, "presence-names", DefaultPresenceNames, "most names listed in a presence event (the totals are always sent)")
	fs.DurationVar(&c.NameHold, "name-hold", names.DefaultHold, "how long a name stays held by the identity that last used it (0: only while its stream is open)")
	fs.StringVar(&c.IdentitySecretFile, "identity-secret-file", "", "file of the secret that signs identity cookies, made if missing (default: PATH.identity with -data, the room's in JetStream with -nats, else random)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated proxy addresses or prefixes whose X-Forwarded-For is believed")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate file (serves HTTPS and HTTP/2 with -tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS key file")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.RoomKey, "room-key", "", "key that makes the room private (prefer -room-key-file: arguments are visible to other users)")
	fs.StringVar(&c.RoomKeyFile, "room-key-file", "", "file holding the room key, read once at start")
	fs.StringVar(&c.AdminKey, "admin-key", "", "key that enables moderation: deleting messages and banning addresses")
	fs.StringVar(&c.AdminKeyFile, "admin-key-file", "", "file holding the admin key, read once at start")
	fs.DurationVar(&c.SessionLifetime, "session-lifetime", auth.DefaultLifetime, "how long a login lasts")
	fs.IntVar(&c.MaxConnsPerAddr, "max-conns-per-addr", DefaultMaxConnsPerAddr, "most TCP connections per client address, closed at accept (0: no limit; trusted proxies are exempt)")
	fs.IntVar(&c.MaxHeaderConns, "max-header-conns-per-addr", DefaultMaxHeaderConnsPerAddr, "most requests per client address in progress at once: connections sending headers, requests not yet answered (0: no limit)")
	fs.StringVar(&c.PprofAddr, "pprof-addr", "", "serve profiles under /debug/pprof/ on this separate address, e.g. 127.0.0.1:6060 (empty: off)")
	fs.BoolVar(&c.pprof, "pprof", false, "removed: use -pprof-addr")
	fs.StringVar(&c.NATS, "nats", "", "comma-separated NATS server URLs (nats://[user:pass@]host:4222): the room's history lives in a JetStream stream shared by every node (instead of -data)")
	fs.StringVar(&c.NATSStream, "nats-stream", "CHAT", "with -nats: the JetStream stream that keeps the room (its subject is chat.NAME.log)")
	fs.IntVar(&c.NATSReplicas, "nats-replicas", 1, "with -nats: servers that keep a copy of the stream (3 for a production cluster)")
	fs.StringVar(&c.Repair, "repair", "", "check the journal at this path, report its first bad line and exit; the server does not start")
	fs.BoolVar(&c.RepairWrite, "repair-write", false, "with -repair: keep the lines before the first bad one and move the rest to PATH.bad-<time>")
	return c, fs
}

// check refuses settings out of range or that do not go together.
func (c *Config) check() error {
	switch {
	case c.History < 0, c.Backlog < 0, c.ClientBuffer < 1, c.MaxContent < 1, c.MaxBody < 64,
		c.MaxStreams < 0, c.MaxStreamsPerAddr < 0, c.PostRate < 0, c.PostBurst < 0,
		c.MaxConnsPerAddr < 0, c.MaxHeaderConns < 0,
		c.TypingRate < 0, c.TypingBurst < 0, c.PresenceNames < 0:
		return errors.New("numeric flags must not be negative; -client-buffer and -max-content must be at least 1, -max-body at least 64")
	case c.Heartbeat < 0, c.StatsInterval < 0, c.WriteTimeout <= 0, c.BatchWait < 0, c.PresenceInterval < 0, c.NameHold < 0:
		return errors.New("durations must not be negative, and -write-timeout must be positive")
	case c.pprof:
		return errors.New("-pprof is gone: it served profiles and goroutine stacks on the public listener; use -pprof-addr 127.0.0.1:6060")
	case c.Data != "" && c.History < 1:
		return errors.New("-data needs -history of at least 1: the journal keeps the history")
	case c.NATS != "" && c.Data != "":
		return errors.New("-nats and -data: give one; the NATS stream keeps the room's history, and a journal would be a second source of truth")
	case c.NATS != "" && c.History < 1:
		return errors.New("-nats needs -history of at least 1: it is the stream's message limit")
	case c.NATSReplicas < 1 || c.NATSReplicas > 5:
		return fmt.Errorf("-nats-replicas %d: want 1 to 5", c.NATSReplicas)
	case !clusterlog.ValidStream(c.NATSStream):
		return fmt.Errorf("-nats-stream %q: want 1 to 32 letters, digits, - or _", c.NATSStream)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("-tls-cert and -tls-key go together")
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fmt.Errorf("-log-format %q: want text or json", c.LogFormat)
	case c.RepairWrite && c.Repair == "":
		return errors.New("-repair-write goes with -repair PATH")
	case c.SessionLifetime < auth.MinLifetime:
		return fmt.Errorf("-session-lifetime %v is too short: sessions must last at least %v", c.SessionLifetime, auth.MinLifetime)
	}
	return nil
}

// readKeys reads the room and admin keys from their files, if given.
func (c *Config) readKeys() error {
	var err error
	if c.RoomKey, err = readKey("room-key", c.RoomKey, c.RoomKeyFile); err != nil {
		return err
	}
	if c.AdminKey, err = readKey("admin-key", c.AdminKey, c.AdminKeyFile); err != nil {
		return err
	}
	if c.RoomKey != "" && auth.KeyEqual(c.AdminKey, c.RoomKey) {
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

// Logger returns the logger -log-format and -log-level ask for, writing
// to w.
func (c Config) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// NATSURLs returns the servers -nats lists, without blanks.
func (c Config) NATSURLs() []string {
	var urls []string
	for u := range strings.SplitSeq(c.NATS, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

// NATSError returns err, the error of opening the room's log in NATS, as
// one line that names the flag to look at: -history or -nats-replicas when
// the existing stream keeps another number of messages or copies, or the
// servers cannot hold that many, -nats-stream for another conflict with
// the existing stream, else -nats. It holds no credentials (clusterlog's
// errors name servers without them).
func (c Config) NATSError(err error) error {
	var ce *clusterlog.ConflictError
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &ce) && ce.Field == "max_msgs":
		return fmt.Errorf("-history %d: %w (make the stream again, or start with -history %s)", c.History, err, ce.Have)
	case errors.As(err, &ce) && ce.Field == "num_replicas":
		return fmt.Errorf("-nats-replicas %d: %w", c.NATSReplicas, err)
	case errors.As(err, &ce):
		return fmt.Errorf("-nats-stream %s: %w", c.NATSStream, err)
	case errors.As(err, &apiErr) && apiErr.ErrCode == insufficientResources:
		return fmt.Errorf("-nats-replicas %d: %w", c.NATSReplicas, err)
	}
	return fmt.Errorf("-nats: %w", err)
}

// insufficientResources is JetStream's err_code for a stream the servers
// cannot hold, as when it asks for more replicas than there are servers.
const insufficientResources = 10074
