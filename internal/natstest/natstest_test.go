package natstest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// info is the part of a server's INFO line these tests read.
type info struct {
	ServerName   string `json:"server_name"`
	JetStream    bool   `json:"jetstream"`
	AuthRequired bool   `json:"auth_required"`
	MaxPayload   int    `json:"max_payload"`
	Cluster      string `json:"cluster"`
}

// readInfo connects to port and parses the INFO line the server sends
// first, within five seconds.
func readInfo(t *testing.T, port int) (info, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return info{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return info{}, err
	}
	js, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "INFO ")
	if !ok {
		return info{}, fmt.Errorf("first line %q is not INFO", line)
	}
	var in info
	return in, json.Unmarshal([]byte(js), &in)
}

// TestStartKillRestart starts a server with options, checks its INFO, kills
// it (the port then refuses), restarts it on the same port with the same
// store, and checks that the store survived.
func TestStartKillRestart(t *testing.T) {
	s := Start(t, Options{User: "alice", Password: "s3cret", MaxPayload: 4096})
	in, err := readInfo(t, s.Port())
	if err != nil {
		t.Fatalf("readInfo: %v", err)
	}
	if !in.JetStream || !in.AuthRequired || in.MaxPayload != 4096 || in.ServerName != "n1" {
		t.Errorf("INFO = %+v, want jetstream, auth required, max_payload 4096, name n1", in)
	}
	if got, want := s.AuthURL(), fmt.Sprintf("nats://alice:s3cret@127.0.0.1:%d", s.Port()); got != want {
		t.Errorf("AuthURL() = %q, want %q", got, want)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", s.httpPort))
	if err != nil {
		t.Fatalf("GET /jsz: %v", err)
	}
	var jsz struct {
		Config struct {
			StoreDir string `json:"store_dir"`
		} `json:"config"`
	}
	err = json.NewDecoder(resp.Body).Decode(&jsz)
	resp.Body.Close()
	if err != nil || !strings.HasPrefix(jsz.Config.StoreDir, s.StoreDir()) {
		t.Errorf("/jsz store_dir = %q (%v), want under %q", jsz.Config.StoreDir, err, s.StoreDir())
	}

	s.Kill()
	if s.Running() {
		t.Error("Running() after Kill = true")
	}
	if _, err := readInfo(t, s.Port()); err == nil {
		t.Error("a killed server still answers on its port")
	}
	s.Restart()
	if _, err := readInfo(t, s.Port()); err != nil {
		t.Errorf("after Restart, readInfo: %v", err)
	}
}

// TestNoJetStreamToken starts a server without JetStream and with a token.
func TestNoJetStreamToken(t *testing.T) {
	s := Start(t, Options{NoJetStream: true, Token: "t0ken"})
	in, err := readInfo(t, s.Port())
	if err != nil {
		t.Fatalf("readInfo: %v", err)
	}
	if in.JetStream || !in.AuthRequired {
		t.Errorf("INFO = %+v, want no jetstream, auth required", in)
	}
	if got, want := s.AuthURL(), fmt.Sprintf("nats://t0ken@127.0.0.1:%d", s.Port()); got != want {
		t.Errorf("AuthURL() = %q, want %q", got, want)
	}
}

// TestCluster starts three routed servers and checks that each names the
// cluster, and that a stopped member comes back.
func TestCluster(t *testing.T) {
	servers := Cluster(t, 3, Options{})
	if got := URLs(servers); len(got) != 3 || got[0] == got[1] {
		t.Fatalf("URLs() = %v, want three distinct URLs", got)
	}
	for _, s := range servers {
		in, err := readInfo(t, s.Port())
		if err != nil {
			t.Fatalf("readInfo(%s): %v", s.Name(), err)
		}
		if in.Cluster != "natstest" || !in.JetStream {
			t.Errorf("%s INFO = %+v, want cluster natstest with jetstream", s.Name(), in)
		}
	}
	servers[1].Stop()
	servers[1].Restart()
	if _, err := readInfo(t, servers[1].Port()); err != nil {
		t.Errorf("after Restart, readInfo: %v", err)
	}
}

// TestPauseResume checks that a paused server holds a new connection open
// without sending its INFO, and sends it once resumed.
func TestPauseResume(t *testing.T) {
	s := Start(t, Options{})
	s.Pause()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port()), 5*time.Second)
	if err != nil {
		s.Resume()
		t.Fatalf("dial a paused server: %v (the kernel should accept it)", err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if line, err := r.ReadString('\n'); err == nil {
		t.Errorf("a paused server sent %q", line)
	}
	s.Resume()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Errorf("after Resume: %q, %v; want the INFO line", line, err)
	}
}

// TestParseVersion reads the server's --version line and orders versions.
func TestParseVersion(t *testing.T) {
	for in, want := range map[string][3]int{
		"nats-server: v2.15.3\n":      {2, 15, 3},
		"nats-server: v2.9.25":        {2, 9, 25},
		"nats-server: v2.12.0-beta.1": {2, 12, 0},
	} {
		if got, ok := parseVersion(in); !ok || got != want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "nats-server", "nats-server: v2.x.1", "nats-server: v2.1", "version 2.15.3"} {
		if got, ok := parseVersion(in); ok {
			t.Errorf("parseVersion(%q) = %v, want failure", in, got)
		}
	}
	if !older([3]int{2, 9, 25}, minVersion) || older([3]int{2, 15, 3}, minVersion) || older(minVersion, minVersion) {
		t.Error("older() orders versions wrongly")
	}
}
