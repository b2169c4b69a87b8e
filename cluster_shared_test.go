package main

// Tests of what the nodes of a cluster share besides the room's log
// (internal/clusterstate), over real HTTP and real nats-server processes:
// presence and typing, a dead node's people, the join storm's bound, bans
// and sessions.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"chat/internal/clusterstate"
	"chat/internal/jetstream"
	"chat/internal/nats"
	"chat/internal/sse"
)

// spreadWait bounds how long a change on one node may take to show on
// another: the 2 s.
const spreadWait = 2 * time.Second

// eventLog collects a stream's events, with the time each arrived, on a
// goroutine of its own until the stream ends.
type eventLog struct {
	mu     sync.Mutex
	events []timedEvent
	ended  chan struct{}
}

// timedEvent is one event of an eventLog.
type timedEvent struct {
	at time.Time
	sse.Event
}

// logEvents starts collecting s's events.
func logEvents(s *subscriber) *eventLog {
	l := &eventLog{ended: make(chan struct{})}
	go func() {
		defer close(l.ended)
		for {
			ev, err := s.sse.NextEvent()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.events = append(l.events, timedEvent{time.Now(), ev})
			l.mu.Unlock()
		}
	}()
	return l
}

// since returns the events of type typ that arrived at or after t.
func (l *eventLog) since(t time.Time, typ string) []timedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []timedEvent
	for _, ev := range l.events {
		if !ev.at.Before(t) && ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvent waits until an event of type typ whose data contains want
// arrived at or after since, at most d after since (after now for a zero
// since), and returns how long after since it came.
func (l *eventLog) waitEvent(t *testing.T, since time.Time, d time.Duration, typ, want string) time.Duration {
	t.Helper()
	var at time.Time
	within := d
	if !since.IsZero() {
		within = time.Until(since.Add(d))
	}
	waitWithin(t, within, fmt.Sprintf("a %s event with %s", typ, want), func() bool {
		for _, ev := range l.since(since, typ) {
			if strings.Contains(string(ev.Data), want) {
				at = ev.at
				return true
			}
		}
		return false
	})
	return at.Sub(since)
}

// presenceJSON returns GET /presence of the node at base, as its bytes.
func presenceJSON(t *testing.T, base string) string {
	t.Helper()
	r := get(t, base+"/presence")
	if r.status != http.StatusOK {
		t.Fatalf("GET /presence: %d %s", r.status, r.body)
	}
	return strings.TrimSpace(string(r.body))
}

// TestClusterPresenceAcrossNodes opens named and anonymous streams on two
// nodes: GET /presence and the presence events on each node list everyone,
// each name once with its streams on both nodes, and the anonymous streams
// of both; a join or a leave on one node, and a typing notice, show on the
// other within 2 s; /stats and /metrics add the room's figures to the
// node's own.
func TestClusterPresenceAcrossNodes(t *testing.T) {
	srv := startNATS(t)
	nodes := startNodes(t, 2, []string{srv.URL()}, "-presence-interval", "1s")
	n1, n2 := nodes[0].URL, nodes[1].URL
	watch := logEvents(namedStream(t, n1, "ann"))
	namedStream(t, n1, "")
	namedStream(t, n2, "bob")
	namedStream(t, n2, "bob")
	namedStream(t, n2, "ann")
	want := `{"people":[{"name":"ann","streams":2},{"name":"bob","streams":2}],"anonymous":1,"people_total":2}`
	for _, n := range []string{n1, n2} {
		waitWithin(t, 2*spreadWait, "both nodes' people on "+n, func() bool { return presenceJSON(t, n) == want })
	}
	watch.waitEvent(t, time.Time{}, spreadWait, "presence", want)

	start := time.Now()
	cy := namedStream(t, n2, "cy")
	d := watch.waitEvent(t, start, spreadWait, "presence", `{"name":"cy","streams":1}`)
	t.Logf("a join on one node reached the other's streams in %v", d)
	if p := presenceJSON(t, n1); !strings.Contains(p, `{"name":"cy","streams":1}],"anonymous":1,"people_total":3}`) {
		t.Errorf("GET /presence after cy joined: %s", p)
	}

	start = time.Now()
	if code, _, body := postTyping(t, n2, "application/json", `{"username":"cy"}`, nil); code != http.StatusNoContent {
		t.Fatalf("POST /typing: %d %s", code, body)
	}
	d = watch.waitEvent(t, start, spreadWait, "typing", `{"typing":["cy"]}`)
	t.Logf("a typing notice on one node reached the other's streams in %v", d)

	cy.close() // node 2 notices at its next probe of the stream
	waitWithin(t, waitTimeout, "cy's leave on node 2", func() bool { return !strings.Contains(presenceJSON(t, n2), "cy") })
	start = time.Now()
	d = watch.waitEvent(t, start, spreadWait, "presence", `"people_total":2`)
	t.Logf("a leave on one node reached the other's streams in %v", d)

	st := nodes[0].stats(t)
	if st.People != 1 || st.Anonymous != 1 || st.Clients != 2 {
		t.Errorf("/stats of node 1: people %d, anonymous %d, clients %d; want its own 1, 1, 2", st.People, st.Anonymous, st.Clients)
	}
	if r := st.Room; r == nil || *r != (RoomTotals{People: 2, Anonymous: 1, Streams: 5, Nodes: 2}) {
		t.Errorf("/stats room of node 1: %+v, want 2 people, 1 anonymous, 5 streams, 2 nodes", r)
	}
	metrics := string(get(t, n1+"/metrics").body)
	for _, line := range []string{"chat_room_people 2\n", "chat_room_streams 5\n", "chat_room_anonymous_streams 1\n", "chat_room_nodes 2\n", "chat_people 1\n"} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

// TestClusterDeadNodeLeavesRoster kills (SIGKILL) a node run as the binary
// with people on it: they leave the other node's roster within 20 s, as
// its share expires, and the other node counts one node again.
func TestClusterDeadNodeLeavesRoster(t *testing.T) {
	srv := startNATS(t)
	n1 := startNodes(t, 1, []string{srv.URL()})[0]
	n2 := startChatProc(t, chatBinary(t), "-nats", srv.URL())
	namedStream(t, n2.URL, "carol")
	namedStream(t, n2.URL, "")
	namedStream(t, n1.URL, "dan")
	waitWithin(t, 2*spreadWait, "carol on node 1", func() bool { return strings.Contains(presenceJSON(t, n1.URL), "carol") })
	n2.kill(t)
	start := time.Now()
	waitWithin(t, 20*time.Second, "the dead node's people gone from node 1", func() bool {
		return presenceJSON(t, n1.URL) == `{"people":[{"name":"dan","streams":1}],"anonymous":0,"people_total":1}`
	})
	t.Logf("the dead node's people left the other roster %v after the kill", time.Since(start))
	if r := n1.stats(t).Room; r == nil || r.Nodes != 1 || r.Streams != 1 {
		t.Errorf("/stats room after the kill: %+v, want 1 node with 1 stream", r)
	}
}

// TestClusterJoinStorm opens 3 000 streams on one node as fast as it takes
// them, while a stream on the other node counts its presence events, and a
// NATS client counts the node's presence publishes: about one of each a
// second, not one per join; the last event counts everyone.
func TestClusterJoinStorm(t *testing.T) {
	const storm = 3000
	srv := startNATS(t)
	nodes := startNodes(t, 2, []string{srv.URL()}, "-presence-interval", "1s")
	watch := logEvents(namedStream(t, nodes[1].URL, "watcher"))
	watch.waitEvent(t, time.Time{}, spreadWait, "presence", `"watcher"`)
	js, err := jetstream.Connect(t.Context(), []string{srv.URL()}, nats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer js.Close()
	shares, err := js.Conn().Subscribe("$KV." + clusterstate.Bucket("CHAT", "presence") + ".>")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, storm)
	for w := range 20 {
		wg.Go(func() {
			for i := w; i < storm; i += 20 {
				s, code, err := dialStream(nodes[0].addr(), "", "")
				if err != nil || code != http.StatusOK {
					errs <- fmt.Errorf("stream %d: %d, %v", i, code, err)
					return
				}
				t.Cleanup(func() { s.conn.Close() })
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	joined := time.Since(start)
	d := watch.waitEvent(t, start, joined+2*spreadWait, "presence", fmt.Sprintf(`"anonymous":%d`, storm))
	events := watch.since(start, "presence")
	t.Logf("%d joins on one node in %v; the other node's stream had them all after %v, in %d presence events", storm, joined, d, len(events))
	if limit := int(d/time.Second) + 2; len(events) > limit {
		t.Errorf("%d presence events in %v, want at most %d (one a second)", len(events), d, limit)
	}
	perNode := map[string]int{}
	for m, ok := shares.TryNext(); ok; m, ok = shares.TryNext() {
		perNode[m.Subject]++
	}
	t.Logf("presence publishes meanwhile, by node: %v", perNode)
	for node, n := range perNode {
		if limit := int(d/time.Second) + 2; n > limit {
			t.Errorf("%s: %d publishes in %v, want at most %d (one a second)", node, n, d, limit)
		}
	}
}

// TestClusterBansWithoutNATS changes bans while NATS is down: POST and
// DELETE /bans get 503 with Retry-After and a JSON error (the change may
// not be stored; sending it again is safe), GET /bans still lists what the
// node has, and the ban it had still holds.
func TestClusterBansWithoutNATS(t *testing.T) {
	srv := startNATS(t)
	n := startNodes(t, 1, []string{srv.URL()}, "-admin-key", "boss")[0]
	if r := mustSend(t, http.DefaultClient, "POST", n.URL+"/bans", "application/json", `{"addr":"`+banAddr+`"}`, admin()); r.status != http.StatusCreated {
		t.Fatalf("POST /bans: %d %s", r.status, r.body)
	}
	srv.Stop()
	for _, r := range []reply{
		mustSend(t, http.DefaultClient, "POST", n.URL+"/bans", "application/json", `{"addr":"192.0.2.1"}`, admin()),
		mustSend(t, http.DefaultClient, "DELETE", n.URL+"/bans/"+banAddr, "", "", admin()),
	} {
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "2" || !strings.Contains(r.errorText(), "shared ban list cannot be reached") {
			t.Errorf("ban change with NATS down: %d %q %s, want 503 with Retry-After 2", r.status, r.header.Get("Retry-After"), r.body)
		}
	}
	if r := mustSend(t, http.DefaultClient, "GET", n.URL+"/bans", "", "", admin()); r.status != http.StatusOK || !strings.Contains(string(r.body), banAddr) || strings.Contains(string(r.body), "192.0.2.1") {
		t.Errorf("GET /bans with NATS down: %d %s", r.status, r.body)
	}
	if r := postMsg(t, clientFrom(t, banAddr), n.URL, "mallory", "x", nil); r.status != http.StatusForbidden {
		t.Errorf("post from the banned address with NATS down: %d, want 403", r.status)
	}
}

// banAddr is the client address the ban tests ban.
const banAddr = "127.0.0.2"

// TestClusterBanAcrossNodes bans an address on one node: within 2 s the
// other node has closed that address's open stream and refuses its posts,
// and both list the same bans; lifted on the other node, the first node
// takes its posts again within 2 s.
func TestClusterBanAcrossNodes(t *testing.T) {
	srv := startNATS(t)
	nodes := startNodes(t, 2, []string{srv.URL()}, "-admin-key", "boss")
	n1, n2 := nodes[0].URL, nodes[1].URL
	bad := clientFrom(t, banAddr)
	stream := subscribeOpts(t, n2, streamOpts{client: bad})
	ended := make(chan time.Time, 1)
	go func() {
		_, _ = io.Copy(io.Discard, stream.resp.Body)
		ended <- time.Now()
	}()
	if r := postMsg(t, bad, n2, "mallory", "before", nil); r.status != http.StatusCreated {
		t.Fatalf("post before the ban: %d %s", r.status, r.body)
	}

	start := time.Now()
	r := mustSend(t, http.DefaultClient, "POST", n1+"/bans", "application/json", `{"addr":"`+banAddr+`","for":"1h"}`, admin())
	var b banJSON
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &b) != nil || b.StreamsClosed == nil || *b.StreamsClosed != 0 {
		t.Fatalf("POST /bans on node 1: %d %s, want 201 closing none of node 1's streams", r.status, r.body)
	}
	select {
	case at := <-ended:
		t.Logf("node 2 closed the banned stream %v after the ban on node 1", at.Sub(start))
		if at.Sub(start) > spreadWait {
			t.Errorf("the stream closed %v after the ban, want within %v", at.Sub(start), spreadWait)
		}
	case <-time.After(waitTimeout):
		t.Fatal("node 2 did not close the banned address's stream")
	}
	if r := postMsg(t, bad, n2, "mallory", "after", nil); r.status != http.StatusForbidden {
		t.Errorf("post on node 2 after the ban on node 1: %d %s, want 403", r.status, r.body)
	}
	lists := func() [2]string {
		var out [2]string
		for i, n := range []string{n1, n2} {
			out[i] = string(mustSend(t, http.DefaultClient, "GET", n+"/bans", "", "", admin()).body)
		}
		return out
	}
	if l := lists(); l[0] != l[1] || !strings.Contains(l[0], `"addr":"`+banAddr+`"`) {
		t.Errorf("GET /bans: node 1 %s, node 2 %s", l[0], l[1])
	}

	start = time.Now()
	if r := mustSend(t, http.DefaultClient, "DELETE", n2+"/bans/"+banAddr, "", "", admin()); r.status != http.StatusNoContent {
		t.Fatalf("DELETE /bans on node 2: %d %s", r.status, r.body)
	}
	waitWithin(t, spreadWait, "node 1 taking the unbanned address's posts", func() bool {
		return postMsg(t, bad, n1, "mallory", "lifted", nil).status == http.StatusCreated
	})
	t.Logf("an unban on node 2 reached node 1 in %v", time.Since(start))
	if l := lists(); l[0] != l[1] || l[0] != "{\"bans\":[]}\n" {
		t.Errorf("GET /bans after the unban: node 1 %s, node 2 %s", l[0], l[1])
	}
}

// TestClusterBansSurviveRestart bans on two nodes, stops every node and
// restarts the NATS server: a node started afterwards has the same bans,
// in the same order, and enforces them.
func TestClusterBansSurviveRestart(t *testing.T) {
	srv := startNATS(t)
	nodes := startNodes(t, 2, []string{srv.URL()}, "-admin-key", "boss")
	for i, body := range []string{`{"addr":"` + banAddr + `","for":"1h"}`, `{"addr":"10.0.0.0/8"}`} {
		if r := mustSend(t, http.DefaultClient, "POST", nodes[i].URL+"/bans", "application/json", body, admin()); r.status != http.StatusCreated {
			t.Fatalf("POST /bans %s: %d %s", body, r.status, r.body)
		}
	}
	before := string(mustSend(t, http.DefaultClient, "GET", nodes[0].URL+"/bans", "", "", admin()).body)
	for _, n := range nodes {
		n.stop(t)
	}
	srv.Restart()
	n := startNodes(t, 1, []string{srv.URL()}, "-admin-key", "boss")[0]
	if after := string(mustSend(t, http.DefaultClient, "GET", n.URL+"/bans", "", "", admin()).body); after != before {
		t.Errorf("GET /bans after a full restart: %s, want %s", after, before)
	}
	if r := postMsg(t, clientFrom(t, banAddr), n.URL, "mallory", "back", nil); r.status != http.StatusForbidden {
		t.Errorf("post from a banned address after a full restart: %d, want 403", r.status)
	}
}

// TestClusterSessions logs in on one node and uses the session on another;
// then restarts both nodes with another room key (every session ends on
// both, a new login works on both), and again with the first key (the
// first key's sessions stay ended).
func TestClusterSessions(t *testing.T) {
	srv := startNATS(t)
	urls := []string{srv.URL()}
	nodes := startNodes(t, 2, urls, "-room-key", "key-one")
	first := sessionCookie(t, login(t, http.DefaultClient, nodes[0].URL, "key-one")).Value
	if r := mustSend(t, http.DefaultClient, "GET", nodes[1].URL+"/history", "", "", withCookie(first)); r.status != http.StatusOK {
		t.Fatalf("node 1's session on node 2: %d %s", r.status, r.body)
	}
	check401(t, "node 2 without a session", mustSend(t, http.DefaultClient, "GET", nodes[1].URL+"/history", "", "", nil))

	restart := func(key string) []*testServer {
		for _, n := range nodes {
			n.stop(t)
		}
		nodes = startNodes(t, 2, urls, "-room-key", key)
		return nodes
	}
	restart("key-two")
	for i, n := range nodes {
		check401(t, fmt.Sprintf("the first key's session on node %d after the key changed", i+1),
			mustSend(t, http.DefaultClient, "GET", n.URL+"/history", "", "", withCookie(first)))
	}
	second := sessionCookie(t, login(t, http.DefaultClient, nodes[1].URL, "key-two")).Value
	if r := mustSend(t, http.DefaultClient, "GET", nodes[0].URL+"/history", "", "", withCookie(second)); r.status != http.StatusOK {
		t.Errorf("node 2's session on node 1 after the key changed: %d %s", r.status, r.body)
	}
	restart("key-one")
	for i, n := range nodes {
		for _, c := range []string{first, second} {
			check401(t, fmt.Sprintf("an old session on node %d with the first key back", i+1),
				mustSend(t, http.DefaultClient, "GET", n.URL+"/history", "", "", withCookie(c)))
		}
	}
	if !slices.ContainsFunc(nodes, func(n *testServer) bool {
		return n.logs.count("every session has ended") > 0
	}) {
		t.Error("no node logged that the key change ended every session")
	}
}

// TestClusterNamesAcrossNodes runs two nodes with no identity secret file:
// an identity one node made is known on the other, a name held through one
// node is refused on the other to another identity and to a request with
// none (409 with the name, any case or look-alike), its holder uses it on
// either, both list it, and a moderator's free on one node lets another
// identity take it on the other within 2 s. Two identities that take one
// new name at once on the two nodes: one gets it, the other 409.
func TestClusterNamesAcrossNodes(t *testing.T) {
	srv := startNATS(t)
	nodes := startNodes(t, 2, []string{srv.URL()}, "-admin-key", "boss")
	n1, n2 := nodes[0].URL, nodes[1].URL
	pat, quinn := identityClient(t, n1), identityClient(t, n2)
	streamAs(t, pat, n1, "Alice")
	for _, tt := range []struct {
		what string
		r    reply
	}{
		{"another identity's post", postMsg(t, quinn, n2, "alice", "me too", nil)},
		{"another identity's typing", typingAs(t, quinn, n2, "ＡＬＩＣＥ")},
		{"a post without identity", postMsg(t, http.DefaultClient, n2, "ALICE", "me too", nil)},
	} {
		var e errorBody
		if tt.r.status != http.StatusConflict || json.Unmarshal(tt.r.body, &e) != nil || e.Name == "" {
			t.Errorf("%s on node 2 while pat's stream on node 1 holds Alice: %d %s, want 409 with the name", tt.what, tt.r.status, tt.r.body)
		}
	}
	if _, err := openStream(n2, streamOpts{client: quinn, query: "?name=alice"}); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("another identity's stream on node 2: %v, want 409", err)
	}
	postedBy(t, pat, n2, "alice", "pat on node 2")
	for _, n := range []string{n1, n2} {
		waitWithin(t, spreadWait, "alice in GET /names on "+n, func() bool {
			return strings.Contains(string(mustSend(t, http.DefaultClient, "GET", n+"/names", "", "", admin()).body), `"skeleton":"alice"`)
		})
	}
	if r := mustSend(t, http.DefaultClient, "DELETE", n2+"/names/alice", "", "", admin()); r.status != http.StatusOK {
		t.Fatalf("DELETE /names/alice on node 2: %d %s", r.status, r.body)
	}
	start := time.Now()
	waitWithin(t, spreadWait, "quinn taking alice on node 1 after the free on node 2", func() bool {
		return postMsg(t, quinn, n1, "alice", "mine now", nil).status == http.StatusCreated
	})
	t.Logf("a free on node 2 let another identity take the name on node 1 after %v", time.Since(start))

	for i := range 10 {
		name := fmt.Sprintf("race%d", i)
		var got [2]int
		var wg sync.WaitGroup
		for j, c := range []struct {
			client *http.Client
			base   string
		}{{pat, n1}, {quinn, n2}} {
			wg.Go(func() { got[j] = postMsg(t, c.client, c.base, name, "first!", nil).status })
		}
		wg.Wait()
		if slices.Sort(got[:]); got != [2]int{http.StatusCreated, http.StatusConflict} {
			t.Errorf("%s taken at once on both nodes: %v, want one 201 and one 409", name, got)
		}
	}
}
