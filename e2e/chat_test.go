package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Twenty tabs of one browser: one leader holds the only stream, every tab
// sends, and every tab shows the same twenty messages in the same order.
func TestTwentyTabsShareOneStream(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 20)
	waitAllLive(t, tabs)

	// All tabs send at once.
	var wg sync.WaitGroup
	errs := make(chan error, len(tabs))
	for i, tb := range tabs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tb.try(sendFromUI(fmt.Sprintf("user%02d", i), fmt.Sprintf("hello from tab %02d", i))); err != nil {
				errs <- fmt.Errorf("%s: send: %w", tb.name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// The first tab must show exactly the twenty messages, in id order.
	var want []message
	waitFor(t, longWait, "tab00 to show 20 messages", func() (bool, string) {
		st, err := tabs[0].state()
		if err != nil {
			return false, err.Error()
		}
		want = want[:0]
		for _, m := range st.Msgs {
			want = append(want, message{ID: m.ID, Username: m.Name, Content: m.Content})
		}
		return len(st.Msgs) == 20, names(st.Msgs)
	})
	seen := map[string]bool{}
	for i, m := range want {
		var n int
		if _, err := fmt.Sscanf(m.Content, "hello from tab %02d", &n); err != nil || m.Username != fmt.Sprintf("user%02d", n) {
			t.Errorf("unexpected message %+v", m)
		}
		if seen[m.Content] {
			t.Errorf("message %q shown twice", m.Content)
		}
		seen[m.Content] = true
		if i > 0 && !idLess(t, want[i-1].ID, m.ID) {
			t.Errorf("messages out of order: %s before %s", want[i-1].ID, m.ID)
		}
	}
	// Every tab: the same list, every message marked as its own (this
	// browser sent them all: own messages are known by the ids the posts
	// got back, shared by the browser's tabs), the form cleared.
	waitShown(t, longWait, tabs, want)
	for _, tb := range tabs {
		waitFor(t, shortWait, tb.name+" to mark every message its own", func() (bool, string) {
			st := tb.mustState()
			for _, m := range st.Msgs {
				if !m.Own {
					return false, "message of " + m.Name + " not marked own"
				}
			}
			return true, ""
		})
		st := tb.mustState()
		if st.Message != "" || st.Error != "" || !st.SendOff {
			t.Errorf("%s: after sending: textarea %q, error %q, send disabled %v", tb.name, st.Message, st.Error, st.SendOff)
		}
	}

	// Only the leader reads /stream, and no tab polls /stats: the count
	// comes with the stream's presence events.
	for _, tb := range tabs {
		st := tb.mustState()
		n := mustEval[int](tb, `performance.getEntriesByType('resource').filter((e) => /\/stream\b/.test(e.name)).length`)
		if st.Role == "follower" && n != 0 {
			t.Errorf("%s is a follower but made %d requests to /stream", tb.name, n)
		}
		if n := mustEval[int](tb, `performance.getEntriesByType('resource').filter((e) => /\/stats\b/.test(e.name)).length`); n != 0 {
			t.Errorf("%s made %d requests to /stats", tb.name, n)
		}
	}

	// One stream for the whole browser, and every tab shows the count.
	waitFor(t, shortWait, "the server to count exactly one stream", func() (bool, string) {
		n, err := srv.clients(t)
		return err == nil && n == 1, fmt.Sprintf("clients=%d err=%v", n, err)
	})
	// The browser's one stream carries one name (the last one entered in
	// any of its tabs), so the room has one person in it.
	waitFor(t, longWait, "every tab to show \"1 person\"", func() (bool, string) {
		for _, tb := range tabs {
			if st := tb.mustState(); st.Online != "1 person" {
				return false, tb.name + ": " + st.Online
			}
		}
		return true, ""
	})
	checkClean(t, tabs...)
}

// A message posted over plain HTTP, as curl does (JSON and form-encoded),
// reaches every tab.
func TestHTTPPostReachesEveryTab(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 5)
	waitAllLive(t, tabs)
	m1 := srv.post(t, "curl", "posted as JSON")
	m2 := srv.postForm(t, "curl", "posted as a form")
	waitShown(t, shortWait, tabs, []message{m1, m2})
	checkClean(t, tabs...)
}

// Markup, scripts and bidi controls in names and messages are shown as
// literal text, run nothing and restyle nothing.
func TestHostileContentIsShownAsText(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 2) // a leader and a follower (relayed path)
	waitAllLive(t, tabs)

	var want []message
	for _, p := range []struct{ name, content string }{
		{`<img src=x onerror=__xss=1>`, `<img src=x onerror="window.__xss=2">`},
		{`<script>__xss=3</script>`, "<script>window.__xss=4</script><b>bold?</b>\n<a href=\"javascript:__xss=5\">link</a>"},
		// Names may not hold bidi controls (the server refuses them);
		// messages may.
		{"evil", "\u202Egnp.exe\u202C then \u2067isolate \u202D<style>body{display:none}</style>"},
		{"plain", "after the payloads"},
	} {
		want = append(want, srv.post(t, p.name, p.content))
	}
	waitShown(t, shortWait, tabs, want)

	// The same from the form of the follower.
	tabs[1].do(sendFromUI(`<i>me</i>`, `<svg onload="__xss=6"></svg>`+"\u202E"))
	waitFor(t, shortWait, "the typed payload in both tabs", func() (bool, string) {
		for _, tb := range tabs {
			st := tb.mustState()
			if len(st.Msgs) != len(want)+1 {
				return false, tb.name + ": " + names(st.Msgs)
			}
			last := st.Msgs[len(st.Msgs)-1]
			if last.Name != `<i>me</i>` || last.Content != `<svg onload="__xss=6"></svg>`+"\u202E" {
				return false, fmt.Sprintf("%s: last is %+v", tb.name, last)
			}
		}
		return true, ""
	})
	noDuplicates(t, tabs...)

	for _, tb := range tabs {
		if n := mustEval[int](tb, `document.querySelectorAll('#log img, #log script, #log style, #log b, #log a, #log i, #log svg').length`); n != 0 {
			t.Errorf("%s: %d elements made from message text", tb.name, n)
		}
		if ran := mustEval[bool](tb, `typeof window.__xss !== 'undefined'`); ran {
			t.Errorf("%s: a payload ran (window.__xss is set)", tb.name)
		}
		if d := mustEval[string](tb, `getComputedStyle(document.body).display + '/' + getComputedStyle(document.getElementById('log')).display`); d != "block/flex" {
			t.Errorf("%s: page restyled: body/log display %s", tb.name, d)
		}
		// Each name and each content is isolated, so an override cannot
		// run into the text around it.
		bidi := mustEval[[]string](tb, `[...document.querySelectorAll('#log .name, #log .content')].map((e) => e.tagName === 'BDI' ? 'isolate' : getComputedStyle(e).unicodeBidi)`)
		for _, b := range bidi {
			if b != "isolate" && b != "plaintext" && b != "isolate-override" {
				t.Errorf("%s: a name or content has unicode-bidi %q, not isolated", tb.name, b)
			}
		}
		// In every message, the time stays after the name (left to right)
		// despite the overrides.
		order := mustEval[[]bool](tb, `[...document.querySelectorAll('#log .msg')].map((m) => m.querySelector('.name').getBoundingClientRect().right <= m.querySelector('time').getBoundingClientRect().left + 0.5)`)
		for i, ok := range order {
			if !ok {
				t.Errorf("%s: message %d: time not after the name", tb.name, i)
			}
		}
		if h := mustEval[string](tb, `document.querySelector('h1').textContent + '|' + document.title`); h != "Chat|Chat" {
			t.Errorf("%s: heading/title changed: %q", tb.name, h)
		}
	}
	checkClean(t, tabs...)
}

// Emoji, right-to-left text, tabs and line breaks arrive intact, typed or
// posted, and render on several lines.
func TestUnicodeAndMultilineIntact(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 2)
	waitAllLive(t, tabs)

	// Typed: Shift+Enter makes new lines, Enter sends.
	tabs[0].do(
		setField("#name", "Zoë 🦊"),
		setField("#message", "first line"),
		enter(true),
		typeText("#message", "  second line, indented"),
		enter(true),
		enter(true),
		typeText("#message", "after an empty line\tand a tab 👍🏽"),
		enter(false),
	)
	typed := "first line\n  second line, indented\n\nafter an empty line\tand a tab 👍🏽"
	var got shownMsg
	waitFor(t, shortWait, "the typed message", func() (bool, string) {
		st := tabs[0].mustState()
		if len(st.Msgs) != 1 {
			return false, names(st.Msgs)
		}
		got = st.Msgs[0]
		return true, ""
	})
	if got.Name != "Zoë 🦊" || got.Content != typed {
		t.Fatalf("typed message shown as %q: %q, want %q: %q", got.Name, got.Content, "Zoë 🦊", typed)
	}
	want := []message{{ID: got.ID, Username: got.Name, Content: got.Content}}
	for _, p := range []struct{ name, content string }{
		{"emoji", "👋🏽 hello 🇺🇦 👨‍👩‍👧‍👦 ✨ café naïve"},
		{"דנה", "שלום עולם! מה שלומך?"},
		{"سارة", "مرحبا بالعالم 123"},
		{"mixed", "hello עולם world (123) مرحبا"},
		{"lines", "line one\nline two\n\n\tline four, after a tab"},
		{"long", strings.Repeat("a", 600) + " https://example.com/" + strings.Repeat("x/", 200)},
	} {
		want = append(want, srv.post(t, p.name, p.content))
	}
	waitShown(t, shortWait, tabs, want)

	for _, tb := range tabs {
		// Line breaks kept: the 4-line messages take at least 4 lines.
		lines := mustEval[[]float64](tb, `[...document.querySelectorAll('#log .content')].map((e) => e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight))`)
		if lines[0] < 3.9 || lines[5] < 3.9 {
			t.Errorf("%s: multi-line messages take %.1f and %.1f lines, want >= 4", tb.name, lines[0], lines[5])
		}
		if ws := mustEval[string](tb, `getComputedStyle(document.querySelector('#log .content')).whiteSpace`); ws != "pre-wrap" {
			t.Errorf("%s: content white-space %q, want pre-wrap", tb.name, ws)
		}
		// Right-to-left text is laid out right to left.
		dirs := mustEval[[]bool](tb, `[...document.querySelectorAll('#log .content')].map((e) => e.matches(':dir(rtl)'))`)
		if !dirs[2] || !dirs[3] || dirs[1] || dirs[4] {
			t.Errorf("%s: content directions rtl=%v, want the Hebrew and Arabic ones only", tb.name, dirs)
		}
		// Long words wrap: nothing is wider than the log.
		if over := mustEval[bool](tb, `(() => { const l = document.getElementById('log'); return l.scrollWidth > l.clientWidth || [...l.querySelectorAll('.msg')].some((m) => m.getBoundingClientRect().right > l.getBoundingClientRect().right + 0.5); })()`); over {
			t.Errorf("%s: a long word makes the log overflow sideways", tb.name)
		}
	}
	checkClean(t, tabs...)
}

// The server dies and comes back on the same port with an empty history:
// every tab reconnects by itself, says that messages may be missing, and
// shows what is posted after the restart, once, after the older messages.
func TestServerRestartRecovery(t *testing.T) {
	needBrowser(t)
	srv := startServer(t, "-backlog", "1")
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 3)
	waitAllLive(t, tabs)

	before := []message{srv.post(t, "alice", "before the restart"), srv.post(t, "bob", "also before")}
	waitShown(t, shortWait, tabs, before)
	for _, tb := range tabs {
		mustEval[bool](tb, `window.__sameDocument = true`)
		if st := tb.mustState(); st.Notice {
			t.Fatalf("%s: reset notice shown before any reset", tb.name)
		}
	}

	srv.kill()
	waitFor(t, shortWait, "every tab to notice the server is gone", func() (bool, string) {
		for _, tb := range tabs {
			if st := tb.mustState(); st.State == "live" {
				return false, tb.name + " still live"
			}
		}
		return true, ""
	})
	srv.start()
	waitAllLive(t, tabs)

	after := srv.post(t, "carol", "after the restart")
	tabs[2].do(sendFromUI("dave", "typed after the restart"))
	var all []message
	waitFor(t, longWait, "every tab to show the messages from both runs", func() (bool, string) {
		st := tabs[0].mustState()
		if len(st.Msgs) != 4 {
			return false, "tab00: " + names(st.Msgs)
		}
		all = all[:0]
		for _, m := range st.Msgs {
			all = append(all, message{ID: m.ID, Username: m.Name, Content: m.Content})
		}
		return true, ""
	})
	if diffShown(tabs[0].mustState().Msgs[:3], append(before[:2:2], after)) != "" || all[3].Content != "typed after the restart" {
		t.Fatalf("after the restart tab00 shows %+v", all)
	}
	if !idLess(t, before[1].ID, after.ID) || !idLess(t, after.ID, all[3].ID) {
		t.Errorf("ids across the restart out of order: %s %s %s", before[1].ID, after.ID, all[3].ID)
	}
	waitShown(t, shortWait, tabs, all)
	noDuplicates(t, tabs...)
	for _, tb := range tabs {
		st := tb.mustState()
		if !st.Notice {
			t.Errorf("%s: no notice that messages may be missing", tb.name)
		}
		if same, err := eval[bool](tb, `window.__sameDocument === true`); err != nil || !same {
			t.Errorf("%s: the page was reloaded (%v)", tb.name, err)
		}
	}
	checkClean(t, tabs...)
}

// Closing the tab that holds the stream: another tab takes over, resumes
// where it was, and nothing is lost or shown twice. A tab opened later gets
// the whole conversation from the leader.
func TestLeaderTabClosed(t *testing.T) {
	needBrowser(t)
	// With a backlog of one message, a tab that did not resume from its
	// position would miss messages.
	srv := startServer(t, "-backlog", "1")
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 4)
	waitAllLive(t, tabs)
	m1 := srv.post(t, "alice", "before the leader leaves")
	waitShown(t, shortWait, tabs, []message{m1})

	leader := -1
	for i, tb := range tabs {
		if tb.mustState().Role == "leader" {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	rest := append(tabs[:leader:leader], tabs[leader+1:]...)

	// Hold back the stream request of whichever tab becomes the next
	// leader, so that messages are posted while no tab is connected.
	type pausedReq struct {
		tb  *tab
		id  fetch.RequestID
		url string
	}
	paused := make(chan pausedReq, 16)
	for _, tb := range rest {
		evs := chromedp.Events(tb.ctx, fetch.RequestPaused)
		if _, err := chromedp.Call(tb.ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/stream*"}}}); err != nil {
			t.Fatal(err)
		}
		go func() {
			for ev, err := range evs {
				if err != nil {
					return
				}
				select {
				case paused <- pausedReq{tb, ev.RequestID, ev.Request.URL}:
				default:
				}
			}
		}()
	}
	tabs[leader].close()
	var held pausedReq
	select {
	case held = <-paused:
	case <-time.After(shortWait):
		t.Fatal("no tab opened a stream after the leader closed")
	}
	m2 := srv.post(t, "bob", "while the leader changes")
	m3 := srv.post(t, "carol", "while the leader changes, too")
	if !strings.Contains(held.url, "lastEventId="+m1.ID) {
		t.Errorf("the new leader (%s) asked for %s, want it to resume after %s", held.tb.name, held.url, m1.ID)
	}
	if _, err := chromedp.Call(held.tb.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: held.id}); err != nil {
		t.Fatal(err)
	}
	for _, tb := range rest {
		if _, err := chromedp.Call(tb.ctx, fetch.Disable, cdp.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	waitAllLive(t, rest)
	if st := held.tb.mustState(); st.Role != "leader" {
		t.Errorf("%s opened the stream but is %q", held.tb.name, st.Role)
	}
	waitShown(t, longWait, rest, []message{m1, m2, m3})

	// A follower sends; a tab opened now catches up from the leader.
	var follower *tab
	for _, tb := range rest {
		if tb.mustState().Role == "follower" {
			follower = tb
			break
		}
	}
	follower.do(sendFromUI("erin", "from a follower"))
	late := br.open(t, "late", srv.URL()+"/")
	all := append(rest, late)
	waitAllLive(t, all)
	var m4 message
	waitFor(t, shortWait, "the follower's message", func() (bool, string) {
		st := follower.mustState()
		if len(st.Msgs) != 4 {
			return false, names(st.Msgs)
		}
		m := st.Msgs[3]
		m4 = message{ID: m.ID, Username: m.Name, Content: m.Content}
		return m4.Content == "from a follower", names(st.Msgs)
	})
	waitShown(t, shortWait, all, []message{m1, m2, m3, m4})
	noDuplicates(t, all...)
	if name := mustEval[string](late, `document.getElementById('name').value`); name != "erin" {
		t.Errorf("the name typed in another tab is not remembered: %q", name)
	}
	waitFor(t, shortWait, "the server to count exactly one stream", func() (bool, string) {
		n, err := srv.clients(t)
		return err == nil && n == 1, fmt.Sprintf("clients=%d err=%v", n, err)
	})
	checkClean(t, all...)
}

// On a 360x740 phone the page has no sideways scrolling and the form works
// by touch.
func TestPhoneViewport(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	tb := br.open(t, "phone", srv.URL()+"/", chromedp.EmulateViewport(360, 740, chromedp.EmulateMobile, chromedp.EmulateTouch))
	waitAllLive(t, []*tab{tb})
	want := []message{
		srv.post(t, strings.Repeat("W", 32), strings.Repeat("loooong", 60)),
		srv.post(t, "bob", "several\nlines\nof text"),
	}
	waitShown(t, shortWait, []*tab{tb}, want)
	tb.do(setField("#name", "phone user"), setField("#message", "sent by tapping"), chromedp.Tap(chromedp.CSS("#send")))
	waitFor(t, shortWait, "the tapped message", func() (bool, string) {
		st := tb.mustState()
		return len(st.Msgs) == 3 && st.Msgs[2].Content == "sent by tapping" && st.Msgs[2].Own, names(st.Msgs)
	})

	type box struct {
		Sel                             string
		Left, Right, Top, Bottom, Width float64
	}
	var layout struct {
		Inner, DocScroll, BodyScroll, LogScroll, LogClient float64
		Boxes                                              []box
		Font                                               string
	}
	raw := mustEval[[]byte](tb, `(() => {
		const r = (sel) => { const b = document.querySelector(sel).getBoundingClientRect(); return {Sel: sel, Left: b.left, Right: b.right, Top: b.top, Bottom: b.bottom, Width: b.width}; };
		const log = document.getElementById('log');
		return {Inner: window.innerWidth, DocScroll: document.documentElement.scrollWidth, BodyScroll: document.body.scrollWidth,
			LogScroll: log.scrollWidth, LogClient: log.clientWidth, Font: getComputedStyle(document.getElementById('message')).fontSize,
			Boxes: ['#name', '#message', '#send', '#status', '#log', 'label[for=name]', 'label[for=message]'].map(r)};
	})()`)
	if err := json.Unmarshal(raw, &layout); err != nil {
		t.Fatal(err)
	}
	if layout.Inner != 360 {
		t.Fatalf("viewport is %v px wide, want 360", layout.Inner)
	}
	if layout.DocScroll > layout.Inner || layout.BodyScroll > layout.Inner || layout.LogScroll > layout.LogClient {
		t.Errorf("horizontal scrolling: document %v, body %v, log %v/%v, viewport %v", layout.DocScroll, layout.BodyScroll, layout.LogScroll, layout.LogClient, layout.Inner)
	}
	for _, b := range layout.Boxes {
		if b.Width <= 0 || b.Left < 0 || b.Right > 360.5 || b.Top < 0 || b.Bottom > 740.5 {
			t.Errorf("%s is not inside the 360x740 screen: %+v", b.Sel, b)
		}
	}
	if layout.Font != "16px" {
		t.Errorf("message font size %s; below 16px phones zoom in on focus", layout.Font)
	}
	if msg, send := layout.Boxes[1], layout.Boxes[2]; send.Top >= msg.Bottom || send.Bottom <= msg.Top || send.Left < msg.Right {
		t.Errorf("the Send button %+v is not beside the message box %+v", send, msg)
	}
	checkClean(t, tb)
}

// The log follows new messages only when the reader is at the bottom;
// otherwise a "new messages" button appears and scrolls down.
func TestScrollAndNewMessagesButton(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	tb := br.open(t, "scroll", srv.URL()+"/", chromedp.EmulateViewport(800, 500))
	waitAllLive(t, []*tab{tb})
	var want []message
	for i := range 30 {
		want = append(want, srv.post(t, "bot", fmt.Sprintf("message %d", i)))
	}
	waitShown(t, shortWait, []*tab{tb}, want)
	const atBottom = `(() => { const l = document.getElementById('log'); return l.scrollHeight - l.scrollTop - l.clientHeight < 2; })()`
	waitFor(t, shortWait, "the log to follow to the bottom", func() (bool, string) {
		return mustEval[bool](tb, atBottom), "not at the bottom"
	})
	if tb.mustState().Jump {
		t.Fatal("new-messages button shown while at the bottom")
	}

	mustEval[chromedp.Void](tb, `document.getElementById('log').scrollTop = 0`)
	waitFor(t, shortWait, "the scroll to the top", func() (bool, string) {
		return mustEval[float64](tb, `document.getElementById('log').scrollTop`) == 0, ""
	})
	want = append(want, srv.post(t, "bot", "while you read old messages"))
	waitShown(t, shortWait, []*tab{tb}, want)
	waitFor(t, shortWait, "the new-messages button", func() (bool, string) {
		return tb.mustState().Jump, "hidden"
	})
	if top := mustEval[float64](tb, `document.getElementById('log').scrollTop`); top != 0 {
		t.Errorf("the log scrolled to %v while the reader was at the top", top)
	}
	tb.do(chromedp.Click(chromedp.CSS("#jump")))
	waitFor(t, shortWait, "the button to scroll to the bottom", func() (bool, string) {
		return mustEval[bool](tb, atBottom) && !tb.mustState().Jump, "not at the bottom or button still shown"
	})
	checkClean(t, tb)
}

// Errors of POST /post are shown in plain words and nothing typed is lost:
// a missing name next to the form (the message stays in the box); a 400 or
// 413 next to the message in the log, with the server's reason and Edit
// (back into the box) or Discard; a lost connection and a 429 keep the
// message in the outbox as "Sending…" until it goes through.
func TestSendErrorsKeepTheMessage(t *testing.T) {
	needBrowser(t)
	srv := startServer(t, "-max-body", "4096", "-max-content", "2000")
	limited := startServer(t, "-post-rate", "0.2", "-post-burst", "1")
	br := newBrowser(t)
	tb := br.open(t, "errors", srv.URL()+"/")
	waitAllLive(t, []*tab{tb})
	if !tb.mustState().SendOff {
		t.Error("Send is enabled with an empty message")
	}

	tb.do(sendFromUI("", "no name yet"))
	waitFor(t, shortWait, "missing name error", func() (bool, string) {
		st := tb.mustState()
		return strings.Contains(st.Error, "name"), st.Error
	})
	if st := tb.mustState(); st.Message != "no name yet" {
		t.Errorf("missing name: typed message not kept: %q", st.Message)
	}

	// expectRefused waits for the outbox to hold text, refused with a reason
	// that contains want.
	expectRefused := func(tb *tab, what, text, want string) {
		t.Helper()
		waitFor(t, shortWait, what+" shown on the message", func() (bool, string) {
			out := tb.outbox()
			return len(out) == 1 && out[0].Content == text && out[0].Failed && strings.Contains(out[0].State, want),
				fmt.Sprintf("outbox %+v, want the message refused with %q", out, want)
		})
	}

	tooLongContent := strings.Repeat("x", 2500) // under -max-body, over -max-content
	res, err := http.Post(srv.URL()+"/post", "application/json", strings.NewReader(`{"username":"eve","content":"`+tooLongContent+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Error string }
	json.NewDecoder(res.Body).Decode(&e)
	res.Body.Close()
	if res.StatusCode != 400 || e.Error == "" {
		t.Fatalf("server answered %s %q to a too long message, want 400", res.Status, e.Error)
	}
	tb.do(sendFromUI("eve", tooLongContent))
	expectRefused(tb, "400", tooLongContent, strings.TrimRight(e.Error, ".!"))
	tb.do(chromedp.Click(chromedp.CSS("#outbox .out-edit")))
	waitFor(t, shortWait, "Edit to put the message back in the box", func() (bool, string) {
		st := tb.mustState()
		return st.Message == tooLongContent && len(tb.outbox()) == 0, fmt.Sprintf("box %d chars, outbox %d", len(st.Message), len(tb.outbox()))
	})
	tb.do(setField("#message", ""))

	tooBig := strings.Repeat("y", 5000) // over -max-body
	tb.do(sendFromUI("eve", tooBig))
	expectRefused(tb, "413", tooBig, "too long")
	tb.do(chromedp.Click(chromedp.CSS("#outbox .out-discard")))
	waitFor(t, shortWait, "Discard to drop the message", func() (bool, string) {
		return len(tb.outbox()) == 0, fmt.Sprintf("outbox %+v", tb.outbox())
	})

	tb.do(sendFromUI("eve", "this one is fine"))
	waitFor(t, shortWait, "the good message, with the error gone", func() (bool, string) {
		st := tb.mustState()
		return len(st.Msgs) == 1 && st.Msgs[0].Content == "this one is fine" && st.Error == "" && st.Message == "" && len(tb.outbox()) == 0, fmt.Sprintf("%+v", st)
	})

	// The server goes away: the message waits in the outbox, and is sent
	// once the server is back.
	srv.kill()
	tb.do(sendFromUI("eve", "lost connection"))
	waitFor(t, shortWait, "the message waiting as sending", func() (bool, string) {
		out := tb.outbox()
		return len(out) == 1 && !out[0].Failed && strings.HasPrefix(out[0].State, "Sending"), fmt.Sprintf("outbox %+v", out)
	})
	srv.start()
	waitShownOnce(t, []*tab{tb}, "lost connection")

	// Rate limited server: one post, then 429 with Retry-After: the second
	// waits and goes out when the server allows. Its own browser context:
	// cookies do not tell ports apart, so the two servers' identity
	// cookies would replace each other in one.
	lt := br.person(t).open(t, "limited", limited.URL()+"/")
	waitAllLive(t, []*tab{lt})
	lt.do(sendFromUI("fast", "first"))
	waitShownOnce(t, []*tab{lt}, "first")
	lt.do(sendFromUI("fast", "second, too soon"))
	waitFor(t, shortWait, "the second message waiting for the rate limit", func() (bool, string) {
		out := lt.outbox()
		return len(out) == 1 && strings.Contains(out[0].State, "too fast"), fmt.Sprintf("outbox %+v", out)
	})
	waitShownOnce(t, []*tab{lt}, "second, too soon")
	if st := lt.mustState(); len(st.Msgs) != 2 || st.Msgs[1].Content != "second, too soon" {
		t.Errorf("rate-limited tab shows %s, want first then second", names(st.Msgs))
	}
	checkClean(t, tb, lt)
}

// A screenshot of the page with a few messages in the light theme; with
// -update-screenshot it is written to ../docs/screenshot.png. The dark
// theme follows prefers-color-scheme.
func TestScreenshot(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	tb := br.open(t, "shot", srv.URL()+"/", chromedp.EmulateViewport(1000, 700), colorScheme("light"))
	waitAllLive(t, []*tab{tb})
	want := []message{
		srv.post(t, "Grace", "Morning all!"),
		srv.post(t, "Linus", "Has anyone tried the new build?\nIt picks the stream up again after a restart."),
	}
	waitShown(t, shortWait, []*tab{tb}, want)
	tb.do(sendFromUI("Ada", "Yes, and every tab of a browser shares a single connection."))
	waitFor(t, shortWait, "Ada's message", func() (bool, string) {
		st := tb.mustState()
		return len(st.Msgs) == 3, names(st.Msgs)
	})
	srv.post(t, "Grace", "Nice. Long words wrap too: Pneumonoultramicroscopicsilicovolcanoconiosis.")
	waitFor(t, shortWait, "4 messages, the form empty", func() (bool, string) {
		st := tb.mustState()
		return len(st.Msgs) == 4 && st.Message == "" && st.Online == "1 person", fmt.Sprintf("%d msgs, online %q", len(st.Msgs), st.Online)
	})
	mustEval[chromedp.Void](tb, `document.activeElement.blur()`)

	bg := func() float64 {
		return mustEval[float64](tb, `(() => { const m = getComputedStyle(document.body).backgroundColor.match(/\d+/g).map(Number); return m[0] + m[1] + m[2]; })()`)
	}
	if v := bg(); v < 600 {
		t.Errorf("light theme background is dark (rgb sum %v)", v)
	}
	shot, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Width != 1000 || cfg.Height != 700 {
		t.Errorf("screenshot is %dx%d, want 1000x700", cfg.Width, cfg.Height)
	}
	if len(shot) > 150<<10 {
		t.Errorf("screenshot is %d KB, want < 150 KB", len(shot)>>10)
	}
	path := filepath.Join(t.TempDir(), "screenshot.png")
	if *updateScreenshot {
		path = filepath.Join("..", "docs", "screenshot.png")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d KB)", path, len(shot)>>10)

	tb.do(colorScheme("dark"))
	if v := bg(); v > 200 {
		t.Errorf("dark theme background is light (rgb sum %v)", v)
	}
	checkClean(t, tb)
}

// When /stream answers 503 (server full), the page says so, keeps retrying
// (honouring Retry-After) and goes live once a place is free.
func TestServerFullRetries(t *testing.T) {
	needBrowser(t)
	srv := startServer(t, "-max-streams", "1", "-heartbeat", "1s") // a quick heartbeat finds the freed place soon
	// Another client takes the only place.
	res, err := http.Get(srv.URL() + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("first stream: %s", res.Status)
	}
	br := newBrowser(t)
	tb := br.open(t, "full", srv.URL()+"/")
	waitFor(t, shortWait, "the page to say the server is full", func() (bool, string) {
		st := tb.mustState()
		return st.State == "full" && strings.Contains(st.Status, "full"), st.State + " " + st.Status
	})
	res.Body.Close() // the place is free again
	waitAllLive(t, []*tab{tb})
	m := srv.post(t, "alice", "you are in")
	waitShown(t, shortWait, []*tab{tb}, []message{m})
	checkClean(t, tb)
}

// Without Web Locks (for example on plain http from another host, which is
// not a secure context) every tab runs its own stream, and still nothing is
// lost or doubled.
func TestFallbackWithoutWebLocks(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	noLocks := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
			Source: `Object.defineProperty(Navigator.prototype, 'locks', {get: () => undefined, configurable: true});`,
		})
		return err
	})
	var tabs []*tab
	for i := range 3 {
		tabs = append(tabs, br.open(t, fmt.Sprintf("solo%d", i), srv.URL()+"/", noLocks))
	}
	waitFor(t, longWait, "every tab live on its own", func() (bool, string) {
		for _, tb := range tabs {
			if st := tb.mustState(); st.State != "live" || st.Role != "solo" {
				return false, tb.name + ": " + st.State + " " + st.Role
			}
		}
		return true, ""
	})
	m1 := srv.post(t, "alice", "to every tab")
	tabs[1].do(sendFromUI("bob", "from a solo tab"))
	waitFor(t, shortWait, "bob's message in tab 1", func() (bool, string) {
		st := tabs[1].mustState()
		return len(st.Msgs) == 2, names(st.Msgs)
	})
	st := tabs[1].mustState()
	waitShown(t, shortWait, tabs, []message{m1, {ID: st.Msgs[1].ID, Username: "bob", Content: "from a solo tab"}})
	waitFor(t, shortWait, "three streams", func() (bool, string) {
		n, err := srv.clients(t)
		return err == nil && n == 3, fmt.Sprintf("clients=%d err=%v", n, err)
	})
	checkClean(t, tabs...)
}

// The form and the log can be used with a keyboard and a screen reader:
// labelled fields, a polite live log, a status region, visible focus.
func TestAccessibleForm(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	tb := br.open(t, "a11y", srv.URL()+"/")
	waitAllLive(t, []*tab{tb})
	var a struct {
		NameLabel, MsgLabel, MsgTag, Send, LogRole, LogLive, StatusRole, ErrorRole, Lang string
	}
	raw := mustEval[[]byte](tb, `(() => {
		const $ = (id) => document.getElementById(id);
		const lab = (id) => $(id).labels.length ? $(id).labels[0].textContent.trim() : '';
		return {NameLabel: lab('name'), MsgLabel: lab('message'), MsgTag: $('message').tagName,
			Send: $('send').textContent.trim(), LogRole: $('log').getAttribute('role'),
			LogLive: $('log').getAttribute('aria-live'), StatusRole: $('status').getAttribute('role'),
			ErrorRole: $('error').getAttribute('role'), Lang: document.documentElement.lang};
	})()`)
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	want := struct {
		NameLabel, MsgLabel, MsgTag, Send, LogRole, LogLive, StatusRole, ErrorRole, Lang string
	}{"Name", "Message", "TEXTAREA", "Send", "log", "polite", "status", "alert", "en"}
	if a != want {
		t.Errorf("accessibility attributes\n got %+v\nwant %+v", a, want)
	}

	// Keyboard: Tab from the name reaches the message, the focus is visible,
	// and Enter sends.
	tab := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		return pressKey(ctx, tg, "Tab", "Tab", 9, "", 0)
	})
	tb.do(setField("#name", "keyboard user"), chromedp.Focus(chromedp.CSS("#name")), tab)
	focus := mustEval[string](tb, `document.activeElement.id + ' ' + getComputedStyle(document.activeElement).outlineStyle`)
	if focus != "message solid" {
		t.Errorf("after Tab from the name: focused element and outline %q, want \"message solid\"", focus)
	}
	tb.do(typeText("#message", "typed with the keyboard"), enter(false))
	waitFor(t, shortWait, "the message sent with Enter", func() (bool, string) {
		st := tb.mustState()
		return len(st.Msgs) == 1 && st.Msgs[0].Content == "typed with the keyboard", names(st.Msgs)
	})
	checkClean(t, tb)
}

// Messages keep coming while leader tabs close one after the other and new
// tabs open: in the end every tab shows every message once, in order. The
// server's backlog is one message, so only resuming from the exact position
// passes.
func TestNoLossWhileLeadersChange(t *testing.T) {
	needBrowser(t)
	srv := startServer(t, "-backlog", "1")
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 4)
	waitAllLive(t, tabs)

	const total = 150
	posted := make(chan []message, 1)
	go func() { // about 100 messages a second
		var ms []message
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := range total {
			<-tick.C
			body := fmt.Sprintf(`{"username":"pump","content":"message %03d"}`, i)
			res, err := http.Post(srv.URL()+"/post", "application/json", strings.NewReader(body))
			if err != nil {
				break
			}
			var m message
			json.NewDecoder(res.Body).Decode(&m)
			res.Body.Close()
			ms = append(ms, m)
		}
		posted <- ms
	}()

	// Close the leader twice, and open a tab each time, while the pump runs.
	live := tabs
	for round := range 2 {
		waitAllLive(t, live)
		// Read every tab's role before closing any: closing the leader
		// hands the stream to another tab, which must not be mistaken
		// for a second leader.
		var leaders, next []*tab
		for _, tb := range live {
			if tb.mustState().Role == "leader" {
				leaders = append(leaders, tb)
			} else {
				next = append(next, tb)
			}
		}
		if len(leaders) != 1 {
			t.Fatalf("round %d: %d leaders among %d tabs, want 1", round, len(leaders), len(live))
		}
		leaders[0].close()
		live = append(next, br.open(t, fmt.Sprintf("new%d", round), srv.URL()+"/"))
	}
	var want []message
	select {
	case want = <-posted:
	case <-time.After(longWait):
		t.Fatal("the pump did not finish")
	}
	if len(want) != total {
		t.Fatalf("posted %d of %d messages", len(want), total)
	}
	waitShown(t, longWait, live, want)
	noDuplicates(t, live...)
	checkClean(t, live...)
}
