package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// lifecycleProbe records the page's lifecycle events (freeze and resume
// from the Page Lifecycle API, pagehide and pageshow with their persisted
// flag), so a test can tell that the page really went into the
// back/forward cache and came back from it.
const lifecycleProbe = `window.__life = [];
document.addEventListener('freeze', () => window.__life.push('freeze'));
document.addEventListener('resume', () => window.__life.push('resume'));
window.addEventListener('pagehide', (e) => window.__life.push('pagehide:' + e.persisted));
window.addEventListener('pageshow', (e) => window.__life.push('pageshow:' + e.persisted));`

// withScript adds a script that runs before the page's own.
func withScript(src string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src})
		return err
	})
}

// A follower that goes into the back/forward cache (where Chromium freezes
// it) and comes back after the leader changed to a tab that started from
// the backlog: the new leader holds less than the follower needs, so the
// follower must fetch the gap from the server's history, or, where history
// no longer has it, show the missing-history notice. It must never jump
// over the gap silently.
func TestFollowerBackFromCacheAfterLeaderChange(t *testing.T) {
	needBrowser(t)
	for _, tt := range []struct {
		name    string
		history string
		gap     bool // history cannot serve the whole gap
	}{
		{"history has the gap", "1000", false},
		{"history lost part of the gap", "3", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A backlog of two: a new leader starts two messages back.
			srv := startServer(t, "-backlog", "2", "-history", tt.history)
			br := newBrowser(t)
			a := br.open(t, "a", srv.URL()+"/")
			waitAllLive(t, []*tab{a})
			b := br.open(t, "b", srv.URL()+"/", withScript(lifecycleProbe))
			waitAllLive(t, []*tab{a, b})
			if st := b.mustState(); st.Role != "follower" {
				t.Fatalf("b is %q, want follower", st.Role)
			}
			m1 := srv.post(t, "alice", "before b goes away")
			waitShown(t, shortWait, []*tab{a, b}, []message{m1})

			// b leaves for another page: the browser keeps it, frozen,
			// in the back/forward cache.
			b.do(chromedp.Navigate(srv.URL() + "/healthz"))
			a.close()
			waitFor(t, shortWait, "no stream open", func() (bool, string) {
				n, err := srv.clients(t)
				return err == nil && n == 0, fmt.Sprintf("clients=%d err=%v", n, err)
			})
			var later []message
			for i := 2; i <= 5; i++ {
				later = append(later, srv.post(t, "bob", fmt.Sprintf("message %d while b is away", i)))
			}
			// c opens with nobody to follow: it leads, from the backlog.
			c := br.open(t, "c", srv.URL()+"/")
			waitAllLive(t, []*tab{c})
			waitShown(t, shortWait, []*tab{c}, later[2:])

			// b comes back from the cache and follows c.
			if _, err := eval[bool](b, `(history.back(), true)`); err != nil {
				t.Fatalf("b: history.back: %v", err)
			}
			waitFor(t, shortWait, "b restored from the back/forward cache", func() (bool, string) {
				life, err := eval[[]string](b, `window.__life || []`)
				if err != nil {
					return false, err.Error()
				}
				return strings.Contains(strings.Join(life, " "), "pageshow:true"), fmt.Sprint(life)
			})
			life := mustEval[[]string](b, `window.__life`)
			t.Logf("b's lifecycle: %v", life)
			if !strings.Contains(strings.Join(life, " "), "freeze") {
				t.Logf("b was not frozen in the cache (lifecycle %v)", life)
			}
			waitAllLive(t, []*tab{b, c})
			want := append([]message{m1}, later...)
			if tt.gap {
				// History holds messages 3 to 5 only: message 2 is lost.
				want = append([]message{m1}, later[1:]...)
			}
			waitShown(t, shortWait, []*tab{b}, want)
			waitFor(t, shortWait, "b's notice", func() (bool, string) {
				st := b.mustState()
				return st.Notice == tt.gap, fmt.Sprintf("notice shown: %v", st.Notice)
			})
			if tt.gap {
				text := mustEval[string](b, `document.getElementById('notice-text').textContent`)
				if !strings.Contains(text, "missing") {
					t.Errorf("b's notice says %q", text)
				}
			}
			noDuplicates(t, b, c)
			checkClean(t, b, c)
		})
	}
}

// A server whose epoch goes backwards (its clock was ahead when the old
// history began, or an old journal was restored): the page keeps the
// messages in the order they arrived, so new messages come after the old
// ones, in the leader and in a tab that syncs from it later.
func TestEpochGoingBackKeepsArrivalOrder(t *testing.T) {
	needBrowser(t)
	path := filepath.Join(t.TempDir(), "ahead.jsonl")
	// A journal begun by a clock far ahead of today's.
	const ahead = "9999999999999"
	old := []message{
		{ID: ahead + "-1", Username: "old", Content: "first, from the clock that was ahead"},
		{ID: ahead + "-2", Username: "old", Content: "second, from the clock that was ahead"},
	}
	var journal strings.Builder
	for _, m := range old {
		fmt.Fprintf(&journal, `{"id":%q,"username":%q,"content":%q,"time":"2026-12-01T10:00:00Z"}`+"\n", m.ID, m.Username, m.Content)
	}
	if err := os.WriteFile(path, []byte(journal.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "-data", path)
	br := newBrowser(t)
	a := br.open(t, "a", srv.URL()+"/")
	waitAllLive(t, []*tab{a})
	waitShown(t, shortWait, []*tab{a}, old)

	// The server comes back with no journal: its epoch is today's, far
	// smaller than the old one.
	srv.stop()
	srv.args = []string{"-post-rate", "0"}
	srv.start()
	waitFor(t, longWait, "a told of the lost history", func() (bool, string) {
		st := a.mustState()
		return st.State == "live" && st.Notice, fmt.Sprintf("state=%s notice=%v", st.State, st.Notice)
	})
	m1 := srv.post(t, "new", "first after the clock went back")
	m2 := srv.post(t, "new", "second after the clock went back")
	if !idLess(t, m1.ID, old[0].ID) {
		t.Fatalf("new epoch %s is not smaller than the old %s: the test needs it to be", m1.ID, old[0].ID)
	}
	want := append(append([]message{}, old...), m1, m2)
	waitShown(t, shortWait, []*tab{a}, want)

	// A tab opened now gets the same order from the leader.
	b := br.open(t, "b", srv.URL()+"/")
	waitAllLive(t, []*tab{a, b})
	waitShown(t, shortWait, []*tab{a, b}, want)
	m3 := srv.post(t, "new", "third, seen by both")
	waitShown(t, shortWait, []*tab{a, b}, append(want, m3))
	checkClean(t, a, b)
}
