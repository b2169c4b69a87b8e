package main

// Tests of a journal that fails (its disk full, in process and with the
// binary on a small tmpfs): the post that meets it gets 500, and /healthz,
// /stats and /metrics say so from then on.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"chat/internal/journal"
)

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
	ts := startServerConfig(t, func(c *settings) { c.journalOptions = []journal.Option{wrap} }, "-data", path)
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
