// Package natstest starts real nats-server processes for tests: one server
// or a cluster of servers joined by routes, on loopback ports, with
// JetStream on and its store in the test's temporary directory. A server
// can be stopped, killed with SIGKILL and restarted on the same port with
// the same store, so tests can take servers away under a client and bring
// them back.
//
// The binary is looked up in PATH, then in $(go env GOPATH)/bin. When it is
// missing a test that asks for a server is skipped, or fails when the
// environment variable CI is "true", with the command that installs it.
package natstest

import (
	"crypto/x509"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timing of the servers' start and stop.
const (
	// ReadyTimeout bounds the wait for a started server to answer its
	// health check (JetStream ready, and in a cluster its meta leader
	// known); the machine running the tests may be slow and busy.
	ReadyTimeout = 60 * time.Second
	// pollEvery is the pause between two health checks.
	pollEvery = 25 * time.Millisecond
	// stopTimeout bounds a graceful stop; the process is killed after it.
	stopTimeout = 15 * time.Second
	// startAttempts is how often a first start is tried with new ports
	// when another process took a port between choosing it and binding it.
	startAttempts = 3
)

// InstallHint is the command that installs the server the tests expect.
const InstallHint = "go install github.com/nats-io/nats-server/v2@v2.15.3"

// Options configure the servers a test starts. The zero value is one
// server with JetStream, no authentication and default limits.
type Options struct {
	// NoJetStream starts the server without JetStream.
	NoJetStream bool
	// User and Password, when User is set, make the server require them.
	User, Password string
	// Token, when set, makes the server require this token.
	Token string
	// TLS makes the server require TLS from clients, with a certificate
	// for 127.0.0.1 signed by an authority of its own (see TLSConfig).
	TLS bool
	// MaxPayload, when positive, sets the server's max_payload in bytes.
	MaxPayload int
	// Extra is appended to the configuration file as it is, for example
	// "max_connections: 10".
	Extra string
}

// Server is one nats-server process that a test started. Its methods may
// be called from any goroutine; they fail the test with t.Fatal, so call
// them from the test's goroutine.
type Server struct {
	t    testing.TB
	bin  string
	name string
	dir  string
	opts Options
	// port, httpPort and clusterPort are the client, monitoring and
	// route ports; clusterPort is 0 for a lone server.
	port, httpPort, clusterPort int
	// routes are the other cluster members' route ports.
	routes []int
	// tlsBlock is the configuration's tls block and roots the authority
	// that signed its certificate, when Options.TLS is set.
	tlsBlock string
	roots    *x509.CertPool

	mu sync.Mutex
	// cmd is the running process, nil while stopped; exited is closed
	// when it has been waited for.
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts one server and waits until it is ready. The server is
// killed when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := binary(t)
	var last error
	for range startAttempts {
		ports := freePorts(t, 2)
		s := newServer(t, bin, "n1", opts, ports[0], ports[1], 0, nil)
		if err := s.start(); err != nil {
			last = err
			continue
		}
		return s
	}
	t.Fatalf("natstest: start nats-server: %v", last)
	return nil
}

// Cluster starts n servers joined by routes into one cluster, with
// JetStream, and waits until every one of them is ready (which includes
// knowing the JetStream meta leader). The servers are killed when the
// test ends.
func Cluster(t testing.TB, n int, opts Options) []*Server {
	t.Helper()
	bin := binary(t)
	var last error
	for range startAttempts {
		ports := freePorts(t, 3*n)
		servers := make([]*Server, n)
		for i := range n {
			var routes []int
			for j := range n {
				if j != i {
					routes = append(routes, ports[3*j+2])
				}
			}
			servers[i] = newServer(t, bin, fmt.Sprintf("n%d", i+1), opts,
				ports[3*i], ports[3*i+1], ports[3*i+2], routes)
		}
		if last = startAll(servers); last == nil {
			return servers
		}
		for _, s := range servers {
			s.Kill()
		}
	}
	t.Fatalf("natstest: start a cluster of %d: %v", n, last)
	return nil
}

// startAll starts every server first (a cluster member is not ready until
// the others run) and then waits for each to be ready.
func startAll(servers []*Server) error {
	for _, s := range servers {
		if err := s.spawn(); err != nil {
			return err
		}
	}
	for _, s := range servers {
		if err := s.waitReady(); err != nil {
			return err
		}
	}
	return nil
}

// URLs returns the client URLs of servers, in order.
func URLs(servers []*Server) []string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.URL()
	}
	return urls
}

// newServer prepares a server's directory and configuration.
func newServer(t testing.TB, bin, name string, opts Options, port, httpPort, clusterPort int, routes []int) *Server {
	s := &Server{
		t: t, bin: bin, name: name, dir: t.TempDir(), opts: opts,
		port: port, httpPort: httpPort, clusterPort: clusterPort, routes: routes,
	}
	if opts.TLS {
		var err error
		if s.tlsBlock, s.roots, err = tlsFiles(s.dir); err != nil {
			t.Fatalf("natstest: make certificates: %v", err)
		}
	}
	if err := os.WriteFile(s.configPath(), []byte(s.config()), 0o600); err != nil {
		t.Fatalf("natstest: write config: %v", err)
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("natstest: log of %s (port %d):\n%s", s.name, s.port, s.tail(40))
		}
	})
	return s
}

// configPath is where the server's configuration file is written.
func (s *Server) configPath() string { return filepath.Join(s.dir, "nats.conf") }

// config renders the server's configuration file.
func (s *Server) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\n", s.name, s.port, s.httpPort)
	if !s.opts.NoJetStream {
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %s\n  max_memory_store: 256MB\n  max_file_store: 1GB\n}\n",
			strconv.Quote(filepath.Join(s.dir, "jetstream")))
	}
	if s.opts.MaxPayload > 0 {
		fmt.Fprintf(&b, "max_payload: %d\n", s.opts.MaxPayload)
	}
	b.WriteString(s.tlsBlock)
	switch {
	case s.opts.User != "":
		fmt.Fprintf(&b, "authorization {\n  user: %s\n  password: %s\n}\n", strconv.Quote(s.opts.User), strconv.Quote(s.opts.Password))
	case s.opts.Token != "":
		fmt.Fprintf(&b, "authorization {\n  token: %s\n}\n", strconv.Quote(s.opts.Token))
	}
	if s.clusterPort != 0 {
		fmt.Fprintf(&b, "cluster {\n  name: natstest\n  listen: \"127.0.0.1:%d\"\n  routes: [\n", s.clusterPort)
		for _, p := range s.routes {
			fmt.Fprintf(&b, "    \"nats-route://127.0.0.1:%d\"\n", p)
		}
		b.WriteString("  ]\n}\n")
	}
	if s.opts.Extra != "" {
		b.WriteString(s.opts.Extra + "\n")
	}
	return b.String()
}

// URL is the server's client URL, without credentials.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// AuthURL is the server's client URL with the credentials of its Options
// in it (user:password@ or token@), or URL when it has none.
func (s *Server) AuthURL() string {
	switch {
	case s.opts.User != "":
		return fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", s.opts.User, s.opts.Password, s.port)
	case s.opts.Token != "":
		return fmt.Sprintf("nats://%s@127.0.0.1:%d", s.opts.Token, s.port)
	}
	return s.URL()
}

// Port is the server's client port.
func (s *Server) Port() int { return s.port }

// Name is the server's name (n1, n2, …).
func (s *Server) Name() string { return s.name }

// StoreDir is the directory of the server's JetStream store.
func (s *Server) StoreDir() string { return filepath.Join(s.dir, "jetstream") }

// logPath is the file the server's output goes to, over all its runs.
func (s *Server) logPath() string { return filepath.Join(s.dir, "nats.log") }

// Log returns everything the server has written so far, over all its runs.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath()) // no file yet means no output yet
	return string(b)
}

// start starts the process and waits until it is ready.
func (s *Server) start() error {
	if err := s.spawn(); err != nil {
		return err
	}
	return s.waitReady()
}

// spawn starts the process without waiting for it to be ready.
func (s *Server) spawn() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("%s is already running", s.name)
	}
	log, err := os.OpenFile(s.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "-c", s.configPath())
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status of a killed test server says nothing
		log.Close()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	return nil
}

// waitReady polls the server's /healthz until it answers 200, the process
// exits, or ReadyTimeout passes.
func (s *Server) waitReady() error {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	client := &http.Client{Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", s.httpPort)
	deadline := time.Now().Add(ReadyTimeout)
	for {
		select {
		case <-exited:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			return fmt.Errorf("%s exited at start: %s", s.name, s.tail(5))
		default:
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %s", s.name, ReadyTimeout, s.tail(5))
		}
		time.Sleep(pollEvery) // the pause of a bounded poll, not a synchronisation
	}
}

// Kill ends the server with SIGKILL, as a crash would, and waits for the
// process to be gone. It does nothing when the server is not running.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Stop ends the server with SIGTERM (a clean shutdown) and waits for the
// process to be gone, killing it after a bounded wait. It does nothing when
// the server is not running.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// signal sends sig to the running process and waits for it to exit.
func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig) // it may have exited on its own already
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Pause freezes the server with SIGSTOP: its connections stay open and it
// answers nothing (a publish sent to it goes unacknowledged) until Resume.
// On Linux it returns once the process is stopped (a signal is delivered
// asynchronously), polling its state for at most stopTimeout. It does
// nothing when the server is not running.
func (s *Server) Pause() {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGSTOP)
	stat := fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid)
	for deadline := time.Now().Add(stopTimeout); time.Now().Before(deadline); {
		b, err := os.ReadFile(stat)
		if err != nil {
			return // not Linux, or the process is gone
		}
		// The state follows the command name, which is in parentheses.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i+1:]), " T") {
			return
		}
		time.Sleep(time.Millisecond) // the pause of a bounded poll, not a synchronisation
	}
	s.t.Fatalf("natstest: %s did not stop within %v", s.name, stopTimeout)
}

// Resume lets a paused server run on (SIGCONT).
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGCONT) // it may have exited on its own already
	}
}

// Restart stops the server if it runs, starts it again on the same ports
// with the same store, and waits until it is ready.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("natstest: restart %s: %v", s.name, err)
	}
}

// minVersion is the oldest server the tests accept: per-message TTLs and
// subject delete markers need 2.11.
var minVersion = [3]int{2, 11, 0}

// found caches the binary lookup of the test binary.
var found struct {
	once sync.Once
	path string
	why  string
}

// Binary returns the nats-server binary the tests use (see binary), for a
// test that runs it itself, on a configuration of its own.
func Binary(t testing.TB) string { return binary(t) }

// binary finds a nats-server binary of minVersion or newer, in PATH, then
// in GOPATH/bin, or skips (fails under CI=true) the test when there is
// none.
func binary(t testing.TB) string {
	t.Helper()
	found.once.Do(func() {
		var candidates []string
		if p, err := exec.LookPath("nats-server"); err == nil {
			candidates = append(candidates, p)
		}
		for _, dir := range filepath.SplitList(build.Default.GOPATH) {
			candidates = append(candidates, filepath.Join(dir, "bin", "nats-server"))
		}
		found.why = "not found in PATH or GOPATH/bin"
		for _, p := range candidates {
			out, err := exec.Command(p, "--version").Output()
			if err != nil {
				continue
			}
			if v, ok := parseVersion(string(out)); ok && !older(v, minVersion) {
				found.path = p
				return
			}
			found.why = fmt.Sprintf("%s is %s, older than %d.%d.%d", p, strings.TrimSpace(string(out)), minVersion[0], minVersion[1], minVersion[2])
		}
	})
	if found.path != "" {
		return found.path
	}
	msg := "natstest: nats-server " + found.why + "; install it with: " + InstallHint
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// parseVersion reads "nats-server: v2.15.3" as 2, 15, 3.
func parseVersion(s string) ([3]int, bool) {
	var v [3]int
	_, rest, ok := strings.Cut(strings.TrimSpace(s), ": v")
	if !ok {
		return v, false
	}
	rest, _, _ = strings.Cut(rest, "-")
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

// older reports whether version a is older than b.
func older(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: find a free port: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// tail returns the last n lines of the server's log.
func (s *Server) tail(n int) string {
	lines := strings.Split(strings.TrimRight(s.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Running reports whether the server's process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}
