package crosscheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	jsgo "github.com/nats-io/nats.go/jetstream"

	"chat/internal/natstest"
)

// chatNode is the chat server's binary running as one node of a room in
// cluster mode.
type chatNode struct {
	url string
	mu  sync.Mutex
	log bytes.Buffer
}

// Write collects the node's log.
func (n *chatNode) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.Write(p)
}

// logged returns the node's log so far.
func (n *chatNode) logged() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

// listening finds the address in the node's "listening" log line.
var listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startNode builds the chat server and runs it with args on a loopback
// port until the test ends; it skips the test where there is no go
// command.
func startNode(t *testing.T, args ...string) *chatNode {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the chat server with")
	}
	bin := filepath.Join(t.TempDir(), "chat")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	build.Dir = filepath.Join("..", "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the chat server: %v\n%s", err, out)
	}
	n := &chatNode{}
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-stats-interval", "0", "-post-rate", "0"}, args...)...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CHAT_") })
	cmd.Stderr = n
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(waitTimeout)
	for n.url == "" {
		if m := listening.FindStringSubmatch(n.logged()); m != nil {
			n.url = "http://" + m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("the node did not listen within %v:\n%s", waitTimeout, n.logged())
		}
		time.Sleep(10 * time.Millisecond) // the pause of a bounded poll, not a synchronisation
	}
	return n
}

// message is a chat message as the node answers it.
type message struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	Content  string    `json:"content"`
	Time     time.Time `json:"time"`
}

// do sends a request to the node and returns the status and body.
func (n *chatNode) do(t *testing.T, method, path, body string, header map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, n.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// post posts content as ann, with key unless it is "", and returns the
// message the node answered with 201.
func (n *chatNode) post(t *testing.T, content, key string) message {
	t.Helper()
	h := map[string]string{}
	if key != "" {
		h["Idempotency-Key"] = key
	}
	code, b := n.do(t, "POST", "/post", fmt.Sprintf(`{"username":"ann","content":%q}`, content), h)
	var m message
	if code != http.StatusCreated || json.Unmarshal(b, &m) != nil {
		t.Fatalf("POST %q: %d %s", content, code, b)
	}
	return m
}

// TestNodeRecordsReadByNatsGo runs a chat node in cluster mode and reads
// what it wrote with nats.go: the stream's configuration, and each record
// by sequence number (the <seq> of its id), with its subject, headers
// (Nats-Msg-Id: the Idempotency-Key, or the node's own id), payload and
// time. Then it publishes with nats.go what the node must handle: a
// repeat of a key (a duplicate, not stored), a malformed payload (the node
// skips it, logs it and runs on) and a record from elsewhere (the node
// serves it).
func TestNodeRecordsReadByNatsGo(t *testing.T) {
	s := natstest.Start(t, natstest.Options{})
	node := startNode(t, "-nats", s.URL(), "-nats-stream", "ROOM", "-history", "50", "-admin-key", "boss")
	keyed := node.post(t, "hello", "k1")
	plain := node.post(t, "plain", "")
	if code, b := node.do(t, "DELETE", "/messages/"+plain.ID, "", map[string]string{"Authorization": "Bearer boss"}); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, b)
	}

	nc, err := natsgo.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jsgo.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx(t), "ROOM")
	if err != nil {
		t.Fatal(err)
	}
	info := stream.CachedInfo()
	c := info.Config
	if !slices.Equal(c.Subjects, []string{"chat.ROOM.log"}) || c.Storage != jsgo.FileStorage || c.Retention != jsgo.LimitsPolicy ||
		c.Replicas != 1 || c.MaxMsgs != 50 || c.Discard != jsgo.DiscardOld || c.Duplicates != 2*time.Minute ||
		c.MaxAge != 0 || !c.DenyDelete || !c.DenyPurge {
		t.Errorf("the stream's configuration, read by nats.go: %+v", c)
	}
	if epoch := fmt.Sprint(info.Created.UnixMilli()); !strings.HasPrefix(keyed.ID, epoch+"-") {
		t.Errorf("id %s does not start with the stream's creation time %s", keyed.ID, epoch)
	}
	if info.State.Msgs != 3 || info.State.LastSeq != 3 {
		t.Errorf("the stream holds %d records up to %d, want 3", info.State.Msgs, info.State.LastSeq)
	}

	for _, tt := range []struct {
		seq          uint64
		key, payload string
		time         time.Time
	}{
		{1, "k1", `{"username":"ann","content":"hello"}`, keyed.Time},
		{2, "", `{"username":"ann","content":"plain"}`, plain.Time},
		{3, "", `{"delete":"` + plain.ID + `"}`, time.Time{}},
	} {
		m, err := stream.GetMsg(ctx(t), tt.seq)
		if err != nil {
			t.Fatalf("record %d: %v", tt.seq, err)
		}
		origin := m.Header.Get("Chat-Origin")
		msgID := m.Header.Get(natsgo.MsgIdHdr)
		switch {
		case m.Subject != "chat.ROOM.log" || string(m.Data) != tt.payload:
			t.Errorf("record %d: subject %s, data %s; want chat.ROOM.log, %s", tt.seq, m.Subject, m.Data, tt.payload)
		case origin == "":
			t.Errorf("record %d has no Chat-Origin header: %v", tt.seq, m.Header)
		case tt.key != "" && (msgID != tt.key || m.Header.Get("Chat-Key") != tt.key):
			t.Errorf("record %d: Nats-Msg-Id %q, Chat-Key %q; want the Idempotency-Key %q", tt.seq, msgID, m.Header.Get("Chat-Key"), tt.key)
		case tt.key == "" && (msgID != origin || m.Header.Get("Chat-Key") != ""):
			t.Errorf("record %d without a key: Nats-Msg-Id %q, Chat-Origin %q, Chat-Key %q; want the node's own id", tt.seq, msgID, origin, m.Header.Get("Chat-Key"))
		case !tt.time.IsZero() && !m.Time.Equal(tt.time):
			t.Errorf("record %d stored at %v, the message says %v", tt.seq, m.Time, tt.time)
		}
	}

	ack, err := js.Publish(ctx(t), "chat.ROOM.log", []byte(`{"username":"ann","content":"hello"}`), jsgo.WithMsgID("k1"))
	if err != nil || !ack.Duplicate || ack.Sequence != 1 {
		t.Errorf("nats.go publish under the node's key k1: %+v, %v; want a duplicate of record 1", ack, err)
	}
	if _, err := js.Publish(ctx(t), "chat.ROOM.log", []byte(`{"username":"ann","content":`)); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx(t), "chat.ROOM.log", []byte(`{"username":"bob","content":"from nats.go"}`), jsgo.WithMsgID("elsewhere-1")); err != nil {
		t.Fatal(err)
	}
	after := node.post(t, "after", "")
	if !strings.HasSuffix(after.ID, "-6") {
		t.Errorf("the post after records 4 and 5 is %s, want sequence 6", after.ID)
	}
	code, b := node.do(t, "GET", "/history", "", nil)
	var page struct{ Messages []message }
	if code != http.StatusOK || json.Unmarshal(b, &page) != nil {
		t.Fatalf("GET /history: %d %s", code, b)
	}
	var got []string
	for _, m := range page.Messages {
		got = append(got, m.ID[strings.IndexByte(m.ID, '-'):]+" "+m.Content)
	}
	if want := []string{"-1 hello", "-5 from nats.go", "-6 after"}; !slices.Equal(got, want) {
		t.Errorf("/history after nats.go's records: %v, want %v", got, want)
	}
	if log := node.logged(); !strings.Contains(log, "void record") || !strings.Contains(log, "seq=4") {
		t.Errorf("the node did not log the malformed record 4:\n%s", log)
	}
	if code, b := node.do(t, "GET", "/healthz", "", nil); code != http.StatusOK {
		t.Errorf("/healthz after the malformed record: %d %s", code, b)
	}
}
