package main

// Tests of the offline repair command (-repair, -repair-write) on damaged
// journals, and of its flags.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"chat/internal/journal"
	"chat/internal/record"
)

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
	if err != nil || cfg.Repair != "" || cfg.RepairWrite {
		t.Errorf("with CHAT_REPAIR set: repair %q, write %v, err %v; want neither", cfg.Repair, cfg.RepairWrite, err)
	}
	if _, err := parseFlags([]string{"chat", "-repair-write"}, env, io.Discard); err == nil || !strings.Contains(err.Error(), "-repair-write goes with -repair") {
		t.Errorf("-repair-write alone: %v", err)
	}
	if _, err := runRepair(t, "-repair", filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("-repair on a missing file: %v", err)
	}
}
