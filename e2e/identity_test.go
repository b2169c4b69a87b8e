package e2e

// Browser tests of names held by one person and of the person's own
// messages: a second browser told that a name is taken, and the Edit and
// Delete controls of own messages, seen from other tabs and browsers.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// key presses key (with its code and Windows key code) in the focused
// element.
func key(name string, vk int64) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		return pressKey(ctx, tg, name, name, vk, "", 0)
	})
}

// focused returns a description of the focused element: its tag, class
// and, in a message, the message's id.
func focused(tb *tab) string {
	return mustEval[string](tb, `(() => { const a = document.activeElement;
  const m = a && a.closest('.msg'); return a.tagName.toLowerCase() + '.' + a.className + (m ? '@' + m.dataset.id : ''); })()`)
}

// A second browser (another person) cannot take a name in use, in any
// case, and is told so by the name field: on a post or typing notice
// (the message waits), and on its stream (it watches without a name).
// Once it picks another name the waiting message goes under it, and both
// people are listed.
func TestTakenNameRefused(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	ada := br.open(t, "ada", srv.URL()+"/")
	waitAllLive(t, []*tab{ada})
	ada.do(setField("#name", "Ada"))
	waitPeople(t, ada, "1 person", "Ada (you)")

	// The post is refused (the typing notices and the stream are held
	// back, so that the post is what the server refuses).
	other := br.person(t).open(t, "other", srv.URL()+"/")
	waitAllLive(t, []*tab{other})
	other.do(offline(false, srv.URL()+"/typing", srv.URL()+"/stream?*"), sendFromUI("ADA", "let me in"))
	waitFor(t, shortWait, "the other browser told the name is taken, its message waiting", func() (bool, string) {
		st := other.mustState()
		out := other.outbox()
		invalid := mustEval[string](other, `document.getElementById('name').getAttribute('aria-invalid') + ' ' + document.getElementById('name').getAttribute('aria-describedby')`)
		return strings.Contains(st.NameError, `"ADA" is in use by someone else`) && invalid == "true name-error" &&
				len(out) == 1 && strings.HasPrefix(out[0].State, "Not sent yet") && len(st.Msgs) == 0,
			fmt.Sprintf("name error %q (%s), outbox %+v, %s", st.NameError, invalid, out, names(st.Msgs))
	})
	if h := historyAll(t, srv.URL()); len(h) != 0 {
		t.Errorf("history after the refused post: %+v", h)
	}

	// Another spelling of the same name: the stream tries it once it
	// settles, and is refused too; the other browser only watches, and
	// the message still waits.
	other.do(offline(false, srv.URL()+"/typing"), setField("#name", "ada"))
	waitFor(t, shortWait, "the stream's refusal by the name field", func() (bool, string) {
		st := other.mustState()
		return strings.Contains(st.NameError, `"ada" is in use by someone else`) && len(other.outbox()) == 1, st.NameError
	})
	waitPeople(t, ada, "1 person · 1 watching", "Ada (you)")

	// A typing notice is refused too (the stream is held back, so that the
	// notice is what the server refuses).
	other.do(offline(false, srv.URL()+"/stream?*"), setField("#name", "aDa"), typeText("#message", "…"))
	waitFor(t, shortWait, "the typing notice's refusal by the name field", func() (bool, string) {
		st := other.mustState()
		return strings.Contains(st.NameError, `"aDa" is in use by someone else`), st.NameError
	})
	other.do(offline(false, ""), setField("#message", ""))

	other.do(setField("#name", "Bea"))
	waitFor(t, shortWait, "the waiting message sent as Bea", func() (bool, string) {
		st := other.mustState()
		return st.NameError == "" && len(st.Msgs) == 1 && st.Msgs[0].Name == "Bea" && st.Msgs[0].Own && len(other.outbox()) == 0,
			fmt.Sprintf("name error %q, %s", st.NameError, names(st.Msgs))
	})
	waitPeople(t, ada, "2 people", "Ada (you)", "Bea")
	waitPeople(t, other, "2 people", "Ada", "Bea (you)")
	checkClean(t, ada, other)
}

// editorState is what a tab shows of one message: its content, its
// "(edited)" mark, and whether an editor or an error is open on it.
type editorState struct {
	Content     string `json:"content"`
	Edited      string `json:"edited"`      // the <time>'s datetime, "" while not edited
	EditedText  string `json:"editedText"`  // what it says
	EditedTitle string `json:"editedTitle"` // its title: the time on hover
	Editor      bool   `json:"editor"`
	Error       string `json:"error"`
	CanEdit     bool   `json:"canEdit"` // an Edit button is shown
	CanDelete   bool   `json:"canDelete"`
}

// editorJS returns the editorState of the message whose id is %q.
const editorJS = `(() => { const el = document.querySelector('#log .msg[data-id=%q]');
  if (!el) return null;
  const ed = el.querySelector('.edited'), err = el.querySelector('.msg-error');
  const shown = (b) => b.getClientRects().length > 0;
  return {content: el.querySelector('.content').textContent, edited: ed.hidden ? '' : ed.dateTime,
    editedText: ed.hidden ? '' : ed.textContent, editedTitle: ed.title, editor: !!el.querySelector('.editor'),
    error: err.hidden ? '' : err.textContent, canEdit: shown(el.querySelector('.edit')), canDelete: shown(el.querySelector('.del'))};
})()`

// waitMsg waits until every tab shows message id as cond wants.
func waitMsg(t *testing.T, tabs []*tab, id, what string, cond func(editorState) bool) {
	t.Helper()
	waitFor(t, shortWait, what, func() (bool, string) {
		for _, tb := range tabs {
			var st *editorState
			st, err := eval[*editorState](tb, fmt.Sprintf(editorJS, id))
			if err != nil || st == nil || !cond(*st) {
				return false, fmt.Sprintf("%s: %+v %v", tb.name, st, err)
			}
		}
		return true, ""
	})
}

// waitAllSolo waits until every tab is live, each reading its own stream.
func waitAllSolo(t *testing.T, tabs ...*tab) {
	t.Helper()
	waitFor(t, longWait, "every tab live on its own", func() (bool, string) {
		for _, tb := range tabs {
			if st := tb.mustState(); st.State != "live" || st.Role != "solo" {
				return false, tb.name + ": " + st.State + " " + st.Role
			}
		}
		return true, ""
	})
}

// The person edits their own message in place with the keyboard: Tab
// reaches its Edit button (shown on focus), Enter opens the editor, Enter
// saves with PATCH; the message changes in every tab of the browser (one
// stream shared) and in another browser (a stream per tab), marked
// "(edited)" with the edit time on hover.
// Escape cancels an edit; what the server refuses stays in the editor
// with its reason under the message. Nobody else's message has Edit.
func TestEditShowsEverywhere(t *testing.T) {
	needBrowser(t)
	srv := startServer(t, "-max-content", "40")
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 2)
	them := br.person(t)
	other := them.open(t, "other", srv.URL()+"/", noLocks)
	solo := them.open(t, "other-solo", srv.URL()+"/", noLocks)
	waitAllLive(t, tabs)
	waitAllSolo(t, other, solo)
	theirs := srv.post(t, "Grace", "not yours to edit")
	tabs[0].do(sendFromUI("Ada", "teh first draft"))
	all := append([]*tab{other, solo}, tabs...)
	var id string
	waitFor(t, shortWait, "the own message everywhere", func() (bool, string) {
		st := tabs[0].mustState()
		if len(st.Msgs) == 2 && st.Msgs[1].Own {
			id = st.Msgs[1].ID
		}
		return id != "", names(st.Msgs)
	})
	waitMsg(t, all, id, "the message, not edited", func(s editorState) bool { return s.Content == "teh first draft" && s.Edited == "" })
	waitMsg(t, tabs, theirs.ID, "no Edit on another's message", func(s editorState) bool { return !s.CanEdit && !s.CanDelete })
	waitMsg(t, []*tab{other}, id, "no Edit on the other person's view", func(s editorState) bool { return !s.CanEdit && !s.CanDelete })

	// Keyboard: Tab from the log reaches the Edit button (the first
	// control in it), which is shown once focused.
	tabs[0].do(chromedp.Focus(chromedp.CSS("#log")), key("Tab", 9))
	if f := focused(tabs[0]); f != "button.edit@"+id {
		t.Fatalf("after Tab from the log the focus is on %q, want the Edit button of %s", f, id)
	}
	if o := mustEval[string](tabs[0], `getComputedStyle(document.activeElement.closest('.acts')).opacity`); o != "1" {
		t.Errorf("the focused Edit button's opacity is %s, want 1", o)
	}
	tabs[0].do(enter(false))
	waitMsg(t, tabs[:1], id, "the editor", func(s editorState) bool { return s.Editor })
	if f := focused(tabs[0]); f != "textarea.@"+id {
		t.Fatalf("focus on %q, want the editor of %s", f, id)
	}

	// Escape cancels.
	tabs[0].do(setField(".editor textarea", "thrown away"), key("Escape", 27))
	waitMsg(t, tabs[:1], id, "the edit cancelled", func(s editorState) bool { return !s.Editor && s.Content == "teh first draft" })
	if f := focused(tabs[0]); f != "button.edit@"+id {
		t.Errorf("after Escape the focus is on %q, want the Edit button", f)
	}

	// Too long for the server: refused, with its reason under the message.
	tabs[0].do(enter(false), setField(".editor textarea", strings.Repeat("much too long ", 4)), enter(false))
	waitMsg(t, tabs[:1], id, "the refusal under the message", func(s editorState) bool {
		return s.Editor && strings.Contains(s.Error, "longer than 40")
	})
	tabs[0].do(setField(".editor textarea", "the first draft"), enter(false))
	waitMsg(t, all, id, "the edit in every tab and browser", func(s editorState) bool {
		return s.Content == "the first draft" && !s.Editor && s.Error == "" && s.EditedText == "(edited)" &&
			strings.HasPrefix(s.EditedTitle, "Edited ") && s.Edited != ""
	})
	st := mustEval[editorState](other, fmt.Sprintf(editorJS, id))
	if _, err := time.Parse(time.RFC3339Nano, st.Edited); err != nil {
		t.Errorf("the edit time %q: %v", st.Edited, err)
	}

	// A browser that opens now gets the edited message from the backlog.
	late := br.person(t).open(t, "late", srv.URL()+"/")
	waitMsg(t, []*tab{late}, id, "the edited message in the backlog", func(s editorState) bool {
		return s.Content == "the first draft" && s.Edited == st.Edited
	})
	checkClean(t, append(all, late)...)
}

// The person deletes their own message: Delete asks first in a dialog
// (Escape keeps the message, the focus back on Delete), and once
// confirmed the message disappears in every tab and browser (one with a
// stream per tab), and from history.
func TestOwnDeleteEverywhere(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 2)
	other := br.person(t).open(t, "other", srv.URL()+"/", noLocks)
	waitAllLive(t, tabs)
	waitAllSolo(t, other)
	tabs[0].do(sendFromUI("Ada", "oops, wrong room"))
	waitFor(t, shortWait, "the first message", func() (bool, string) { return len(tabs[0].mustState().Msgs) == 1, "" })
	tabs[0].do(sendFromUI("Ada", "keep this one"))
	all := append([]*tab{other}, tabs...)
	var oops, keep message
	waitFor(t, shortWait, "both messages everywhere", func() (bool, string) {
		for _, tb := range all {
			if st := tb.mustState(); len(st.Msgs) != 2 {
				return false, tb.name + ": " + names(st.Msgs)
			}
		}
		st := tabs[1].mustState()
		oops = message{ID: st.Msgs[0].ID, Username: "Ada", Content: st.Msgs[0].Content}
		keep = message{ID: st.Msgs[1].ID, Username: "Ada", Content: st.Msgs[1].Content}
		return st.Msgs[0].Own && st.Msgs[1].Own, names(st.Msgs)
	})

	// Escape keeps it.
	tabs[1].do(chromedp.Focus(chromedp.CSS(`.msg[data-id="`+oops.ID+`"] .del`)), enter(false))
	waitFor(t, shortWait, "the confirmation, Cancel focused", func() (bool, string) {
		f := focused(tabs[1])
		return mustEval[bool](tabs[1], `document.getElementById('confirm').open`) && f == "button.hbtn", f
	})
	if q := mustEval[string](tabs[1], `document.getElementById('confirm-quote').textContent`); q != oops.Content {
		t.Errorf("the confirmation quotes %q, want %q", q, oops.Content)
	}
	tabs[1].do(key("Escape", 27))
	waitFor(t, shortWait, "the dialog closed, the focus back on Delete", func() (bool, string) {
		f := focused(tabs[1])
		return !mustEval[bool](tabs[1], `document.getElementById('confirm').open`) && f == "button.del@"+oops.ID, f
	})
	waitShown(t, shortWait, all, []message{oops, keep})

	deleteMsg(t, tabs[1], oops.ID, "#confirm-yes")
	t.Cleanup(func() { // what each tab and the server hold, should the deletion not show
		if t.Failed() {
			for _, tb := range all {
				t.Logf("%s: %+v; error under a message: %q", tb.name, tb.mustState(), mustEval[string](tb, `(document.querySelector('.msg-error:not([hidden])') || {}).textContent || ''`))
			}
			t.Logf("history: %+v", historyAll(t, srv.URL()))
		}
	})
	waitShown(t, shortWait, all, []message{keep})
	if f := focused(tabs[1]); f != "div." {
		t.Errorf("after the deletion the focus is on %q, want the log", f)
	}
	if h := historyAll(t, srv.URL()); len(h) != 1 || h[0].ID != keep.ID {
		t.Errorf("history after the deletion: %+v", h)
	}

	// Another person's Delete is refused by the server: only the author
	// (or a moderator) deletes.
	req, _ := http.NewRequest("DELETE", srv.URL()+"/messages/"+keep.ID, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var e struct{ Error string }
	if res.StatusCode != http.StatusForbidden || json.Unmarshal(body, &e) != nil || e.Error == "" {
		t.Errorf("DELETE without the author's identity: %s %s, want 403 with a JSON error", res.Status, body)
	}
	checkClean(t, all...)
}
