package nginxtest

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fault is what the first request a test's nodes get does.
type fault int

const (
	healthy     fault = iota // answer as every later request
	drop                     // read the request whole, then reset the connection: a node that died with it
	unavailable              // answer 503 with Retry-After: a node that stored nothing
)

// nodes are two upstream nodes that share one log of the requests they
// got; the very first request, whichever node gets it, meets fault, and
// every later one is answered 201 (a post) or 200.
type nodes struct {
	fault fault
	mu    sync.Mutex
	got   []string // "node METHOD PATH key", in order
	srv   [2]*httptest.Server
}

// startNodes starts the two nodes; the test's cleanup closes them.
func startNodes(t *testing.T, f fault) *nodes {
	n := &nodes{fault: f}
	for i := range n.srv {
		n.srv[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.serve(i, w, r) }))
		t.Cleanup(n.srv[i].Close)
	}
	return n
}

// serve answers one request as node i.
func (n *nodes) serve(i int, w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n.mu.Lock()
	n.got = append(n.got, strings.Join([]string{string(rune('A' + i)), r.Method, r.URL.Path, r.Header.Get("Idempotency-Key")}, " "))
	first := len(n.got) == 1
	n.mu.Unlock()
	switch {
	case first && n.fault == drop:
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	case first && n.fault == unavailable:
		w.Header().Set("Retry-After", "2")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"not stored"}`+"\n")
	case r.Method == http.MethodPost:
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	default:
		io.WriteString(w, "ok\n")
	}
}

// requests returns the log of the requests the nodes got.
func (n *nodes) requests() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.got...)
}

// addrs returns the nodes' host:port.
func (n *nodes) addrs() []string {
	return []string{n.srv[0].Listener.Addr().String(), n.srv[1].Listener.Addr().String()}
}

// TestFailedNode checks the shipped rules for a node that fails a request
// (contrib/nginx-proxy.conf): nginx sends it to the other node when that
// is safe (a GET; a post with an Idempotency-Key, which the room stores
// once however often it is sent; anything answered 503, which stored
// nothing, as long as it may be sent again), and never sends a post
// without a key twice (the dead node may have stored it).
func TestFailedNode(t *testing.T) {
	for _, tt := range []struct {
		name         string
		fault        fault
		method, path string
		key          string
		want         int // the client's status
		wantSent     int // requests the nodes got
		wantBody     string
	}{
		{"post with a key, node dies with it", drop, "POST", "/post", "k1", 201, 2, `{"c":1}`},
		{"post without a key, node dies with it", drop, "POST", "/post", "", 502, 1, `{"error":"chat server unavailable"}` + "\n"},
		{"stream, node dies with it", drop, "GET", "/stream", "", 200, 2, "ok\n"},
		{"post with a key, 503", unavailable, "POST", "/post", "k2", 201, 2, `{"c":1}`},
		{"post without a key, 503", unavailable, "POST", "/post", "", 503, 1, `{"error":"not stored"}` + "\n"},
		{"stream, 503", unavailable, "GET", "/stream", "", 200, 2, "ok\n"},
		{"history, 503", unavailable, "GET", "/history", "", 200, 2, "ok\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := startNodes(t, tt.fault)
			p := Start(t, n.addrs()...)
			var body io.Reader
			if tt.method == "POST" {
				body = strings.NewReader(`{"c":1}`)
			}
			req, _ := http.NewRequest(tt.method, p.URL()+tt.path, body)
			if tt.key != "" {
				req.Header.Set("Idempotency-Key", tt.key)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			got := n.requests()
			if res.StatusCode != tt.want || string(b) != tt.wantBody || len(got) != tt.wantSent {
				t.Errorf("%s %s: %d %q, the nodes got %q; want %d %q after %d requests\naccess log: %q\n%s",
					tt.method, tt.path, res.StatusCode, b, got, tt.want, tt.wantBody, tt.wantSent, p.AccessLog(), p.ErrorLog())
			}
			if len(got) == 2 && (got[0][0] == got[1][0] || got[0][1:] != got[1][1:]) {
				t.Errorf("the nodes got %q: want the same request once on each", got)
			}
			if tt.want == 503 && res.Header.Get("Retry-After") != "2" {
				t.Errorf("a node's 503 passed on without its Retry-After: %q", res.Header)
			}
		})
	}
}

// TestDeadNode checks that a node that refuses connections costs nothing:
// every request, posts without a key included (nothing of them was sent),
// goes to the node that works. nginx tries the first node of the upstream
// first, so the dead node is listed first.
func TestDeadNode(t *testing.T) {
	n := startNodes(t, healthy)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := Start(t, dead, n.addrs()[1])
	for i := range 5 {
		res, err := http.Post(p.URL()+"/post", "application/json", strings.NewReader(`{"c":1}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("post %d with a dead node: %d, want 201", i, res.StatusCode)
		}
	}
	if got := n.requests(); len(got) != 5 {
		t.Errorf("the live node got %q, want the 5 posts once each", got)
	}
	log := p.AccessLogAtLeast(5)
	if len(log) != 5 || !strings.Contains(log[0], "upstream="+dead+", ") {
		t.Errorf("access log %q: want 5 posts, the first tried on the dead node %s and then the other", log, dead)
	}
}

// TestAccessLog checks the log's format, which tests read: the method,
// path, status, key and the nodes tried.
func TestAccessLog(t *testing.T) {
	n := startNodes(t, healthy)
	p := Start(t, n.addrs()[0])
	req, _ := http.NewRequest("POST", p.URL()+"/post", strings.NewReader("{}"))
	req.Header.Set("Idempotency-Key", "abc")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	want := "POST /post 201 key=abc upstream=" + n.addrs()[0] + " 201"
	if log := p.AccessLogAtLeast(1); len(log) != 1 || log[0] != want {
		b, _ := json.Marshal(log)
		t.Errorf("access log %s, want [%q]", b, want)
	}
}
