package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// ownMarks returns, for each message a tab shows, its content and whether
// it is marked as the tab's own.
func ownMarks(tb *tab) map[string]bool {
	out := map[string]bool{}
	for _, m := range tb.mustState().Msgs {
		out[m.Content] = m.Own
	}
	return out
}

// Someone else posting under your name is not shown as your message: the
// page marks a message as its own only by the ids this browser's posts
// got back, in every tab of the browser and after a reload.
func TestImpersonationIsNotOwn(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 2)
	waitAllLive(t, tabs)

	tabs[0].do(sendFromUI("victim", "really me"))
	srv.post(t, "victim", "an impostor")
	check := func(what string, tb *tab) {
		t.Helper()
		waitFor(t, shortWait, what, func() (bool, string) {
			m := ownMarks(tb)
			own, ok1 := m["really me"]
			fake, ok2 := m["an impostor"]
			return ok1 && ok2 && own && !fake, tb.name + ": " + names(tb.mustState().Msgs)
		})
	}
	check("the sender's tab to mark only its own message", tabs[0])
	check("the other tab of the browser to mark the sent message own", tabs[1])
	tabs[1].do(chromedp.Reload())
	check("a reloaded tab to remember its own message", tabs[1])
	for _, tb := range tabs {
		for _, m := range tb.mustState().Msgs {
			if m.Content == "an impostor" && m.Own {
				t.Errorf("%s: the impostor's message is marked own", tb.name)
			}
		}
	}

	// A fresh browser (another person) with the same name owns nothing.
	other := newBrowser(t).open(t, "other", srv.URL()+"/")
	other.do(setField("#name", "victim"))
	waitFor(t, shortWait, "the other browser to show both messages unmarked", func() (bool, string) {
		m := ownMarks(other)
		return len(m) == 2 && !m["really me"] && !m["an impostor"], names(other.mustState().Msgs)
	})
	checkClean(t, append(tabs, other)...)
}

// A name that reorders or hides characters is refused with the server's
// clear reason, shown by the name field; the message waits, and goes
// under the next name the person picks. A message with nothing visible is
// refused and not posted.
func TestDeceptiveNameRefused(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	tb := newBrowser(t).open(t, "tab", srv.URL()+"/")
	waitAllLive(t, []*tab{tb})
	tb.do(sendFromUI("\u202eecila", "hi"))
	waitFor(t, shortWait, "the refusal to show by the name field", func() (bool, string) {
		st := tb.mustState()
		out := tb.outbox()
		return strings.Contains(st.NameError, "bidirectional control") && len(out) == 1 && out[0].Content == "hi",
			fmt.Sprintf("name error %q, outbox %+v", st.NameError, out)
	})
	if n := len(tb.mustState().Msgs); n != 0 {
		t.Errorf("%d messages shown after a refused name", n)
	}
	tb.do(setField("#name", "bob"))
	waitFor(t, shortWait, "the waiting message sent as bob", func() (bool, string) {
		st := tb.mustState()
		return st.NameError == "" && len(st.Msgs) == 1 && st.Msgs[0].Name == "bob" && st.Msgs[0].Content == "hi" && len(tb.outbox()) == 0,
			fmt.Sprintf("name error %q, %s", st.NameError, names(st.Msgs))
	})
	tb.do(sendFromUI("bob", "\u2800"))
	waitFor(t, shortWait, "the invisible message refused", func() (bool, string) {
		st := tb.mustState()
		return strings.Contains(st.Error, "visible character") || st.SendOff, st.Error
	})
	if h := historyAll(t, srv.URL()); len(h) != 1 || h[0].Username != "bob" {
		t.Errorf("history %+v, want bob's one message", h)
	}
}
