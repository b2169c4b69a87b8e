package main

// Operations tests: the real binary killed and restarted on its journal,
// journal damage seen through run, the /metrics exposition checked by a
// strict parser, /healthz during shutdown, and the log formats.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"chat/internal/record"
	"chat/internal/sse"
)

// buildChat builds the server binary into dir and returns its path. It
// skips the test where there is no go command or no subprocesses.
func buildChat(t *testing.T, dir string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the server binary; skipped in -short mode")
	}
	if runtime.GOOS == "windows" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("needs Unix signals and subprocesses")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			goTool = filepath.Join(root, "bin", "go")
		} else {
			t.Skip("no go command to build the server with")
		}
	}
	bin := filepath.Join(dir, "chat")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// chatProc is the server binary running in a child process.
type chatProc struct {
	URL  string
	cmd  *exec.Cmd
	logs *logWatcher
	// exited is closed once the process has exited and err is set.
	exited chan struct{}
	err    error
}

// startChatProc starts the server binary with a loopback port, no rate
// limit and no monitor, plus args, and waits until it listens. The process
// is killed when the test ends if it is still running.
func startChatProc(t *testing.T, bin string, args ...string) *chatProc {
	t.Helper()
	p := startChatProcNoWait(t, bin, args...)
	p.waitListening(t)
	return p
}

// waitListening waits until the server logs its address, and sets URL.
func (p *chatProc) waitListening(t *testing.T) {
	t.Helper()
	select {
	case addr := <-p.logs.addr:
		p.URL = "http://" + addr
	case <-p.exited:
		t.Fatalf("server exited at start: %v\n%s", p.err, p.logs)
	case <-time.After(waitTimeout):
		t.Fatalf("server did not listen within %v\n%s", waitTimeout, p.logs)
	}
}

// startChatProcNoWait starts the server binary and returns at once.
func startChatProcNoWait(t *testing.T, bin string, args ...string) *chatProc {
	t.Helper()
	all := append([]string{"-addr", "127.0.0.1:0", "-post-rate", "0", "-stats-interval", "0", "-presence-interval", "0"}, args...)
	return startCmd(t, exec.Command(bin, all...))
}

// startCmd starts cmd, a command that runs the server (the binary, or a
// wrapper that execs it), with the server's log on a watcher and no CHAT_*
// variable, and returns at once. The process is killed when the test ends
// if it is still running.
func startCmd(t *testing.T, cmd *exec.Cmd) *chatProc {
	t.Helper()
	p := &chatProc{cmd: cmd, logs: newLogWatcher(), exited: make(chan struct{})}
	// Flags only: no CHAT_* variable from the environment may change them.
	p.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CHAT_") })
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// kill ends the process with SIGKILL and waits for it.
func (p *chatProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(waitTimeout):
		t.Fatal("killed server did not exit")
	}
}

// wait waits up to d for the process to exit and returns its exit code.
func (p *chatProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		t.Fatalf("server still running %v later\n%s", d, p.logs)
	}
	var exit *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exit) {
		t.Fatalf("wait: %v", p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// opsPost posts a message as JSON with client and returns the status and,
// on 201, the stored message.
func opsPost(client *http.Client, url, username, content string) (int, Message, error) {
	body, _ := json.Marshal(map[string]string{"username": username, "content": content})
	resp, err := client.Post(url+"/post", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, Message{}, err
	}
	defer resp.Body.Close()
	var m Message
	if resp.StatusCode == http.StatusCreated {
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			return 0, Message{}, fmt.Errorf("decode 201 body: %w", err)
		}
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, m, nil
}

// mustPost posts a message and fails the test unless it is answered 201.
func mustPost(t *testing.T, url, username, content string) Message {
	t.Helper()
	code, m, err := opsPost(http.DefaultClient, url, username, content)
	if err != nil || code != http.StatusCreated {
		t.Fatalf("POST /post %q: status %d, error %v", content, code, err)
	}
	return m
}

// readUntil reads s until the chat message with the given id and returns
// the chat messages up to it (included) and the other events on the way.
// It fails the test if the stream ends, holds a malformed message or stalls
// for waitTimeout.
func readUntil(t *testing.T, s *subscriber, id string) (msgs []Message, other []sse.Event) {
	t.Helper()
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var ev sse.Event
			if ev, err = s.sse.NextEvent(); err != nil {
				return
			}
			if ev.Type != "message" {
				other = append(other, ev)
				continue
			}
			var m Message
			if err = json.Unmarshal([]byte(ev.Data), &m); err != nil || m.ID != ev.ID {
				err = fmt.Errorf("bad message event %+v: %v", ev, err)
				return
			}
			msgs = append(msgs, m)
			if m.ID == id {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		s.close()
		<-done
		t.Fatalf("no message %s within %v; got %d messages, last %v", id, waitTimeout, len(msgs), lastIDs(msgs, 3))
	}
	if err != nil {
		t.Fatalf("reading stream for %s after %d messages (last %v): %v", id, len(msgs), lastIDs(msgs, 3), err)
	}
	return msgs, other
}

// lastIDs returns the ids of the last n of msgs.
func lastIDs(msgs []Message, n int) []string {
	return ids(msgs[max(0, len(msgs)-n):])
}

// mustParseID parses an id or fails the test.
func mustParseID(t *testing.T, id string) (int64, uint64) {
	t.Helper()
	e, s, err := record.ParseID(id)
	if err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	return e, s
}

// ackLog records the messages a server acknowledged with 201.
type ackLog struct {
	mu   sync.Mutex
	msgs []Message
}

// add records m.
func (a *ackLog) add(m Message) {
	a.mu.Lock()
	a.msgs = append(a.msgs, m)
	a.mu.Unlock()
}

// len returns how many messages were acknowledged.
func (a *ackLog) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.msgs)
}

// all returns the acknowledged messages.
func (a *ackLog) all() []Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.msgs)
}

// postStorm posts from workers goroutines until stop is closed, recording
// every 201 in acked. Posts that fail (the server was killed) are not
// acknowledged and are ignored; any answer other than 201 or 503 is
// reported on the returned channel, which is closed when all have stopped.
func postStorm(url, tag string, workers int, acked *ackLog, stop <-chan struct{}) <-chan error {
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: workers},
	}
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, m, err := opsPost(client, url, fmt.Sprintf("w%d", w), fmt.Sprintf("%s w%d #%d", tag, w, i))
				switch {
				case err != nil:
					// The server is gone (killed): nothing was acknowledged.
				case code == http.StatusCreated:
					acked.add(m)
				case code == http.StatusServiceUnavailable:
					// Journal busy: not stored, not acknowledged.
				default:
					select {
					case errs <- fmt.Errorf("POST %s: status %d", tag, code):
					default:
					}
					return
				}
			}
		})
	}
	go func() {
		wg.Wait()
		client.CloseIdleConnections()
		close(errs)
	}()
	return errs
}

// checkRecovered checks a server restarted on a journal: the whole history
// (read from the start, <epoch>-0) holds every acknowledged message, with
// contiguous ids in one epoch; a client resuming at lastAcked gets exactly
// the messages after it, with no reset; and a new post continues the ids.
// It returns that new post, which the server acknowledged.
func checkRecovered(t *testing.T, url string, epoch int64, acked []Message, lastAcked Message) Message {
	t.Helper()
	whole := subscribe(t, url, record.FormatID(epoch, 0))
	resumed := subscribe(t, url, lastAcked.ID)
	next := mustPost(t, url, "checker", fmt.Sprintf("after restart at %d", time.Now().UnixNano()))

	hist, other := readUntil(t, whole, next.ID)
	whole.close()
	if len(other) != 0 {
		t.Errorf("history from %s: unexpected events %+v", record.FormatID(epoch, 0), other)
	}
	byID := make(map[string]Message, len(hist))
	contents := make(map[string]bool, len(hist))
	for i, m := range hist {
		e, seq := mustParseID(t, m.ID)
		if e != epoch || seq != uint64(i+1) {
			t.Fatalf("history[%d] has id %s, want %s (ids must be contiguous, in one epoch, no duplicates)", i, m.ID, record.FormatID(epoch, uint64(i+1)))
		}
		if contents[m.Content] {
			t.Errorf("history holds %q twice", m.Content)
		}
		contents[m.Content] = true
		byID[m.ID] = m
	}
	for _, a := range acked {
		got, ok := byID[a.ID]
		if !ok {
			t.Errorf("acknowledged message %s %q is missing from history", a.ID, a.Content)
			continue
		}
		if got.Username != a.Username || got.Content != a.Content || !got.Time.Equal(a.Time) {
			t.Errorf("history has %+v for acknowledged %+v", got, a)
		}
	}
	_, lastSeq := mustParseID(t, lastAcked.ID)
	t.Logf("after restart: history holds %d messages; %d were acknowledged (any others became durable just before the server died, unanswered)", len(hist)-1, len(acked))
	if _, seq := mustParseID(t, next.ID); seq <= lastSeq {
		t.Errorf("post after restart got %s, want a seq above %s", next.ID, lastAcked.ID)
	}

	got, other := readUntil(t, resumed, next.ID)
	resumed.close()
	if len(other) != 0 {
		t.Errorf("resume from %s: unexpected events %+v, want none (no reset)", lastAcked.ID, other)
	}
	if lastSeq >= uint64(len(hist)) {
		t.Fatalf("history ends at %s, before the last acknowledged %s", hist[len(hist)-1].ID, lastAcked.ID)
	}
	if want := hist[lastSeq:]; !slices.Equal(ids(got), ids(want)) {
		t.Errorf("resume from %s got %v, want %v", lastAcked.ID, ids(got), ids(want))
	}
	return next
}

// lastOf returns the acknowledged message with the highest seq.
func lastOf(t *testing.T, msgs []Message) Message {
	t.Helper()
	var last Message
	var best uint64
	for _, m := range msgs {
		if _, seq := mustParseID(t, m.ID); seq >= best {
			last, best = m, seq
		}
	}
	return last
}

// TestCrashBinary runs the real server binary on a journal.
func TestCrashBinary(t *testing.T) {
	bin := buildChat(t, t.TempDir())

	// KillRounds posts from several goroutines, kills the server with
	// SIGKILL in the middle of the posts, restarts it on the same journal
	// and checks that every message answered 201 survived, that ids go on
	// in the same epoch, and that a client resumes across the restart with
	// no reset. Three rounds.
	t.Run("KillRounds", func(t *testing.T) {
		t.Parallel()
		journal := filepath.Join(t.TempDir(), "chat.jsonl")
		args := []string{"-data", journal, "-history", "100000"}
		var acked []Message
		var epoch int64
		const rounds, workers = 3, 8
		for round := range rounds {
			p := startChatProc(t, bin, args...)
			if round > 0 {
				next := checkRecovered(t, p.URL, epoch, acked, lastOf(t, acked))
				acked = append(acked, next)
			}
			var log ackLog
			stop := make(chan struct{})
			errs := postStorm(p.URL, fmt.Sprintf("round %d", round), workers, &log, stop)
			killAt := 100 + 50*round
			waitFor(t, fmt.Sprintf("%d acknowledged posts", killAt), func() bool { return log.len() >= killAt })
			p.kill(t) // posts are still in flight
			close(stop)
			for err := range errs {
				t.Errorf("round %d: %v", round, err)
			}
			if round == 0 {
				epoch, _ = mustParseID(t, log.all()[0].ID)
			}
			acked = append(acked, log.all()...)
			t.Logf("round %d: %d posts acknowledged before SIGKILL, %d in all", round, log.len(), len(acked))
			if t.Failed() {
				t.Fatalf("server log:\n%s", p.logs)
			}
		}
		p := startChatProc(t, bin, args...)
		checkRecovered(t, p.URL, epoch, acked, lastOf(t, acked))
		if !strings.Contains(p.logs.String(), "msg=\"journal opened\"") {
			t.Errorf("no journal log line:\n%s", p.logs)
		}
	})

	// CleanRestart stops the server with SIGTERM while a stream is open:
	// it must exit 0 within 5 s, end the stream cleanly, and keep its
	// history and ids across the restart.
	t.Run("CleanRestart", func(t *testing.T) {
		t.Parallel()
		journal := filepath.Join(t.TempDir(), "chat.jsonl")
		p := startChatProc(t, bin, "-data", journal)
		var acked []Message
		for i := range 5 {
			acked = append(acked, mustPost(t, p.URL, "a", fmt.Sprintf("clean %d", i)))
		}
		s := subscribe(t, p.URL, "")
		if _, err := s.sse.Next(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		ended := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, s.resp.Body)
			ended <- err
		}()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t, 5*time.Second); code != 0 {
			t.Fatalf("exit code after SIGTERM = %d, want 0\n%s", code, p.logs)
		}
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("stream ended with %v, want a clean end", err)
			}
		case <-time.After(waitTimeout):
			t.Error("stream still open after the server exited")
		}
		if !strings.Contains(p.logs.String(), "msg=stopped messages=5") {
			t.Errorf("no stop log line:\n%s", p.logs)
		}

		p = startChatProc(t, bin, "-data", journal)
		epoch, _ := mustParseID(t, acked[0].ID)
		next := checkRecovered(t, p.URL, epoch, acked, acked[len(acked)-1])
		if want := record.FormatID(epoch, 6); next.ID != want {
			t.Errorf("first post after restart got id %s, want %s", next.ID, want)
		}
	})

	// CorruptMiddleLine starts the binary on a journal whose middle line
	// is damaged: it must refuse to start, exit 1 and name the line.
	t.Run("CorruptMiddleLine", func(t *testing.T) {
		t.Parallel()
		journal := filepath.Join(t.TempDir(), "chat.jsonl")
		writeJournal(t, journal, opsJournalLine(t, 1, "one"), "{not json\n", opsJournalLine(t, 3, "three"))
		p := startChatProcNoWait(t, bin, "-data", journal)
		if code := p.wait(t, waitTimeout); code != 1 {
			t.Errorf("exit code = %d, want 1", code)
		}
		logs := p.logs.String()
		if !strings.Contains(logs, journal+" line 2") {
			t.Errorf("stderr does not name %s line 2:\n%s", journal, logs)
		}
		if strings.Contains(logs, "msg=listening") {
			t.Errorf("server listened on a corrupt journal:\n%s", logs)
		}
	})
}

// opsEpoch is the epoch of the journals these tests write by hand.
const opsEpoch = 1764094637123

// opsJournalLine returns message seq of opsEpoch as a journal line.
func opsJournalLine(t *testing.T, seq uint64, content string) string {
	t.Helper()
	b, err := json.Marshal(Message{ID: record.FormatID(opsEpoch, seq), Username: "u", Content: content, Time: time.Unix(1764094637, int64(seq)).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

// writeJournal writes the lines to path.
func writeJournal(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOpsJournalTornTail starts the server through run on a journal whose
// last line was torn by a crash: it starts, logs a warning, drops the line
// and continues the ids after the last whole message.
func TestOpsJournalTornTail(t *testing.T) {
	t.Parallel()
	journal := filepath.Join(t.TempDir(), "chat.jsonl")
	torn := opsJournalLine(t, 4, "four")
	writeJournal(t, journal, opsJournalLine(t, 1, "one"), opsJournalLine(t, 2, "two"), opsJournalLine(t, 3, "three"), torn[:len(torn)/2])
	ts := startServer(t, "-data", journal)
	logs := ts.logs.String()
	if !regexp.MustCompile(`level=WARN msg="dropping torn last line of journal".* line=4 `).MatchString(logs) {
		t.Errorf("no warning about torn line 4:\n%s", logs)
	}
	if st := ts.stats(t); st.HistorySize != 3 {
		t.Errorf("history_size = %d, want 3", st.HistorySize)
	}
	m := ts.post(t, "u", "four again")
	if want := record.FormatID(opsEpoch, 4); m.ID != want {
		t.Errorf("post after torn tail got id %s, want %s", m.ID, want)
	}
	s := subscribe(t, ts.URL, record.FormatID(opsEpoch, 0))
	got, other := readUntil(t, s, m.ID)
	if want := []string{"one", "two", "three", "four again"}; len(other) != 0 || len(got) != 4 ||
		got[0].Content != want[0] || got[1].Content != want[1] || got[2].Content != want[2] || got[3].Content != want[3] {
		t.Errorf("history after torn tail: %+v, events %+v; want contents %q", got, other, want)
	}
	ts.stop(t)
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(b), "\n"); lines != 4 || !bytes.HasSuffix(b, []byte("\n")) {
		t.Errorf("journal after restart has %d lines:\n%s", lines, b)
	}
}

// TestOpsJournalCorruptLine starts the server through run on a journal
// whose middle line is damaged: run returns an error naming the file and
// the line, and serves nothing.
func TestOpsJournalCorruptLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, line string
	}{
		{"not JSON", "{\"id\": oops}\n"},
		{"bad id", strings.Replace(opsJournalLine(t, 2, "two"), record.FormatID(opsEpoch, 2), "two", 1)},
		{"id out of order", opsJournalLine(t, 1, "one again")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			journal := filepath.Join(t.TempDir(), "chat.jsonl")
			writeJournal(t, journal, opsJournalLine(t, 1, "one"), tt.line, opsJournalLine(t, 3, "three"))
			logs := newLogWatcher()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			err := run(ctx, []string{"chat", "-addr", "127.0.0.1:0", "-stats-interval", "0", "-data", journal}, func(string) string { return "" }, io.Discard, logs)
			if err == nil || !strings.Contains(err.Error(), journal+" line 2") {
				t.Errorf("run = %v, want an error naming %s line 2", err, journal)
			}
			if strings.Contains(logs.String(), "msg=listening") {
				t.Errorf("server listened on a corrupt journal:\n%s", logs)
			}
		})
	}
}

// promLabel is one label of a sample.
type promLabel struct{ name, value string }

// promSample is one sample line of the text exposition format.
type promSample struct {
	// name is the sample's metric name (with _bucket, _sum or _count for
	// histograms and summaries).
	name   string
	labels []promLabel
	value  float64
	// line is the sample's line number, from 1.
	line int
}

// label returns the value of the named label and whether it is there.
func (s promSample) label(name string) (string, bool) {
	for _, l := range s.labels {
		if l.name == name {
			return l.value, true
		}
	}
	return "", false
}

// signature returns the sample's labels other than le and quantile, in a
// canonical form.
func (s promSample) signature() string {
	var parts []string
	for _, l := range s.labels {
		if l.name != "le" && l.name != "quantile" {
			parts = append(parts, l.name+"="+strconv.Quote(l.value))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// promFamily is a metric family: its HELP, its TYPE and its samples.
type promFamily struct {
	name, help, typ string
	hasHelp         bool
	samples         []promSample
}

// value returns the value of the family's sample with no labels named
// name, or NaN.
func (f *promFamily) value(name string) float64 {
	for _, s := range f.samples {
		if s.name == name && len(s.labels) == 0 {
			return s.value
		}
	}
	return math.NaN()
}

var (
	// promNameRE is a metric name.
	promNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	// promLabelNameRE is a label name.
	promLabelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	// promValueRE is a sample value: a Go float in decimal notation, or
	// one of the special values.
	promValueRE = regexp.MustCompile(`^([+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]Inf|NaN)$`)
	// promTimestampRE is a sample timestamp (ms since 1970).
	promTimestampRE = regexp.MustCompile(`^-?[0-9]+$`)
	// promTypes are the valid TYPE values.
	promTypes = map[string]bool{"counter": true, "gauge": true, "histogram": true, "summary": true, "untyped": true}
)

// parsePromText parses a Prometheus text exposition (format 0.0.4)
// strictly and checks the conventions a scraper and promlint rely on. It
// returns the families by name, or the first problem found, with its line.
//
// Checked: every line ends with "\n"; "# HELP name text" (text escapes only
// \\ and \n) and "# TYPE name type" appear at most once per family, before
// its first sample; every sample belongs to a family that has both; a
// family's samples are contiguous; metric and label names are valid, label
// names are not reserved ("__") or repeated, label values are quoted UTF-8
// with only \\, \" and \n escapes; values are floats (or +Inf, -Inf, NaN)
// and timestamps integers; no series (name and label set) repeats; counters
// end in _total, and nothing else does; counter values are not negative;
// histograms have, per label set, buckets with increasing le ending at
// +Inf, non-decreasing integer counts, one _sum and one _count equal to the
// +Inf bucket; summaries have quantile in [0, 1], one _sum and one _count.
func parsePromText(text string) (map[string]*promFamily, error) {
	if text == "" {
		return nil, errors.New("empty exposition")
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("last line does not end with a newline")
	}
	fams := map[string]*promFamily{}
	family := func(name string) *promFamily {
		f := fams[name]
		if f == nil {
			f = &promFamily{name: name}
			fams[name] = f
		}
		return f
	}
	series := map[string]int{}
	var current *promFamily // the family whose samples came last
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := i + 1
		fail := func(format string, args ...any) (map[string]*promFamily, error) {
			return nil, fmt.Errorf("line %d %q: %s", n, line, fmt.Sprintf(format, args...))
		}
		if !utf8.ValidString(line) {
			return fail("not UTF-8")
		}
		if strings.TrimLeft(line, " \t") == "" {
			continue // blank lines are ignored
		}
		if rest, ok := strings.CutPrefix(strings.TrimLeft(line, " \t"), "#"); ok {
			toks := strings.SplitN(strings.TrimLeft(rest, " \t"), " ", 3)
			if len(toks) < 2 || (toks[0] != "HELP" && toks[0] != "TYPE") {
				continue // an ordinary comment
			}
			kw, name, arg := toks[0], toks[1], ""
			if len(toks) == 3 {
				arg = toks[2]
			}
			if !promNameRE.MatchString(name) {
				return fail("bad metric name %q", name)
			}
			f := family(name)
			if len(f.samples) > 0 {
				return fail("%s after the family's samples", kw)
			}
			switch kw {
			case "HELP":
				if f.hasHelp {
					return fail("second HELP for %s", name)
				}
				if err := checkHelpEscapes(arg); err != nil {
					return fail("%v", err)
				}
				f.help, f.hasHelp = arg, true
			case "TYPE":
				if f.typ != "" {
					return fail("second TYPE for %s", name)
				}
				if !promTypes[arg] {
					return fail("bad type %q", arg)
				}
				f.typ = arg
			}
			continue
		}
		s, err := parsePromSample(line)
		if err != nil {
			return fail("%v", err)
		}
		s.line = n
		f := sampleFamily(fams, s.name)
		if f == nil {
			return fail("sample of %s has no TYPE before it", s.name)
		}
		if !f.hasHelp {
			return fail("family %s has no HELP before its samples", f.name)
		}
		if f != current && len(f.samples) > 0 {
			return fail("samples of %s are not together", f.name)
		}
		current = f
		key := s.name + "{" + s.signature() + "}"
		if le, ok := s.label("le"); ok {
			key += " le=" + le
		}
		if q, ok := s.label("quantile"); ok {
			key += " quantile=" + q
		}
		if prev, ok := series[key]; ok {
			return fail("duplicate series %s (first on line %d)", key, prev)
		}
		series[key] = n
		f.samples = append(f.samples, s)
	}
	for _, f := range fams {
		if err := checkPromFamily(f); err != nil {
			return nil, err
		}
	}
	return fams, nil
}

// checkHelpEscapes checks that a HELP text uses only the \\ and \n escapes.
func checkHelpEscapes(help string) error {
	for i := 0; i < len(help); i++ {
		if help[i] != '\\' {
			continue
		}
		if i+1 == len(help) || (help[i+1] != '\\' && help[i+1] != 'n') {
			return fmt.Errorf("bad escape in HELP at byte %d", i)
		}
		i++
	}
	return nil
}

// sampleFamily returns the family a sample named name belongs to, or nil.
func sampleFamily(fams map[string]*promFamily, name string) *promFamily {
	if f := fams[name]; f != nil && f.typ != "" && f.typ != "histogram" {
		return f // a histogram has no sample of its bare name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if f := fams[base]; f != nil && (f.typ == "histogram" || (f.typ == "summary" && suffix != "_bucket")) {
			return f
		}
	}
	return nil
}

// parsePromSample parses one sample line: name, optional {labels}, value and
// optional timestamp, separated by blanks.
func parsePromSample(line string) (promSample, error) {
	var s promSample
	i := 0
	for i < len(line) && (line[i] == '_' || line[i] == ':' || ('a' <= line[i] && line[i] <= 'z') ||
		('A' <= line[i] && line[i] <= 'Z') || (i > 0 && '0' <= line[i] && line[i] <= '9')) {
		i++
	}
	s.name = line[:i]
	if !promNameRE.MatchString(s.name) {
		return s, fmt.Errorf("bad metric name %q", s.name)
	}
	blanks := func() {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
	}
	if i < len(line) && line[i] == '{' {
		i++
		seen := map[string]bool{}
		for {
			blanks()
			if i < len(line) && line[i] == '}' {
				i++
				break
			}
			j := i
			for j < len(line) && line[j] != '=' && line[j] != ' ' && line[j] != '\t' {
				j++
			}
			name := line[i:j]
			if !promLabelNameRE.MatchString(name) || strings.HasPrefix(name, "__") {
				return s, fmt.Errorf("bad label name %q", name)
			}
			if seen[name] {
				return s, fmt.Errorf("label %s repeated", name)
			}
			seen[name] = true
			i = j
			blanks()
			if i >= len(line) || line[i] != '=' {
				return s, fmt.Errorf("no = after label %s", name)
			}
			i++
			blanks()
			if i >= len(line) || line[i] != '"' {
				return s, fmt.Errorf("value of label %s is not quoted", name)
			}
			i++
			var v strings.Builder
			for {
				if i >= len(line) {
					return s, fmt.Errorf("value of label %s is not closed", name)
				}
				c := line[i]
				i++
				if c == '"' {
					break
				}
				if c == '\\' {
					if i >= len(line) {
						return s, fmt.Errorf("value of label %s ends in a backslash", name)
					}
					switch line[i] {
					case '\\', '"':
						v.WriteByte(line[i])
					case 'n':
						v.WriteByte('\n')
					default:
						return s, fmt.Errorf("bad escape \\%c in label %s", line[i], name)
					}
					i++
					continue
				}
				v.WriteByte(c)
			}
			s.labels = append(s.labels, promLabel{name, v.String()})
			blanks()
			if i < len(line) && line[i] == ',' {
				i++
				continue
			}
			if i < len(line) && line[i] == '}' {
				i++
				break
			}
			return s, fmt.Errorf("expected , or } after label %s", name)
		}
	}
	if i >= len(line) || (line[i] != ' ' && line[i] != '\t') {
		return s, errors.New("no blank before the value")
	}
	fields := strings.Fields(line[i:])
	if len(fields) == 0 || len(fields) > 2 {
		return s, fmt.Errorf("want a value and an optional timestamp, got %q", line[i:])
	}
	if !promValueRE.MatchString(fields[0]) {
		return s, fmt.Errorf("bad value %q", fields[0])
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return s, fmt.Errorf("bad value %q: %v", fields[0], err)
	}
	s.value = v
	if len(fields) == 2 {
		if !promTimestampRE.MatchString(fields[1]) {
			return s, fmt.Errorf("bad timestamp %q", fields[1])
		}
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return s, fmt.Errorf("bad timestamp %q: %v", fields[1], err)
		}
	}
	return s, nil
}

// checkPromFamily checks one family against its type.
func checkPromFamily(f *promFamily) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("family %s: %s", f.name, fmt.Sprintf(format, args...))
	}
	if f.typ == "" {
		return fail("HELP without TYPE")
	}
	if !f.hasHelp {
		return fail("TYPE without HELP")
	}
	if len(f.samples) == 0 {
		return fail("no samples")
	}
	total := strings.HasSuffix(f.name, "_total")
	switch f.typ {
	case "counter":
		if !total {
			return fail("counter name does not end in _total")
		}
		for _, s := range f.samples {
			if s.value < 0 || math.IsNaN(s.value) {
				return fail("counter value %v on line %d", s.value, s.line)
			}
		}
	case "gauge", "untyped":
		if total {
			return fail("%s name ends in _total", f.typ)
		}
	case "histogram", "summary":
		if total {
			return fail("%s name ends in _total", f.typ)
		}
		return checkBuckets(f)
	}
	return nil
}

// checkBuckets checks the samples of a histogram or summary, per label set.
func checkBuckets(f *promFamily) error {
	type group struct {
		les, counts    []float64
		sum, count     []float64
		sawInf         bool
		firstLine, inf int
	}
	groups := map[string]*group{}
	var order []string
	for _, s := range f.samples {
		sig := s.signature()
		g := groups[sig]
		if g == nil {
			g = &group{firstLine: s.line}
			groups[sig] = g
			order = append(order, sig)
		}
		le, hasLE := s.label("le")
		q, hasQ := s.label("quantile")
		switch {
		case s.name == f.name+"_bucket":
			if !hasLE {
				return fmt.Errorf("line %d: bucket without le", s.line)
			}
			bound, err := strconv.ParseFloat(le, 64)
			if err != nil || !promValueRE.MatchString(le) || math.IsNaN(bound) {
				return fmt.Errorf("line %d: bad le %q", s.line, le)
			}
			if g.sawInf {
				return fmt.Errorf("line %d: bucket after le=\"+Inf\"", s.line)
			}
			if n := len(g.les); n > 0 && bound <= g.les[n-1] {
				return fmt.Errorf("line %d: le %q not above the previous bucket's", s.line, le)
			}
			if s.value < 0 || s.value != math.Trunc(s.value) {
				return fmt.Errorf("line %d: bucket count %v is not a whole number", s.line, s.value)
			}
			if n := len(g.counts); n > 0 && s.value < g.counts[n-1] {
				return fmt.Errorf("line %d: bucket count %v below the previous bucket's %v (buckets are cumulative)", s.line, s.value, g.counts[n-1])
			}
			g.les, g.counts = append(g.les, bound), append(g.counts, s.value)
			if math.IsInf(bound, 1) {
				g.sawInf, g.inf = true, len(g.counts)-1
			}
		case s.name == f.name && f.typ == "summary":
			v, err := strconv.ParseFloat(q, 64)
			if !hasQ || err != nil || v < 0 || v > 1 {
				return fmt.Errorf("line %d: summary sample needs a quantile in [0, 1]", s.line)
			}
		case s.name == f.name+"_sum":
			if hasLE || hasQ {
				return fmt.Errorf("line %d: _sum with le or quantile", s.line)
			}
			g.sum = append(g.sum, s.value)
		case s.name == f.name+"_count":
			if hasLE || hasQ {
				return fmt.Errorf("line %d: _count with le or quantile", s.line)
			}
			if s.value < 0 || s.value != math.Trunc(s.value) {
				return fmt.Errorf("line %d: _count %v is not a whole number", s.line, s.value)
			}
			g.count = append(g.count, s.value)
		default:
			return fmt.Errorf("line %d: sample %s does not belong to %s %s", s.line, s.name, f.typ, f.name)
		}
	}
	for _, sig := range order {
		g := groups[sig]
		if len(g.sum) != 1 || len(g.count) != 1 {
			return fmt.Errorf("%s {%s} (line %d): want one _sum and one _count, got %d and %d", f.name, sig, g.firstLine, len(g.sum), len(g.count))
		}
		if f.typ != "histogram" {
			continue
		}
		if !g.sawInf {
			return fmt.Errorf("%s {%s} (line %d): no le=\"+Inf\" bucket", f.name, sig, g.firstLine)
		}
		if g.count[0] != g.counts[g.inf] {
			return fmt.Errorf("%s {%s}: _count %v differs from the +Inf bucket %v", f.name, sig, g.count[0], g.counts[g.inf])
		}
	}
	return nil
}

// TestMetricsParser checks that the strict parser accepts a well-formed
// exposition and rejects each kind of mistake.
func TestMetricsParser(t *testing.T) {
	const good = `# HELP a_total A counter with "quotes" and a \\ and \n.
# TYPE a_total counter
a_total 3
# A plain comment.
# HELP g A gauge.
# TYPE g gauge
g{path="/x",code="200"} -1.5e-3 1700000000000
g{path="/y\"\\\n",code="200",} +Inf

# HELP h_seconds A histogram.
# TYPE h_seconds histogram
h_seconds_bucket{le="0.5"} 1
h_seconds_bucket{le="1"} 1
h_seconds_bucket{le="+Inf"} 2
h_seconds_sum 3.25
h_seconds_count 2
h_seconds_bucket{op="x",le="1"} 0
h_seconds_bucket{op="x",le="+Inf"} 0
h_seconds_sum{op="x"} 0
h_seconds_count{op="x"} 0
# HELP s A summary.
# TYPE s summary
s{quantile="0.5"} NaN
s_sum 0
s_count 0
`
	fams, err := parsePromText(good)
	if err != nil {
		t.Fatalf("good exposition: %v", err)
	}
	if len(fams) != 4 || fams["a_total"].value("a_total") != 3 || len(fams["h_seconds"].samples) != 9 {
		t.Errorf("good exposition parsed as %+v", fams)
	}
	if v, _ := fams["g"].samples[1].label("path"); v != "/y\"\\\n" {
		t.Errorf("escaped label value = %q", v)
	}

	const head = "# HELP c_total C.\n# TYPE c_total counter\n"
	const hist = "# HELP h H.\n# TYPE h histogram\n"
	bad := []struct{ name, text string }{
		{"empty", ""},
		{"no final newline", head + "c_total 1"},
		{"sample without TYPE", "x 1\n"},
		{"sample without HELP", "# TYPE c_total counter\nc_total 1\n"},
		{"HELP without TYPE", "# HELP g G.\n"},
		{"TYPE without samples", head},
		{"TYPE after sample", "# HELP c_total C.\nc_total 1\n# TYPE c_total counter\n"},
		{"HELP after sample", "# TYPE c_total counter\n# HELP c_total C.\nc_total 1\n# HELP c_total again\n"},
		{"second TYPE", head + "# TYPE c_total counter\nc_total 1\n"},
		{"bad type", "# HELP c_total C.\n# TYPE c_total count\nc_total 1\n"},
		{"bad HELP escape", "# HELP c_total C \\t.\n# TYPE c_total counter\nc_total 1\n"},
		{"counter without _total", "# HELP c C.\n# TYPE c counter\nc 1\n"},
		{"gauge with _total", "# HELP g_total G.\n# TYPE g_total gauge\ng_total 1\n"},
		{"negative counter", head + "c_total -1\n"},
		{"bad metric name", "# HELP 1c_total C.\n# TYPE 1c_total counter\n1c_total 1\n"},
		{"bad character in name", head + "c_total- 1\n"},
		{"bad label name", head + "c_total{a-b=\"x\"} 1\n"},
		{"reserved label name", head + "c_total{__name__=\"x\"} 1\n"},
		{"repeated label", head + "c_total{a=\"x\",a=\"y\"} 1\n"},
		{"unquoted label value", head + "c_total{a=x} 1\n"},
		{"unclosed label value", head + "c_total{a=\"x} 1\n"},
		{"bad label escape", head + "c_total{a=\"\\t\"} 1\n"},
		{"missing brace", head + "c_total{a=\"x\" 1\n"},
		{"no value", head + "c_total\n"},
		{"no blank before value", head + "c_total{a=\"x\"}1\n"},
		{"bad value", head + "c_total one\n"},
		{"hex value", head + "c_total 0x10\n"},
		{"Inf without sign", head + "c_total Inf\n"},
		{"bad timestamp", head + "c_total 1 1.5\n"},
		{"extra field", head + "c_total 1 2 3\n"},
		{"duplicate series", head + "c_total{a=\"x\"} 1\nc_total{a=\"x\"} 2\n"},
		{"duplicate series, labels reordered", head + "c_total{a=\"x\",b=\"y\"} 1\nc_total{b=\"y\",a=\"x\"} 2\n"},
		{"family not together", head + "c_total{a=\"x\"} 1\n# HELP g G.\n# TYPE g gauge\ng 1\nc_total{a=\"y\"} 1\n"},
		{"histogram without +Inf", hist + "h_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram le not increasing", hist + "h_bucket{le=\"1\"} 1\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram bucket after +Inf", hist + "h_bucket{le=\"+Inf\"} 1\nh_bucket{le=\"2\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram not cumulative", hist + "h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram count differs", hist + "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"},
		{"histogram without _sum", hist + "h_bucket{le=\"+Inf\"} 1\nh_count 1\n"},
		{"histogram without _count", hist + "h_bucket{le=\"+Inf\"} 1\nh_sum 1\n"},
		{"histogram bucket without le", hist + "h_bucket 1\nh_sum 1\nh_count 1\n"},
		{"histogram bad le", hist + "h_bucket{le=\"one\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram fractional count", hist + "h_bucket{le=\"+Inf\"} 1.5\nh_sum 1\nh_count 1.5\n"},
		{"histogram bare sample", hist + "h 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram _sum with le", hist + "h_bucket{le=\"+Inf\"} 1\nh_sum{le=\"1\"} 1\nh_count 1\n"},
		{"summary without quantile", "# HELP s S.\n# TYPE s summary\ns 1\ns_sum 1\ns_count 1\n"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parsePromText(tt.text); err == nil {
				t.Errorf("parsePromText(%q) accepted it", tt.text)
			}
		})
	}
}

// TestMetricsExposition checks the live GET /metrics with the strict parser
// after posts and streams, and that it reports the figures /stats does.
func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "-heartbeat", "20ms") // finds the closed stream soon
	const posts = 5
	var last Message
	for i := range posts {
		last = mustPost(t, ts.URL, "m", fmt.Sprintf("metrics %d", i))
	}
	resp, err := http.Post(ts.URL+"/post", "application/json", strings.NewReader(`{"username":""}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad post: status %d, want 400", resp.StatusCode)
	}
	a, b := subscribe(t, ts.URL, ""), subscribe(t, ts.URL, "")
	readUntil(t, a, last.ID)
	readUntil(t, b, last.ID)
	b.close()
	waitFor(t, "deliveries and clients to settle", func() bool {
		st := ts.stats(t)
		return st.Deliveries == 2*posts && st.Clients == 1
	})

	// /stats is read just before and just after /metrics: a figure that
	// moves on its own (uptime, CPU time) is then bounded on both sides
	// however long the scheduler keeps the test between the requests.
	statsBefore := getStatsMap(t, ts.URL)
	resp, err = http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	fams, err := parsePromText(string(body))
	if err != nil {
		t.Fatalf("GET /metrics: %v\n%s", err, body)
	}

	stats := getStatsMap(t, ts.URL)

	// Every figure of /stats, and its metric. Exact ones cannot move while
	// nothing happens; the process figures move on their own: the ones
	// that only grow (uptime, CPU time) must lie between the two /stats
	// readings, and the others (gauges of the whole test process, which
	// other tests share) near them.
	type kind int
	const (
		exact kind = iota
		growing
		near
	)
	type figure struct {
		metric string
		kind   kind
	}
	figures := map[string]figure{
		"clients":               {"chat_clients", exact},
		"peak_clients":          {"chat_clients_peak", exact},
		"connections_total":     {"chat_connections_total", exact},
		"messages_posted":       {"chat_messages_total", exact},
		"deliveries":            {"chat_deliveries_total", exact},
		"stream_writes":         {"chat_stream_writes_total", exact},
		"slow_dropped_messages": {"chat_slow_dropped_messages_total", exact},
		"slow_disconnects":      {"chat_slow_disconnects_total", exact},
		"posts_rejected":        {"chat_posts_rejected_total", exact},
		"streams_rejected":      {"chat_streams_rejected_total", exact},
		"people":                {"chat_people", near},
		"anonymous":             {"chat_anonymous_streams", near},
		"history_size":          {"chat_history_messages", exact},
		"uptime_seconds":        {"chat_uptime_seconds", growing},
		"goroutines":            {"chat_goroutines", near},
		"cpu_seconds":           {"process_cpu_seconds_total", growing},
		"rss_bytes":             {"process_resident_memory_bytes", near},
		"heap_bytes":            {"chat_heap_bytes", near},
		"connections_open":      {"chat_tcp_connections", near},
		"connections_refused":   {"chat_tcp_connections_refused_total", exact},
	}
	for key, after := range stats {
		fig, ok := figures[key]
		if !ok {
			t.Errorf("/stats has %q, which /metrics does not report (or this test does not know)", key)
			continue
		}
		f := fams[fig.metric]
		if f == nil {
			t.Errorf("/metrics has no %s (for /stats %s)", fig.metric, key)
			continue
		}
		got, before := f.value(fig.metric), statsBefore[key]
		lo, hi := min(before, after), max(before, after)
		switch {
		case math.IsNaN(got) || got < 0:
			t.Errorf("%s = %v", fig.metric, got)
		case fig.kind == exact && (got != before || got != after):
			t.Errorf("%s = %v, /stats %s = %v before and %v after", fig.metric, got, key, before, after)
		case fig.kind == growing && (got < before || got > after):
			t.Errorf("%s = %v, not between /stats %s = %v before and %v after", fig.metric, got, key, before, after)
		case fig.kind == near && hi > 0 && (got > 2*hi+1 || got < lo/2):
			t.Errorf("%s = %v, far from /stats %s = %v before and %v after", fig.metric, got, key, before, after)
		}
	}
	wantExact := map[string]float64{
		"chat_clients": 1, "chat_clients_peak": 2, "chat_connections_total": 2, "chat_messages_total": posts,
		"chat_deliveries_total": 2 * posts, "chat_posts_rejected_total": 1, "chat_history_messages": posts,
	}
	for name, want := range wantExact {
		if got := fams[name].value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"chat_uptime_seconds", "chat_goroutines", "process_resident_memory_bytes", "chat_heap_bytes"} {
		if got := fams[name].value(name); !(got > 0) {
			t.Errorf("%s = %v, want > 0", name, got)
		}
	}
	if f := fams["chat_post_duration_seconds"]; f == nil || f.typ != "histogram" || f.value("chat_post_duration_seconds_count") != posts+1 {
		t.Errorf("chat_post_duration_seconds: %+v, want a histogram of %d posts", f, posts+1)
	}
	if f := fams["chat_delivery_latency_seconds"]; f == nil || f.typ != "histogram" || f.value("chat_delivery_latency_seconds_count") > 2*posts {
		t.Errorf("chat_delivery_latency_seconds: %+v, want a histogram of at most %d deliveries", f, 2*posts)
	}
	// Whole numbers are written out, not as 9.678848e+06, for people and
	// scripts that read the page.
	if m := regexp.MustCompile(`(?m)^\S+ [0-9.]+e\+[0-9]+$`).Find(body); m != nil {
		t.Errorf("exponent in a whole-number value: %s", m)
	}
	if t.Failed() {
		t.Logf("GET /metrics:\n%s", body)
	}
}

// getStatsMap returns GET /stats as a map of its figures.
func getStatsMap(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stats map[string]float64
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	return stats
}

// TestMetricsFormatValue checks how sample values are written.
func TestMetricsFormatValue(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{3, "3"},
		{9678848, "9678848"},
		{1 << 52, "4503599627370496"},
		{1e300, "1e+300"},
		{-2, "-2"},
		{0.0005, "0.0005"},
		{1.709016769, "1.709016769"},
		{1e-7, "1e-07"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
		{math.NaN(), "NaN"},
	}
	for _, tt := range tests {
		got := formatValue(tt.in)
		if got != tt.want {
			t.Errorf("formatValue(%v) = %q, want %q", tt.in, got, tt.want)
		}
		if !promValueRE.MatchString(got) {
			t.Errorf("formatValue(%v) = %q, not a valid sample value", tt.in, got)
		}
	}
}

// TestHealthHandler checks /healthz against the shutdown flag directly.
func TestHealthHandler(t *testing.T) {
	var shuttingDown atomic.Bool
	h := handleHealth(&shuttingDown, NewStats())
	for _, tt := range []struct {
		down bool
		code int
		body string
	}{{false, 200, `{"status":"ok"}`}, {true, 503, `{"status":"shutting down"}`}} {
		shuttingDown.Store(tt.down)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if rec.Code != tt.code || strings.TrimSpace(rec.Body.String()) != tt.body || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("shutting down %v: %d %s %v, want %d %s", tt.down, rec.Code, rec.Body, rec.Header(), tt.code, tt.body)
		}
	}
}

// TestHealthDuringShutdown checks the real run: /healthz answers 200 while
// serving and 503 once shutdown has begun. A stream whose client reads
// nothing keeps its writer blocked on a large backlog, which holds the
// server in the drain phase of shutdown (streamDrain) while an already
// open keep-alive connection asks for /healthz.
func TestHealthDuringShutdown(t *testing.T) {
	t.Parallel()
	// 4000 messages of 2000 characters: 8 MB of backlog, more than the
	// kernel buffers hold on both ends.
	journal := filepath.Join(t.TempDir(), "chat.jsonl")
	var lines []string
	content := strings.Repeat("x", 2000)
	for i := range 4000 {
		lines = append(lines, opsJournalLine(t, uint64(i+1), content))
	}
	writeJournal(t, journal, lines...)
	ts := startServer(t, "-data", journal, "-history", "4000", "-backlog", "4000")
	addr := strings.TrimPrefix(ts.URL, "http://")

	stuck, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	_ = stuck.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(stuck, "GET /stream HTTP/1.1\r\nHost: chat\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The room counts the client before the handler hands the connection
	// to its writer, and a shutdown in between ends the stream at once,
	// so wait for the writer's first byte: from then on shutdown waits for
	// it. One byte read leaves megabytes the writer cannot get rid of.
	_ = stuck.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadFull(stuck, make([]byte, 1)); err != nil {
		t.Fatalf("reading the stuck stream's first byte: %v", err)
	}

	health, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer health.Close()
	hr := bufio.NewReader(health)
	get := func() (int, error) {
		_ = health.SetDeadline(time.Now().Add(waitTimeout))
		if _, err := io.WriteString(health, "GET /healthz HTTP/1.1\r\nHost: chat\r\n\r\n"); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(hr, nil)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(); code != http.StatusOK {
		t.Fatalf("GET /healthz while serving: %d, %v; want 200", code, err)
	}

	// The writer counts the backlog as delivered only once all of it is
	// written, which a client that reads nothing never lets happen.
	delivered := ts.stats(t).Deliveries
	ts.cancel()
	deadline := time.Now().Add(streamDrain)
	for {
		code, err := get()
		if err != nil {
			t.Fatalf("GET /healthz during shutdown: %v (connection closed before any 503; deliveries before shutdown %d, 0 if the stream writer was blocked as planned)", err, delivered)
		}
		if code == http.StatusServiceUnavailable {
			break
		}
		if code != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("GET /healthz during shutdown: %d, want 503", code)
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	ts.stop(t)
	t.Logf("run returned %v after the first 503", time.Since(start))
}

// TestLogJSONAndDebugStreams runs the server with -log-format json and
// -log-level debug: every log line is a JSON object with time, level and
// msg, and each stream logs exactly one line when it opens and one when it
// closes.
func TestLogJSONAndDebugStreams(t *testing.T) {
	t.Parallel()
	s := startServer(t, "-log-format", "json", "-log-level", "debug", "-heartbeat", "20ms")
	const streams = 3
	var subs []*subscriber
	for range streams {
		subs = append(subs, subscribe(t, s.URL, ""))
	}
	waitFor(t, "stream opened lines", func() bool { return s.logs.count(`"msg":"stream opened"`) == streams })
	for _, sub := range subs {
		sub.close()
	}
	waitFor(t, "stream closed lines", func() bool { return s.logs.count(`"msg":"stream closed"`) == streams })
	mustPost(t, s.URL, "j", "hello")
	s.stop(t)

	counts := map[string]int{}
	for line := range strings.Lines(s.logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q: %v", line, err)
			continue
		}
		for _, key := range []string{"time", "level", "msg"} {
			if _, ok := rec[key]; !ok {
				t.Errorf("log line has no %q: %q", key, line)
			}
		}
		msg, _ := rec["msg"].(string)
		counts[msg]++
		if strings.HasPrefix(msg, "stream ") {
			if rec["level"] != "DEBUG" || rec["addr"] != "127.0.0.1" {
				t.Errorf("stream log line %q: want level DEBUG and addr 127.0.0.1", line)
			}
		}
	}
	for msg, want := range map[string]int{"listening": 1, "stream opened": streams, "stream closed": streams, "shutting down": 1, "stopped": 1} {
		if counts[msg] != want {
			t.Errorf("%d log lines %q, want %d", counts[msg], msg, want)
		}
	}
}

// TestLogTextInfo checks the default log: text lines (key=value), and no
// per-stream lines at info level.
func TestLogTextInfo(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	sub := subscribe(t, s.URL, "")
	m := mustPost(t, s.URL, "t", "hi")
	readUntil(t, sub, m.ID)
	sub.close()
	s.stop(t)
	logs := s.logs.String()
	for line := range strings.Lines(logs) {
		if !strings.HasPrefix(line, "time=") || !strings.Contains(line, " level=") || !strings.Contains(line, " msg=") {
			t.Errorf("log line is not slog text: %q", line)
		}
	}
	if strings.Contains(logs, "stream opened") || strings.Contains(logs, "level=DEBUG") {
		t.Errorf("debug lines at info level:\n%s", logs)
	}
}
