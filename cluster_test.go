package main

// Tests of cluster mode (-nats): several nodes of one room over real
// nats-server processes (internal/natstest), each node a server started
// through run on a loopback port. The tests that kill a node run it as the
// binary (cluster_kill_test.go).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"chat/internal/jetstream"
	"chat/internal/nats"
	"chat/internal/natstest"
	"chat/internal/record"
	"chat/internal/sse"
)

// startNATS starts one nats-server with JetStream (natstest).
func startNATS(t *testing.T) *natstest.Server { return natstest.Start(t, natstest.Options{}) }

// startNodes starts n nodes of one room on the NATS servers urls, each
// with flags.
func startNodes(t *testing.T, n int, urls []string, flags ...string) []*testServer {
	t.Helper()
	nodes := make([]*testServer, n)
	for i := range nodes {
		nodes[i] = startServer(t, append([]string{"-nats", strings.Join(urls, ",")}, flags...)...)
	}
	return nodes
}

// messageEvents reads until n chat message events have arrived on s and
// returns them, with the other events of the ordered stream (resets,
// deletions) seen on the way, within waitTimeout.
func messageEvents(t *testing.T, s *subscriber, n int) (msgs, other []sse.Event) {
	t.Helper()
	for len(msgs) < n {
		ev := s.nextEvent(t)
		if ev.Type == "message" {
			msgs = append(msgs, ev)
		} else {
			other = append(other, ev)
		}
	}
	return msgs, other
}

// eventIDs returns the ids of evs.
func eventIDs(evs []sse.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// sameEvent reports whether a and b are the same event: id, type, data.
func sameEvent(a, b sse.Event) bool {
	return a.ID == b.ID && a.Type == b.Type && bytes.Equal(a.Data, b.Data)
}

// checkContiguous fails the test unless ids are the ids 1..len(ids) of
// one epoch, in order.
func checkContiguous(t *testing.T, what string, ids []string) {
	t.Helper()
	epoch, _ := mustParseID(t, ids[0])
	for i, id := range ids {
		if want := record.FormatID(epoch, uint64(i+1)); id != want {
			t.Fatalf("%s: id %d is %s, want %s (ids %v)", what, i, id, want, ids)
		}
	}
}

// rawHistory returns the whole history of the node at url, each message as
// its JSON bytes.
func rawHistory(t *testing.T, url string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, m := range historyOf(t, url) {
		out = append(out, []byte(m))
	}
	return out
}

// TestClusterOneOrder posts through two and then three nodes at once,
// with two streams open on each: every stream gets every message, in one
// order with contiguous ids, as the same bytes; each post's answer is
// those bytes; and every node's /history pages hold them the same.
func TestClusterOneOrder(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			ns := startNATS(t)
			nodes := startNodes(t, n, []string{ns.URL()})
			var subs []*subscriber
			for _, node := range nodes {
				subs = append(subs, subscribe(t, node.URL, ""), subscribe(t, node.URL, ""))
			}
			const each = 15
			var mu sync.Mutex
			answers := map[string][]byte{}
			var wg sync.WaitGroup
			for i, node := range nodes {
				wg.Go(func() {
					for j := range each {
						r, err := postKeyed(http.DefaultClient, node.URL, "", fmt.Sprintf("node%d", i), fmt.Sprintf("post %d from node %d", j, i))
						if err != nil || r.status != http.StatusCreated {
							t.Errorf("POST to node %d: %v, %d %s", i, err, r.status, r.body)
							return
						}
						mu.Lock()
						answers[r.msg.ID] = bytes.TrimSpace(r.body)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			first, _ := messageEvents(t, subs[0], n*each)
			checkContiguous(t, "the first stream", eventIDs(first))
			for i, s := range subs[1:] {
				evs, _ := messageEvents(t, s, n*each)
				if !slices.EqualFunc(evs, first, sameEvent) {
					t.Fatalf("stream %d got %v, stream 0 %v", i+1, eventIDs(evs), eventIDs(first))
				}
			}
			for _, ev := range first {
				if got := answers[ev.ID]; !bytes.Equal(got, ev.Data) {
					t.Errorf("the answer to the post of %s was %s, its event carries %s", ev.ID, got, ev.Data)
				}
			}
			want := rawHistory(t, nodes[0].URL)
			if len(want) != n*each {
				t.Fatalf("/history holds %d messages, want %d", len(want), n*each)
			}
			for i, ev := range first {
				if !bytes.Equal(want[i], ev.Data) {
					t.Fatalf("/history message %d is %s, the streams' %s", i, want[i], ev.Data)
				}
			}
			for i, node := range nodes[1:] {
				if got := rawHistory(t, node.URL); !slices.EqualFunc(got, want, bytes.Equal) {
					t.Errorf("node %d's /history differs from node 0's", i+1)
				}
			}
		})
	}
}

// TestClusterResumeOnAnotherNode resumes a stream read on one node on
// another: with no gap and no duplicate from an id the node has; with no
// reset from an id the other node served a moment before this one read it
// (the node waits for it); and with a reset from an id of another epoch or
// older than the stream keeps.
func TestClusterResumeOnAnotherNode(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, 2, []string{ns.URL()}, "-history", "20")
	a, b := nodes[0], nodes[1]
	var posted []Message
	for i := range 5 {
		posted = append(posted, a.post(t, "ann", fmt.Sprintf("m%d", i)))
	}
	onA := subscribe(t, a.URL, "")
	evs, _ := messageEvents(t, onA, 5)
	onA.close()
	resumed := subscribe(t, b.URL, evs[2].ID)
	live := a.post(t, "ann", "live")
	got, other := messageEvents(t, resumed, 3)
	if want := []string{posted[3].ID, posted[4].ID, live.ID}; !slices.Equal(eventIDs(got), want) || len(other) != 0 {
		t.Errorf("resumed on b after %s: %v (other %v), want %v", evs[2].ID, eventIDs(got), other, want)
	}
	resumed.close()

	// An id b has not read yet: b waits for it rather than reset.
	epoch, last := mustParseID(t, live.ID)
	ahead := record.FormatID(epoch, last+1)
	type opening struct {
		s   *subscriber
		err error
	}
	opened := make(chan opening, 1)
	go func() {
		s, err := openStream(b.URL, streamOpts{lastID: ahead})
		opened <- opening{s, err}
	}()
	a.post(t, "ann", "the id the stream names")
	after := a.post(t, "ann", "after it")
	o := <-opened
	if o.err != nil {
		t.Fatalf("the stream resuming at an id b had not read yet was refused: %v", o.err)
	}
	s := o.s
	t.Cleanup(s.close)
	if got, other := messageEvents(t, s, 1); got[0].ID != after.ID || len(other) != 0 {
		t.Errorf("resumed on b at %s: first %s (other %v), want %s with no reset", ahead, got[0].ID, other, after.ID)
	}

	for _, tt := range []struct{ name, id, reason string }{
		{"another epoch", record.FormatID(epoch-1, 3), "unknown"},
		{"older than the stream keeps", posted[0].ID, "expired"},
	} {
		if tt.reason == "expired" {
			for i := range 20 {
				a.post(t, "ann", fmt.Sprintf("filler %d", i))
			}
		}
		s := subscribe(t, b.URL, tt.id)
		ev := s.nextEvent(t)
		var reset struct{ Reason string }
		if ev.Type != "reset" || json.Unmarshal(ev.Data, &reset) != nil || reset.Reason != tt.reason {
			t.Errorf("%s (%s): first event %+v, want a reset for %q", tt.name, tt.id, ev, tt.reason)
		}
		s.close()
	}
}

// TestClusterIdempotencyAcrossNodes checks Idempotency-Keys across three
// nodes: a retry on another node gets 200 with the original bytes, other
// content under the key 422; and the same post sent to every node at once
// is stored once, every answer carrying it.
func TestClusterIdempotencyAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, 3, []string{ns.URL()})
	first := mustPostKeyed(t, nodes[0].URL, "k-seq", "ann", "hello", http.StatusCreated)
	for i, node := range nodes[1:] {
		r := mustPostKeyed(t, node.URL, "k-seq", "ann", "hello", http.StatusOK)
		if !bytes.Equal(r.body, first.body) || r.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("retry on node %d: %s (replayed %q), want %s", i+1, r.body, r.header.Get("Idempotent-Replayed"), first.body)
		}
	}
	mustPostKeyed(t, nodes[2].URL, "k-seq", "ann", "other content", http.StatusUnprocessableEntity)

	const rounds, perNode = 4, 2
	for round := range rounds {
		key := fmt.Sprintf("k-con-%d", round)
		var mu sync.Mutex
		var replies []reply
		var wg sync.WaitGroup
		for _, node := range nodes {
			for range perNode {
				wg.Go(func() {
					r, err := postKeyed(http.DefaultClient, node.URL, key, "bob", "at once "+key)
					if err != nil {
						t.Errorf("POST %s: %v", key, err)
						return
					}
					mu.Lock()
					replies = append(replies, r)
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		created := 0
		for _, r := range replies {
			switch r.status {
			case http.StatusCreated:
				created++
			case http.StatusOK:
			default:
				t.Errorf("%s: status %d %s", key, r.status, r.body)
			}
			if !bytes.Equal(r.body, replies[0].body) {
				t.Errorf("%s: answers differ: %s and %s", key, r.body, replies[0].body)
			}
		}
		if created != 1 {
			t.Errorf("%s sent to every node at once: %d answers 201, want 1", key, created)
		}
	}
	last := nodes[0].post(t, "ann", "end")
	for i, node := range nodes {
		waitFor(t, fmt.Sprintf("node %d to read %s", i, last.ID), func() bool {
			h := historyOf(t, node.URL)
			return len(h) > 0 && strings.Contains(string(h[len(h)-1]), last.ID)
		})
		if h := historyOf(t, node.URL); len(h) != 1+rounds+1 {
			t.Errorf("node %d holds %d messages, want %d (each key once)", i, len(h), 1+rounds+1)
		}
	}
}

// TestClusterDeleteAcrossNodes deletes on one node a message posted on
// another: every node's streams get the delete event, no node's history
// holds the message, deleting it again anywhere is a 404, and two
// moderators deleting one message on two nodes at once get one 200 and
// one 404, with one delete event everywhere. A node started afterwards
// holds the same history and replays the deletions to a resuming client.
func TestClusterDeleteAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, 3, []string{ns.URL()}, "-admin-key", "boss")
	a, b, c := nodes[0], nodes[1], nodes[2]
	m1 := a.post(t, "ann", "first")
	m2 := a.post(t, "ann", "second")
	subs := []*subscriber{subscribe(t, a.URL, m2.ID), subscribe(t, b.URL, m2.ID), subscribe(t, c.URL, m2.ID)}
	d1 := deletion(t, deleteMsg(t, b.URL, m1.ID, admin()))
	for i, s := range subs {
		checkDeleteEvent(t, fmt.Sprintf("stream on node %d", i), s.nextEvent(t), d1)
	}
	for i, node := range nodes {
		if r := deleteMsg(t, node.URL, m1.ID, admin()); r.status != http.StatusNotFound {
			t.Errorf("deleting %s again on node %d: %d %s, want 404", m1.ID, i, r.status, r.body)
		}
	}

	var ra, rc reply
	var wg sync.WaitGroup
	wg.Go(func() { ra, _ = send(http.DefaultClient, "DELETE", a.URL+"/messages/"+m2.ID, "", "", admin()) })
	wg.Go(func() { rc, _ = send(http.DefaultClient, "DELETE", c.URL+"/messages/"+m2.ID, "", "", admin()) })
	wg.Wait()
	codes := []int{ra.status, rc.status}
	slices.Sort(codes)
	if !slices.Equal(codes, []int{http.StatusOK, http.StatusNotFound}) {
		t.Fatalf("two deletions of %s at once: %d %s and %d %s, want one 200 and one 404", m2.ID, ra.status, ra.body, rc.status, rc.body)
	}
	won := ra
	if rc.status == http.StatusOK {
		won = rc
	}
	d2 := deletion(t, won)
	after := b.post(t, "ann", "after")
	for i, s := range subs {
		checkDeleteEvent(t, fmt.Sprintf("second deletion on node %d", i), s.nextEvent(t), d2)
		if ev := s.nextEvent(t); ev.ID != after.ID {
			t.Errorf("node %d: after the deletion, event %+v, want the message %s (one delete event only)", i, ev, after.ID)
		}
	}
	for i, node := range nodes {
		if got := historyIDs(t, node.URL, nil); !slices.Equal(got, []string{after.ID}) {
			t.Errorf("node %d's /history: %v, want [%s]", i, got, after.ID)
		}
	}
	d := startNodes(t, 1, []string{ns.URL()}, "-admin-key", "boss")[0]
	if got := historyIDs(t, d.URL, nil); !slices.Equal(got, []string{after.ID}) {
		t.Errorf("a node started afterwards: /history %v, want [%s]", got, after.ID)
	}
	s := subscribe(t, d.URL, m2.ID)
	checkDeleteEvent(t, "resumed on the new node", s.nextEvent(t), d1)
	checkDeleteEvent(t, "resumed on the new node", s.nextEvent(t), d2)
}

// TestClusterNodeRestart stops a node, posts through another meanwhile,
// and starts it again: it loads the same history (its last -history
// records) and resumes streams as the other node does.
func TestClusterNodeRestart(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, 2, []string{ns.URL()}, "-history", "10")
	a, b := nodes[0], nodes[1]
	for i := range 6 {
		nodes[i%2].post(t, "ann", fmt.Sprintf("before %d", i))
	}
	b.stop(t)
	var last Message
	for i := range 8 {
		last = a.post(t, "ann", fmt.Sprintf("while b is away %d", i))
	}
	b = startNodes(t, 1, []string{ns.URL()}, "-history", "10")[0]
	ha, hb := rawHistory(t, a.URL), rawHistory(t, b.URL)
	if !slices.EqualFunc(ha, hb, bytes.Equal) || len(ha) != 10 || !strings.Contains(string(ha[9]), last.ID) {
		t.Errorf("after the restart: a holds %d messages, b %d, equal %v; want the same 10", len(ha), len(hb), slices.EqualFunc(ha, hb, bytes.Equal))
	}
	epoch, seq := mustParseID(t, last.ID)
	from := record.FormatID(epoch, seq-3)
	sa, sb := subscribe(t, a.URL, from), subscribe(t, b.URL, from)
	ea, _ := messageEvents(t, sa, 3)
	eb, _ := messageEvents(t, sb, 3)
	if !slices.EqualFunc(ea, eb, sameEvent) {
		t.Errorf("resumed at %s: a %v, b %v", from, eventIDs(ea), eventIDs(eb))
	}
}

// TestClusterNATSDownAndBack stops the only NATS server under two nodes
// with streams open: a post gets 503 with Retry-After at once, /healthz
// 503 with the reason, /stats and /metrics say the node is disconnected,
// and the streams stay open. When the server is back the nodes reconnect
// by themselves and the same streams get the next post, its id the next
// one: no gap, no duplicate, no reset.
func TestClusterNATSDownAndBack(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, 2, []string{ns.URL()})
	before := nodes[0].post(t, "ann", "before")
	subs := []*subscriber{subscribe(t, nodes[0].URL, before.ID), subscribe(t, nodes[1].URL, before.ID)}
	ns.Stop()
	for i, node := range nodes {
		waitFor(t, fmt.Sprintf("node %d's /healthz to turn 503", i), func() bool {
			return get(t, node.URL+"/healthz").status == http.StatusServiceUnavailable
		})
		body := get(t, node.URL+"/healthz").body
		if !strings.Contains(string(body), `"nats unavailable"`) || !strings.Contains(string(body), "disconnected") {
			t.Errorf("node %d /healthz: %s", i, body)
		}
		start := time.Now()
		r := mustSend(t, http.DefaultClient, "POST", node.URL+"/post", "application/json", `{"username":"ann","content":"while down"}`, nil)
		checkRetryAfter(t, "post while NATS is down", r, http.StatusServiceUnavailable, 1, 5)
		if d := time.Since(start); d > 3*time.Second || !strings.Contains(r.errorText(), "not stored") {
			t.Errorf("node %d post while down: %v, %q; want a 503 at once saying it was not stored", i, d, r.errorText())
		}
		_, _, st, fams := journalHealth(t, node.URL) // /metrics through the strict parser
		if n := st.NATS; n == nil || n.Connected || n.Error == "" || n.LastSeq != 1 {
			t.Errorf("node %d /stats nats while down: %+v", i, n)
		}
		if f := fams["chat_nats_connected"]; f == nil || f.value("chat_nats_connected") != 0 {
			t.Errorf("node %d /metrics does not say chat_nats_connected 0", i)
		}
	}
	ns.Restart()
	for i, node := range nodes {
		waitFor(t, fmt.Sprintf("node %d's /healthz to turn 200", i), func() bool {
			return get(t, node.URL+"/healthz").status == http.StatusOK
		})
	}
	back := nodes[1].post(t, "ann", "back")
	if _, seq := mustParseID(t, back.ID); seq != 2 {
		t.Errorf("the post after the outage is %s, want sequence 2", back.ID)
	}
	for i, s := range subs {
		if evs, other := messageEvents(t, s, 1); evs[0].ID != back.ID || len(other) != 0 {
			t.Errorf("stream on node %d after the outage: %v (other %v), want %s on the same connection", i, eventIDs(evs), other, back.ID)
		}
	}
	for i, node := range nodes {
		_, _, st, fams := journalHealth(t, node.URL)
		n := st.NATS
		if n == nil || !n.Connected || n.Reconnects == 0 || n.LastSeq != 2 {
			t.Fatalf("node %d /stats nats after the outage: %+v", i, n)
		}
		for name, want := range map[string]float64{"chat_nats_connected": 1, "chat_nats_reconnects_total": float64(n.Reconnects), "chat_nats_last_sequence": 2, "chat_nats_in_flight": 0} {
			if f := fams[name]; f == nil || f.value(name) != want {
				t.Errorf("node %d /metrics %s is not %v", i, name, want)
			}
		}
	}
}

// TestClusterFateUnknown freezes the NATS server while a keyed post is
// published: the post is answered 504 with Retry-After and an error that
// says to retry with the Idempotency-Key (never a 500, never a hang); once
// the server runs on, that retry gets the message, stored once.
func TestClusterFateUnknown(t *testing.T) {
	ns := startNATS(t)
	node := startNodes(t, 1, []string{ns.URL()})[0]
	ns.Pause()
	start := time.Now()
	r, err := postKeyed(http.DefaultClient, node.URL, "k-dark", "ann", "in the dark")
	ns.Resume()
	if err != nil {
		t.Fatal(err)
	}
	var e errorBody
	if r.status != http.StatusGatewayTimeout || json.Unmarshal(r.body, &e) != nil || !strings.Contains(e.Error, "Idempotency-Key") || r.header.Get("Retry-After") == "" {
		t.Fatalf("post to a frozen NATS: %d %s (Retry-After %q), want 504 saying to retry with the Idempotency-Key", r.status, r.body, r.header.Get("Retry-After"))
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the 504 took %v", d)
	}
	retry, err := postKeyed(http.DefaultClient, node.URL, "k-dark", "ann", "in the dark")
	if err != nil {
		t.Fatal(err)
	}
	if retry.status != http.StatusOK && retry.status != http.StatusCreated {
		t.Fatalf("retry with the key: %d %s", retry.status, retry.body)
	}
	if h := historyOf(t, node.URL); len(h) != 1 {
		t.Errorf("history holds %d messages after the retry, want 1", len(h))
	}
}

// TestClusterConfigErrors checks each configuration error of cluster mode:
// the server does not start, and run returns one line that names the flag
// to fix and holds no credentials.
func TestClusterConfigErrors(t *testing.T) {
	ns := startNATS(t)
	auth := natstest.Start(t, natstest.Options{User: "alice", Password: "s3cret-pw"})
	plain := natstest.Start(t, natstest.Options{NoJetStream: true})
	js, err := jetstream.Connect(context.Background(), []string{ns.URL()}, nats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer js.Close()
	for _, sc := range []jetstream.StreamConfig{
		{Name: "SMALL", Subjects: []string{"chat.SMALL.log"}, MaxMsgs: 5, Duplicates: 2 * time.Minute},
		{Name: "MIXED", Subjects: []string{"chat.MIXED.log", "other"}, MaxMsgs: 100, Duplicates: 2 * time.Minute},
	} {
		if _, err := js.CreateStream(context.Background(), sc); err != nil {
			t.Fatal(err)
		}
	}
	wrongPW := strings.Replace(auth.AuthURL(), "s3cret-pw", "wr0ng-pw", 1)
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"with -data", []string{"-nats", ns.URL(), "-data", t.TempDir() + "/chat.jsonl"}, []string{"-nats and -data"}},
		{"malformed URL", []string{"-nats", "nats://127.0.0.1:port"}, []string{"-nats:"}},
		{"nobody listening", []string{"-nats", "nats://127.0.0.1:1"}, []string{"-nats:", "127.0.0.1:1"}},
		{"wrong password", []string{"-nats", wrongPW}, []string{"-nats:", "authorization"}},
		{"no JetStream", []string{"-nats", plain.URL()}, []string{"-nats:", "JetStream"}},
		{"stream keeps fewer", []string{"-nats", ns.URL(), "-nats-stream", "SMALL", "-history", "100"}, []string{"-history 100", "max_msgs 5"}},
		{"stream with other subjects", []string{"-nats", ns.URL(), "-nats-stream", "MIXED", "-history", "100"}, []string{"-nats-stream MIXED", "subjects"}},
		{"more replicas than servers", []string{"-nats", ns.URL(), "-nats-replicas", "3"}, []string{"-nats-replicas 3"}},
		{"no replicas", []string{"-nats", ns.URL(), "-nats-replicas", "0"}, []string{"-nats-replicas 0"}},
		{"bad stream name", []string{"-nats", ns.URL(), "-nats-stream", "a.b"}, []string{"-nats-stream"}},
		{"no history", []string{"-nats", ns.URL(), "-history", "0"}, []string{"-nats needs -history"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			logs := newLogWatcher()
			args := append([]string{"chat", "-addr", "127.0.0.1:0", "-stats-interval", "0"}, tt.args...)
			err := run(ctx, args, func(string) string { return "" }, &bytes.Buffer{}, logs)
			if err == nil {
				t.Fatalf("run %v started the server", tt.args)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg+logs.String(), "pw") {
				t.Errorf("error %q is not one line without credentials (log: %s)", msg, logs)
			}
		})
	}
}

// TestContribNATSConfig checks contrib/nats-server.conf: nats-server finds
// it valid, and a server started on it with the command line of the
// README's recipe runs JetStream with every write synced (sync_always).
func TestContribNATSConfig(t *testing.T) {
	bin := natstest.Binary(t)
	if out, err := exec.Command(bin, "-t", "-c", "contrib/nats-server.conf").CombinedOutput(); err != nil {
		t.Fatalf("nats-server -t: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	mon, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	monPort := mon.Addr().(*net.TCPAddr).Port
	mon.Close()
	cmd := exec.Command(bin, "-c", "contrib/nats-server.conf", "-n", "n1", "-a", "127.0.0.1", "-p", fmt.Sprint(port),
		"-m", fmt.Sprint(monPort), "-sd", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	var jsz struct {
		Config struct {
			StoreDir   string `json:"store_dir"`
			SyncAlways bool   `json:"sync_always"`
		} `json:"config"`
	}
	waitFor(t, "the server on contrib/nats-server.conf to report its JetStream configuration", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?config=true", monPort))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		// Before JetStream has started, /jsz has no configuration.
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&jsz) == nil && jsz.Config.StoreDir != ""
	})
	if !jsz.Config.SyncAlways {
		t.Error("contrib/nats-server.conf does not make JetStream sync every write")
	}
}
