package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// storeWait bounds every wait on the store in these tests. It is a failsafe
// against hangs, never a means of synchronisation.
const storeWait = 10 * time.Second

// storeLogBuffer is a goroutine-safe buffer behind a test logger.
type storeLogBuffer struct {
	// mu guards b.
	mu sync.Mutex
	// b holds the log output.
	b bytes.Buffer
}

// Write appends p to the buffer.
func (b *storeLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was logged so far.
func (b *storeLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// storeTestMessage returns a message with id epoch-seq and the given content.
func storeTestMessage(epoch int64, seq uint64, content string) Message {
	return Message{
		ID:       formatID(epoch, seq),
		Username: "alice",
		Content:  content,
		Time:     time.Date(2026, 11, 25, 18, 20, 1, int(seq%1e9), time.UTC),
	}
}

// storeTestMessages returns n messages of epoch 1 with seqs from+1 to from+n.
func storeTestMessages(from uint64, n int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		seq := from + uint64(i) + 1
		msgs[i] = storeTestMessage(1, seq, fmt.Sprintf("message %d", seq))
	}
	return msgs
}

// storeLine returns the journal line of m, newline included.
func storeLine(t *testing.T, m Message) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %s: %v", m.ID, err)
	}
	return string(b) + "\n"
}

// storeOpen opens the journal at path with a debug logger writing to the
// returned buffer, or fails the test.
func storeOpen(t *testing.T, path string, keep int) (*Store, []Message, *storeLogBuffer) {
	t.Helper()
	logs := &storeLogBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, msgs, err := OpenStore(path, keep, logger)
	if err != nil {
		t.Fatalf("OpenStore(%s, %d): %v", path, keep, err)
	}
	return s, msgs, logs
}

// storeStart runs s in a new goroutine. The returned stop cancels Run and
// waits (at most storeWait) for it to return. stop is also registered with
// t.Cleanup and may be called more than once.
func storeStart(t *testing.T, s *Store) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(storeWait):
			t.Errorf("Run did not return within %v of its context ending", storeWait)
		}
	}
	t.Cleanup(stop)
	return stop
}

// storeClose releases s without running it: Run with a done context writes
// what is queued, closes the file and returns.
func storeClose(s *Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Run(ctx)
}

// storeNext returns the next Commit, failing the test if none arrives within
// storeWait.
func storeNext(t *testing.T, s *Store) Commit {
	t.Helper()
	select {
	case c := <-s.Commits():
		return c
	case <-time.After(storeWait):
		t.Fatalf("no Commit within %v", storeWait)
		return Commit{}
	}
}

// storeAwait reads Commits until they cover n messages and returns them. It
// fails the test if a Commit carries an error or if the Commits cover more
// than n messages.
func storeAwait(t *testing.T, s *Store, n int) []Commit {
	t.Helper()
	var commits []Commit
	for got := 0; got < n; {
		c := storeNext(t, s)
		if c.Err != nil {
			t.Fatalf("Commit{N: %d}: %v", c.N, c.Err)
		}
		if c.N < 1 {
			t.Fatalf("Commit{N: %d}, want N >= 1", c.N)
		}
		commits = append(commits, c)
		got += c.N
		if got > n {
			t.Fatalf("Commits cover %d messages, want %d", got, n)
		}
	}
	return commits
}

// storeAppendAll appends msgs, failing the test if Append refuses one.
func storeAppendAll(t *testing.T, s *Store, msgs []Message) {
	t.Helper()
	for _, m := range msgs {
		if !s.Append(m) {
			t.Fatalf("Append(%s) = false, want true", m.ID)
		}
	}
}

// storeSameMessages fails the test unless got and want hold the same messages
// in the same order.
func storeSameMessages(t *testing.T, got, want []Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Username != w.Username || g.Content != w.Content || !g.Time.Equal(w.Time) {
			t.Fatalf("message %d = %+v, want %+v", i, g, w)
		}
	}
}

// storeFileLines returns the lines of the file at path, newlines removed.
func storeFileLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		return nil
	}
	if data[len(data)-1] != '\n' {
		t.Fatalf("%s does not end with a newline", path)
	}
	return strings.Split(string(data[:len(data)-1]), "\n")
}

// TestStoreAppendCommitReopen checks that committed messages come back,
// unchanged and in order, when the journal is reopened, and that appending
// after a reopen continues the journal.
func TestStoreAppendCommitReopen(t *testing.T) {
	awkward := []string{
		"line one\nline two\n",
		"tab\there",
		`"quoted" and \backslash\`,
		"<script>alert(1)</script> & more",
		"héllo wörld ✓ 日本語 🎉",
		"\u2028\u2029",
		"",
		strings.Repeat("x", 2000),
	}
	var awkwardMsgs []Message
	for i, c := range awkward {
		awkwardMsgs = append(awkwardMsgs, storeTestMessage(1764094637123, uint64(i+1), c))
	}
	tests := []struct {
		name string
		msgs []Message
	}{
		{"no messages", nil},
		{"one message", storeTestMessages(0, 1)},
		{"awkward content", awkwardMsgs},
		{"many messages", storeTestMessages(41, 500)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chat.jsonl")
			var want []Message
			for _, half := range [][]Message{tt.msgs[:len(tt.msgs)/2], tt.msgs[len(tt.msgs)/2:]} {
				s, got, _ := storeOpen(t, path, 1000)
				storeSameMessages(t, got, want)
				stop := storeStart(t, s)
				storeAppendAll(t, s, half)
				storeAwait(t, s, len(half))
				stop()
				want = append(want, half...)
			}
			s, got, _ := storeOpen(t, path, 1000)
			storeClose(s)
			storeSameMessages(t, got, want)
		})
	}
}

// TestStoreGroupCommit checks that messages queued while Run is busy share one
// write and one fsync: fewer Commits than messages, covering all of them.
func TestStoreGroupCommit(t *testing.T) {
	const count = 1000
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	s, _, _ := storeOpen(t, path, count)
	msgs := storeTestMessages(0, count)
	storeAppendAll(t, s, msgs) // all queued before Run takes any
	stop := storeStart(t, s)
	commits := storeAwait(t, s, count)
	stop()
	if len(commits) >= count {
		t.Errorf("%d Commits for %d messages, want fewer", len(commits), count)
	}
	t.Logf("%d messages, %d Commits", count, len(commits))
	if got := len(storeFileLines(t, path)); got != count {
		t.Errorf("journal has %d lines, want %d", got, count)
	}
}

// TestStoreConcurrentAppends checks, under the race detector, that posts from
// many goroutines (serialised for id assignment, as the hub does) are all
// committed and recovered in order.
func TestStoreConcurrentAppends(t *testing.T) {
	const producers, each = 8, 250
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	s, _, _ := storeOpen(t, path, producers*each)
	stop := storeStart(t, s)
	var (
		mu  sync.Mutex // assigns ids in Append order
		seq uint64
		wg  sync.WaitGroup
	)
	refused := make(chan string, producers*each)
	for range producers {
		wg.Go(func() {
			for range each {
				mu.Lock()
				seq++
				m := storeTestMessage(1, seq, "concurrent")
				if !s.Append(m) {
					refused <- m.ID
				}
				mu.Unlock()
			}
		})
	}
	commits := storeAwait(t, s, producers*each)
	wg.Wait()
	close(refused)
	for id := range refused {
		t.Errorf("Append(%s) = false", id)
	}
	stop()
	t.Logf("%d messages, %d Commits", producers*each, len(commits))
	s, got, _ := storeOpen(t, path, producers*each)
	storeClose(s)
	want := make([]Message, producers*each)
	for i := range want {
		want[i] = storeTestMessage(1, uint64(i+1), "concurrent")
	}
	storeSameMessages(t, got, want)
}

// TestStoreTornTail checks that a torn last line is dropped with a warning,
// truncated from the file, and that a message appended afterwards is
// recovered cleanly.
func TestStoreTornTail(t *testing.T) {
	tests := []struct {
		name string
		good int    // complete lines before the tail
		tail string // what a crash left at the end
	}{
		{"partial object", 3, `{"id":"1-4","username":"al`},
		{"complete object without newline", 3, `{"id":"1-4","username":"alice","content":"x","time":"2026-11-25T18:20:01Z"}`},
		{"invalid JSON with newline", 3, "{\"id\":\"1-4\",\"username\":}\n"},
		{"zero bytes", 3, "\x00\x00\x00\x00"},
		{"only line", 0, `{"id":"1-1","con`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chat.jsonl")
			good := storeTestMessages(0, tt.good)
			var data string
			for _, m := range good {
				data += storeLine(t, m)
			}
			if err := os.WriteFile(path, []byte(data+tt.tail), 0o644); err != nil {
				t.Fatal(err)
			}

			s, got, logs := storeOpen(t, path, 100)
			storeSameMessages(t, got, good)
			if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "torn") {
				t.Errorf("log = %q, want a warning about the torn line", l)
			}
			if fi, err := os.Stat(path); err != nil {
				t.Fatal(err)
			} else if fi.Size() != int64(len(data)) {
				t.Errorf("journal size after recovery = %d, want %d", fi.Size(), len(data))
			}

			next := storeTestMessage(1, uint64(tt.good+1), "after the crash")
			stop := storeStart(t, s)
			storeAppendAll(t, s, []Message{next})
			storeAwait(t, s, 1)
			stop()

			s, got, logs = storeOpen(t, path, 100)
			storeClose(s)
			storeSameMessages(t, got, append(good, next))
			if l := logs.String(); strings.Contains(l, "level=WARN") {
				t.Errorf("second recovery logged a warning: %q", l)
			}
		})
	}
}

// TestStoreCorruptLine checks that a bad line that is not a torn last line
// makes OpenStore fail with an error naming the file and the line, and that
// the file is left as it was.
func TestStoreCorruptLine(t *testing.T) {
	m := func(epoch int64, seq uint64) string { return storeLine(t, storeTestMessage(epoch, seq, "hi")) }
	tests := []struct {
		name     string
		lines    []string
		wantLine int
		wantErr  string
	}{
		{"invalid JSON in the middle", []string{m(1, 1), "not json\n", m(1, 3)}, 2, "invalid character"},
		{"empty line in the middle", []string{m(1, 1), "\n", m(1, 3)}, 2, "unexpected end of JSON input"},
		{"torn line in the middle", []string{m(1, 1), `{"id":"1-2","con` + "\n", m(1, 3)}, 2, "invalid character"},
		{"unparseable id", []string{m(1, 1), `{"id":"x","username":"a","content":"b","time":"2026-11-25T18:20:01Z"}` + "\n", m(1, 3)}, 2, `id "x"`},
		{"missing id", []string{m(1, 1), `{"username":"a"}` + "\n", m(1, 3)}, 2, `id ""`},
		{"repeated id", []string{m(1, 1), m(1, 2), m(1, 2), m(1, 3)}, 3, "id 1-2 does not follow 1-2"},
		{"decreasing id on the last line", []string{m(1, 1), m(1, 5), m(1, 3)}, 3, "id 1-3 does not follow 1-5"},
		{"epoch change", []string{m(1, 1), m(2, 2)}, 2, "id 2-2 does not follow 1-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chat.jsonl")
			data := []byte(strings.Join(tt.lines, ""))
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			s, _, err := OpenStore(path, 100, nil)
			if err == nil {
				storeClose(s)
				t.Fatal("OpenStore succeeded, want an error")
			}
			prefix := fmt.Sprintf("journal %s line %d: ", path, tt.wantLine)
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error = %q, want prefix %q and %q", msg, prefix, tt.wantErr)
			}
			if after, err := os.ReadFile(path); err != nil {
				t.Fatal(err)
			} else if !bytes.Equal(after, data) {
				t.Errorf("OpenStore changed the corrupt journal")
			}
		})
	}
}

// TestStoreCompaction checks that the file never holds more than 2*keep lines
// plus one group, and that reopening returns the last keep messages.
func TestStoreCompaction(t *testing.T) {
	tests := []struct {
		name  string
		keep  int
		count int // messages appended
		group int // messages appended before waiting for their Commits
	}{
		{"keep one", 1, 10, 1},
		{"one message per group", 10, 100, 1},
		{"groups of seven", 10, 95, 7},
		{"groups larger than keep", 5, 60, 12},
		{"below the threshold", 5, 8, 3},
		{"many groups", 50, 1000, 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chat.jsonl")
			s, _, _ := storeOpen(t, path, tt.keep)
			stop := storeStart(t, s)
			msgs := storeTestMessages(0, tt.count)
			for i := 0; i < len(msgs); i += tt.group {
				group := msgs[i:min(i+tt.group, len(msgs))]
				storeAppendAll(t, s, group)
				storeAwait(t, s, len(group))
				// Run may be compacting right now; the rename is atomic.
				if n := len(storeFileLines(t, path)); n > 2*tt.keep+tt.group {
					t.Fatalf("after %d messages the journal has %d lines, want at most %d",
						i+len(group), n, 2*tt.keep+tt.group)
				}
			}
			stop()
			if n := len(storeFileLines(t, path)); n > 2*tt.keep {
				t.Errorf("journal has %d lines, want at most %d", n, 2*tt.keep)
			}
			if _, err := os.Stat(path + ".tmp"); err == nil {
				t.Errorf("%s.tmp left behind", path)
			}
			s, got, _ := storeOpen(t, path, tt.keep)
			storeClose(s)
			storeSameMessages(t, got, msgs[max(0, len(msgs)-tt.keep):])
		})
	}
}

// TestStoreCompactsOnStartWhenKeepShrinks checks that a journal written with a
// larger keep is recovered to the last keep messages and compacted by Run.
func TestStoreCompactsOnStartWhenKeepShrinks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	msgs := storeTestMessages(0, 30)
	var data string
	for _, m := range msgs {
		data += storeLine(t, m)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	s, got, _ := storeOpen(t, path, 5)
	storeSameMessages(t, got, msgs[25:])
	storeClose(s)
	if n := len(storeFileLines(t, path)); n != 5 {
		t.Errorf("journal has %d lines after Run, want 5", n)
	}
	s, got, _ = storeOpen(t, path, 5)
	storeClose(s)
	storeSameMessages(t, got, msgs[25:])
}

// TestStoreAppendRefused checks that Append returns false, without blocking,
// when the queue is full or the store is closed.
func TestStoreAppendRefused(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Store) uint64 // returns the last seq queued
	}{
		{"queue full", func(t *testing.T, s *Store) uint64 {
			storeAppendAll(t, s, storeTestMessages(0, storeQueue)) // Run is not running
			t.Cleanup(func() { storeClose(s) })
			return storeQueue
		}},
		{"closed", func(t *testing.T, s *Store) uint64 {
			storeClose(s)
			return 0
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _ := storeOpen(t, filepath.Join(t.TempDir(), "chat.jsonl"), 10)
			last := tt.setup(t, s)
			if s.Append(storeTestMessage(1, last+1, "one too many")) {
				t.Errorf("Append = true, want false")
			}
		})
	}
}

// TestStoreRefusesOutOfOrderID checks that Run refuses, instead of writing, a
// message whose id does not follow the last one, reporting it in a Commit of
// its own, and that the journal stays readable.
func TestStoreRefusesOutOfOrderID(t *testing.T) {
	type commit struct {
		n  int
		ok bool
	}
	msg := func(epoch int64, seq uint64) Message { return storeTestMessage(epoch, seq, "hi") }
	bad := msg(1, 3)
	bad.ID = "bogus"
	tests := []struct {
		name        string
		recovered   []Message
		appended    []Message
		wantCommits []commit
		wantIDs     []string
	}{
		{
			name:        "in the middle of a group",
			appended:    []Message{msg(1, 1), msg(1, 2), msg(1, 2), msg(2, 3), bad, msg(1, 3), msg(1, 4)},
			wantCommits: []commit{{2, true}, {1, false}, {1, false}, {1, false}, {2, true}},
			wantIDs:     []string{"1-1", "1-2", "1-3", "1-4"},
		},
		{
			name:        "right after recovery",
			recovered:   []Message{msg(7, 5)},
			appended:    []Message{msg(7, 5), msg(7, 6)},
			wantCommits: []commit{{1, false}, {1, true}},
			wantIDs:     []string{"7-5", "7-6"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chat.jsonl")
			var data string
			for _, m := range tt.recovered {
				data += storeLine(t, m)
			}
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			s, _, _ := storeOpen(t, path, 100)
			storeAppendAll(t, s, tt.appended) // one group: all queued before Run
			stop := storeStart(t, s)
			for i, want := range tt.wantCommits {
				c := storeNext(t, s)
				if c.N != want.n || (c.Err == nil) != want.ok {
					t.Errorf("Commit %d = {N: %d, Err: %v}, want N %d, ok %v", i, c.N, c.Err, want.n, want.ok)
				}
			}
			stop()
			s, got, _ := storeOpen(t, path, 100)
			storeClose(s)
			var ids []string
			for _, m := range got {
				ids = append(ids, m.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.wantIDs) {
				t.Errorf("recovered ids %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

// TestStoreWriteErrorFailsStore checks that a failed write is reported in the
// Commit and that every later message is reported with the same error.
func TestStoreWriteErrorFailsStore(t *testing.T) {
	s, _, _ := storeOpen(t, filepath.Join(t.TempDir(), "chat.jsonl"), 10)
	s.f.Close() // make every write fail; Run is not running yet
	storeAppendAll(t, s, storeTestMessages(0, 2))
	storeStart(t, s)
	first := storeNext(t, s)
	if first.N != 2 || first.Err == nil {
		t.Fatalf("Commit = {N: %d, Err: %v}, want N 2 and an error", first.N, first.Err)
	}
	storeAppendAll(t, s, storeTestMessages(2, 1))
	second := storeNext(t, s)
	if second.N != 1 || !errors.Is(second.Err, first.Err) {
		t.Errorf("Commit = {N: %d, Err: %v}, want N 1 and %v", second.N, second.Err, first.Err)
	}
}

// TestStoreRunReturnsWhenConsumerStalls checks that Run, blocked sending a
// Commit nobody reads, still returns when its context ends, after making the
// queued messages durable.
func TestStoreRunReturnsWhenConsumerStalls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	synctest.Test(t, func(t *testing.T) {
		s, _, _ := storeOpen(t, path, 10)
		s.commits = make(chan Commit) // no buffer and no reader: the first send blocks
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Run(ctx)
		}()
		storeAppendAll(t, s, storeTestMessages(0, 1))
		synctest.Wait() // Run has written message 1 and is blocked sending its Commit
		storeAppendAll(t, s, storeTestMessages(1, 2))
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Run did not return after its context ended")
		}
	})
	s, got, _ := storeOpen(t, path, 10)
	storeClose(s)
	storeSameMessages(t, got, storeTestMessages(0, 3))
}

// TestStoreRunFlushesQueueOnShutdown checks that Run, started with a context
// that is already done, writes what is queued, reports it and returns.
func TestStoreRunFlushesQueueOnShutdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	s, _, _ := storeOpen(t, path, 10)
	msgs := storeTestMessages(0, 5)
	storeAppendAll(t, s, msgs)
	storeClose(s)
	if c := storeNext(t, s); c.N != 5 || c.Err != nil {
		t.Errorf("Commit = {N: %d, Err: %v}, want {N: 5, Err: nil}", c.N, c.Err)
	}
	s, got, _ := storeOpen(t, path, 10)
	storeClose(s)
	storeSameMessages(t, got, msgs)
}

// TestOpenStoreErrors checks that OpenStore refuses bad arguments and paths.
func TestOpenStoreErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		path    string
		keep    int
		wantErr string
	}{
		{"keep zero", filepath.Join(dir, "chat.jsonl"), 0, "must be at least 1"},
		{"path is a directory", dir, 10, "open journal"},
		{"missing directory", filepath.Join(dir, "missing", "chat.jsonl"), 10, "open journal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, msgs, err := OpenStore(tt.path, tt.keep, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("OpenStore error = %v, want one containing %q", err, tt.wantErr)
			}
			if s != nil || msgs != nil {
				t.Errorf("OpenStore returned a store or messages with its error")
			}
		})
	}
}

// TestOpenStoreRemovesStaleTemp checks that a compaction file left by a crash
// is removed and does not affect recovery.
func TestOpenStoreRemovesStaleTemp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	msgs := storeTestMessages(0, 2)
	if err := os.WriteFile(path, []byte(storeLine(t, msgs[0])+storeLine(t, msgs[1])), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", []byte(`{"id":"1-1","us`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, got, _ := storeOpen(t, path, 10)
	storeClose(s)
	storeSameMessages(t, got, msgs)
	if _, err := os.Stat(path + ".tmp"); err == nil {
		t.Errorf("%s.tmp still exists", path)
	}
}

// Environment variables that turn the test binary into the crash helper.
const (
	// storeCrashPathEnv names the journal the helper writes.
	storeCrashPathEnv = "CHAT_STORE_CRASH_PATH"
	// storeCrashKeepEnv holds the keep the helper opens the journal with.
	storeCrashKeepEnv = "CHAT_STORE_CRASH_KEEP"
)

// TestStoreCrashHelper is not a test: TestStoreCrashKeepsAcknowledged runs the
// test binary again with only this test selected and storeCrashPathEnv set.
// It then opens the journal, continues it from the last recovered id, appends
// messages with up to 512 in flight, and prints "ack <id>" for each message
// once its Commit arrives, until it is killed (or after 200000 messages).
func TestStoreCrashHelper(t *testing.T) {
	path := os.Getenv(storeCrashPathEnv)
	if path == "" {
		return
	}
	keep, err := strconv.Atoi(os.Getenv(storeCrashKeepEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad keep:", err)
		os.Exit(2)
	}
	s, msgs, err := OpenStore(path, keep, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	epoch, seq := int64(1), uint64(0)
	if len(msgs) > 0 {
		if epoch, seq, err = parseID(msgs[len(msgs)-1].ID); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	go s.Run(context.Background())
	out := bufio.NewWriter(os.Stdout)
	var pending []string
	for acked := 0; acked < 200000; {
		for len(pending) < 512 {
			m := storeTestMessage(epoch, seq+1, strings.Repeat("y", int(seq%700)))
			if !s.Append(m) {
				break
			}
			seq++
			pending = append(pending, m.ID)
		}
		c := <-s.Commits()
		if c.Err != nil {
			fmt.Fprintln(os.Stderr, c.Err)
			os.Exit(3)
		}
		for _, id := range pending[:c.N] {
			fmt.Fprintf(out, "ack %s\n", id)
		}
		pending = pending[c.N:]
		acked += c.N
		if err := out.Flush(); err != nil {
			os.Exit(4)
		}
	}
	os.Exit(0)
}

// TestStoreCrashKeepsAcknowledged kills a process that is appending to the
// journal with SIGKILL, mid-stream, several times in a row, and checks after
// each kill that every message whose Commit the process had received is
// recovered (or, with compaction, was older than the last keep messages).
func TestStoreCrashKeepsAcknowledged(t *testing.T) {
	if runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("cannot run a subprocess on " + runtime.GOOS)
	}
	tests := []struct {
		name string
		keep int
	}{
		{"without compaction", 1 << 20},
		{"with compaction", 64},
	}
	const rounds, killAfter = 3, 300
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chat.jsonl")
			var acked []uint64 // seqs of every acknowledged message, all rounds
			for round := range rounds {
				acked = append(acked, storeCrashRound(t, path, tt.keep, killAfter)...)

				logs := &storeLogBuffer{}
				s, msgs, err := OpenStore(path, tt.keep, slog.New(slog.NewTextHandler(logs, nil)))
				if err != nil {
					t.Fatalf("round %d: reopen after kill: %v", round, err)
				}
				storeClose(s)
				if len(msgs) == 0 {
					t.Fatalf("round %d: nothing recovered, %d acknowledged", round, len(acked))
				}
				present := make(map[uint64]bool, len(msgs))
				var first uint64
				for i, m := range msgs {
					epoch, seq, err := parseID(m.ID)
					if err != nil || epoch != 1 {
						t.Fatalf("round %d: recovered id %q", round, m.ID)
					}
					if i == 0 {
						first = seq
					} else if seq != first+uint64(i) {
						t.Fatalf("round %d: recovered ids jump to %s at %d", round, m.ID, i)
					}
					present[seq] = true
				}
				for _, seq := range acked {
					if !present[seq] && (len(msgs) < tt.keep || seq >= first) {
						t.Fatalf("round %d: acknowledged id 1-%d missing (recovered 1-%d to %s)",
							round, seq, first, msgs[len(msgs)-1].ID)
					}
				}
				t.Logf("round %d: %d acknowledged so far, %d recovered, last %s, torn tail dropped: %t",
					round, len(acked), len(msgs), msgs[len(msgs)-1].ID, strings.Contains(logs.String(), "torn"))
			}
		})
	}
}

// storeCrashRound runs the crash helper on the journal at path, kills it with
// SIGKILL once it has acknowledged killAfter messages, and returns the seqs of
// all the messages it acknowledged. It allows the helper one minute.
func storeCrashRound(t *testing.T, path string, keep, killAfter int) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestStoreCrashHelper$")
	cmd.Env = append(os.Environ(), storeCrashPathEnv+"="+path, storeCrashKeepEnv+"="+strconv.Itoa(keep))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []uint64
	killed := false
	r := bufio.NewReader(stdout)
	for {
		// The kill can cut the last line short; a line without its newline is
		// not trusted.
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		id, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "ack ")
		if !ok {
			continue
		}
		_, seq, err := parseID(id)
		if err != nil {
			t.Errorf("helper acknowledged %q: %v", id, err)
			continue
		}
		acked = append(acked, seq)
		if !killed && len(acked) >= killAfter {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL on Unix
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("helper ended before it was killed (%v, %d acknowledged); stderr:\n%s", err, len(acked), stderr.String())
	}
	return acked
}

// BenchmarkStoreCommit measures appending with up to 1024 messages in flight
// and reports how many messages share one fsync.
func BenchmarkStoreCommit(b *testing.B) {
	s, _, err := OpenStore(filepath.Join(b.TempDir(), "chat.jsonl"), 1000, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	commits, pending := 0, 0
	wait := func() {
		c := <-s.Commits()
		if c.Err != nil {
			b.Fatal(c.Err)
		}
		commits++
		pending -= c.N
	}
	b.ResetTimer()
	for i := range b.N {
		if pending >= 1024 {
			wait()
		}
		if !s.Append(storeTestMessage(1, uint64(i+1), "benchmark message")) {
			b.Fatal("Append = false with fewer than storeQueue messages in flight")
		}
		pending++
	}
	for pending > 0 {
		wait()
	}
	b.ReportMetric(float64(b.N)/float64(commits), "msgs/fsync")
}
