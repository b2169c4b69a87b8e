package journal

import (
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failingFile is a journal file whose writes or fsyncs fail, once armed,
// with a given error: a full or broken disk.
type failingFile struct {
	// f is the real file.
	f File
	// writeErr and syncErr, when set, are returned by Write and Sync
	// instead of writing or syncing.
	writeErr, syncErr *atomic.Pointer[error]
}

// Write writes p to the real file unless a write error is armed.
func (f failingFile) Write(p []byte) (int, error) {
	if e := f.writeErr.Load(); e != nil {
		return 0, *e
	}
	return f.f.Write(p)
}

// Sync syncs the real file unless a sync error is armed.
func (f failingFile) Sync() error {
	if e := f.syncErr.Load(); e != nil {
		return *e
	}
	return f.f.Sync()
}

// TestErrReportsFailure checks that Err is nil while the journal works and
// reports the write or fsync error that failed it, and that every record
// after it is refused with that error.
func TestErrReportsFailure(t *testing.T) {
	for _, tt := range []struct {
		name  string
		write bool
	}{{"write", true}, {"fsync", false}} {
		t.Run(tt.name, func(t *testing.T) {
			var writeErr, syncErr atomic.Pointer[error]
			wrap := WrapFile(func(f File) File { return failingFile{f, &writeErr, &syncErr} })
			s, _, err := Open(filepath.Join(t.TempDir(), "chat.jsonl"), 10, nil, wrap)
			if err != nil {
				t.Fatal(err)
			}
			testStart(t, s)
			testAppendAll(t, s, testRecords(0, 1))
			testAwait(t, s, 1)
			if err := s.Err(); err != nil {
				t.Fatalf("Err() = %v while the journal works", err)
			}
			var injected error = syscall.ENOSPC
			if tt.write {
				writeErr.Store(&injected)
			} else {
				syncErr.Store(&injected)
			}
			testAppendAll(t, s, testRecords(1, 1))
			if c := testNext(t, s); c.N != 1 || !errors.Is(c.Err, syscall.ENOSPC) {
				t.Fatalf("Commit = {N: %d, Err: %v}, want {N: 1, Err: ENOSPC}", c.N, c.Err)
			}
			if err := s.Err(); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Err() = %v after the failure, want ENOSPC", err)
			}
			// The disk recovers, but the journal stays failed.
			writeErr.Store(nil)
			syncErr.Store(nil)
			testAppendAll(t, s, testRecords(2, 1))
			if c := testNext(t, s); !errors.Is(c.Err, syscall.ENOSPC) {
				t.Errorf("Commit after the failure: %v, want ENOSPC", c.Err)
			}
		})
	}
}

// TestObserveSync checks that every group commit's fsync is reported, and
// a compaction's too.
func TestObserveSync(t *testing.T) {
	var mu sync.Mutex
	var syncs []time.Duration
	observe := ObserveSync(func(d time.Duration) {
		mu.Lock()
		syncs = append(syncs, d)
		mu.Unlock()
	})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(syncs)
	}
	s, _, err := Open(filepath.Join(t.TempDir(), "chat.jsonl"), 2, nil, observe)
	if err != nil {
		t.Fatal(err)
	}
	stop := testStart(t, s)
	// One record per group, each awaited before the next, so that every
	// group is one fsync however the scheduler runs Run.
	for i := range 5 {
		testAppendAll(t, s, testRecords(uint64(i), 1))
		testAwait(t, s, 1)
		if i < 4 {
			if got := count(); got != i+1 {
				t.Fatalf("after %d group commits, %d fsyncs observed, want %d", i+1, got, i+1)
			}
		}
	}
	// The fifth line makes more than 2*keep: Run compacts right after
	// reporting that group, with one more fsync, before it looks at its
	// context again.
	stop()
	if got := count(); got != 6 {
		t.Errorf("%d fsyncs observed, want 6 (five groups and a compaction)", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, d := range syncs {
		if d < 0 {
			t.Errorf("fsync %d took %v", i, d)
		}
	}
}
