package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// peopleState is what the page shows about who is here.
type peopleState struct {
	// People are the names listed, "(you)" appended to the person's own.
	People []string `json:"people"`
	Title  string   `json:"title"`
	Online string   `json:"online"`
	Typing string   `json:"typing"`
	Stale  bool     `json:"stale"`
	Open   bool     `json:"open"`
	State  string   `json:"state"`
}

const peopleJS = `(() => {
  const $ = (id) => document.getElementById(id);
  return {
    people: [...document.querySelectorAll('#people-list li')].map((li) =>
      li.querySelector('.name').textContent + (li.querySelector('.you') ? ' (you)' : '')),
    title: $('people-title').textContent, online: $('online').textContent.trim(),
    typing: $('typing').textContent, stale: $('people').hasAttribute('data-stale'),
    open: $('people').open, state: $('status').dataset.state || '',
  };
})()`

func (tb *tab) people() (peopleState, error) { return eval[peopleState](tb, peopleJS) }

// waitPeople waits until the tab lists exactly want (in this order) under
// the header online, and its list is not marked stale.
func waitPeople(t *testing.T, tb *tab, online string, want ...string) {
	t.Helper()
	waitFor(t, longWait, fmt.Sprintf("%s to list %q as %q", tb.name, want, online), func() (bool, string) {
		p, err := tb.people()
		if err != nil {
			return false, err.Error()
		}
		ok := slices.Equal(p.People, want) && p.Online == online && !p.Stale &&
			p.Title == fmt.Sprintf("Online — %d", len(want))
		return ok, fmt.Sprintf("%+v", p)
	})
}

// waitTyping waits until the tab's typing line reads want.
func waitTyping(t *testing.T, tb *tab, want string) {
	t.Helper()
	waitFor(t, shortWait, fmt.Sprintf("%s to show typing %q", tb.name, want), func() (bool, string) {
		p, err := tb.people()
		if err != nil {
			return false, err.Error()
		}
		return p.Typing == want, fmt.Sprintf("%q", p.Typing)
	})
}

// Two browsers with different names see each other in the list, with
// "(you)" on their own; typing in one shows in the other, never in itself,
// and clears when the message arrives; a closed browser leaves the list;
// a watcher without a name is counted apart.
func TestPresenceTwoBrowsers(t *testing.T) {
	needBrowser(t)
	srv := startServer(t, "-presence-interval", "200ms")
	alice := newBrowser(t).open(t, "alice", srv.URL()+"/")
	bob := newBrowser(t).open(t, "bob", srv.URL()+"/")
	waitAllLive(t, []*tab{alice})
	waitAllLive(t, []*tab{bob})
	// No name yet: both browsers watch.
	waitPeople(t, alice, "0 people · 2 watching")

	alice.do(setField("#name", "alice"))
	bob.do(setField("#name", "Bob"))
	waitPeople(t, alice, "2 people", "alice (you)", "Bob")
	waitPeople(t, bob, "2 people", "alice", "Bob (you)")

	// alice types: bob sees it, alice does not see herself.
	alice.do(typeText("#message", "hello b"))
	waitTyping(t, bob, "alice is typing…")
	if p, _ := alice.people(); p.Typing != "" {
		t.Errorf("alice sees her own typing: %q", p.Typing)
	}
	alice.do(chromedp.Focus(chromedp.CSS("#message")), enter(false))
	waitFor(t, shortWait, "bob to show alice's message", func() (bool, string) {
		st := bob.mustState()
		return len(st.Msgs) == 1 && st.Msgs[0].Content == "hello b", names(st.Msgs)
	})
	waitTyping(t, bob, "")

	// A third browser watches without a name; then alice's browser closes.
	watcher := newBrowser(t).open(t, "watcher", srv.URL()+"/")
	waitPeople(t, bob, "2 people · 1 watching", "alice", "Bob (you)")
	waitPeople(t, watcher, "2 people · 1 watching", "alice", "Bob")
	alice.close()
	waitPeople(t, bob, "1 person · 1 watching", "Bob (you)")
	checkClean(t, bob, watcher)
}

// Changing the name reopens the browser's stream with the new name,
// resuming after the last message: the list shows the new name and not
// the old, and no message is missed or shown twice.
func TestPresenceNameChangeResumes(t *testing.T) {
	needBrowser(t)
	srv := startServer(t, "-presence-interval", "200ms")
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 2)
	waitAllLive(t, tabs)
	other := newBrowser(t).open(t, "other", srv.URL()+"/")
	other.do(setField("#name", "zed"))
	tabs[1].do(setField("#name", "carol")) // a follower: the leader's stream takes the name
	waitPeople(t, other, "2 people", "carol", "zed (you)")
	// tab00's own name was empty: it takes the name entered in tab01.
	waitPeople(t, tabs[0], "2 people", "carol (you)", "zed")
	waitPeople(t, tabs[1], "2 people", "carol (you)", "zed")

	var want []message
	for i := range 3 {
		want = append(want, srv.post(t, "curl", fmt.Sprint("before ", i)))
	}
	waitShown(t, shortWait, tabs, want)
	tabs[1].do(setField("#name", "caroline"))
	for i := range 5 { // while the stream changes over
		want = append(want, srv.post(t, "curl", fmt.Sprint("during ", i)))
	}
	waitPeople(t, other, "2 people", "caroline", "zed (you)")
	waitShown(t, shortWait, tabs, want)
	noDuplicates(t, tabs...)
	for _, tb := range tabs {
		if st := tb.mustState(); st.Notice {
			t.Errorf("%s: a reset notice after a name change", tb.name)
		}
	}
	checkClean(t, append(tabs, other)...)
}

// The list survives the leader tab closing and a server restart: it is
// rebuilt from the next presence event, and never shows a name that left.
func TestPresenceLeaderChangeAndRestart(t *testing.T) {
	needBrowser(t)
	srv := startServer(t, "-presence-interval", "200ms")
	br := newBrowser(t)
	tabs := br.openTabs(t, srv.URL()+"/", 2)
	waitAllLive(t, tabs)
	tabs[0].do(setField("#name", "dana"))
	other := newBrowser(t).open(t, "eve", srv.URL()+"/")
	other.do(setField("#name", "eve"))
	waitPeople(t, tabs[1], "2 people", "dana (you)", "eve")

	leader := tabs[0]
	if tabs[1].mustState().Role == "leader" {
		leader = tabs[1]
	}
	follower := tabs[0]
	if leader == tabs[0] {
		follower = tabs[1]
	}
	leader.close()
	waitAllLive(t, []*tab{follower})
	waitPeople(t, follower, "2 people", "dana (you)", "eve")
	waitPeople(t, other, "2 people", "dana", "eve (you)")

	// eve goes while the server is down; after the restart nobody lists her.
	srv.kill()
	other.close()
	waitFor(t, shortWait, "the page to notice the server is gone", func() (bool, string) {
		p, err := follower.people()
		return err == nil && p.State != "live" && p.Stale, fmt.Sprintf("%+v %v", p, err)
	})
	srv.start()
	waitPeople(t, follower, "1 person", "dana (you)")
	checkClean(t, follower)
}

// On a phone the people list is folded under its title and opens by touch.
func TestPresencePhone(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	tb := newBrowser(t).open(t, "phone", srv.URL()+"/", chromedp.EmulateViewport(360, 740, chromedp.EmulateMobile, chromedp.EmulateTouch))
	waitAllLive(t, []*tab{tb})
	tb.do(setField("#name", "pat"))
	waitPeople(t, tb, "1 person", "pat (you)")
	if p, _ := tb.people(); p.Open {
		t.Errorf("the people list is open on a phone")
	}
	tb.do(chromedp.Tap(chromedp.CSS("#people-title")))
	waitFor(t, shortWait, "the list to open", func() (bool, string) {
		p, err := tb.people()
		return err == nil && p.Open, fmt.Sprintf("%+v", p)
	})
	scroll := mustEval[int](tb, `document.documentElement.scrollWidth - document.documentElement.clientWidth`)
	if scroll > 0 {
		t.Errorf("the page scrolls sideways by %d px with the list open", scroll)
	}
	if !strings.Contains(mustEval[string](tb, `document.getElementById('people-list').textContent`), "pat") {
		t.Error("the opened list does not show pat")
	}
	checkClean(t, tb)
}

// noSharing takes BroadcastChannel and Web Locks away before the page's
// scripts run, as in a browser without them: each tab reads its own
// stream (solo). It also records the URL of every stream the page opens.
const noSharing = `delete window.BroadcastChannel;
Object.defineProperty(Navigator.prototype, 'locks', {get: () => undefined, configurable: true});
window.__streams = [];
const fetchBefore = window.fetch;
window.fetch = function (input, init) {
  const u = String(input instanceof Request ? input.url : input);
  if (/^(.*\/)?stream(\?|$)/.test(u)) window.__streams.push(u);
  return fetchBefore.apply(this, arguments);
};`

// roster returns the names GET /presence lists, and how many streams
// watch without a name.
func (s *server) roster(t *testing.T) ([]string, int, error) {
	res, err := http.Get(s.URL() + "/presence")
	if err != nil {
		return nil, 0, err
	}
	defer res.Body.Close()
	var p struct {
		People []struct {
			Name string `json:"name"`
		} `json:"people"`
		Anonymous int `json:"anonymous"`
	}
	if err := json.NewDecoder(res.Body).Decode(&p); err != nil {
		return nil, 0, err
	}
	var names []string
	for _, x := range p.People {
		names = append(names, x.Name)
	}
	return names, p.Anonymous, nil
}

// A solo tab (no BroadcastChannel, no Web Locks) opens its first stream
// after a reload with the name saved in the browser, so the person is on
// the list from that first stream, not only once it reopens.
func TestSoloReloadKeepsName(t *testing.T) {
	needBrowser(t)
	srv := startServer(t, "-presence-interval", "200ms")
	tb := newBrowser(t).open(t, "solo", srv.URL()+"/", withScript(noSharing))
	waitFor(t, longWait, "the tab live on its own", func() (bool, string) {
		st := tb.mustState()
		return st.State == "live" && st.Role == "solo", st.State + " " + st.Role
	})
	tb.do(setField("#name", "zoe"))
	waitFor(t, shortWait, "zoe on the server's list", func() (bool, string) {
		names, anonymous, err := srv.roster(t)
		return err == nil && slices.Equal(names, []string{"zoe"}) && anonymous == 0, fmt.Sprintf("%q %d %v", names, anonymous, err)
	})

	tb.do(chromedp.Reload())
	waitFor(t, longWait, "the reloaded tab live on its own", func() (bool, string) {
		st := tb.mustState()
		return st.State == "live" && st.Role == "solo", st.State + " " + st.Role
	})
	if name := mustEval[string](tb, `document.getElementById('name').value`); name != "zoe" {
		t.Fatalf("after the reload the name field holds %q, want %q", name, "zoe")
	}
	// The stream of the page before the reload may linger a few seconds
	// on the server: once it is gone, the one stream left is the first
	// the reloaded page opened.
	waitFor(t, longWait, "one stream on the server", func() (bool, string) {
		n, err := srv.clients(t)
		return err == nil && n == 1, fmt.Sprintf("clients=%d err=%v", n, err)
	})
	if names, anonymous, err := srv.roster(t); err != nil || !slices.Equal(names, []string{"zoe"}) || anonymous != 0 {
		t.Errorf("after the reload GET /presence lists %q and %d anonymous streams (%v), want zoe alone", names, anonymous, err)
	}
	streams := mustEval[[]string](tb, `window.__streams`)
	if len(streams) != 1 || !strings.Contains(streams[0], "name=zoe") {
		t.Errorf("after the reload the page opened the streams %q, want one, with name=zoe", streams)
	}
	waitPeople(t, tb, "1 person", "zoe (you)")
	checkClean(t, tb)
}
