package main

// Tests of cluster mode that kill something mid-flood: a node (the binary,
// killed with SIGKILL) or one of three NATS servers. Clients do what the
// page does: a stream cut short resumes on another node with its last id,
// and a post that got no answer, a 503 or a 504 is sent again with the
// same Idempotency-Key. Nothing acknowledged may be lost or doubled.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"chat/internal/natstest"
	"chat/internal/roomlog"
	"chat/internal/sse"
)

// floodWorkers is how many posters a flood runs; each waits for its answer
// before its next post, which on this machine makes about 100 posts a
// second through one NATS server.
const floodWorkers = 4

// endContent is the content of the last post of a test, which tells the
// readers to stop.
const endContent = "END"

// acked is the set of posts a room acknowledged (201 or 200), by id, with
// the bytes of the answer.
type acked struct {
	mu   sync.Mutex
	byID map[string][]byte
}

// add records an acknowledged post.
func (a *acked) add(id string, body []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byID == nil {
		a.byID = map[string][]byte{}
	}
	a.byID[id] = bytes.TrimSpace(body)
}

// snapshot returns a copy of what was acknowledged.
func (a *acked) snapshot() map[string][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string][]byte, len(a.byID))
	for k, v := range a.byID {
		out[k] = v
	}
	return out
}

// postSettled posts content under key to the first of urls, and sends it
// again with the same key, to the next URL in turn, after a transport
// error (the node is gone), a 503 or a 504, until it is answered 201 or
// 200 or waitTimeout passes. It returns the answer.
func postSettled(client *http.Client, urls []string, key, content string) (reply, error) {
	deadline := time.Now().Add(waitTimeout)
	for i := 0; ; i++ {
		r, err := postKeyed(client, urls[i%len(urls)], key, "flood", content)
		switch {
		case err == nil && (r.status == http.StatusCreated || r.status == http.StatusOK):
			return r, nil
		case err == nil && r.status != http.StatusServiceUnavailable && r.status != http.StatusGatewayTimeout:
			return r, fmt.Errorf("POST %s: status %d %s", key, r.status, r.body)
		case time.Now().After(deadline):
			return r, fmt.Errorf("POST %s: not settled within %v (last: %v, %d %s)", key, waitTimeout, err, r.status, r.body)
		}
		if err == nil {
			time.Sleep(10 * time.Millisecond) // the pause of a client's retry, not a synchronisation
		}
	}
}

// flood runs floodWorkers posters until stop is closed; worker w posts to
// urlsOf(w) (called before each post, so a test can move posters away
// from a node). Every post is settled (postSettled) and recorded in a.
// It returns a channel that receives the first error and is closed when
// all have stopped.
func flood(a *acked, urlsOf func(w int) []string, stop <-chan struct{}) <-chan error {
	errs := make(chan error, floodWorkers)
	var wg sync.WaitGroup
	for w := range floodWorkers {
		wg.Go(func() {
			client := &http.Client{Timeout: 15 * time.Second}
			defer client.CloseIdleConnections()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				r, err := postSettled(client, urlsOf(w), key, "flood "+key)
				if err != nil {
					errs <- err
					return
				}
				a.add(r.msg.ID, r.body)
			}
		})
	}
	done := make(chan error, 1)
	go func() {
		wg.Wait()
		close(errs)
		for err := range errs {
			done <- err
			break
		}
		close(done)
	}()
	return done
}

// reader follows the room as the page does: it reads a stream on the
// first of its URLs and, when the stream ends, resumes on the next with
// the id of the last event it got, until it has read the post endContent.
type reader struct {
	urls []string
	// ids and data are the chat messages read, in order; other holds the
	// other ordered events (a reset would be one).
	ids   []string
	data  map[string][]byte
	other []sse.Event
	// resumes counts the streams opened after the first.
	resumes int
	err     error
	done    chan struct{}
}

// follow starts a reader on urls from lastID ("" for a new client); it
// stops by itself within waitTimeout of its last event.
func follow(urls []string, lastID string) *reader {
	r := &reader{urls: urls, data: map[string][]byte{}, done: make(chan struct{})}
	opened := make(chan struct{})
	go r.run(lastID, opened)
	<-opened
	return r
}

// run is the reader's loop; it closes opened once its first stream is
// open (or failed).
func (r *reader) run(lastID string, opened chan struct{}) {
	defer close(r.done)
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
		req, _ := http.NewRequestWithContext(ctx, "GET", r.urls[i%len(r.urls)]+"/stream", nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if i == 0 {
			close(opened)
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			cancel()
			if i < 3*len(r.urls) {
				continue // the node may be gone: the next one
			}
			r.err = fmt.Errorf("stream %d: %v", i, err)
			return
		}
		if i > 0 {
			r.resumes++
		}
		end := r.read(sse.NewReader(resp.Body), &lastID)
		resp.Body.Close()
		cancel()
		if end || r.err != nil {
			return
		}
	}
}

// read reads one stream until it ends or the post endContent arrives, and
// reports which.
func (r *reader) read(sr *sse.Reader, lastID *string) bool {
	for {
		ev, err := sr.NextEvent()
		if err != nil {
			return false
		}
		switch ev.Type {
		case "message":
			r.ids = append(r.ids, ev.ID)
			r.data[ev.ID] = ev.Data
			*lastID = ev.ID
			if bytes.Contains(ev.Data, []byte(`"content":"`+endContent+`"`)) {
				return true
			}
		case "presence", "typing":
		default:
			r.other = append(r.other, ev)
			if ev.ID != "" {
				*lastID = ev.ID
			}
		}
	}
}

// wait waits for the reader to stop and fails the test if it failed.
func (r *reader) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(3 * waitTimeout):
		t.Fatalf("a reader did not read %s within %v (it read %d messages)", endContent, 3*waitTimeout, len(r.ids))
	}
	if r.err != nil {
		t.Fatalf("reader: %v", r.err)
	}
}

// checkReaders checks that every reader got every acknowledged post once,
// with its acknowledged bytes, that all read the same ids in the same
// order, contiguous (no gap, no duplicate), and that none was reset.
func checkReaders(t *testing.T, readers []*reader, acks map[string][]byte) {
	t.Helper()
	for i, r := range readers {
		r.wait(t)
		if len(r.other) != 0 {
			t.Errorf("reader %d got other events: %+v", i, r.other)
		}
		checkContiguous(t, fmt.Sprintf("reader %d", i), r.ids)
		if i > 0 && !slices.Equal(r.ids, readers[0].ids) {
			t.Errorf("reader %d read %d ids, reader 0 %d, not the same", i, len(r.ids), len(readers[0].ids))
		}
		for id, body := range acks {
			if got, ok := r.data[id]; !ok || !bytes.Equal(got, body) {
				t.Errorf("reader %d: acknowledged %s %s, read %q", i, id, body, got)
				break
			}
		}
	}
}

// TestClusterNodeKilledMidFlood kills a node (the binary, SIGKILL) while
// posts flood the room through it and another node, with its streams'
// clients resuming on the other node and its posters sending their
// unanswered posts there: every acknowledged post reaches every client
// once, in one order, with no reset.
func TestClusterNodeKilledMidFlood(t *testing.T) {
	bin := chatBinary(t)
	ns := startNATS(t)
	a := startChatProc(t, bin, "-nats", ns.URL(), "-max-streams-per-addr", "0")
	b := startChatProc(t, bin, "-nats", ns.URL(), "-max-streams-per-addr", "0")
	var readers []*reader
	for range 20 {
		readers = append(readers, follow([]string{a.URL, b.URL}, ""))
	}
	var mu sync.Mutex
	aDead := false
	urlsOf := func(w int) []string {
		mu.Lock()
		defer mu.Unlock()
		if w%2 == 0 && !aDead {
			return []string{a.URL, b.URL}
		}
		return []string{b.URL}
	}
	var acks acked
	stop := make(chan struct{})
	done := flood(&acks, urlsOf, stop)
	waitFor(t, "50 posts acknowledged before the kill", func() bool { return len(acks.snapshot()) >= 50 })
	a.kill(t)
	mu.Lock()
	aDead = true
	mu.Unlock()
	before := len(acks.snapshot())
	waitFor(t, "50 posts acknowledged after the kill", func() bool { return len(acks.snapshot()) >= before+50 })
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	end := b.post(t, "flood", endContent)
	acks.add(end.ID, roomlog.MarshalMessage(end))
	checkReaders(t, readers, acks.snapshot())
	for i, r := range readers {
		if r.resumes == 0 {
			t.Errorf("reader %d never resumed on the other node", i)
		}
	}
}

// TestClusterNATSServerKilledMidFlood kills one of three NATS servers (the
// one both nodes are connected to) while posts flood the room through two
// nodes, with the stream kept on all three (-nats-replicas 3): posts go on
// (a post the kill caught is sent again with its key), and every
// acknowledged post is in both nodes' history and reaches every stream
// once, in one order.
func TestClusterNATSServerKilledMidFlood(t *testing.T) {
	servers := natstest.Cluster(t, 3, natstest.Options{})
	urls := natstest.URLs(servers)
	nodes := startNodes(t, 2, urls, "-nats-replicas", "3")
	var readers []*reader
	for _, n := range nodes {
		for range 5 {
			readers = append(readers, follow([]string{n.URL}, ""))
		}
	}
	var acks acked
	stop := make(chan struct{})
	done := flood(&acks, func(w int) []string { return []string{nodes[w%2].URL, nodes[(w+1)%2].URL} }, stop)
	waitFor(t, "50 posts acknowledged before the kill", func() bool { return len(acks.snapshot()) >= 50 })
	servers[0].Kill()
	before := len(acks.snapshot())
	waitFor(t, "50 posts acknowledged after the kill", func() bool { return len(acks.snapshot()) >= before+50 })
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	end := nodes[0].post(t, "flood", endContent)
	acks.add(end.ID, roomlog.MarshalMessage(end))
	all := acks.snapshot()
	checkReaders(t, readers, all)
	for i, n := range nodes {
		h := historyOf(t, n.URL)
		seen := map[string]bool{}
		for _, m := range h {
			var msg Message
			if err := json.Unmarshal(m, &msg); err != nil {
				t.Fatal(err)
			}
			if seen[msg.ID] {
				t.Errorf("node %d holds %s twice", i, msg.ID)
			}
			seen[msg.ID] = true
		}
		for id := range all {
			if !seen[id] {
				t.Errorf("node %d's history lacks the acknowledged %s", i, id)
			}
		}
		if st := n.stats(t).NATS; st == nil || !st.Connected || st.Reconnects == 0 {
			t.Errorf("node %d /stats nats: %+v, want connected after a reconnect", i, st)
		}
	}
}

// TestClusterBadConfigExits runs the binary with wrong NATS credentials:
// it exits 1 at once with one line that names -nats and not the password.
func TestClusterBadConfigExits(t *testing.T) {
	bin := chatBinary(t)
	ns := natstest.Start(t, natstest.Options{User: "alice", Password: "s3cret-pw"})
	url := strings.Replace(ns.AuthURL(), "s3cret-pw", "wr0ng-pw", 1)
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-nats", url)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CHAT_") })
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("run with wrong credentials: %v, want exit status 1", err)
	}
	out := strings.TrimSpace(stderr.String())
	if strings.Count(out, "\n") != 0 || !strings.HasPrefix(out, "-nats: ") || strings.Contains(out, "pw") {
		t.Errorf("stderr %q: want one line starting -nats: without the password", out)
	}
}
