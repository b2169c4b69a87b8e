package e2e

// Browser tests of what draws the person's attention: mentions of their
// name highlighted, the unread count in the title of a hidden tab, and a
// desktop notification for a mention while no tab of the browser is
// visible.

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"
)

// setHidden makes the page in the tab believe it went to the background
// (or came back): it overrides document.hidden and
// document.visibilityState and fires visibilitychange, as the browser does
// when a tab is hidden. Headless Chromium keeps every tab visible, and the
// DevTools protocol has no command that hides one (Page.setWebLifecycleState
// freezes a page, which stops its scripts altogether).
func setHidden(hidden bool) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`((hidden) => {
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => hidden ? 'hidden' : 'visible'});
  document.dispatchEvent(new Event('visibilitychange'));
})(%t)`, hidden))
}

// mentionState is what a tab shows of one message's mentions.
type mentionState struct {
	Content string `json:"content"`
	// Mentions are the highlighted mentions, in order; one of the person
	// is marked "!" (and must be a <mark>).
	Mentions  []string `json:"mentions"`
	Mentioned bool     `json:"mentioned"` // the message is marked as mentioning the person
	AtYou     bool     `json:"atYou"`     // and says "mentions you"
	Own       bool     `json:"own"`
}

const mentionsJS = `[...document.querySelectorAll('#log .msg')].map((el) => ({
  content: el.querySelector('.content').textContent,
  mentions: [...el.querySelectorAll('.content .mention')].map((m) =>
    (m.classList.contains('me') && m.tagName === 'MARK' ? '!' : '') + m.textContent),
  mentioned: el.classList.contains('mentioned'),
  atYou: !el.querySelector('.at-you').hidden && el.querySelector('.at-you').textContent === 'mentions you',
  own: el.classList.contains('own'),
}))`

// waitMentions waits until the tab shows the messages with these
// mentions: want maps a message's content to its highlighted mentions,
// "!" before the person's own; a message with one of those, unless it is
// the person's own, is marked as mentioning them.
func waitMentions(t *testing.T, tb *tab, want map[string][]string) {
	t.Helper()
	waitFor(t, shortWait, tb.name+" to highlight the mentions", func() (bool, string) {
		got, err := eval[[]mentionState](tb, mentionsJS)
		if err != nil {
			return false, err.Error()
		}
		if len(got) != len(want) {
			return false, fmt.Sprintf("%+v", got)
		}
		for _, m := range got {
			w, ok := want[m.Content]
			me := !m.Own && slices.ContainsFunc(w, func(s string) bool { return strings.HasPrefix(s, "!") })
			if !ok || !slices.Equal(m.Mentions, w) || m.Mentioned != me || m.AtYou != me {
				return false, fmt.Sprintf("%+v", got)
			}
		}
		return true, ""
	})
}

// Mentions are highlighted, those of the person's own name (in any case
// or width, with its space) in a <mark> with the message marked "mentions
// you", except on the person's own message; an e-mail address mentions
// nobody. Another name makes other mentions the person's.
func TestMentionsHighlighted(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	tb := newBrowser(t).open(t, "ada", srv.URL()+"/")
	waitAllLive(t, []*tab{tb})
	tb.do(setField("#name", "Ada Lovelace"))
	srv.post(t, "Grace", "@ada lovelace, look at this")
	srv.post(t, "Grace", "ask @Linus or write to ada@example.com")
	srv.post(t, "Grace", "@ＡＤＡ　ＬＯＶＥＬＡＣＥ and @ada")
	tb.do(sendFromUI("Ada Lovelace", "note to @Ada Lovelace: buy milk"))
	waitMentions(t, tb, map[string][]string{
		"@ada lovelace, look at this":            {"!@ada lovelace"},
		"ask @Linus or write to ada@example.com": {"@Linus"},
		"@ＡＤＡ　ＬＯＶＥＬＡＣＥ and @ada":                 {"!@ＡＤＡ　ＬＯＶＥＬＡＣＥ", "@ada"},
		"note to @Ada Lovelace: buy milk":        {"!@Ada Lovelace"},
	})
	tb.do(setField("#name", "linus"))
	waitMentions(t, tb, map[string][]string{
		"@ada lovelace, look at this":            {"@ada"},
		"ask @Linus or write to ada@example.com": {"!@Linus"},
		"@ＡＤＡ　ＬＯＶＥＬＡＣＥ and @ada":                 {"@ＡＤＡ", "@ada"},
		"note to @Ada Lovelace: buy milk":        {"@Ada"},
	})
	checkClean(t, tb)
}

// noLocks hides the Web Locks API from the page, so that each tab reads
// its own stream (as on plain http from another host).
var noLocks = withScript(`Object.defineProperty(Navigator.prototype, 'locks', {get: () => undefined, configurable: true});`)

// waitTitles waits until the tabs' titles are want, in order.
func waitTitles(t *testing.T, tabs []*tab, want ...string) {
	t.Helper()
	waitFor(t, shortWait, fmt.Sprintf("the titles %q", want), func() (bool, string) {
		var got []string
		for _, tb := range tabs {
			got = append(got, tb.mustState().Title)
		}
		return slices.Equal(got, want), fmt.Sprintf("%q", got)
	})
}

// While a tab is hidden its title counts the messages that arrived
// ("(3) Chat"), not the person's own; back in view it says "Chat" again.
// Each tab counts for itself, with one stream shared by the tabs (a
// hidden follower too) and with a stream per tab.
func TestUnreadCountInTitle(t *testing.T) {
	needBrowser(t)
	for _, tt := range []struct {
		name  string
		setup []chromedp.Action[chromedp.Void]
		roles []string
	}{
		{"shared stream", nil, []string{"leader", "follower"}},
		{"stream per tab", []chromedp.Action[chromedp.Void]{noLocks}, []string{"solo", "solo"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t)
			br := newBrowser(t)
			tabs := []*tab{br.open(t, "first", srv.URL()+"/", tt.setup...), br.open(t, "second", srv.URL()+"/", tt.setup...)}
			waitFor(t, longWait, "both tabs live in their roles", func() (bool, string) {
				var got []string
				for _, tb := range tabs {
					st := tb.mustState()
					got = append(got, st.State+" "+st.Role)
				}
				return slices.Equal(got, []string{"live " + tt.roles[0], "live " + tt.roles[1]}), fmt.Sprint(got)
			})
			seen := srv.post(t, "Grace", "seen by all")
			waitShown(t, shortWait, tabs, []message{seen})
			waitTitles(t, tabs, "Chat", "Chat")

			for _, tb := range tabs {
				tb.do(setHidden(true))
			}
			srv.post(t, "Grace", "one")
			srv.post(t, "Linus", "two")
			tabs[0].do(sendFromUI("Ada", "my own"))
			srv.post(t, "Grace", "three")
			waitTitles(t, tabs, "(3) Chat", "(3) Chat")

			tabs[1].do(setHidden(false))
			waitTitles(t, tabs, "(3) Chat", "Chat")
			srv.post(t, "Grace", "four")
			waitFor(t, shortWait, "the fourth message in the visible tab", func() (bool, string) {
				st := tabs[1].mustState()
				return len(st.Msgs) == 6, names(st.Msgs)
			})
			waitTitles(t, tabs, "(4) Chat", "Chat")
			tabs[0].do(setHidden(false))
			waitTitles(t, tabs, "Chat", "Chat")
			checkClean(t, tabs...)
		})
	}
}

// notificationProbe replaces the page's Notification with one that
// records each notification made (and each request for permission)
// instead of showing it; the browser's permission still decides.
const notificationProbe = `(() => {
  const Real = window.Notification;
  window.__notes = []; window.__asked = 0;
  class Recorded extends EventTarget {
    constructor(title, options) {
      super();
      window.__notes.push({title, body: (options && options.body) || '', tag: (options && options.tag) || ''});
    }
    close() {}
    static get permission() { return Real.permission; }
    static requestPermission() { window.__asked++; return Real.requestPermission(); }
  }
  window.Notification = Recorded;
})();`

// note is a notification a tab made.
type note struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	Tag   string `json:"tag"`
	Tab   string `json:"-"`
}

// notes returns the notifications the tabs made, tab by tab.
func notes(t *testing.T, tabs ...*tab) []note {
	t.Helper()
	var all []note
	for _, tb := range tabs {
		for _, n := range mustEval[[]note](tb, `window.__notes`) {
			n.Tab = tb.name
			all = append(all, n)
		}
	}
	return all
}

// grantNotifications lets pages of origin show notifications, as a person
// answering the browser's prompt would. (Browser.grantPermissions is gone
// from the protocol of current Chromium; Browser.setPermission took its
// place.)
func grantNotifications(t *testing.T, b *browser, origin string) {
	t.Helper()
	c := chromedp.FromContext(b.ctx)
	_, err := cdp.Call(b.ctx, c.Browser, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
		Permission: &cdpbrowser.PermissionDescriptor{Name: "notifications"}, Setting: cdpbrowser.PermissionSettingGranted,
		Origin: origin, BrowserContextID: c.BrowserContextID,
	})
	if err != nil {
		t.Fatalf("grant notifications: %v", err)
	}
}

// bellState is the bell's state in a tab.
type bellState struct {
	Shown   bool   `json:"shown"`
	Pressed string `json:"pressed"`
	Asked   int    `json:"asked"`
}

const bellJS = `({shown: !document.getElementById('bell').hidden,
  pressed: document.getElementById('bell').getAttribute('aria-pressed'), asked: window.__asked})`

// The bell asks for the permission only when pressed, never on load; then
// a message that mentions the person, arriving while every tab of the
// browser is hidden, makes one notification, in one tab, though both
// tabs get the message; none while a tab is visible, none for a message
// without a mention, none for the person's own.
func TestMentionNotifiesOnce(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	br := newBrowser(t)
	grantNotifications(t, br, srv.URL())
	tabs := []*tab{br.open(t, "leader", srv.URL()+"/", withScript(notificationProbe)),
		br.open(t, "follower", srv.URL()+"/", withScript(notificationProbe))}
	waitAllLive(t, tabs)
	if tabs[0].mustState().Role != "leader" {
		t.Fatal("the first tab does not lead")
	}
	for _, tb := range tabs {
		tb.do(setField("#name", "Ada"))
		if b := mustEval[bellState](tb, bellJS); !b.Shown || b.Pressed != "false" || b.Asked != 0 {
			t.Fatalf("%s: the bell on load is %+v, want shown, not pressed, no permission asked", tb.name, b)
		}
	}
	tabs[1].do(chromedp.Click(chromedp.CSS("#bell")))
	waitFor(t, shortWait, "the bell on in both tabs, the permission asked once", func() (bool, string) {
		a, b := mustEval[bellState](tabs[0], bellJS), mustEval[bellState](tabs[1], bellJS)
		return a.Pressed == "true" && b.Pressed == "true" && a.Asked+b.Asked == 1, fmt.Sprintf("%+v %+v", a, b)
	})

	// While a tab is visible, nobody is notified: not with both visible,
	// nor with only the leader visible, nor with only the follower
	// visible (the leader asks it). Each message is shown in both tabs
	// before the next step changes what is visible.
	shown := []message{srv.post(t, "Grace", "@ada one")}
	waitShown(t, shortWait, tabs, shown)
	tabs[1].do(setHidden(true))
	shown = append(shown, srv.post(t, "Grace", "@ada two"))
	waitShown(t, shortWait, tabs, shown)
	tabs[0].do(setHidden(true))
	tabs[1].do(setHidden(false))
	shown = append(shown, srv.post(t, "Grace", "@ada three"))
	waitShown(t, shortWait, tabs, shown)
	tabs[1].do(setHidden(true))
	srv.post(t, "Grace", "hello all")
	tabs[0].do(sendFromUI("Ada", "@ada a note to myself"))
	four := srv.post(t, "Grace", "@ADA four")
	want := []note{{Title: "Grace mentioned you", Body: "@ADA four", Tag: "chat-" + four.ID, Tab: "leader"}}
	waitFor(t, shortWait, "one notification", func() (bool, string) {
		got := notes(t, tabs...)
		return len(got) > 0, fmt.Sprintf("%+v", got)
	})
	srv.post(t, "Linus", "@bob five")
	six := srv.post(t, "Linus", "@ada six")
	want = append(want, note{Title: "Linus mentioned you", Body: "@ada six", Tag: "chat-" + six.ID, Tab: "leader"})
	waitFor(t, shortWait, "the notifications of the mentions while hidden, one each", func() (bool, string) {
		got := notes(t, tabs...)
		return slices.Equal(got, want), fmt.Sprintf("%+v", got)
	})
	checkClean(t, tabs...)
}
