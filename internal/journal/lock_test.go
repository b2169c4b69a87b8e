package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// skipWithoutLock skips a test of the lock where the platform has none.
func skipWithoutLock(t *testing.T) {
	t.Helper()
	if !canLock {
		t.Skip("no advisory file lock on this platform")
	}
}

// wantLocked fails the test unless err is Open's error for a journal at
// path that this process already holds.
func wantLocked(t *testing.T, err error, path string) {
	t.Helper()
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open(%s) = %v, want an error wrapping ErrLocked", path, err)
	}
	want := fmt.Sprintf("journal %s is in use by another server: this process (pid %d) already has it open", path, os.Getpid())
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

// TestOpenTwice checks that a second Open of one path fails while the first
// journal is open, with an error that names the path and the holder, that it
// leaves the first journal working, and that the path opens again once the
// first journal's Run has returned.
func TestOpenTwice(t *testing.T) {
	skipWithoutLock(t)
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	s, _, _ := testOpen(t, path, 10)
	stop := testStart(t, s)

	again, recs, err := Open(path, 10, nil)
	if again != nil || recs != nil {
		t.Error("second Open returned a journal or records with its error")
	}
	wantLocked(t, err, path)
	if b, err := os.ReadFile(LockPath(path)); err != nil || string(b) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("lock file holds %q (%v), want this process's id", b, err)
	}

	// The first journal still works.
	testAppendAll(t, s, testRecords(0, 3))
	testAwait(t, s, 3)
	stop()

	s, got, _ := testOpen(t, path, 10)
	testClose(s)
	sameRecords(t, got, testRecords(0, 3))
}

// TestLockHeldAcrossCompaction checks that the lock stays valid after
// compaction has renamed a new file over the journal.
func TestLockHeldAcrossCompaction(t *testing.T) {
	skipWithoutLock(t)
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	s, _, logs := testOpen(t, path, 2)
	stop := testStart(t, s)
	for i := range 4 {
		testAppendAll(t, s, testRecords(uint64(2*i), 2))
		testAwait(t, s, 2)
	}
	if !strings.Contains(logs.String(), "journal compacted") {
		t.Fatalf("no compaction after 8 records with keep 2:\n%s", logs)
	}
	_, _, err := Open(path, 2, nil)
	wantLocked(t, err, path)
	stop()
	s, got, _ := testOpen(t, path, 2)
	testClose(s)
	sameRecords(t, got, testRecords(6, 2))
}

// TestLockReleasedWhenOpenFails checks that an Open that fails on a corrupt
// file releases the lock, so the path opens once the file is mended.
func TestLockReleasedWhenOpenFails(t *testing.T) {
	skipWithoutLock(t)
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	good := testLine(testRecord(1, 1, "one"))
	if err := os.WriteFile(path, []byte(good+"not json\n"+good), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(path, 10, nil); err == nil || errors.Is(err, ErrLocked) {
		t.Fatalf("Open of a corrupt journal = %v, want the corruption", err)
	}
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _, _ := testOpen(t, path, 10)
	testClose(s)
}

// TestLockError checks the wording of the lock error for each kind of
// holder.
func TestLockError(t *testing.T) {
	tests := []struct {
		pid  int
		want string
	}{
		{4242, "journal /d/chat.jsonl is in use by another server: pid 4242 holds /d/chat.jsonl.lock"},
		{0, "journal /d/chat.jsonl is in use by another server: a process whose pid is not known holds /d/chat.jsonl.lock"},
	}
	for _, tt := range tests {
		err := error(&lockError{path: "/d/chat.jsonl", lockPath: LockPath("/d/chat.jsonl"), pid: tt.pid})
		if err.Error() != tt.want || !errors.Is(err, ErrLocked) {
			t.Errorf("pid %d: %q, want %q wrapping ErrLocked", tt.pid, err, tt.want)
		}
	}
}

// TestLockFileUnreadablePID checks that a lock file whose content is not a
// process id (left by hand, or read while a new holder writes it) still gives
// the lock error, without a pid.
func TestLockFileUnreadablePID(t *testing.T) {
	skipWithoutLock(t)
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	lk, err := lock(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	if err := lk.Truncate(0); err != nil {
		t.Fatal(err)
	}
	_, _, err = Open(path, 10, nil)
	var le *lockError
	if !errors.As(err, &le) || le.pid != 0 {
		t.Fatalf("Open = %v, want a lock error with no pid", err)
	}
}
