package e2e

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// axeSource is axe-core (testdata/README.md says which version and how to
// update it), the accessibility engine the audit runs in the page.
//
//go:embed testdata/axe.min.js
var axeSource string

// axeRun runs axe-core's WCAG 2.2 A and AA rules on the whole page, and
// also its "region" rule (all content inside landmarks), and returns the
// violations and the checks it could not decide, as JSON.
const axeRun = `axe.run(document, {
  runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']},
  rules: {region: {enabled: true}},
  resultTypes: ['violations', 'incomplete'],
}).then((r) => {
  const brief = (list) => list.map((v) => ({id: v.id, impact: v.impact || '', help: v.help,
    nodes: v.nodes.map((n) => ({target: n.target.join(' '), summary: n.failureSummary || ''}))}));
  return JSON.stringify({violations: brief(r.violations), incomplete: brief(r.incomplete), version: axe.version});
})`

// axeResult is what axeRun returns.
type axeResult struct {
	Violations []axeRule `json:"violations"`
	Incomplete []axeRule `json:"incomplete"`
	Version    string    `json:"version"`
}

// axeRule is one rule's findings.
type axeRule struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target  string `json:"target"`
		Summary string `json:"summary"`
	} `json:"nodes"`
}

// String lists the rule, why it matters, and each element it fails on.
func (r axeRule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s", r.ID, r.Impact, r.Help)
	for _, n := range r.Nodes {
		fmt.Fprintf(&b, "\n    %s: %s", n.Target, strings.ReplaceAll(n.Summary, "\n", " "))
	}
	return b.String()
}

// audit injects axe-core into the tab and runs it. The script goes in
// through the DevTools protocol (Runtime.evaluate), which the page's
// Content-Security-Policy does not govern: the page itself allows no
// script but its own.
func audit(t *testing.T, tb *tab) axeResult {
	t.Helper()
	tb.do(chromedp.Evaluate[chromedp.Void](axeSource))
	ctx, cancel := context.WithTimeout(tb.ctx, actionLimit)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](axeRun, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: run axe-core: %v", tb.name, err)
	}
	var res axeResult
	if err := json.Unmarshal([]byte(raw), &res); err != nil {
		t.Fatalf("%s: axe-core's answer %.200q: %v", tb.name, raw, err)
	}
	return res
}

// The page passes axe-core's WCAG 2.2 A and AA rules, and keeps all its
// content in landmarks, in the light and the dark theme and on a phone:
// just opened, and in use (messages from others and from this browser,
// mentions of the person and of someone else, an edited message, the
// person's name on the list, someone typing, a message the server refused
// in the outbox and an error under the form, the bell, a refused name
// with its reason by the name field, and an edit open on the person's
// message with the server's refusal under it). What axe-core
// cannot decide fails too: each such finding needs a person to judge it,
// and then a page that lets axe-core decide.
func TestAccessibilityAudit(t *testing.T) {
	needBrowser(t)
	for _, tt := range []struct {
		name  string
		setup []chromedp.Action[chromedp.Void]
	}{
		{"light", []chromedp.Action[chromedp.Void]{chromedp.EmulateViewport(1000, 700), colorScheme("light")}},
		{"dark", []chromedp.Action[chromedp.Void]{chromedp.EmulateViewport(1000, 700), colorScheme("dark")}},
		{"phone", []chromedp.Action[chromedp.Void]{chromedp.EmulateViewport(360, 740, chromedp.EmulateMobile, chromedp.EmulateTouch), colorScheme("light")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, "-presence-interval", "200ms", "-max-content", "40")
			tb := newBrowser(t).open(t, tt.name, srv.URL()+"/", tt.setup...)
			waitAllLive(t, []*tab{tb})
			checkAudit(t, tb, tt.name+", just opened")
			busyPage(t, srv, tb)
			checkAudit(t, tb, tt.name+", in use")
			checkClean(t, tb)
		})
	}
}

// checkAudit runs axe-core in the tab and fails the test with each rule
// it breaks or cannot decide, and the elements concerned.
func checkAudit(t *testing.T, tb *tab, what string) {
	t.Helper()
	res := audit(t, tb)
	var b strings.Builder
	for _, r := range res.Violations {
		fmt.Fprintf(&b, "\n  %s", r)
	}
	for _, r := range res.Incomplete {
		fmt.Fprintf(&b, "\n  undecided: %s", r)
	}
	if n := len(res.Violations) + len(res.Incomplete); n > 0 {
		t.Errorf("%s: axe-core %s finds %d rules broken or undecided:%s", what, res.Version, n, b.String())
	}
}

// busyPage fills the tab with what a page in use shows: messages, one of
// them this browser's own and edited, one mentioning the person and one
// someone else, the person on the list, someone typing, a message refused
// (too long for -max-content 40) and its error; and last a name the
// server refuses, with its reason by the name field, and an edit of the
// person's message open, refused (too long) with the reason under it.
func busyPage(t *testing.T, srv *server, tb *tab) {
	t.Helper()
	srv.post(t, "Grace", "Morning all!")
	srv.post(t, "Linus", "Has anyone tried the new build?")
	tb.do(sendFromUI("Ada", "Yes, it works."))
	var own string
	waitFor(t, shortWait, "three messages shown, one own", func() (bool, string) {
		st := tb.mustState()
		if len(st.Msgs) == 3 && st.Msgs[2].Own {
			own = st.Msgs[2].ID
		}
		return own != "", names(st.Msgs)
	})
	tb.do(chromedp.Click(chromedp.CSS(".msg.own .edit")), setField(".editor textarea", "Yes, it works well."), enter(false))
	waitMsg(t, []*tab{tb}, own, "the own message edited", func(s editorState) bool { return s.EditedText == "(edited)" })
	srv.post(t, "Grace", "@Ada great, tell @Linus")
	waitFor(t, shortWait, "four messages shown, one own, one mentioning the person", func() (bool, string) {
		st := tb.mustState()
		me := mustEval[int](tb, `document.querySelectorAll('#log .msg.mentioned mark.mention.me').length`)
		return len(st.Msgs) == 4 && st.Msgs[2].Own && me == 1, fmt.Sprint(names(st.Msgs), "; mentions of the person: ", me)
	})
	waitPeople(t, tb, "1 person", "Ada (you)")
	tb.do(sendFromUI("Ada", strings.Repeat("far too long for this server ", 3)))
	waitFor(t, shortWait, "the refused message in the outbox, and the error", func() (bool, string) {
		out := tb.outbox()
		st := tb.mustState()
		return len(out) == 1 && out[0].Failed && st.Error != "", fmt.Sprintf("outbox %+v, error %q", out, st.Error)
	})
	postTyping(t, srv, "Linus")
	waitTyping(t, tb, "Linus is typing…")
	tb.do(setField("#name", "\u202eAda"))
	waitFor(t, shortWait, "the refused name's reason by the name field", func() (bool, string) {
		st := tb.mustState()
		return strings.Contains(st.NameError, "bidirectional"), st.NameError
	})
	tb.do(chromedp.Click(chromedp.CSS(".msg.own .edit")), setField(".editor textarea", strings.Repeat("far too long for this server ", 2)), enter(false))
	waitMsg(t, []*tab{tb}, own, "the refused edit's reason under the message", func(s editorState) bool { return s.Editor && s.Error != "" })
}

// postTyping tells the room that name is typing, as the page does.
func postTyping(t *testing.T, srv *server, name string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": name})
	res, err := http.Post(srv.URL()+"/typing", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /typing: %v", err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		t.Fatalf("POST /typing: %s", res.Status)
	}
}

// The room-key gate of a private room (with the error of a wrong key) and
// a moderator's page (with the Delete buttons, and the confirmation a
// Delete asks for) pass the same audit, in both themes.
func TestAccessibilityAuditGateAndModerator(t *testing.T) {
	needBrowser(t)
	for _, scheme := range []string{"light", "dark"} {
		t.Run(scheme, func(t *testing.T) {
			srv := startServer(t, "-room-key", "sesame", "-admin-key", "boss")
			tb := newBrowser(t).open(t, scheme, srv.URL()+"/", chromedp.EmulateViewport(1000, 700), colorScheme(scheme))
			waitGate(t, tb, "the gate", func(g gateState) bool { return g.Shown && g.Locked })
			tb.do(enterKey("wrong"))
			waitGate(t, tb, "the wrong key's error", func(g gateState) bool { return g.Error != "" })
			checkAudit(t, tb, scheme+", gate")

			postWithKey(t, srv, "sesame", "Grace", "Morning all!")
			tb.do(enterKey("boss"))
			waitGate(t, tb, "the moderator's page", func(g gateState) bool { return !g.Shown && g.Admin })
			waitFor(t, shortWait, "the message with its Delete button", func() (bool, string) {
				n := mustEval[int](tb, `[...document.querySelectorAll('#log .msg .del')].filter((b) => b.offsetParent !== null).length`)
				return n == 1, fmt.Sprint(n, " Delete buttons shown")
			})
			checkAudit(t, tb, scheme+", moderator")
			tb.do(chromedp.Click(chromedp.CSS("#log .msg .del")))
			waitFor(t, shortWait, "the confirmation dialog", func() (bool, string) {
				open := mustEval[bool](tb, `document.getElementById('confirm').open`)
				return open, fmt.Sprint("open: ", open)
			})
			checkAudit(t, tb, scheme+", moderator confirming a deletion")
			tb.do(chromedp.Click(chromedp.CSS("#confirm-no")))
			checkClean(t, tb)
		})
	}
}
