package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
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
// got back, in every tab of the browser and after a reload, never by the
// name (a message posted under a free name before the person took it
// stays someone else's). Once the person holds the name, a post under it
// without their identity is refused (409, naming the name), and another
// browser cannot take it.
func TestImpersonationIsNotOwn(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 2)
	waitAllLive(t, tabs)

	srv.post(t, "victim", "an impostor") // a free name, without identity: it holds nothing
	tabs[0].do(sendFromUI("victim", "really me"))
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

	body, _ := json.Marshal(map[string]string{"username": "VICTIM", "content": "me again"})
	res, err := http.Post(srv.URL()+"/post", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var refusal struct{ Error, Name string }
	err = json.NewDecoder(res.Body).Decode(&refusal)
	res.Body.Close()
	if res.StatusCode != http.StatusConflict || err != nil || refusal.Name != "VICTIM" || !strings.Contains(refusal.Error, "in use") {
		t.Errorf("a post under the held name without identity: %s %+v %v, want 409 naming the name", res.Status, refusal, err)
	}

	// Another person cannot take the name, and owns nothing.
	other := br.person(t).open(t, "other", srv.URL()+"/")
	other.do(setField("#name", "victim"))
	waitFor(t, shortWait, "the other browser refused the name, both messages unmarked", func() (bool, string) {
		m := ownMarks(other)
		st := other.mustState()
		return len(m) == 2 && !m["really me"] && !m["an impostor"] && strings.Contains(st.NameError, "in use"),
			st.NameError + "; " + names(st.Msgs)
	})
	if h := historyAll(t, srv.URL()); len(h) != 2 {
		t.Errorf("history holds %d messages, want 2", len(h))
	}
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
