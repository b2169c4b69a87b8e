// Package nginxtest runs a real nginx in front of chat nodes for tests,
// configured the way contrib/try-cluster.sh runs it on one machine: the
// upstream of contrib/nginx.conf with the test's nodes in it, and the site
// of contrib/nginx-proxy.conf, on plain HTTP on a loopback port, with its
// files in a temporary directory. So a test through it checks the shipped
// configuration: how requests are spread over the nodes, and which are
// sent to another node when one fails.
//
// The binary is looked up in PATH, then in /usr/sbin and /usr/local/sbin.
// When it is missing a test that asks for a proxy is skipped, or fails when
// the environment variable CI is "true", with the command that installs it.
package nginxtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timing of the proxy's start and stop.
const (
	// readyTimeout bounds the wait for nginx to listen; the machine
	// running the tests may be slow and busy.
	readyTimeout = 20 * time.Second
	// pollEvery is the pause between two attempts to connect.
	pollEvery = 20 * time.Millisecond
	// stopTimeout bounds nginx's exit after SIGTERM; it is killed then.
	stopTimeout = 10 * time.Second
	// logTimeout bounds the wait for a request's line in the access log,
	// which nginx writes once the answer has gone.
	logTimeout = 10 * time.Second
)

// InstallHint is the command that installs nginx on Debian.
const InstallHint = "apt-get install nginx"

// Proxy is one nginx process in front of a test's nodes.
type Proxy struct {
	t    testing.TB
	dir  string
	addr string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	out  *bytes.Buffer // nginx's own output, before its error log opens
	once sync.Once
}

// Start renders the configuration for nodes (host:port each) with
// contrib/try-cluster.sh, starts nginx on it and waits until it listens.
// The test's cleanup stops it.
func Start(t testing.TB, nodes ...string) *Proxy {
	t.Helper()
	bin := binary(t)
	if len(nodes) == 0 {
		t.Fatal("nginxtest: no nodes")
	}
	// Not t.TempDir: nginx's workers may run as another user (nobody,
	// when the tests run as root), and must reach the temporary files.
	dir, err := os.MkdirTemp("", "nginxtest-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &Proxy{t: t, dir: dir, done: make(chan struct{}), out: new(bytes.Buffer)}
	port := freePort(t)
	p.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := append([]string{filepath.Join(repoRoot(), "contrib", "try-cluster.sh"), "nginx-conf", dir, strconv.Itoa(port)}, nodes...)
	conf, err := exec.Command("bash", args...).Output()
	if err != nil {
		t.Fatalf("nginxtest: contrib/try-cluster.sh nginx-conf: %v", err)
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "-e", filepath.Join(dir, "nginx-error.log"), "-p", dir, "-c", confPath)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("nginxtest: start %s: %v", bin, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Stop)
	if err := p.waitListening(); err != nil {
		t.Fatalf("nginxtest: %v\n%s", err, p.ErrorLog())
	}
	return p
}

// waitListening polls until nginx accepts a connection.
func (p *Proxy) waitListening() error {
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("nginx exited at start: %s", p.out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nginx does not listen on %s after %v", p.addr, readyTimeout)
		}
		time.Sleep(pollEvery)
	}
}

// URL is the proxy's base URL, http://127.0.0.1:port.
func (p *Proxy) URL() string { return "http://" + p.addr }

// AccessLog returns the access log's lines so far, one a request:
// "METHOD URI STATUS key=IDEMPOTENCY-KEY upstream=ADDR[, ADDR…] STATUS[, STATUS…]",
// the nodes nginx tried in order and what each answered ("-" for none).
func (p *Proxy) AccessLog() []string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "nginx-access.log"))
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// AccessLogAtLeast returns the access log once it has n lines or more:
// nginx writes a request's line after its answer has gone, so a client
// may see the answer first. It fails the test after logTimeout.
func (p *Proxy) AccessLogAtLeast(n int) []string {
	p.t.Helper()
	deadline := time.Now().Add(logTimeout)
	for {
		log := p.AccessLog()
		if len(log) >= n {
			return log
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("nginxtest: the access log has %d lines after %v, want %d: %q", len(log), logTimeout, n, log)
		}
		time.Sleep(pollEvery)
	}
}

// ErrorLog returns nginx's error log so far.
func (p *Proxy) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "nginx-error.log"))
	return string(b)
}

// Stop ends nginx (SIGTERM: at once, open streams cut), and kills it if it
// has not exited within stopTimeout. It may be called more than once.
func (p *Proxy) Stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// repoRoot returns the repository's root: two levels above this file.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// binary finds nginx, or skips (fails under CI=true) the test.
func binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "nginxtest: nginx not found in PATH, /usr/sbin or /usr/local/sbin; install it with: " + InstallHint
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
