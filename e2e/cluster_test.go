package e2e

// Browser tests of a room of several nodes (cluster mode, one NATS
// server) behind nginx, configured as shipped (internal/nginxtest).

import (
	"fmt"
	"strings"
	"testing"

	"chat/internal/natstest"
	"chat/internal/nginxtest"
)

// A room of two nodes behind nginx: a page whose node is killed (SIGKILL)
// reconnects through nginx to the other node and shows every message once,
// in the room's order: those from before, one posted on the other node
// while its own was down, one typed in the page meanwhile (the outbox sends
// it once: nginx passes it to the live node), and one after.
func TestNodeKilledBehindNginx(t *testing.T) {
	needBrowser(t)
	ns := natstest.Start(t, natstest.Options{})
	nodes := []*server{
		startServer(t, "-nats", ns.URL(), "-trusted-proxies", "127.0.0.1"),
		startServer(t, "-nats", ns.URL(), "-trusted-proxies", "127.0.0.1"),
	}
	front := nginxtest.Start(t, nodes[0].addr, nodes[1].addr)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx access log:\n%s\nerror log:\n%s", strings.Join(front.AccessLog(), "\n"), front.ErrorLog())
		}
	})
	br := newBrowser(t)
	tb := br.open(t, "page", front.URL()+"/")
	waitAllLive(t, []*tab{tb})
	want := []message{nodes[0].post(t, "ann", "first, on one node"), nodes[1].post(t, "bob", "second, on the other")}
	waitShown(t, longWait, []*tab{tb}, want)

	// Kill the node that holds the page's stream.
	var on, other *server
	waitFor(t, shortWait, "the page's stream on one of the nodes", func() (bool, string) {
		a, errA := nodes[0].clients(t)
		b, errB := nodes[1].clients(t)
		if errA != nil || errB != nil || a+b != 1 {
			return false, fmt.Sprintf("streams %d (%v) and %d (%v)", a, errA, b, errB)
		}
		on, other = nodes[0], nodes[1]
		if b == 1 {
			on, other = nodes[1], nodes[0]
		}
		return true, ""
	})
	on.kill()

	want = append(want, other.post(t, "cy", "while the page's node is down"))
	const typed = "typed while the page's node is down"
	tb.do(sendFromUI("dee", typed))
	waitShownOnce(t, []*tab{tb}, typed)
	waitFor(t, longWait, "the page live again, on the other node", func() (bool, string) {
		st, err := tb.state()
		if err != nil {
			return false, err.Error()
		}
		n, err := other.clients(t)
		return st.State == "live" && n == 1 && err == nil, fmt.Sprintf("page %s, streams on the other node %d (%v)", st.State, n, err)
	})
	want = append(want, other.post(t, "eve", "after the page reconnected"))

	// The page shows the room as the live node holds it: each message once.
	hist := historyAll(t, other.URL())
	if n := countContent(hist, typed); n != 1 {
		t.Fatalf("the room holds the message typed in the page %d times, want once", n)
	}
	var rest []message
	for _, m := range hist {
		if m.Content != typed {
			rest = append(rest, m)
		}
	}
	if d := diffShown(asShown(rest), want); d != "" {
		t.Fatalf("the room's history apart from the typed message: %s", d)
	}
	waitShown(t, longWait, []*tab{tb}, hist)
	noDuplicates(t, tb)
	checkClean(t, tb)

	// The page sent its message once: nginx gave it to the live node.
	var posts []string
	for _, l := range front.AccessLogAtLeast(1) {
		if strings.HasPrefix(l, "POST /post ") {
			posts = append(posts, l)
		}
	}
	if len(posts) != 1 || !strings.HasPrefix(posts[0], "POST /post 201 ") {
		t.Errorf("POST /post through nginx: %q, want one, answered 201", posts)
	}
}

// asShown turns messages into what a page shows of them.
func asShown(msgs []message) []shownMsg {
	out := make([]shownMsg, len(msgs))
	for i, m := range msgs {
		out[i] = shownMsg{ID: m.ID, Name: m.Username, Content: m.Content}
	}
	return out
}
