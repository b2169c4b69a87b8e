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

// gateJS reports the key form's state: whether it shows, whether the chat
// is hidden behind it, its error text, and the message box's text.
const gateJS = `(() => ({
  shown: !document.getElementById('gate').hidden,
  locked: document.querySelector('.app').classList.contains('locked'),
  error: document.getElementById('gate-error').hidden ? '' : document.getElementById('gate-error').textContent,
  draft: document.getElementById('message').value,
  admin: document.documentElement.hasAttribute('data-admin'),
}))()`

type gateState struct {
	Shown  bool   `json:"shown"`
	Locked bool   `json:"locked"`
	Error  string `json:"error"`
	Draft  string `json:"draft"`
	Admin  bool   `json:"admin"`
}

// waitGate polls the tab's key form until cond holds.
func waitGate(t *testing.T, tb *tab, what string, cond func(gateState) bool) gateState {
	t.Helper()
	var g gateState
	waitFor(t, shortWait, what, func() (bool, string) {
		var err error
		g, err = eval[gateState](tb, gateJS)
		if err != nil {
			return false, err.Error()
		}
		b, _ := json.Marshal(g)
		return cond(g), string(b)
	})
	return g
}

// enterKey types key into the key form and submits it.
func enterKey(key string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(setField("#key", key), chromedp.Click(chromedp.CSS("#gate-go")))
}

// postWithKey posts a message with the room key as a Bearer key.
func postWithKey(t *testing.T, s *server, key, username, content string) message {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": username, "content": content})
	req, _ := http.NewRequest("POST", s.URL()+"/post", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /post: %v", err)
	}
	return decodePosted(t, res)
}

// A private room: the page shows the key form instead of the chat; a wrong
// key says so; the right key opens the chat, which then works as usual;
// when the key changes, the form comes back without losing the draft.
func TestRoomKeyForm(t *testing.T) {
	needBrowser(t)
	srv := startServer(t, "-room-key", "sesame")
	before := postWithKey(t, srv, "sesame", "alice", "posted before you came")
	br := newBrowser(t)
	tb := br.open(t, "tab", srv.URL()+"/")

	waitGate(t, tb, "the key form instead of the chat", func(g gateState) bool { return g.Shown && g.Locked })
	if st := tb.mustState(); len(st.Msgs) != 0 {
		t.Fatalf("messages shown before login: %+v", st.Msgs)
	}

	tb.do(enterKey("wrong"))
	waitGate(t, tb, "the wrong-key error", func(g gateState) bool { return g.Shown && strings.Contains(g.Error, "Wrong key") })

	tb.do(enterKey("sesame"))
	waitGate(t, tb, "the form to go", func(g gateState) bool { return !g.Shown && !g.Locked })
	waitAllLive(t, []*tab{tb})
	waitShown(t, shortWait, []*tab{tb}, []message{before})
	tb.do(sendFromUI("bob", "hello from the page"))
	waitFor(t, shortWait, "the page's own message", func() (bool, string) {
		st := tb.mustState()
		return len(st.Msgs) == 2 && st.Msgs[1].Content == "hello from the page", names(st.Msgs)
	})

	// The key changes (the server restarts with another): the form comes
	// back, and what was typed stays.
	tb.do(setField("#message", "half a thought"))
	srv.stop()
	srv.args = []string{"-post-rate", "0", "-room-key", "sesame2"}
	srv.start()
	g := waitGate(t, tb, "the key form after the key changed", func(g gateState) bool { return g.Shown && g.Locked })
	if g.Draft != "half a thought" {
		t.Errorf("draft after the form came back: %q", g.Draft)
	}
	tb.do(enterKey("sesame2"))
	g = waitGate(t, tb, "the chat after the new key", func(g gateState) bool { return !g.Shown })
	if g.Draft != "half a thought" {
		t.Errorf("draft after logging in again: %q", g.Draft)
	}
	waitAllLive(t, []*tab{tb})
	checkClean(t, tb)
}

// deleteMsg presses the Delete button of message id in the tab, and
// answer (a button of the confirmation dialog, "#confirm-yes" or
// "#confirm-no") once the dialog asks.
func deleteMsg(t *testing.T, tb *tab, id, answer string) {
	t.Helper()
	tb.do(chromedp.Click(chromedp.CSS(`.msg[data-id="` + id + `"] .del`)))
	waitFor(t, shortWait, "the confirmation dialog", func() (bool, string) {
		open := mustEval[bool](tb, `document.getElementById('confirm').open`)
		return open, fmt.Sprint("open: ", open)
	})
	tb.do(chromedp.Click(chromedp.CSS(answer)))
	waitFor(t, shortWait, "the confirmation dialog to close", func() (bool, string) {
		open := mustEval[bool](tb, `document.getElementById('confirm').open`)
		return !open, fmt.Sprint("open: ", open)
	})
}

// The admin logs in with the admin key and deletes a message (confirming):
// it disappears at once in another browser (its own context), and stays
// gone after that browser reloads.
func TestAdminDeletesMessage(t *testing.T) {
	needBrowser(t)
	srv := startServer(t, "-admin-key", "boss")
	spam := srv.post(t, "spammer", "buy now")
	keep := srv.post(t, "bob", "a real message")

	admin := newBrowser(t).open(t, "admin", srv.URL()+"/")
	viewer := newBrowser(t).open(t, "viewer", srv.URL()+"/")
	waitAllLive(t, []*tab{admin}) // two browsers: each has its own leader
	waitAllLive(t, []*tab{viewer})
	waitShown(t, shortWait, []*tab{admin, viewer}, []message{spam, keep})
	if n := mustEval[int](viewer, `[...document.querySelectorAll('.del')].filter((b) => b.offsetParent !== null).length`); n != 0 {
		t.Errorf("the viewer sees %d Delete controls", n)
	}

	admin.do(chromedp.Click(chromedp.CSS("#modlogin")))
	waitGate(t, admin, "the admin key form", func(g gateState) bool { return g.Shown && !g.Locked })
	admin.do(enterKey("boss"))
	waitGate(t, admin, "admin mode", func(g gateState) bool { return !g.Shown && g.Admin })

	// Cancelling the confirmation deletes nothing.
	deleteMsg(t, admin, spam.ID, "#confirm-no")
	waitShown(t, shortWait, []*tab{admin, viewer}, []message{spam, keep})
	deleteMsg(t, admin, spam.ID, "#confirm-yes")
	waitShown(t, shortWait, []*tab{admin, viewer}, []message{keep})

	viewer.do(chromedp.Reload())
	waitAllLive(t, []*tab{viewer})
	waitShown(t, shortWait, []*tab{viewer}, []message{keep})
	res, err := http.Get(srv.URL() + "/history")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var page struct {
		Messages []message `json:"messages"`
	}
	if json.NewDecoder(res.Body).Decode(&page) != nil || len(page.Messages) != 1 || page.Messages[0].ID != keep.ID {
		t.Errorf("history after the delete: %+v", page.Messages)
	}
	checkClean(t, admin, viewer)
}
