package main

// Journal operations: one server per journal (the lock, in one process and
// with the real binary), health that reports a failed journal (/healthz,
// /stats, /metrics), and the offline repair command.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"chat/internal/journal"
	"chat/internal/record"
)

// TestJournalLockInProcess runs two servers through run on one -data in
// one process: the second returns an error naming the journal and saying
// this process holds it, without listening, and the first keeps serving.
func TestJournalLockInProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	first := startServer(t, "-data", path)
	first.post(t, "a", "one")

	logs, err := runRefused(t, "-data", path)
	want := fmt.Sprintf("open journal: journal %s is in use by another server: this process (pid %d) already has it open", path, os.Getpid())
	if err == nil || err.Error() != want || !errors.Is(err, journal.ErrLocked) {
		t.Errorf("second run = %v, want %q", err, want)
	}
	if strings.Contains(logs, "msg=listening") {
		t.Errorf("second server listened:\n%s", logs)
	}
	if m := first.post(t, "a", "two"); !strings.HasSuffix(m.ID, "-2") {
		t.Errorf("first server's next id %s, want seq 2", m.ID)
	}
}

// TestJournalLockBinary runs the real binary twice on one -data: the second
// exits 1 while the first still runs (it does not wait for the lock), with
// an error that names the journal and the first's pid, the first keeps
// serving, and its file stays valid. Then the
// first is killed with SIGKILL, and a new server starts on the journal at
// once (the kernel dropped the lock) with every message.
func TestJournalLockBinary(t *testing.T) {
	bin := chatBinary(t)
	t.Parallel()
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	first := startChatProc(t, bin, "-data", path)
	var acked []Message
	for i := range 3 {
		acked = append(acked, first.post(t, "a", fmt.Sprintf("before %d", i)))
	}

	// The second must give up at once rather than wait for the lock. The
	// first holds the lock until it is killed below, so a second server
	// that waited would still be running when waitTimeout ends. (How soon
	// a new process gets through its start depends on the machine's load,
	// so a tighter bound would measure the scheduler, not the lock.)
	start := time.Now()
	second := startChatProcNoWait(t, bin, "-data", path)
	if code := second.wait(t, waitTimeout); code != 1 {
		t.Errorf("second server exit code = %d, want 1", code)
	}
	select {
	case <-first.exited:
		t.Fatalf("the first server exited before the second gave up: %v\n%s", first.err, first.logs)
	default:
	}
	t.Logf("second server exited %v after it was started", time.Since(start).Round(time.Millisecond))
	want := fmt.Sprintf("open journal: journal %s is in use by another server: pid %d holds %s\n", path, first.cmd.Process.Pid, journal.LockPath(path))
	if logs := second.logs.String(); logs != want {
		t.Errorf("second server's stderr:\n%s\nwant:\n%s", logs, want)
	}

	for i := range 3 {
		acked = append(acked, first.post(t, "a", fmt.Sprintf("after %d", i)))
	}
	// The journal holds the epoch marker and every message, nothing else.
	rep, err := journal.Check(path)
	if err != nil || !rep.Sound() || rep.Good != 1+len(acked) || rep.Last != acked[len(acked)-1].ID {
		t.Errorf("journal while the first server runs: %+v, %v; want %d sound lines ending at %s", rep, err, 1+len(acked), acked[len(acked)-1].ID)
	}

	first.kill(t)
	start = time.Now()
	third := startChatProc(t, bin, "-data", path)
	t.Logf("new server listening %v after the holder's SIGKILL", time.Since(start))
	epoch, _ := mustParseID(t, acked[0].ID)
	next := checkRecovered(t, third.endpoint, epoch, acked, acked[len(acked)-1])
	if want := record.FormatID(epoch, uint64(len(acked)+1)); next.ID != want {
		t.Errorf("first post after the restart got id %s, want %s", next.ID, want)
	}
}

// failingDisk is a journal file whose writes fail with ENOSPC once full is
// set: a disk that has filled up.
type failingDisk struct {
	// f is the real file.
	f journal.File
	// full, once set, makes every write fail.
	full *atomic.Bool
}

// Write writes p unless the disk is full.
func (d failingDisk) Write(p []byte) (int, error) {
	if d.full.Load() {
		return 0, &os.PathError{Op: "write", Path: "chat.jsonl", Err: syscall.ENOSPC}
	}
	return d.f.Write(p)
}

// Sync syncs the real file.
func (d failingDisk) Sync() error { return d.f.Sync() }

// journalHealth returns what /healthz, /stats and /metrics say about the
// journal: the /healthz status and body, the /stats journal fields, and
// the parsed /metrics (checked by the strict parser).
func journalHealth(t *testing.T, url string) (int, string, StatsSnapshot, map[string]*promFamily) {
	t.Helper()
	health := get(t, url+"/healthz")
	st := getStats(t, http.DefaultClient, url)
	metrics := get(t, url+"/metrics").body
	fams, err := parsePromText(string(metrics))
	if err != nil {
		t.Fatalf("GET /metrics: %v\n%s", err, metrics)
	}
	return health.status, strings.TrimSpace(string(health.body)), st, fams
}

// TestJournalFailureHealth makes the journal's disk fill up under a running
// server: the post that meets it gets 500, and from then on /healthz answers
// 503 "journal failed" with the error, /stats says "journal": "failed" and
// /metrics chat_journal_failed 1, with the fsync counter and histogram
// still valid.
func TestJournalFailureHealth(t *testing.T) {
	t.Parallel()
	var full atomic.Bool
	wrap := journal.WrapFile(func(f journal.File) journal.File { return failingDisk{f, &full} })
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	ts := startServerConfig(t, func(c *config) { c.journalOptions = []journal.Option{wrap} }, "-data", path)
	ok := ts.post(t, "a", "stored")

	code, health, st, fams := journalHealth(t, ts.URL)
	if code != http.StatusOK || health != `{"status":"ok"}` {
		t.Errorf("/healthz before the failure: %d %s", code, health)
	}
	if st.Journal != "ok" || st.JournalFsyncs == nil || *st.JournalFsyncs < 1 {
		t.Errorf("/stats before the failure: journal %q, fsyncs %v", st.Journal, st.JournalFsyncs)
	}
	syncs := *st.JournalFsyncs
	if got := fams["chat_journal_failed"].value("chat_journal_failed"); got != 0 {
		t.Errorf("chat_journal_failed = %v before the failure", got)
	}

	full.Store(true)
	resp, err := http.Post(ts.URL+"/post", "application/json", strings.NewReader(`{"username":"a","content":"lost"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(b), `"error"`) {
		t.Errorf("post on a full disk: %d %s, want 500 and a JSON error", resp.StatusCode, b)
	}

	code, health, st, fams = journalHealth(t, ts.URL)
	wantHealth := `{"status":"journal failed","error":"write journal: write chat.jsonl: no space left on device"}`
	if code != http.StatusServiceUnavailable || health != wantHealth {
		t.Errorf("/healthz after the failure: %d %s, want 503 %s", code, health, wantHealth)
	}
	if st.Journal != "failed" || st.PostsRejected != 1 || st.MessagesPosted != 1 {
		t.Errorf("/stats after the failure: journal %q, posts_rejected %d, messages_posted %d", st.Journal, st.PostsRejected, st.MessagesPosted)
	}
	for name, want := range map[string]float64{
		"chat_journal_failed":       1,
		"chat_journal_fsyncs_total": float64(syncs), // the failed write comes before its fsync
		"chat_posts_rejected_total": 1,
	} {
		if f := fams[name]; f == nil || f.value(name) != want {
			t.Errorf("%s = %+v, want %v", name, f, want)
		}
	}
	if f := fams["chat_journal_fsync_duration_seconds"]; f == nil || f.typ != "histogram" || f.value("chat_journal_fsync_duration_seconds_count") != float64(syncs) {
		t.Errorf("chat_journal_fsync_duration_seconds: %+v, want a histogram of %d fsyncs", f, syncs)
	}

	// Every figure /stats has with a journal is in /metrics too.
	body := get(t, ts.URL+"/stats").body
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["journal"] != "failed" || raw["journal_fsyncs"] != float64(syncs) {
		t.Errorf("/stats journal fields: %v, %v", raw["journal"], raw["journal_fsyncs"])
	}

	// Still failed when the disk has room again: only a restart (which
	// reads the file afresh) makes the journal trusted again.
	full.Store(false)
	if code := get(t, ts.URL+"/healthz").status; code != http.StatusServiceUnavailable {
		t.Errorf("/healthz after the disk recovered: %d, want 503", code)
	}
	ts.stop(t)
	if rep, err := journal.Check(path); err != nil || !rep.Sound() || rep.Good != 2 || rep.Last != ok.ID {
		t.Errorf("journal after the failure: %+v, %v; want the epoch marker and %s only", rep, err, ok.ID)
	}
}

// TestJournalMetricsWithoutData checks that a server without -data reports
// no journal: no /stats field and no journal metrics, and /healthz 200.
func TestJournalMetricsWithoutData(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	code, health, _, fams := journalHealth(t, ts.URL)
	if code != http.StatusOK || health != `{"status":"ok"}` {
		t.Errorf("/healthz: %d %s", code, health)
	}
	body := get(t, ts.URL+"/stats").body
	if bytes.Contains(body, []byte("journal")) {
		t.Errorf("/stats without a journal: %s", body)
	}
	for name := range fams {
		if strings.Contains(name, "journal") {
			t.Errorf("/metrics has %s without a journal", name)
		}
	}
}

// TestJournalRepairCommand damages a journal the way two servers on one
// file, a bad disk and a crash do (a second epoch interleaved with the
// first, a corrupt line in the middle, a torn tail): the server refuses it,
// -repair reports the first bad line and exits 1 without changing the file,
// -repair-write keeps the good lines and moves the rest to PATH.bad-<time>,
// and the server then starts with every message before the damage and goes
// on with the next id.
func TestJournalRepairCommand(t *testing.T) {
	t.Parallel()
	const a, b = 1764094637123, 1764094638456
	good := journalLine(t, a, 1, "one") + journalLine(t, a, 2, "two")
	rest := journalLine(t, b, 1, "other server") + journalLine(t, a, 3, "three") + journalLine(t, b, 2, "other again") +
		"{\"id\": garbage}\n" + journalLine(t, a, 4, "four")
	torn := journalLine(t, a, 5, "five")
	rest += torn[:len(torn)/2]
	dir := t.TempDir()
	path := filepath.Join(dir, "chat.jsonl")
	writeJournal(t, path, good, rest)

	_, err := runRefused(t, "-data", path)
	if err == nil || !strings.Contains(err.Error(), path+" line 3: id "+record.FormatID(b, 1)+" does not follow "+record.FormatID(a, 2)) {
		t.Fatalf("server on the damaged journal: %v, want line 3 refused", err)
	}

	out, err := runRepair(t, "-repair", path)
	wantOut := fmt.Sprintf(`journal %[1]s: 8 lines, %[2]d bytes
line 3 at byte %[3]d: id %[4]s does not follow %[5]s
  lines 1-2 are good (%[3]d bytes): ids %[6]s to %[5]s
  lines 3-8 (%[7]d bytes) from there on: 2 with ids of epoch %[8]d, 2 with ids of epoch %[9]d, 2 without an id
  ids out of order: two servers may have written into this journal at once
-repair-write keeps lines 1-2 and moves lines 3-8 to %[1]s.bad-<time>
`, path, len(good)+len(rest), len(good), record.FormatID(b, 1), record.FormatID(a, 2), record.FormatID(a, 1), len(rest), int64(a), int64(b))
	if out != wantOut {
		t.Errorf("-repair printed:\n%s\nwant:\n%s", out, wantOut)
	}
	if want := fmt.Sprintf("journal %s is damaged at line 3: the server will not start on it", path); err == nil || err.Error() != want {
		t.Errorf("-repair = %v, want %q", err, want)
	}
	if data, _ := os.ReadFile(path); string(data) != good+rest {
		t.Fatal("-repair without -repair-write changed the journal")
	}

	out, err = runRepair(t, "-repair", path, "-repair-write")
	if err != nil {
		t.Fatalf("-repair-write: %v\n%s", err, out)
	}
	matches, _ := filepath.Glob(path + ".bad-*")
	if len(matches) != 1 {
		t.Fatalf("files %s.bad-*: %q, want one", path, matches)
	}
	if !strings.Contains(out, "moved lines 3-8 to "+matches[0]+"\njournal "+path+" keeps lines 1-2; the server starts from there\n") {
		t.Errorf("-repair-write printed:\n%s", out)
	}
	if data, _ := os.ReadFile(matches[0]); string(data) != rest {
		t.Errorf("%s holds:\n%s\nwant:\n%s", matches[0], data, rest)
	}
	out, err = runRepair(t, "-repair", path)
	if want := fmt.Sprintf("journal %s: 2 lines, %d bytes, ids %s to %s: sound\n", path, len(good), record.FormatID(a, 1), record.FormatID(a, 2)); err != nil || out != want {
		t.Errorf("-repair after the repair: %v\n%s\nwant:\n%s", err, out, want)
	}

	ts := startServer(t, "-data", path)
	if st := ts.stats(t); st.HistorySize != 2 || st.Journal != "ok" {
		t.Errorf("after the repair: history_size %d, journal %q; want 2, ok", st.HistorySize, st.Journal)
	}
	if m := ts.post(t, "u", "three again"); m.ID != record.FormatID(a, 3) {
		t.Errorf("first post after the repair got id %s, want %s", m.ID, record.FormatID(a, 3))
	}

	// The journal is in use now: -repair-write may not touch it.
	if _, err := runRepair(t, "-repair", path, "-repair-write"); !errors.Is(err, journal.ErrLocked) {
		t.Errorf("-repair-write on a journal in use: %v, want the lock error", err)
	}
}

// TestJournalRepairTornTail checks that -repair on a journal whose only
// damage is a torn last line says the server drops it and exits 0.
func TestJournalRepairTornTail(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	good := journalLine(t, 7, 1, "one")
	writeJournal(t, path, good, `{"id":"7-2","us`)
	out, err := runRepair(t, "-repair", path)
	if err != nil || !strings.Contains(out, "line 2 at byte "+strconv.Itoa(len(good))+": torn last line (no trailing newline)\n") ||
		!strings.HasSuffix(out, "the server drops a torn last line by itself and starts with lines 1-1\n") {
		t.Errorf("-repair on a torn tail: %v\n%s", err, out)
	}
}

// TestJournalRepairFlags checks that the repair flags are command-line
// only (a CHAT_REPAIR left in the environment does not turn the server into
// the repair tool) and that -repair-write needs -repair.
func TestJournalRepairFlags(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"CHAT_REPAIR": "/tmp/x", "CHAT_REPAIR_WRITE": "true"}[k]
	}
	cfg, err := parseFlags([]string{"chat"}, env, io.Discard)
	if err != nil || cfg.repair != "" || cfg.repairWrite {
		t.Errorf("with CHAT_REPAIR set: repair %q, write %v, err %v; want neither", cfg.repair, cfg.repairWrite, err)
	}
	if _, err := parseFlags([]string{"chat", "-repair-write"}, env, io.Discard); err == nil || !strings.Contains(err.Error(), "-repair-write goes with -repair") {
		t.Errorf("-repair-write alone: %v", err)
	}
	if _, err := runRepair(t, "-repair", filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("-repair on a missing file: %v", err)
	}
}

// TestJournalDiskFullBinary runs the real binary with its journal on a
// 64 KiB tmpfs, mounted in a mount namespace of its own (unshare), and
// posts until the disk is full: the post that does not fit gets 500, and
// /healthz, /stats and /metrics then report the failed journal. It skips
// where unshare or the mount is not allowed (not root, no user namespaces).
func TestJournalDiskFullBinary(t *testing.T) {
	bin := chatBinary(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare command to mount a small tmpfs with")
	}
	dir := t.TempDir()
	mount := "mount -t tmpfs -o size=64k tmpfs " + dir
	if out, err := exec.Command(unshare, "-m", "--propagation", "private", "sh", "-c", mount).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs in a mount namespace: %v %s", err, out)
	}
	t.Parallel()
	path := filepath.Join(dir, "chat.jsonl")
	script := mount + ` && exec "$0" -addr 127.0.0.1:0 -post-rate 0 -stats-interval 0 -data "$1"`
	p := startCmd(t, exec.Command(unshare, "-m", "--propagation", "private", "sh", "-c", script, bin, path))
	p.waitListening(t)

	// 64 KiB holds about 30 messages of 1900 characters.
	content := strings.Repeat("x", 1900)
	var code int
	for i := 0; code != http.StatusInternalServerError; i++ {
		if i == 200 {
			t.Fatalf("200 posts of %d bytes fit on a 64 KiB disk", len(content))
		}
		r, err := postJSON(http.DefaultClient, p.URL, "a", content, nil)
		if err != nil {
			t.Fatal(err)
		}
		code = r.status
		if code != http.StatusCreated && code != http.StatusInternalServerError {
			t.Fatalf("post %d: status %d, want 201 until the disk is full, then 500", i, code)
		}
	}
	code, health, st, fams := journalHealth(t, p.URL)
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(health, `{"status":"journal failed","error":"write journal: `) || !strings.Contains(health, "no space left on device") {
		t.Errorf("/healthz on a full disk: %d %s", code, health)
	}
	if st.Journal != "failed" || fams["chat_journal_failed"].value("chat_journal_failed") != 1 {
		t.Errorf("/stats journal %q, chat_journal_failed %v; want failed, 1", st.Journal, fams["chat_journal_failed"].value("chat_journal_failed"))
	}
	if !strings.Contains(p.logs.String(), `level=ERROR msg="journal failed: messages are no longer made durable"`) {
		t.Errorf("no error logged:\n%s", p.logs)
	}
}
