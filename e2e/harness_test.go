package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the page screenshot to ../docs/screenshot.png")

var (
	chromePath string // empty: no browser, every test skips
	serverBin  string // the chat server built from the parent module
	buildErr   error
)

// Timeouts of the polls. Generous, because the machine may be slow or busy
// (for example under -race); a passing run takes a fraction of them.
const (
	pollEvery   = 50 * time.Millisecond
	shortWait   = 10 * time.Second
	longWait    = 30 * time.Second
	actionLimit = 30 * time.Second
)

func TestMain(m *testing.M) {
	flag.Parse()
	chromePath = findChrome()
	if chromePath == "" {
		fmt.Println("e2e: no Chromium found (looked for $CHROME_PATH, chromium, chromium-browser, google-chrome); the browser tests are SKIPPED")
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "chat-e2e-bin-")
	if err != nil {
		fmt.Println("e2e:", err)
		os.Exit(1)
	}
	if bin := os.Getenv("CHAT_E2E_SERVER"); bin != "" {
		serverBin = bin // a server built elsewhere
	} else {
		serverBin = filepath.Join(dir, "chat")
		cmd := exec.Command("go", "build", "-o", serverBin, ".")
		cmd.Dir = ".." // the parent module: the chat server
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build of the server failed: %v\n%s", err, out)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func findChrome() string {
	for _, env := range []string{"CHROME_PATH", "CHROMIUM_PATH"} {
		if p := os.Getenv(env); p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// needBrowser skips the test without Chromium and fails it when the server
// did not build.
func needBrowser(t *testing.T) {
	t.Helper()
	if chromePath == "" {
		t.Skip("Chromium not found: install it (apt-get install chromium) or set CHROME_PATH")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// waitFor polls cond every pollEvery until it reports true, and fails the
// test after timeout with the last detail cond gave.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last seen: %s", timeout, what, detail)
		}
		time.Sleep(pollEvery)
	}
}

// ---------------------------------------------------------------- server

type server struct {
	t    *testing.T
	addr string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startServer runs the chat server on a free loopback port with the given
// extra flags. Posting is not rate-limited unless the flags say so.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	args := append([]string{"-post-rate", "0"}, extra...)
	s := &server{t: t, addr: freeAddr(t), args: args, out: &lockedBuffer{}}
	s.start()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			out := s.out.String()
			if len(out) > 8000 {
				out = "..." + out[len(out)-8000:]
			}
			t.Logf("server output:\n%s", out)
		}
	})
	return s
}

func (s *server) URL() string { return "http://" + s.addr }

func (s *server) start() {
	s.t.Helper()
	cmd := exec.Command(serverBin, append([]string{"-addr", s.addr}, s.args...)...)
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start server: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	waitFor(s.t, shortWait, "the server to answer /healthz", func() (bool, string) {
		select {
		case <-done:
			s.t.Fatalf("server exited at start: %s", s.out.String())
		default:
		}
		res, err := http.Get(s.URL() + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		res.Body.Close()
		return res.StatusCode == 200, res.Status
	})
}

// kill ends the server at once, as a crash would.
func (s *server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// stop asks the server to shut down and kills it after 5 s.
func (s *server) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

type message struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	Content  string `json:"content"`
	Time     string `json:"time"`
}

// post sends a message as JSON, as curl would, and returns the stored one.
func (s *server) post(t *testing.T, username, content string) message {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": username, "content": content})
	res, err := http.Post(s.URL()+"/post", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /post: %v", err)
	}
	return decodePosted(t, res)
}

// postForm sends a message form-encoded, as `curl -d` would.
func (s *server) postForm(t *testing.T, username, content string) message {
	t.Helper()
	res, err := http.PostForm(s.URL()+"/post", url.Values{"username": {username}, "content": {content}})
	if err != nil {
		t.Fatalf("POST /post: %v", err)
	}
	return decodePosted(t, res)
}

func decodePosted(t *testing.T, res *http.Response) message {
	t.Helper()
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /post: %s: %s", res.Status, b)
	}
	var m message
	if err := json.Unmarshal(b, &m); err != nil || m.ID == "" {
		t.Fatalf("POST /post: bad answer %q: %v", b, err)
	}
	return m
}

// clients returns the `clients` of GET /stats: the open streams.
func (s *server) clients(t *testing.T) (int, error) {
	res, err := http.Get(s.URL() + "/stats")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var st struct {
		Clients int `json:"clients"`
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return 0, err
	}
	return st.Clients, nil
}

// ---------------------------------------------------------------- browser

type browser struct {
	ctx context.Context
}

// newBrowser starts a headless Chromium with a fresh profile. All its tabs
// share one browser context: storage, Web Locks and BroadcastChannel.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	dir, err := os.MkdirTemp("", "chat-e2e-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromePath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1000, 700),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		os.RemoveAll(dir)
	})
	// The first run starts the browser; its life is bound to ctx, so no timeout here.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium (%s): %v", chromePath, err)
	}
	return &browser{ctx: ctx}
}

// person returns another person's browser: a new browser context of the
// same Chromium, with its own cookies (so its own identity), storage,
// Web Locks and BroadcastChannel, and cheaper than a second Chromium.
func (b *browser) person(t *testing.T) *browser {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // makes the browser context, with a blank tab
		t.Fatalf("new browser context: %v", err)
	}
	return &browser{ctx: ctx}
}

type tab struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	closed bool
}

// cspProbe records Content-Security-Policy violations and page errors of
// the page before any of its own scripts run.
const cspProbe = `
window.__csp = []; window.__errors = [];
document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
window.addEventListener('error', (e) => window.__errors.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason)));
`

// open opens a new tab of the browser on rawURL and waits for the load.
func (b *browser) open(t *testing.T, name, rawURL string, setup ...chromedp.Action[chromedp.Void]) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	tb := &tab{t: t, name: name, ctx: ctx, cancel: cancel}
	t.Cleanup(tb.close)
	if err := chromedp.Do(ctx); err != nil { // opens the tab; its life is bound to ctx
		t.Fatalf("%s: open tab: %v", name, err)
	}
	steps := append([]chromedp.Action[chromedp.Void]{
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspProbe})
			return err
		}),
	}, setup...)
	steps = append(steps, chromedp.Navigate(rawURL))
	tb.do(steps...)
	return tb
}

// openTabs opens n tabs on rawURL, one after the other.
func (b *browser) openTabs(t *testing.T, rawURL string, n int) []*tab {
	t.Helper()
	tabs := make([]*tab, n)
	for i := range tabs {
		tabs[i] = b.open(t, fmt.Sprintf("tab%02d", i), rawURL)
	}
	return tabs
}

func (tb *tab) close() {
	if !tb.closed {
		tb.closed = true
		tb.cancel()
	}
}

// do runs the steps in the tab within actionLimit.
func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := tb.try(steps...); err != nil {
		tb.t.Fatalf("%s: %v", tb.name, err)
	}
}

// try is do for other goroutines: it returns the error.
func (tb *tab) try(steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(tb.ctx, actionLimit)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// eval evaluates a JavaScript expression in the tab and decodes its value.
func eval[T any](tb *tab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, actionLimit)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

func mustEval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	v, err := eval[T](tb, expr)
	if err != nil {
		tb.t.Fatalf("%s: evaluate %q: %v", tb.name, expr, err)
	}
	return v
}

// typeText focuses the element and inserts text as an IME would: one input
// event, any characters (emoji, RTL) exactly.
func typeText(sel, text string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.Focus(chromedp.CSS(sel)),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, input.InsertText, input.InsertTextParams{Text: text})
			return err
		}),
	)
}

// setField replaces the value of an input or textarea, as a user selecting
// all and typing would.
func setField(sel, text string) chromedp.Action[chromedp.Void] {
	if text == "" {
		js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.focus(); e.value = ''; e.dispatchEvent(new Event('input', {bubbles: true})); })()`, sel)
		return chromedp.Evaluate[chromedp.Void](js)
	}
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.focus(); e.select(); })()`, sel)
	return chromedp.Steps(
		chromedp.Evaluate[chromedp.Void](js),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, input.InsertText, input.InsertTextParams{Text: text})
			return err
		}),
	)
}

func pressKey(ctx context.Context, tg *chromedp.Target, key, code string, vk int64, text string, modifiers int64) error {
	down := input.DispatchKeyEventTypeKeyDown
	if text == "" {
		down = input.DispatchKeyEventTypeRawKeyDown
	}
	for _, typ := range []input.DispatchKeyEventType{down, input.DispatchKeyEventTypeKeyUp} {
		p := input.DispatchKeyEventParams{
			Type: typ, Key: key, Code: code, Modifiers: modifiers,
			WindowsVirtualKeyCode: vk, NativeVirtualKeyCode: vk,
		}
		if typ != input.DispatchKeyEventTypeKeyUp {
			p.Text, p.UnmodifiedText = text, text
		}
		if _, err := cdp.Call(ctx, tg, input.DispatchKeyEvent, p); err != nil {
			return err
		}
	}
	return nil
}

// enter presses Enter in the focused element, as a real keyboard does: one
// keydown that carries the text "\r" (so the page can cancel it) and a keyup.
func enter(shift bool) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		var mod int64
		if shift {
			mod = 8
		}
		return pressKey(ctx, tg, "Enter", "Enter", 13, "\r", mod)
	})
}

// colorScheme emulates prefers-color-scheme.
func colorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	})
}

// sendFromUI types the name and the message in the form and presses Enter.
func sendFromUI(name, text string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		setField("#name", name),
		setField("#message", text),
		chromedp.Focus(chromedp.CSS("#message")),
		enter(false),
	)
}

// ---------------------------------------------------------------- page state

type shownMsg struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Content string `json:"content"`
	Own     bool   `json:"own"`
}

type pageState struct {
	State     string     `json:"state"`
	Status    string     `json:"status"`
	Role      string     `json:"role"`
	Online    string     `json:"online"`
	Notice    bool       `json:"notice"`
	Error     string     `json:"error"`
	NameError string     `json:"nameError"`
	Title     string     `json:"title"`
	Message   string     `json:"message"`
	SendOff   bool       `json:"sendOff"`
	Jump      bool       `json:"jump"`
	Msgs      []shownMsg `json:"msgs"`
	CSP       []string   `json:"csp"`
	Errors    []string   `json:"errors"`
}

const stateJS = `(() => {
  const $ = (id) => document.getElementById(id);
  const msgs = [...document.querySelectorAll('#log .msg')].map((el) => ({
    id: el.dataset.id || '',
    name: el.querySelector('.name') ? el.querySelector('.name').textContent : '',
    content: el.querySelector('.content') ? el.querySelector('.content').textContent : '',
    own: el.classList.contains('own'),
  }));
  return {
    state: $('status').dataset.state || '', status: $('status').textContent.trim(),
    role: document.documentElement.dataset.role || '', online: $('online').textContent.trim(),
    notice: !$('notice').hidden, error: $('error').hidden ? '' : $('error').textContent,
    nameError: $('name-error').hidden ? '' : $('name-error').textContent, title: document.title,
    message: $('message').value, sendOff: $('send').disabled, jump: !$('jump').hidden,
    msgs, csp: window.__csp || [], errors: window.__errors || [],
  };
})()`

func (tb *tab) state() (pageState, error) {
	return eval[pageState](tb, stateJS)
}

func (tb *tab) mustState() pageState {
	tb.t.Helper()
	st, err := tb.state()
	if err != nil {
		tb.t.Fatalf("%s: read page state: %v", tb.name, err)
	}
	return st
}

// checkClean fails the test if the page saw CSP violations or script errors.
func checkClean(t *testing.T, tabs ...*tab) {
	t.Helper()
	for _, tb := range tabs {
		st := tb.mustState()
		if len(st.CSP) > 0 {
			t.Errorf("%s: Content-Security-Policy violations: %q", tb.name, st.CSP)
		}
		if len(st.Errors) > 0 {
			t.Errorf("%s: script errors: %q", tb.name, st.Errors)
		}
	}
}

// waitAllLive waits until every tab says "live" and exactly one is the leader.
func waitAllLive(t *testing.T, tabs []*tab) {
	t.Helper()
	waitFor(t, longWait, "every tab live with exactly one leader", func() (bool, string) {
		leaders, notLive := 0, []string{}
		for _, tb := range tabs {
			st, err := tb.state()
			if err != nil {
				return false, tb.name + ": " + err.Error()
			}
			if st.State != "live" {
				notLive = append(notLive, tb.name+"="+st.State)
			}
			if st.Role == "leader" {
				leaders++
			}
		}
		return len(notLive) == 0 && leaders == 1, fmt.Sprintf("leaders=%d not live=%v", leaders, notLive)
	})
}

// waitShown waits until every tab shows exactly want (by id and text, in
// this order) and nothing else.
func waitShown(t *testing.T, timeout time.Duration, tabs []*tab, want []message) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d tabs to show the same %d messages", len(tabs), len(want)), func() (bool, string) {
		for _, tb := range tabs {
			st, err := tb.state()
			if err != nil {
				return false, tb.name + ": " + err.Error()
			}
			if d := diffShown(st.Msgs, want); d != "" {
				return false, tb.name + ": " + d
			}
		}
		return true, ""
	})
}

func diffShown(got []shownMsg, want []message) string {
	ids := make([]string, len(got))
	for i, g := range got {
		ids[i] = g.ID
	}
	if len(got) != len(want) {
		return fmt.Sprintf("shows %d messages, want %d; ids %v", len(got), len(want), ids)
	}
	for i := range want {
		if got[i].ID != want[i].ID || got[i].Name != want[i].Username || got[i].Content != want[i].Content {
			return fmt.Sprintf("message %d is %+v, want %+v; ids %v", i, got[i], want[i], ids)
		}
	}
	return ""
}

// noDuplicates fails on a tab showing an id twice.
func noDuplicates(t *testing.T, tabs ...*tab) {
	t.Helper()
	for _, tb := range tabs {
		seen := map[string]bool{}
		for _, m := range tb.mustState().Msgs {
			if seen[m.ID] {
				t.Errorf("%s shows message %s twice", tb.name, m.ID)
			}
			seen[m.ID] = true
		}
	}
}

// idKey parses "<epoch>-<seq>".
func idKey(t *testing.T, id string) [2]uint64 {
	t.Helper()
	var e, s uint64
	if _, err := fmt.Sscanf(id, "%d-%d", &e, &s); err != nil || fmt.Sprintf("%d-%d", e, s) != id {
		t.Fatalf("malformed id %q", id)
	}
	return [2]uint64{e, s}
}

func idLess(t *testing.T, a, b string) bool {
	ka, kb := idKey(t, a), idKey(t, b)
	return ka[0] < kb[0] || ka[0] == kb[0] && ka[1] < kb[1]
}

func names(msgs []shownMsg) string {
	var b strings.Builder
	for i, m := range msgs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s:%q", m.ID, m.Content)
	}
	return b.String()
}
