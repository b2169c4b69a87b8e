package main

// The harness every test of this package uses, in two files: this one
// starts the server in process (through run with flags, or serve with a
// config no flag can make) or as the real binary, built once per test
// run, and runs rooms, waits and journals for tests; harness_clients_test.go
// talks to a server as its clients do (posts with and without an
// Idempotency-Key, streams read with internal/sse, /stats, /history,
// /presence, logins and deletions). Every wait is bounded by waitTimeout.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chat/internal/httpx"
	"chat/internal/record"
	"chat/internal/stream"
)

// waitTimeout bounds every poll and every wait of these tests.
const waitTimeout = 10 * time.Second

// testFlags are the flags every server started in process gets before the
// test's own (a later flag wins): a loopback port, no statistics log, no
// per-address limit, and no presence or typing events, so that a stream
// holds only what the test sends. Tests of a limit or of presence turn it
// on again.
var testFlags = []string{"-addr", "127.0.0.1:0", "-stats-interval", "0", "-post-rate", "0",
	"-max-streams-per-addr", "0", "-max-conns-per-addr", "0", "-presence-interval", "0", "-typing-rate", "0"}

// binaryFlags are the flags every run of the binary gets before the
// test's own: a loopback port, no statistics log, no post limit and no
// presence events. The other limits keep their defaults, which the load
// tests measure.
var binaryFlags = []string{"-addr", "127.0.0.1:0", "-post-rate", "0", "-stats-interval", "0", "-presence-interval", "0"}

// noEnv is an environment with no variable set.
func noEnv(string) string { return "" }

// errorBody is the JSON body of every error response.
type errorBody = httpx.ErrorBody

// ---------------------------------------------------------------- servers

// endpoint is a running server as its clients see it: its base URL and an
// HTTP client that reaches it (one that accepts the test certificate for
// a server over TLS).
type endpoint struct {
	URL    string
	client *http.Client
}

// addr returns the server's host:port.
func (e endpoint) addr() string {
	return strings.TrimPrefix(strings.TrimPrefix(e.URL, "http://"), "https://")
}

// post sends a message as JSON and returns the stored message, failing
// the test unless it is answered 201.
func (e endpoint) post(tb testing.TB, username, content string) Message {
	tb.Helper()
	r, err := postJSON(e.client, e.URL, username, content, nil)
	if err != nil || r.status != http.StatusCreated {
		tb.Fatalf("POST /post %q: status %d, error %v, body %s", content, r.status, err, r.body)
	}
	return r.msg
}

// stats returns the server's /stats.
func (e endpoint) stats(tb testing.TB) StatsSnapshot {
	tb.Helper()
	var s StatsSnapshot
	getJSON(tb, e.client, e.URL+"/stats", &s)
	return s
}

// testServer is a chat server run in this process on a loopback port.
type testServer struct {
	endpoint
	logs *logWatcher
	// cancel begins the shutdown; done is closed once run (or serve) has
	// returned, with err set.
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	stopped bool
}

// startServer runs the server through run with testFlags and then flags,
// and stops it when the test ends.
func startServer(tb testing.TB, flags ...string) *testServer {
	tb.Helper()
	args := slices.Concat([]string{"chat"}, testFlags, flags)
	return launch(tb, fmt.Sprintf("run(%q)", args), func(ctx context.Context, logs io.Writer) error {
		return run(ctx, args, noEnv, io.Discard, logs)
	})
}

// startServerConfig runs the server through serve with the config that
// testFlags and flags make, changed by tweak (for what no flag sets), and
// stops it when the test ends.
func startServerConfig(tb testing.TB, tweak func(*settings), flags ...string) *testServer {
	tb.Helper()
	cfg, err := parseFlags(slices.Concat([]string{"chat"}, testFlags, flags), noEnv, io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	tweak(&cfg)
	return launch(tb, "serve", func(ctx context.Context, logs io.Writer) error { return serve(ctx, cfg, logs) })
}

// startTLSServer is startServer over TLS, with a certificate made for the
// test: its URL is https://, and its client accepts the certificate.
func startTLSServer(tb testing.TB, flags ...string) *testServer {
	tb.Helper()
	certFile, keyFile := writeTestCert(tb, tb.TempDir())
	ts := startServer(tb, append([]string{"-tls-cert", certFile, "-tls-key", keyFile}, flags...)...)
	ts.URL = "https://" + ts.addr()
	ts.client = tlsClient(tb, false)
	return ts
}

// launch runs start on its own goroutine with the server's log and waits
// until the server listens.
func launch(tb testing.TB, what string, start func(ctx context.Context, logs io.Writer) error) *testServer {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{endpoint: endpoint{client: http.DefaultClient}, logs: newLogWatcher(), cancel: cancel, done: make(chan struct{})}
	go func() {
		ts.err = start(ctx, ts.logs)
		close(ts.done)
	}()
	select {
	case addr := <-ts.logs.addr:
		ts.URL = "http://" + addr
	case <-ts.done:
		tb.Fatalf("%s returned early: %v\n%s", what, ts.err, ts.logs)
	case <-time.After(waitTimeout):
		cancel()
		tb.Fatalf("server did not start within %v\n%s", waitTimeout, ts.logs)
	}
	tb.Cleanup(func() { ts.stop(tb) })
	return ts
}

// stop shuts the server down, once, and checks that it returns within
// 5 s and without an error.
func (ts *testServer) stop(tb testing.TB) {
	tb.Helper()
	if ts.stopped {
		return
	}
	ts.stopped = true
	ts.cancel()
	select {
	case <-ts.done:
		if ts.err != nil {
			tb.Errorf("run returned %v", ts.err)
		}
	case <-time.After(5 * time.Second):
		tb.Errorf("run did not return within 5s of shutdown")
	}
}

// runRefused runs the server through run with testFlags and flags, where
// it must refuse to start, and returns the server's log and run's error.
func runRefused(tb testing.TB, flags ...string) (string, error) {
	tb.Helper()
	logs := newLogWatcher()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err := run(ctx, slices.Concat([]string{"chat"}, testFlags, flags), noEnv, io.Discard, logs)
	return logs.String(), err
}

// runRepair runs the command with args (the repair flags) and returns
// what it printed and its error.
func runRepair(tb testing.TB, args ...string) (string, error) {
	tb.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err := run(ctx, append([]string{"chat"}, args...), noEnv, &out, io.Discard)
	return out.String(), err
}

// logWatcher collects a server's log and reports the address it listens
// on, from the "listening" line in text or JSON.
type logWatcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	addr chan string
}

// newLogWatcher returns an empty log.
func newLogWatcher() *logWatcher { return &logWatcher{addr: make(chan string, 1)} }

// Write implements io.Writer.
func (l *logWatcher) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if m := listenRE.FindSubmatch(l.buf.Bytes()); m != nil {
		select {
		case l.addr <- string(m[1]) + string(m[2]):
		default:
		}
	}
	return len(p), nil
}

// String returns the log so far.
func (l *logWatcher) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// count returns how many lines of the log contain s.
func (l *logWatcher) count(s string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// listenRE finds the address in the "listening" log line, text or JSON.
var listenRE = regexp.MustCompile(`msg=listening addr=(\S+)|"msg":"listening","addr":"([^"]+)"`)

// pprofRE finds the profiling listener's address in the log.
var pprofRE = regexp.MustCompile(`msg="pprof listening" addr=(\S+)`)

// ---------------------------------------------------------------- the binary

// chatBin is the server binary, built by the first test that asks for it
// and removed by TestMain.
var chatBin struct {
	once      sync.Once
	dir, path string
	err       error
}

// chatBinary returns the path of the server binary, built once per test
// run into a temporary directory. It skips the test in -short mode, and
// where there is no go command or no subprocesses.
func chatBinary(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds and runs the server binary; skipped in -short mode")
	}
	if runtime.GOOS == "windows" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		tb.Skip("needs Unix signals and subprocesses")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root == "" {
			tb.Skip("no go command to build the server with")
		} else {
			goTool = filepath.Join(root, "bin", "go")
		}
	}
	chatBin.once.Do(func() {
		if chatBin.dir, chatBin.err = os.MkdirTemp("", "chat-test-"); chatBin.err != nil {
			return
		}
		chatBin.path = filepath.Join(chatBin.dir, "chat")
		if out, err := exec.Command(goTool, "build", "-o", chatBin.path, ".").CombinedOutput(); err != nil {
			chatBin.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if chatBin.err != nil {
		tb.Fatal(chatBin.err)
	}
	return chatBin.path
}

// TestMain runs the tests, then removes the binary they built.
func TestMain(m *testing.M) {
	code := m.Run()
	if chatBin.dir != "" {
		os.RemoveAll(chatBin.dir)
	}
	os.Exit(code)
}

// chatProc is the server binary running in a child process.
type chatProc struct {
	endpoint
	cmd  *exec.Cmd
	logs *logWatcher
	// exited is closed once the process has exited and err is set.
	exited chan struct{}
	err    error
}

// startChatProc starts the server binary bin with binaryFlags and then
// args, and waits until it listens. The process is killed when the test
// ends if it is still running.
func startChatProc(tb testing.TB, bin string, args ...string) *chatProc {
	tb.Helper()
	p := startChatProcNoWait(tb, bin, args...)
	p.waitListening(tb)
	return p
}

// startChatProcNoWait starts the server binary and returns at once.
func startChatProcNoWait(tb testing.TB, bin string, args ...string) *chatProc {
	tb.Helper()
	return startCmd(tb, exec.Command(bin, append(slices.Clone(binaryFlags), args...)...))
}

// startCmd starts cmd, a command that runs the server (the binary, or a
// wrapper that execs it), with the server's log on a watcher and no CHAT_*
// variable, and returns at once. The process is killed when the test ends
// if it is still running.
func startCmd(tb testing.TB, cmd *exec.Cmd) *chatProc {
	tb.Helper()
	p := &chatProc{endpoint: endpoint{client: http.DefaultClient}, cmd: cmd, logs: newLogWatcher(), exited: make(chan struct{})}
	// Flags only: no CHAT_* variable from the environment may change them.
	p.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CHAT_") })
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// waitListening waits until the server logs its address, and sets URL.
func (p *chatProc) waitListening(tb testing.TB) {
	tb.Helper()
	select {
	case addr := <-p.logs.addr:
		p.URL = "http://" + addr
	case <-p.exited:
		tb.Fatalf("server exited at start: %v\n%s", p.err, p.logs)
	case <-time.After(waitTimeout):
		tb.Fatalf("server did not listen within %v\n%s", waitTimeout, p.logs)
	}
}

// kill ends the process with SIGKILL and waits for it.
func (p *chatProc) kill(tb testing.TB) {
	tb.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		tb.Fatalf("kill: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(waitTimeout):
		tb.Fatal("killed server did not exit")
	}
}

// wait waits up to d for the process to exit and returns its exit code.
func (p *chatProc) wait(tb testing.TB, d time.Duration) int {
	tb.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		tb.Fatalf("server still running %v later\n%s", d, p.logs)
	}
	var exit *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exit) {
		tb.Fatalf("wait: %v", p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// ---------------------------------------------------------------- rooms and waits

// startRoom runs a room with cfg until the test ends (inside the calling
// synctest bubble, if any) and returns it with the context it runs in.
func startRoom(tb testing.TB, cfg RoomConfig) (context.Context, *ChatRoom) {
	tb.Helper()
	ctx, cancel := context.WithCancel(tb.Context())
	room := NewChatRoom(cfg, NewStats())
	go room.Run(ctx)
	tb.Cleanup(func() {
		cancel()
		<-room.Done()
	})
	return ctx, room
}

// newHandler returns the server's handler for room with cfg, as serve
// builds it but with no listener, for tests of the handler itself.
func newHandler(room *ChatRoom, cfg serverConfig) http.Handler {
	var shuttingDown atomic.Bool
	return newServer(room, room.stats, stream.NewTracker(), &shuttingDown, cfg, slog.New(slog.DiscardHandler))
}

// waitFor polls cond every few milliseconds until it holds, and fails the
// test once waitTimeout has passed.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	waitWithin(tb, waitTimeout, what, cond)
}

// waitWithin polls cond every few milliseconds until it holds, and fails
// the test once timeout has passed.
func waitWithin(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settleGoroutines polls until at most limit goroutines run, closing idle
// client connections on the way, and fails the test if that takes longer
// than waitTimeout.
func settleGoroutines(tb testing.TB, what string, limit int) {
	tb.Helper()
	waitFor(tb, fmt.Sprintf("%s: goroutines down to %d", what, limit), func() bool {
		http.DefaultClient.CloseIdleConnections()
		return runtime.NumGoroutine() <= limit
	})
}

// baselineGoroutines returns the number of goroutines once it has stopped
// falling (idle connections closed, finished goroutines gone), polling for
// at most waitTimeout.
func baselineGoroutines() int {
	http.DefaultClient.CloseIdleConnections()
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(waitTimeout); time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key
// into dir and returns their paths.
func writeTestCert(tb testing.TB, dir string) (certFile, keyFile string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "chat test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return certFile, keyFile
}

// ---------------------------------------------------------------- journals

// testEpoch is the epoch of the journals tests write by hand.
const testEpoch = 1764094637123

// journalLine returns message seq of epoch as a journal line.
func journalLine(tb testing.TB, epoch int64, seq uint64, content string) string {
	tb.Helper()
	b, err := json.Marshal(Message{ID: record.FormatID(epoch, seq), Username: "u", Content: content, Time: time.Unix(epoch/1000, int64(seq)).UTC()})
	if err != nil {
		tb.Fatal(err)
	}
	return string(b) + "\n"
}

// writeJournal writes the lines to path.
func writeJournal(tb testing.TB, path string, lines ...string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// checkCut waits for the server to close conn (the client reads nothing
// but the end) and checks that this happened after about timeout from
// start: not before 80% of it, nor after it plus 3 s.
func checkCut(t *testing.T, conn net.Conn, start time.Time, timeout time.Duration) {
	t.Helper()
	_ = conn.SetReadDeadline(start.Add(timeout + 3*time.Second))
	got, err := io.ReadAll(conn)
	elapsed := time.Since(start)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("connection still open after %v (server timeout %v)", elapsed.Round(time.Millisecond), timeout)
	case elapsed < timeout*8/10:
		t.Fatalf("connection closed after %v, before the %v timeout (read %q, %v)", elapsed.Round(time.Millisecond), timeout, got, err)
	}
	t.Logf("cut after %v (timeout %v), read %q", elapsed.Round(time.Millisecond), timeout, httpx.Truncate(string(got), 60))
}
