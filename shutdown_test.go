package main

// Tests of shutdown: open streams end, /healthz turns 503 while the server
// drains, and the answers given while the journal holds an fsync (posts,
// deletions, bans) match what the journal kept.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chat/internal/auth"
	"chat/internal/ban"
	"chat/internal/config"
	"chat/internal/journal"
	"chat/internal/roomlog"
)

func TestShutdownEndsStreams(t *testing.T) {
	ts := startServer(t)
	subs := make([]*subscriber, 50)
	for i := range subs {
		subs[i] = subscribe(t, ts.URL, "")
	}
	ended := make(chan error, len(subs))
	for _, s := range subs {
		go func() {
			_, err := io.Copy(io.Discard, s.resp.Body)
			ended <- err
		}()
	}
	start := time.Now()
	ts.stop(t)
	for range subs {
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("stream ended with %v, want a clean end", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("a stream was still open after shutdown")
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v, want under 5s", d)
	}
}

// TestHealthDuringShutdown checks the real run: /healthz answers 200 while
// serving and 503 once shutdown has begun. A stream whose client reads
// nothing keeps its writer blocked on a large backlog, which holds the
// server in the drain phase of shutdown (config.StreamDrain) while an already
// open keep-alive connection asks for /healthz.
func TestHealthDuringShutdown(t *testing.T) {
	t.Parallel()
	// 4000 messages of 2000 characters: 8 MB of backlog, more than the
	// kernel buffers hold on both ends.
	journal := filepath.Join(t.TempDir(), "chat.jsonl")
	var lines []string
	content := strings.Repeat("x", 2000)
	for i := range 4000 {
		lines = append(lines, journalLine(t, testEpoch, uint64(i+1), content))
	}
	writeJournal(t, journal, lines...)
	ts := startServer(t, "-data", journal, "-history", "4000", "-backlog", "4000")
	addr := ts.addr()

	stuck, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	_ = stuck.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(stuck, "GET /stream HTTP/1.1\r\nHost: chat\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The room counts the client before the handler hands the connection
	// to its writer, and a shutdown in between ends the stream at once,
	// so wait for the writer's first byte: from then on shutdown waits for
	// it. One byte read leaves megabytes the writer cannot get rid of.
	_ = stuck.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadFull(stuck, make([]byte, 1)); err != nil {
		t.Fatalf("reading the stuck stream's first byte: %v", err)
	}

	health, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer health.Close()
	hr := bufio.NewReader(health)
	get := func() (int, error) {
		_ = health.SetDeadline(time.Now().Add(waitTimeout))
		if _, err := io.WriteString(health, "GET /healthz HTTP/1.1\r\nHost: chat\r\n\r\n"); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(hr, nil)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(); code != http.StatusOK {
		t.Fatalf("GET /healthz while serving: %d, %v; want 200", code, err)
	}

	// The writer counts the backlog as delivered only once all of it is
	// written, which a client that reads nothing never lets happen.
	delivered := ts.stats(t).Deliveries
	ts.cancel()
	deadline := time.Now().Add(config.StreamDrain)
	for {
		code, err := get()
		if err != nil {
			t.Fatalf("GET /healthz during shutdown: %v (connection closed before any 503; deliveries before shutdown %d, 0 if the stream writer was blocked as planned)", err, delivered)
		}
		if code == http.StatusServiceUnavailable {
			break
		}
		if code != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("GET /healthz during shutdown: %d, want 503", code)
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	ts.stop(t)
	t.Logf("run returned %v after the first 503", time.Since(start))
}

// postOutcome is the answer one POST /post got.
type postOutcome struct {
	content string
	status  int
	msg     Message
	err     error
}

// heldServer is a server whose journal can hold one fsync until the test
// releases it.
type heldServer struct {
	*testServer
	// entered receives once the held fsync has begun.
	entered <-chan struct{}
	// release lets the held fsync finish; it may be called again.
	release func()
}

// startHeldServer runs the server through serve with its journal at path
// and a journal drain of 300 ms, and flags: while armed reports true, the
// next fsync signals entered and waits for release.
func startHeldServer(t *testing.T, path string, armed func() bool, flags ...string) *heldServer {
	t.Helper()
	held, entered := make(chan struct{}), make(chan struct{}, 1)
	var once sync.Once
	release := func() { once.Do(func() { close(held) }) }
	ts := startServerConfig(t, func(cfg *settings) {
		cfg.journalSync = func(f *os.File) error {
			if armed() {
				select {
				case entered <- struct{}{}:
					<-held // the first fsync while armed waits for the test
				default:
				}
			}
			return f.Sync()
		}
		cfg.journalWait = 300 * time.Millisecond
	}, append([]string{"-data", path}, flags...)...)
	t.Cleanup(release) // before the server's own cleanup, which waits for it
	return &heldServer{testServer: ts, entered: entered, release: release}
}

// waitServed waits for serve to return, once the held fsync is released,
// and fails the test if it returns an error or is still running after
// waitTimeout.
func (hs *heldServer) waitServed(t *testing.T) {
	t.Helper()
	select {
	case <-hs.done:
		if hs.err != nil {
			t.Fatalf("serve: %v", hs.err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("serve did not return after the fsync was released")
	}
}

// TestShutdownAnswersMatchFate holds the journal inside an fsync while the
// server shuts down, with posts waiting on it, and then lets it finish: no
// post answered with a status that says "not stored" (503, 500) may be in
// the history after the restart, and every post answered 201 or 202 must
// be.
func TestShutdownAnswersMatchFate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	hs := startHeldServer(t, path, func() bool { return true }, "-post-rate", "0")
	url, entered := hs.URL, hs.entered

	// Each poster has its own connection, which the server has accepted
	// (a request was served on it), so that a post written before the
	// shutdown reaches the room rather than a closed listener.
	const posts = 6
	clients := make([]*http.Client, posts)
	for i := range clients {
		clients[i] = &http.Client{Transport: &http.Transport{}}
		t.Cleanup(clients[i].CloseIdleConnections)
		resp, err := clients[i].Get(url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	outcomes := make(chan postOutcome, posts)
	written := make(chan struct{}, posts)
	post := func(i int) {
		content := fmt.Sprintf("post %d", i)
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { written <- struct{}{} }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			"POST", url+"/post", strings.NewReader(`{"username":"fate","content":"`+content+`"}`))
		req.Header.Set("Content-Type", "application/json")
		o := postOutcome{content: content}
		resp, err := clients[i].Do(req)
		if err != nil {
			o.err = err
		} else {
			o.status = resp.StatusCode
			json.NewDecoder(resp.Body).Decode(&o.msg)
			resp.Body.Close()
		}
		outcomes <- o
	}
	go post(0)
	select {
	case <-entered: // post 0 is inside the fsync
	case <-time.After(waitTimeout):
		t.Fatal("the journal never synced")
	}
	for i := 1; i < posts; i++ {
		go post(i)
	}
	for range posts {
		select {
		case <-written:
		case <-time.After(waitTimeout):
			t.Fatal("posts not sent")
		}
	}
	// Shut down while the fsync is held, and collect every answer.
	hs.cancel()
	var got []postOutcome
	for range posts {
		select {
		case o := <-outcomes:
			got = append(got, o)
		case <-time.After(waitTimeout):
			t.Fatalf("a post got no answer during shutdown; answers so far: %+v", got)
		}
	}
	hs.release()
	hs.waitServed(t)

	j, recs, err := journal.Open(path, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	j.Run(done)
	stored, err := roomlog.Recover(recs)
	if err != nil {
		t.Fatal(err)
	}
	inHistory := map[string]bool{}
	for _, m := range stored {
		inHistory[m.Content] = true
	}
	pending := false
	for _, o := range got {
		switch {
		case o.err != nil:
			// Never answered (the connection was refused or cut): the
			// poster knows nothing either way.
		case o.status == http.StatusCreated || o.status == http.StatusAccepted:
			if !inHistory[o.content] {
				t.Errorf("%q was answered %d but is not in history after the restart", o.content, o.status)
			}
			pending = pending || o.content == "post 0"
		default:
			if inHistory[o.content] {
				t.Errorf("%q was answered %d (not stored) but is in history after the restart", o.content, o.status)
			}
		}
	}
	if !pending {
		t.Errorf("post 0, whose fsync was held, was not answered 201 or 202: %+v", got)
	}
	statuses := make([]int, len(got))
	for i, o := range got {
		statuses[i] = o.status
	}
	t.Logf("answers %v; %d messages in history", statuses, len(stored))
}

// TestDeleteAtShutdownAnswersLikePost holds the journal inside the fsync of
// a deletion while the server shuts down: the deletion is answered 202
// with the deletion, as a post in that state is (not 503, which would say
// it did not happen), and after the restart the message is deleted and
// deleting it again is a 404.
func TestDeleteAtShutdownAnswersLikePost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	var armed atomic.Bool
	hs := startHeldServer(t, path, armed.Load, "-admin-key", "boss")
	url := hs.URL
	m := hs.post(t, "u", "delete me")
	armed.Store(true)
	answer := make(chan reply, 1)
	go func() { answer <- deleteMsg(t, url, m.ID, admin()) }()
	select {
	case <-hs.entered: // the deletion is inside the fsync
	case <-time.After(waitTimeout):
		t.Fatal("the journal never synced the deletion")
	}
	hs.cancel()
	var r reply
	select {
	case r = <-answer:
	case <-time.After(waitTimeout):
		t.Fatal("the deletion got no answer during shutdown")
	}
	hs.release()
	var d roomlog.Deletion
	if r.status != http.StatusAccepted || json.Unmarshal(r.body, &d) != nil || d.Delete != m.ID || d.ID == "" || !idLess(t, m.ID, d.ID) {
		t.Errorf("DELETE at shutdown: %d %s, want 202 with the deletion of %s", r.status, r.body, m.ID)
	}
	hs.waitServed(t)
	ts := startServer(t, "-data", path, "-admin-key", "boss")
	if hist := historyIDs(t, ts.URL, nil); len(hist) != 0 {
		t.Errorf("history after the restart: %v, want the message deleted", hist)
	}
	if r := deleteMsg(t, ts.URL, m.ID, admin()); r.status != http.StatusNotFound {
		t.Errorf("deleting again after the restart: %d %s, want 404", r.status, r.body)
	}
}

// TestBanAtShutdown bans an address after the room has shut down: the ban
// is stored and answered 201, but the answer does not claim to have closed
// no streams (it had not looked): streams_closed is left out and the note
// says why.
func TestBanAtShutdown(t *testing.T) {
	room := NewChatRoom(RoomConfig{History: 10}, NewStats())
	ctx, cancel := context.WithCancel(context.Background())
	go room.Run(ctx)
	cancel()
	<-room.Done()
	gate := &auth.Gate{Keys: auth.Keys{Admin: "boss"}}
	ts := httptest.NewServer(newHandler(room, serverConfig{
		heartbeat: time.Hour, writeTimeout: time.Second, maxContent: 200, maxBody: 1024, gate: gate, bans: ban.New(),
	}))
	defer ts.Close()
	r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/bans", "application/json", `{"addr":"10.9.9.9"}`, admin())
	var b banJSON
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &b) != nil || b.Addr != "10.9.9.9" {
		t.Fatalf("POST /bans at shutdown: %d %s, want 201 with the ban", r.status, r.body)
	}
	if b.StreamsClosed != nil || !strings.Contains(b.Note, "shutting down") || strings.Contains(string(r.body), "streams_closed") {
		t.Errorf("POST /bans at shutdown: %s; want no streams_closed and a note that the server is shutting down", r.body)
	}
	if list := mustSend(t, http.DefaultClient, "GET", ts.URL+"/bans", "", "", admin()); !strings.Contains(string(list.body), `"10.9.9.9"`) {
		t.Errorf("the ban made at shutdown is not stored: %s", list.body)
	}
}
