package connlimit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// startH2CServer is serve without the listener.
func startH2CServer(t *testing.T, cfg Config, handler http.Handler) string {
	t.Helper()
	_, addr := serve(t, cfg, handler)
	return addr
}

// h2cClient returns a client that speaks unencrypted HTTP/2 from ip, over
// one connection.
func h2cClient(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: waitTimeout}
	tr := &http.Transport{DialContext: d.DialContext, Protocols: new(http.Protocols), HTTP2: &http.HTTP2Config{StrictMaxConcurrentRequests: true}}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitTimeout}
}

// bodyHandler answers each request once it has read its whole body,
// after telling entered that it began.
func bodyHandler(entered chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
}

// heldPost is a POST whose body is sent only when send is called.
type heldPost struct {
	pw     *io.PipeWriter
	status chan int
}

// startHeldPost sends a POST through c with its body held back.
func startHeldPost(t *testing.T, c *http.Client, url string) *heldPost {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(t.Context(), "POST", url, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 2
	h := &heldPost{pw: pw, status: make(chan int, 1)}
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			h.status <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		h.status <- resp.StatusCode
	}()
	return h
}

// send sends the held body.
func (h *heldPost) send() {
	go func() {
		_, _ = io.WriteString(h.pw, "hi")
		h.pw.Close()
	}()
}

// TestInProgressHTTP2 holds HTTP/2 requests waiting for their bodies on
// one connection: the address's cap of 3 lets 3 reach the handler, the
// others are answered 429 at once with a JSON error, another address is
// not affected, and once the bodies come the address may send again.
func TestInProgressHTTP2(t *testing.T) {
	entered := make(chan struct{}, 16)
	addr := startH2CServer(t, Config{InProgress: 3}, bodyHandler(entered))
	c := h2cClient(t, "127.0.0.2")
	var held []*heldPost
	for range 3 {
		held = append(held, startHeldPost(t, c, "http://"+addr+"/"))
		<-entered
	}
	for range 2 {
		r, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error string }
		_ = json.NewDecoder(r.Body).Decode(&e)
		r.Body.Close()
		if r.ProtoMajor != 2 || r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" || e.Error == "" {
			t.Errorf("a fourth request in progress: %s %d, Retry-After %q, error %q; want HTTP/2 429 with Retry-After and a JSON error",
				r.Proto, r.StatusCode, r.Header.Get("Retry-After"), e.Error)
		}
	}
	other := h2cClient(t, "127.0.0.3")
	if r, err := other.Get("http://" + addr + "/"); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("another address: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	for _, h := range held {
		h.send()
		if s := <-h.status; s != http.StatusOK {
			t.Errorf("held request: status %d, want 200", s)
		}
	}
	for i := range 5 {
		r, err := c.Get("http://" + addr + "/")
		if err != nil || r.StatusCode != http.StatusOK {
			t.Fatalf("request %d after the bodies came: %v %v", i, r, err)
		}
		r.Body.Close()
	}
}

// TestInProgressHTTP1 holds HTTP/1 requests waiting for their bodies: a
// connection whose headers are read still counts until its request is
// done, so a third connection of the address is refused at accept while
// two wait; once one body comes and is answered, the address is served
// again.
func TestInProgressHTTP1(t *testing.T) {
	entered := make(chan struct{}, 16)
	addr := startH2CServer(t, Config{InProgress: 2}, bodyHandler(entered))
	var conns []net.Conn
	for range 2 {
		c := dialFrom(t, "127.0.0.2", addr)
		if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		<-entered
		conns = append(conns, c)
	}
	if err := served(t, "127.0.0.2", addr); err == nil {
		t.Fatal("a third connection was served while two requests wait for their bodies")
	}
	if _, err := io.WriteString(conns[0], "hi"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conns[0]), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("held request once its body came: %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor(t, "a new connection of the address to be served", func() bool {
		return served(t, "127.0.0.2", addr) == nil
	})
}

// TestReleaseLeavesCount checks that a request that calls Release (a
// stream, once admitted) no longer counts, over HTTP/1 and HTTP/2: with a
// cap of 1, three such requests run at once.
func TestReleaseLeavesCount(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	running := make(chan string, 8)
	addr := startH2CServer(t, Config{InProgress: 1}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Release(r)
		running <- r.Proto
		<-release
	}))
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		var c *http.Client
		if proto == "HTTP/2.0" {
			c = h2cClient(t, "127.0.0.2")
		} else {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
			c = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		for range 3 {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
			go func() {
				if r, err := c.Do(req); err == nil {
					r.Body.Close()
				}
			}()
			select {
			case got := <-running:
				if got != proto {
					t.Fatalf("running %s, want %s", got, proto)
				}
			case <-time.After(waitTimeout):
				t.Fatalf("%s: a released request kept another from running for %v", proto, waitTimeout)
			}
		}
	}
	once.Do(func() { close(release) })
}

// TestMaxFields checks the cap on header fields: one more than the cap
// is a JSON 431 that closes an HTTP/1 connection; the cap itself passes.
func TestMaxFields(t *testing.T) {
	addr := startH2CServer(t, Config{MaxFields: 10}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	for _, tt := range []struct {
		fields, want int
	}{{10, http.StatusOK}, {11, http.StatusRequestHeaderFieldsTooLarge}} {
		c := dialFrom(t, "127.0.0.2", addr)
		var b strings.Builder
		b.WriteString("GET / HTTP/1.1\r\nHost: t\r\n") // Host is not in r.Header
		for i := range tt.fields {
			fmt.Fprintf(&b, "X-%d: %d\r\n", i, i)
		}
		b.WriteString("\r\n")
		if _, err := io.WriteString(c, b.String()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%d fields: %v", tt.fields, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%d fields: status %d, want %d", tt.fields, resp.StatusCode, tt.want)
		}
		if tt.want == 431 && (!resp.Close || !strings.Contains(string(body), `"error":"too many header fields (11); at most 10"`)) {
			t.Errorf("431: close %v, body %s; want the connection closed and a JSON error", resp.Close, body)
		}
	}
}

// TestUnreadBodyCounts checks that an HTTP/1 request answered without its
// body being read still counts after its handler returns, while net/http
// waits for that body (to discard it before it sends the answer): with a
// cap of 1, a second connection of the address is refused meanwhile, and
// served once the body has come.
func TestUnreadBodyCounts(t *testing.T) {
	returned := make(chan struct{}, 4)
	addr := startH2CServer(t, Config{InProgress: 1}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		defer func() { returned <- struct{}{} }()
		http.Error(w, "no", http.StatusForbidden)
	}))
	c := dialFrom(t, "127.0.0.2", addr)
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-returned
	if err := served(t, "127.0.0.2", addr); err == nil {
		t.Error("a second connection was served while the first request's body is awaited")
	}
	if _, err := io.WriteString(c, "0123456789"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("answer once the body came: %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor(t, "a new connection of the address to be served", func() bool {
		return served(t, "127.0.0.2", addr) == nil
	})
}

// TestHTTP2ConfigUploads checks that HTTP2Config's small windows and
// frames still carry a large upload, sent at once by a client that has
// not yet read the server's settings.
func TestHTTP2ConfigUploads(t *testing.T) {
	addr := startH2CServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	c := h2cClient(t, "127.0.0.2")
	r, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader(strings.Repeat("x", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.ProtoMajor != 2 || string(b) != fmt.Sprint(1<<20) {
		t.Errorf("1 MiB upload: %s %d %q, want HTTP/2 and the whole body read", r.Proto, r.StatusCode, b)
	}
}

// readFrame reads one HTTP/2 frame from r: its type and payload.
func readFrame(t *testing.T, r io.Reader) (typ byte, payload []byte) {
	t.Helper()
	var h [9]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("read frame header: %v", err)
	}
	payload = make([]byte, int(h[0])<<16|int(h[1])<<8|int(h[2]))
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Fatalf("read frame payload: %v", err)
	}
	return h[3], payload
}

// TestHTTP2ConfigSettings speaks HTTP/2 bytes to a server with
// HTTP2Config: its SETTINGS frame announces 100 streams, 64 KiB windows
// and 16 KiB frames, and a frame one byte larger is a connection error
// (GOAWAY with FRAME_SIZE_ERROR), not a buffer the server grows and keeps
// for the connection's life.
func TestHTTP2ConfigSettings(t *testing.T) {
	addr := startH2CServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c := dialFrom(t, "127.0.0.2", addr)
	// The client preface and an empty SETTINGS frame.
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	typ, p := readFrame(t, r)
	if typ != 0x4 || len(p)%6 != 0 {
		t.Fatalf("first frame: type %d, %d bytes; want SETTINGS", typ, len(p))
	}
	got := map[uint16]uint32{0x5: 16384} // SETTINGS_MAX_FRAME_SIZE's default
	for i := 0; i < len(p); i += 6 {
		got[uint16(p[i])<<8|uint16(p[i+1])] = uint32(p[i+2])<<24 | uint32(p[i+3])<<16 | uint32(p[i+4])<<8 | uint32(p[i+5])
	}
	for id, want := range map[uint16]uint32{0x3: 100, 0x4: 64 << 10, 0x5: 16 << 10} {
		if got[id] != want {
			t.Errorf("setting 0x%x = %d, want %d", id, got[id], want)
		}
	}
	// A frame of an extension type (which a server reads and ignores) of
	// 16 KiB + 1 bytes.
	big := make([]byte, 9+16<<10+1)
	big[0], big[1], big[2], big[3] = 0x00, 0x40, 0x01, 0xa0
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	for {
		typ, p := readFrame(t, r)
		if typ != 0x7 { // not GOAWAY yet (SETTINGS ack, WINDOW_UPDATE)
			continue
		}
		if len(p) < 8 || p[7] != 0x6 {
			t.Errorf("GOAWAY %x, want error code FRAME_SIZE_ERROR (6)", p)
		}
		return
	}
}
