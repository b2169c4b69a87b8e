package httpx

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// ioTimeout bounds every network wait in these tests.
const ioTimeout = 10 * time.Second

// syncBuffer is a bytes.Buffer safe for the server's and the test's
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written.
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// echoServer serves a handler that reads its body with Body{Max: max} and
// answers 200 with the body, or the error. Its ReadTimeout is readTimeout
// (0: none). Debug logs go to the returned buffer.
func echoServer(t *testing.T, max int64, readTimeout time.Duration) (*httptest.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	b := Body{Max: max, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, e := b.Read(w, r)
		if e != nil {
			e.Write(w)
			return
		}
		_, _ = w.Write(data)
	}))
	ts.Config.ReadTimeout = readTimeout
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, logs
}

// rawRequest writes the request head and the body pieces to a new
// connection to ts, half-closes it when closeWrite is set, and returns
// the response.
func rawRequest(t *testing.T, ts *httptest.Server, head string, pieces []string, closeWrite bool) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	for _, p := range pieces {
		if _, err := io.WriteString(conn, p); err != nil {
			t.Fatal(err)
		}
	}
	if closeWrite {
		_ = conn.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestBodyRead checks the statuses of the body reader over real HTTP: a
// body within the limit (whole or in pieces) is read, only a body over
// the limit is a 413, a client that aborts its body gets 400 and one that
// stalls until the read timeout 408, both logged at debug level.
func TestBodyRead(t *testing.T) {
	const max = 16
	tests := []struct {
		name       string
		head       string
		pieces     []string
		closeWrite bool
		status     int
		body       string // the exact body of a 200, or a part of the error
		closes     bool   // the answer closes the connection
		logged     bool
	}{
		{"fits", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", []string{"hello"}, false, 200, "hello", false, false},
		{"exactly the limit", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n", []string{"0123456789abcdef"}, false, 200, "0123456789abcdef", false, false},
		{"empty", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", nil, false, 200, "", false, false},
		{"split in pieces", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", []string{"he", "llo", " ", "world"}, false, 200, "hello world", false, false},
		{"chunked in pieces", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", []string{"3\r\nabc\r\n", "2\r\nde\r\n", "0\r\n\r\n"}, false, 200, "abcde", false, false},
		{"Content-Length over the limit", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n", []string{"0123456789abcdefg"}, false, 413, "body is larger than 16 bytes", true, false},
		{"chunked over the limit", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", []string{"a\r\n0123456789\r\n", "a\r\n0123456789\r\n0\r\n\r\n"}, false, 413, "body is larger than 16 bytes", true, false},
		{"aborted", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", []string{"abc"}, true, 400, "could not read body", true, true},
		{"aborted chunk", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", []string{"a\r\n01"}, true, 400, "could not read body", true, true},
		{"malformed chunk", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", []string{"zz\r\n01\r\n"}, true, 400, "could not read body", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, logs := echoServer(t, max, 0)
			resp, body := rawRequest(t, ts, tt.head, tt.pieces, tt.closeWrite)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d %q, want %d", resp.StatusCode, body, tt.status)
			}
			if tt.status == 200 && body != tt.body {
				t.Errorf("body = %q, want %q", body, tt.body)
			}
			if tt.status != 200 {
				var e ErrorBody
				if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tt.body) || resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("error body = %q (%v), want JSON with %q", body, err, tt.body)
				}
			}
			if resp.Close != tt.closes {
				t.Errorf("response closes the connection: %v, want %v", resp.Close, tt.closes)
			}
			if got := strings.Contains(logs.String(), "could not read request body"); got != tt.logged {
				t.Errorf("logged %v, want %v: %q", got, tt.logged, logs.String())
			}
		})
	}
}

// TestBodyReadTimeout checks that a client whose body stalls until the
// server's read timeout gets 408, not 413.
func TestBodyReadTimeout(t *testing.T) {
	ts, logs := echoServer(t, 1<<10, 200*time.Millisecond)
	// The client sends 3 of the 10 bytes it announced and waits for the
	// answer: the server's read deadline ends the read.
	resp, body := rawRequest(t, ts, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", []string{"abc"}, false)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, "timed out reading the body") {
		t.Errorf("stalled body: %d %q, want 408", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), "level=DEBUG") || !strings.Contains(logs.String(), "timeout") {
		t.Errorf("the timeout is not logged at debug: %q", logs.String())
	}
}

// TestBodyReadRefusesEarly checks that a Content-Length over the limit is
// refused before a byte of the body is read: the client never sends it
// and still gets its 413.
func TestBodyReadRefusesEarly(t *testing.T) {
	ts, _ := echoServer(t, 16, 0)
	resp, body := rawRequest(t, ts, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", nil, false)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("announced 1 MB: %d %q (close %v), want 413 and close", resp.StatusCode, body, resp.Close)
	}
}

// TestRetryAfter checks the rounding of Retry-After and Seconds.
func TestRetryAfter(t *testing.T) {
	tests := []struct {
		wait time.Duration
		want string
	}{
		{0, "1"},
		{-time.Second, "1"},
		{time.Nanosecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Nanosecond, "2"},
		{2 * time.Second, "2"},
		{90 * time.Minute, "5400"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		RetryAfter(rec, tt.wait)
		if got := rec.Header().Get("Retry-After"); got != tt.want {
			t.Errorf("RetryAfter(%v) = %q, want %q", tt.wait, got, tt.want)
		}
	}
}

// TestUnavailable checks the exact answer of Unavailable.
func TestUnavailable(t *testing.T) {
	rec := httptest.NewRecorder()
	Unavailable(rec, 2*time.Second, "server is shutting down")
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "2" || rec.Header().Get("Content-Type") != "application/json" ||
		rec.Body.String() != "{\"error\":\"server is shutting down\"}\n" {
		t.Errorf("Unavailable = %d %v %q", rec.Code, rec.Header(), rec.Body.String())
	}
}

// TestWriteErrorExactBytes checks the JSON error body, byte for byte: HTML
// characters are not escaped.
func TestWriteErrorExactBytes(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, 404, "no such endpoint: /<a>&")
	if want := "{\"error\":\"no such endpoint: /<a>&\"}\n"; rec.Code != 404 || rec.Body.String() != want {
		t.Errorf("WriteError = %d %q, want 404 %q", rec.Code, rec.Body.String(), want)
	}
}

// TestErrorWithName checks the body of an error about a name, byte for
// byte: the name follows the message, as the request wrote it.
func TestErrorWithName(t *testing.T) {
	rec := httptest.NewRecorder()
	(&Error{Status: 409, Msg: `the name "ＡＬＩＣＥ" is in use`, Name: "ＡＬＩＣＥ"}).Write(rec)
	if want := "{\"error\":\"the name \\\"ＡＬＩＣＥ\\\" is in use\",\"name\":\"ＡＬＩＣＥ\"}\n"; rec.Code != 409 || rec.Body.String() != want {
		t.Errorf("Write = %d %q, want 409 %q", rec.Code, rec.Body.String(), want)
	}
}

// TestErrorWithRetry checks that an error with Retry sends Retry-After in
// whole seconds, and one without sends none.
func TestErrorWithRetry(t *testing.T) {
	rec := httptest.NewRecorder()
	(&Error{Status: 503, Msg: "later", Retry: 1500 * time.Millisecond}).Write(rec)
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "2" || rec.Body.String() != "{\"error\":\"later\"}\n" {
		t.Errorf("Write = %d, Retry-After %q, %q", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	rec = httptest.NewRecorder()
	(&Error{Status: 400, Msg: "no"}).Write(rec)
	if _, ok := rec.Header()["Retry-After"]; ok {
		t.Error("an error without Retry sent Retry-After")
	}
}
