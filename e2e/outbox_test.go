package e2e

// Browser tests of the outbox (messages sent exactly once through network
// loss, lost answers, reloads and closed tabs) and of scrollback through
// GET /history.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// outItem is one message shown in a tab's outbox.
type outItem struct {
	Key     string `json:"key"`
	Name    string `json:"name"`
	Content string `json:"content"`
	State   string `json:"state"`
	Failed  bool   `json:"failed"`
}

const outboxJS = `[...document.querySelectorAll('#outbox .out')].map((el) => ({
  key: el.dataset.key || '', name: el.querySelector('.name').textContent,
  content: el.querySelector('.content').textContent,
  state: el.querySelector('.out-state').textContent, failed: el.classList.contains('failed'),
}))`

// outbox returns what the tab's outbox shows.
func (tb *tab) outbox() []outItem {
	tb.t.Helper()
	return mustEval[[]outItem](tb, outboxJS)
}

// offline emulates a lost network in the tab: with all true every request
// fails and navigator.onLine is false; with only set, only requests whose
// URL matches one of those URLPatterns fail (so the page can still be
// reloaded); with neither (or only ""), the network is back.
func offline(all bool, only ...string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		rules := []*network.Conditions{}
		if all {
			rules = append(rules, &network.Conditions{Offline: true, DownloadThroughput: -1, UploadThroughput: -1})
		}
		for _, p := range only {
			if !all && p != "" {
				rules = append(rules, &network.Conditions{URLPattern: p, Offline: true, DownloadThroughput: -1, UploadThroughput: -1})
			}
		}
		if _, err := cdp.Call(ctx, tg, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{MatchedNetworkConditions: rules}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: all, DownloadThroughput: -1, UploadThroughput: -1})
		return err
	})
}

// historyAll returns every message GET /history holds, oldest first.
func historyAll(t *testing.T, base string) []message {
	t.Helper()
	var all []message
	before := ""
	for range 1000 {
		q := "?limit=200"
		if before != "" {
			q += "&before=" + url.QueryEscape(before)
		}
		res, err := http.Get(base + "/history" + q)
		if err != nil {
			t.Fatalf("GET /history: %v", err)
		}
		var page struct {
			Messages []message `json:"messages"`
			More     bool      `json:"more"`
		}
		err = json.NewDecoder(res.Body).Decode(&page)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("GET /history%s: %s %v", q, res.Status, err)
		}
		all = append(page.Messages, all...)
		if !page.More || len(page.Messages) == 0 {
			return all
		}
		before = page.Messages[0].ID
	}
	t.Fatal("history does not end")
	return nil
}

// countContent returns how many of msgs say content.
func countContent[M shownMsg | message](msgs []M, content string) int {
	n := 0
	for _, m := range msgs {
		switch m := any(m).(type) {
		case shownMsg:
			if m.Content == content {
				n++
			}
		case message:
			if m.Content == content {
				n++
			}
		}
	}
	return n
}

// waitShownOnce waits until every tab shows content exactly once, as a
// message (not in the outbox), and its outbox is empty.
func waitShownOnce(t *testing.T, tabs []*tab, content string) {
	t.Helper()
	waitFor(t, longWait, fmt.Sprintf("%q shown once in %d tabs, outboxes empty", content, len(tabs)), func() (bool, string) {
		for _, tb := range tabs {
			st, err := tb.state()
			if err != nil {
				return false, tb.name + ": " + err.Error()
			}
			out, err := eval[[]outItem](tb, outboxJS)
			if err != nil {
				return false, tb.name + ": " + err.Error()
			}
			if n := countContent(st.Msgs, content); n != 1 || len(out) != 0 {
				return false, fmt.Sprintf("%s shows it %d times, outbox %+v", tb.name, n, out)
			}
		}
		return true, ""
	})
}

// A message typed while the browser is offline is shown as sending, stays
// in the outbox across reloads and a closed tab, and once the network is
// back appears exactly once in every tab and once on the server.
func TestOutboxOffline(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 2)
	waitAllLive(t, tabs)
	for _, tb := range tabs {
		tb.do(offline(true, ""))
	}
	const text = "written while offline"
	tabs[1].do(sendFromUI("olga", text))
	waitFor(t, shortWait, "the message shown as sending in both tabs", func() (bool, string) {
		for _, tb := range tabs {
			out := tb.outbox()
			if len(out) != 1 || out[0].Content != text || out[0].Failed || !strings.HasPrefix(strings.ToLower(out[0].State), "sending") {
				return false, fmt.Sprintf("%s outbox %+v", tb.name, out)
			}
		}
		return true, ""
	})
	if st := tabs[1].mustState(); st.Message != "" || countContent(st.Msgs, text) != 0 {
		t.Errorf("after Send offline: textarea %q, shown as sent %d times", st.Message, countContent(st.Msgs, text))
	}

	// Reload both tabs with posts still failing (the page itself loads).
	posts := "http://" + srv.addr + "/post"
	for _, tb := range tabs {
		tb.do(offline(false, posts))
		tb.do(chromedp.Reload())
		tb.do(offline(false, posts)) // the rules belong to the tab, set them again for the new page
	}
	waitFor(t, longWait, "the message still in the outbox after reloads", func() (bool, string) {
		for _, tb := range tabs {
			if out := tb.outbox(); len(out) != 1 || out[0].Content != text {
				return false, fmt.Sprintf("%s outbox %+v", tb.name, out)
			}
		}
		return true, ""
	})
	if got := countContent(historyAll(t, srv.URL()), text); got != 0 {
		t.Fatalf("the server has the message %d times while posts fail", got)
	}

	// Close the tab it was written in; a new one joins; the network comes back.
	tabs[1].close()
	rest := []*tab{tabs[0], br.open(t, "tab02", srv.URL()+"/")}
	rest[1].do(offline(false, posts))
	for _, tb := range rest {
		tb.do(offline(false, ""))
	}
	waitShownOnce(t, rest, text)
	if got := countContent(historyAll(t, srv.URL()), text); got != 1 {
		t.Errorf("the server holds the message %d times, want once", got)
	}
	noDuplicates(t, rest...)
	checkClean(t, rest...)
}

// dropFirstAnswer is a test-only proxy in front of the server: it passes
// everything through, except that it forwards the first POST /post to the
// server and then closes the browser's connection without the answer, as a
// network that fails on the way back would. Every response closes its
// connection, so the browser never silently resends a request on a reused
// one: a second POST is the page's own retry.
type dropFirstAnswer struct {
	target *url.URL
	rp     *httputil.ReverseProxy
	mu     sync.Mutex
	posts  []string // the Idempotency-Key of each POST /post seen
	first  []byte   // the server's answer to the first, which the browser never got
}

func (d *dropFirstAnswer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	if r.Method != http.MethodPost || r.URL.Path != "/post" {
		d.rp.ServeHTTP(w, r)
		return
	}
	d.mu.Lock()
	d.posts = append(d.posts, r.Header.Get("Idempotency-Key"))
	n := len(d.posts)
	d.mu.Unlock()
	if n > 1 {
		d.rp.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	req, _ := http.NewRequest(http.MethodPost, d.target.String()+"/post", bytes.NewReader(body))
	req.Header = r.Header.Clone()
	res, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		d.mu.Lock()
		d.first = b
		d.mu.Unlock()
	}
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.(*net.TCPConn).SetLinger(0) // a reset, not a clean end
		conn.Close()
	}
}

// When the server stores a message but its answer is lost, the outbox
// retries with the same key and the message is shown, and stored, once.
func TestOutboxLostAnswer(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	target, _ := url.Parse(srv.URL())
	proxy := &dropFirstAnswer{target: target, rp: httputil.NewSingleHostReverseProxy(target)}
	proxy.rp.FlushInterval = -1 // streams pass at once
	ps := httptest.NewServer(proxy)
	t.Cleanup(ps.Close)

	br := newBrowser(t)
	tb := br.open(t, "lost", ps.URL+"/")
	waitAllLive(t, []*tab{tb})
	const text = "stored, but the answer was lost"
	tb.do(sendFromUI("lars", text))
	waitShownOnce(t, []*tab{tb}, text)

	proxy.mu.Lock()
	posts, first := append([]string(nil), proxy.posts...), proxy.first
	proxy.mu.Unlock()
	if len(posts) != 2 || posts[0] == "" || posts[0] != posts[1] {
		t.Errorf("POSTs seen with keys %q, want the first and one retry with the same key", posts)
	}
	var stored message
	if err := json.Unmarshal(first, &stored); err != nil || stored.Content != text {
		t.Fatalf("the server's first answer %q: %v", first, err)
	}
	st := tb.mustState()
	for _, m := range st.Msgs {
		if m.Content == text && m.ID != stored.ID {
			t.Errorf("the page shows the message as %s, the server stored it as %s", m.ID, stored.ID)
		}
	}
	if got := countContent(historyAll(t, srv.URL()), text); got != 1 {
		t.Errorf("the server holds the message %d times, want once", got)
	}
	checkClean(t, tb)
}

// Scrolling to the top loads earlier messages from GET /history, page by
// page, keeping the reader's place, until "Start of the conversation": 520
// messages, each once, in order.
func TestScrollbackToStart(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	const total = 520
	var want []message
	client := &http.Client{}
	for i := range total {
		body, _ := json.Marshal(map[string]string{"username": fmt.Sprint("user", i%5), "content": fmt.Sprintf("scrollback %03d", i)})
		res, err := client.Post(srv.URL()+"/post", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, decodePosted(t, res))
	}
	br := newBrowser(t)
	tb := br.open(t, "scroll", srv.URL()+"/", chromedp.EmulateViewport(900, 600))
	waitAllLive(t, []*tab{tb})
	waitShown(t, shortWait, []*tab{tb}, want[total-50:])
	if start := mustEval[bool](tb, `!document.getElementById('start').hidden`); start {
		t.Fatal("'Start of the conversation' shown with 470 messages still to load")
	}

	// firstTop is the id of the oldest message shown and its offset from the
	// top of the log's viewport.
	type firstTop struct {
		ID  string  `json:"id"`
		Top float64 `json:"top"`
		N   int     `json:"n"`
	}
	const firstJS = `(() => { const l = document.getElementById('log'), m = l.querySelector('.msg');
	  return { id: m.dataset.id, top: m.getBoundingClientRect().top - l.getBoundingClientRect().top, n: l.querySelectorAll('.msg').length }; })()`
	for pages := 0; ; pages++ {
		if pages > 30 {
			t.Fatal("scrollback does not reach the start")
		}
		if mustEval[bool](tb, `!document.getElementById('start').hidden`) {
			break
		}
		mustEval[chromedp.Void](tb, `document.getElementById('log').scrollTop = 0`)
		before := mustEval[firstTop](tb, firstJS)
		var after firstTop
		waitFor(t, shortWait, "earlier messages after scrolling to the top", func() (bool, string) {
			after = mustEval[firstTop](tb, firstJS)
			return after.N > before.N, fmt.Sprintf("%d messages", after.N)
		})
		// The message that was first stays where the reader saw it.
		mustEval[chromedp.Void](tb, `new Promise((r) => requestAnimationFrame(() => r()))`)
		was := mustEval[float64](tb, fmt.Sprintf(`(() => { const l = document.getElementById('log'), m = l.querySelector('[data-id=%q]');
		  return m.getBoundingClientRect().top - l.getBoundingClientRect().top; })()`, before.ID))
		if math.Abs(was-before.Top) > 4 {
			t.Errorf("page %d: message %s moved from %.0f px to %.0f px when earlier ones loaded", pages, before.ID, before.Top, was)
		}
	}
	waitShown(t, shortWait, []*tab{tb}, want)
	noDuplicates(t, tb)
	if mustEval[bool](tb, `!document.getElementById('earlier').hidden`) {
		t.Error("'Load earlier messages' still offered at the start")
	}
	// New messages still arrive at the bottom.
	want = append(want, srv.post(t, "late", "after the scrollback"))
	waitShown(t, shortWait, []*tab{tb}, want)
	checkClean(t, tb)
}
