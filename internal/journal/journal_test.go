package journal

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

	"chat/internal/record"
)

// testWait bounds every wait on the journal in these tests. It is a failsafe
// against hangs, never a means of synchronisation.
const testWait = 10 * time.Second

// logBuffer is a goroutine-safe buffer behind a test logger.
type logBuffer struct {
	// mu guards b.
	mu sync.Mutex
	// b holds the log output.
	b bytes.Buffer
}

// Write appends p to the buffer.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was logged so far.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testMessage is a chat message as the chat server journals it, so that the
// records in these tests look like the real ones.
type testMessage struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	Content  string    `json:"content"`
	Time     time.Time `json:"time"`
}

// testRecord returns a record with id epoch-seq holding a message with the
// given content, marshalled as the chat server does (one line, no HTML
// escaping).
func testRecord(epoch int64, seq uint64, content string) Record {
	m := testMessage{
		ID:       recID(epoch, seq),
		Username: "alice",
		Content:  content,
		Time:     time.Date(2026, 11, 25, 18, 20, 1, int(seq%1e9), time.UTC),
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		panic(err) // a testMessage always marshals
	}
	return Record{Epoch: epoch, Seq: seq, Data: bytes.TrimSuffix(b.Bytes(), []byte("\n"))}
}

// recID returns the id "<epoch>-<seq>".
func recID(epoch int64, seq uint64) string {
	return strconv.FormatInt(epoch, 10) + "-" + strconv.FormatUint(seq, 10)
}

// testRecords returns n records of epoch 1 with seqs from+1 to from+n.
func testRecords(from uint64, n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		seq := from + uint64(i) + 1
		recs[i] = testRecord(1, seq, fmt.Sprintf("message %d", seq))
	}
	return recs
}

// testLine returns the journal line of r, newline included.
func testLine(r Record) string {
	return string(r.Data) + "\n"
}

// testOpen opens the journal at path with a debug logger writing to the
// returned buffer, or fails the test.
func testOpen(t *testing.T, path string, keep int) (*Journal, []Record, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, msgs, err := Open(path, keep, logger)
	if err != nil {
		t.Fatalf("Open(%s, %d): %v", path, keep, err)
	}
	return s, msgs, logs
}

// testStart runs s in a new goroutine. The returned stop cancels Run and
// waits (at most testWait) for it to return. stop is also registered with
// t.Cleanup and may be called more than once.
func testStart(t *testing.T, s *Journal) (stop func()) {
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
		case <-time.After(testWait):
			t.Errorf("Run did not return within %v of its context ending", testWait)
		}
	}
	t.Cleanup(stop)
	return stop
}

// testClose releases s without running it: Run with a done context writes
// what is queued, closes the file and returns.
func testClose(s *Journal) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Run(ctx)
}

// testNext returns the next Commit, failing the test if none arrives within
// testWait.
func testNext(t *testing.T, s *Journal) Commit {
	t.Helper()
	select {
	case c := <-s.Commits():
		return c
	case <-time.After(testWait):
		t.Fatalf("no Commit within %v", testWait)
		return Commit{}
	}
}

// testAwait reads Commits until they cover n messages and returns them. It
// fails the test if a Commit carries an error or if the Commits cover more
// than n messages.
func testAwait(t *testing.T, s *Journal, n int) []Commit {
	t.Helper()
	var commits []Commit
	for got := 0; got < n; {
		c := testNext(t, s)
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

// testAppendAll appends msgs, failing the test if Append refuses one.
func testAppendAll(t *testing.T, s *Journal, msgs []Record) {
	t.Helper()
	for _, m := range msgs {
		if !s.Append(m) {
			t.Fatalf("Append(%s) = false, want true", recID(m.Epoch, m.Seq))
		}
	}
}

// sameRecords fails the test unless got and want hold the same records
// (ids and data, byte for byte) in the same order.
func sameRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Epoch != w.Epoch || g.Seq != w.Seq || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("record %d = {%d, %d, %s}, want {%d, %d, %s}", i, g.Epoch, g.Seq, g.Data, w.Epoch, w.Seq, w.Data)
		}
	}
}

// fileLines returns the lines of the file at path, newlines removed.
func fileLines(t *testing.T, path string) []string {
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

// TestAppendCommitReopen checks that committed messages come back,
// unchanged and in order, when the journal is reopened, and that appending
// after a reopen continues the journal.
func TestAppendCommitReopen(t *testing.T) {
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
	var awkwardMsgs []Record
	for i, c := range awkward {
		awkwardMsgs = append(awkwardMsgs, testRecord(1764094637123, uint64(i+1), c))
	}
	tests := []struct {
		name string
		msgs []Record
	}{
		{"no messages", nil},
		{"one message", testRecords(0, 1)},
		{"awkward content", awkwardMsgs},
		{"many messages", testRecords(41, 500)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chat.jsonl")
			var want []Record
			for _, half := range [][]Record{tt.msgs[:len(tt.msgs)/2], tt.msgs[len(tt.msgs)/2:]} {
				s, got, _ := testOpen(t, path, 1000)
				sameRecords(t, got, want)
				stop := testStart(t, s)
				testAppendAll(t, s, half)
				testAwait(t, s, len(half))
				stop()
				want = append(want, half...)
			}
			s, got, _ := testOpen(t, path, 1000)
			testClose(s)
			sameRecords(t, got, want)
		})
	}
}

// TestGroupCommit checks that messages queued while Run is busy share one
// write and one fsync: fewer Commits than messages, covering all of them.
func TestGroupCommit(t *testing.T) {
	const count = 1000
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	s, _, _ := testOpen(t, path, count)
	msgs := testRecords(0, count)
	testAppendAll(t, s, msgs) // all queued before Run takes any
	stop := testStart(t, s)
	commits := testAwait(t, s, count)
	stop()
	if len(commits) >= count {
		t.Errorf("%d Commits for %d messages, want fewer", len(commits), count)
	}
	t.Logf("%d messages, %d Commits", count, len(commits))
	if got := len(fileLines(t, path)); got != count {
		t.Errorf("journal has %d lines, want %d", got, count)
	}
}

// TestConcurrentAppends checks, under the race detector, that posts from
// many goroutines (serialised for id assignment, as the hub does) are all
// committed and recovered in order.
func TestConcurrentAppends(t *testing.T) {
	const producers, each = 8, 250
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	s, _, _ := testOpen(t, path, producers*each)
	stop := testStart(t, s)
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
				m := testRecord(1, seq, "concurrent")
				if !s.Append(m) {
					refused <- recID(m.Epoch, m.Seq)
				}
				mu.Unlock()
			}
		})
	}
	commits := testAwait(t, s, producers*each)
	wg.Wait()
	close(refused)
	for id := range refused {
		t.Errorf("Append(%s) = false", id)
	}
	stop()
	t.Logf("%d messages, %d Commits", producers*each, len(commits))
	s, got, _ := testOpen(t, path, producers*each)
	testClose(s)
	want := make([]Record, producers*each)
	for i := range want {
		want[i] = testRecord(1, uint64(i+1), "concurrent")
	}
	sameRecords(t, got, want)
}

// TestTornTail checks that a torn last line is dropped with a warning,
// truncated from the file, and that a message appended afterwards is
// recovered cleanly.
func TestTornTail(t *testing.T) {
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
			good := testRecords(0, tt.good)
			var data string
			for _, m := range good {
				data += testLine(m)
			}
			if err := os.WriteFile(path, []byte(data+tt.tail), 0o644); err != nil {
				t.Fatal(err)
			}

			s, got, logs := testOpen(t, path, 100)
			sameRecords(t, got, good)
			if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "torn") {
				t.Errorf("log = %q, want a warning about the torn line", l)
			}
			if fi, err := os.Stat(path); err != nil {
				t.Fatal(err)
			} else if fi.Size() != int64(len(data)) {
				t.Errorf("journal size after recovery = %d, want %d", fi.Size(), len(data))
			}

			next := testRecord(1, uint64(tt.good+1), "after the crash")
			stop := testStart(t, s)
			testAppendAll(t, s, []Record{next})
			testAwait(t, s, 1)
			stop()

			s, got, logs = testOpen(t, path, 100)
			testClose(s)
			sameRecords(t, got, append(good, next))
			if l := logs.String(); strings.Contains(l, "level=WARN") {
				t.Errorf("second recovery logged a warning: %q", l)
			}
		})
	}
}

// TestCorruptLine checks that a bad line that is not a torn last line
// makes Open fail with an error naming the file and the line, and that
// the file is left as it was.
func TestCorruptLine(t *testing.T) {
	m := func(epoch int64, seq uint64) string { return testLine(testRecord(epoch, seq, "hi")) }
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
			s, _, err := Open(path, 100, nil)
			if err == nil {
				testClose(s)
				t.Fatal("Open succeeded, want an error")
			}
			prefix := fmt.Sprintf("journal %s line %d: ", path, tt.wantLine)
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error = %q, want prefix %q and %q", msg, prefix, tt.wantErr)
			}
			if after, err := os.ReadFile(path); err != nil {
				t.Fatal(err)
			} else if !bytes.Equal(after, data) {
				t.Errorf("Open changed the corrupt journal")
			}
		})
	}
}

// TestCompaction checks that the file never holds more than 2*keep lines
// plus one group, and that reopening returns the last keep messages.
func TestCompaction(t *testing.T) {
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
			s, _, _ := testOpen(t, path, tt.keep)
			stop := testStart(t, s)
			msgs := testRecords(0, tt.count)
			for i := 0; i < len(msgs); i += tt.group {
				group := msgs[i:min(i+tt.group, len(msgs))]
				testAppendAll(t, s, group)
				testAwait(t, s, len(group))
				// Run may be compacting right now; the rename is atomic.
				if n := len(fileLines(t, path)); n > 2*tt.keep+tt.group {
					t.Fatalf("after %d messages the journal has %d lines, want at most %d",
						i+len(group), n, 2*tt.keep+tt.group)
				}
			}
			stop()
			if n := len(fileLines(t, path)); n > 2*tt.keep {
				t.Errorf("journal has %d lines, want at most %d", n, 2*tt.keep)
			}
			if _, err := os.Stat(path + ".tmp"); err == nil {
				t.Errorf("%s.tmp left behind", path)
			}
			s, got, _ := testOpen(t, path, tt.keep)
			testClose(s)
			sameRecords(t, got, msgs[max(0, len(msgs)-tt.keep):])
		})
	}
}

// TestCompactsOnStartWhenKeepShrinks checks that a journal written with a
// larger keep is recovered to the last keep messages and compacted by Run.
func TestCompactsOnStartWhenKeepShrinks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	msgs := testRecords(0, 30)
	var data string
	for _, m := range msgs {
		data += testLine(m)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	s, got, _ := testOpen(t, path, 5)
	sameRecords(t, got, msgs[25:])
	testClose(s)
	if n := len(fileLines(t, path)); n != 5 {
		t.Errorf("journal has %d lines after Run, want 5", n)
	}
	s, got, _ = testOpen(t, path, 5)
	testClose(s)
	sameRecords(t, got, msgs[25:])
}

// TestAppendRefused checks that Append returns false, without blocking,
// when the queue is full or the journal is closed.
func TestAppendRefused(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Journal) uint64 // returns the last seq queued
	}{
		{"queue full", func(t *testing.T, s *Journal) uint64 {
			testAppendAll(t, s, testRecords(0, queueSize)) // Run is not running
			t.Cleanup(func() { testClose(s) })
			return queueSize
		}},
		{"closed", func(t *testing.T, s *Journal) uint64 {
			testClose(s)
			return 0
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _ := testOpen(t, filepath.Join(t.TempDir(), "chat.jsonl"), 10)
			last := tt.setup(t, s)
			if s.Append(testRecord(1, last+1, "one too many")) {
				t.Errorf("Append = true, want false")
			}
		})
	}
}

// TestRefusesOutOfOrderID checks that Run refuses, instead of writing, a
// message whose id does not follow the last one, reporting it in a Commit of
// its own, and that the journal stays readable.
func TestRefusesOutOfOrderID(t *testing.T) {
	type commit struct {
		n  int
		ok bool
	}
	msg := func(epoch int64, seq uint64) Record { return testRecord(epoch, seq, "hi") }
	bad := msg(1, 3)
	bad.Data = bytes.Replace(bad.Data, []byte(`"1-3"`), []byte(`"bogus"`), 1)
	tests := []struct {
		name        string
		recovered   []Record
		appended    []Record
		wantCommits []commit
		wantIDs     []string
	}{
		{
			name:        "in the middle of a group",
			appended:    []Record{msg(1, 1), msg(1, 2), msg(1, 2), msg(2, 3), bad, msg(1, 3), msg(1, 4)},
			wantCommits: []commit{{2, true}, {1, false}, {1, false}, {1, false}, {2, true}},
			wantIDs:     []string{"1-1", "1-2", "1-3", "1-4"},
		},
		{
			name:        "right after recovery",
			recovered:   []Record{msg(7, 5)},
			appended:    []Record{msg(7, 5), msg(7, 6)},
			wantCommits: []commit{{1, false}, {1, true}},
			wantIDs:     []string{"7-5", "7-6"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chat.jsonl")
			var data string
			for _, m := range tt.recovered {
				data += testLine(m)
			}
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			s, _, _ := testOpen(t, path, 100)
			testAppendAll(t, s, tt.appended) // one group: all queued before Run
			stop := testStart(t, s)
			for i, want := range tt.wantCommits {
				c := testNext(t, s)
				if c.N != want.n || (c.Err == nil) != want.ok {
					t.Errorf("Commit %d = {N: %d, Err: %v}, want N %d, ok %v", i, c.N, c.Err, want.n, want.ok)
				}
			}
			stop()
			s, got, _ := testOpen(t, path, 100)
			testClose(s)
			var ids []string
			for _, m := range got {
				ids = append(ids, recID(m.Epoch, m.Seq))
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.wantIDs) {
				t.Errorf("recovered ids %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

// TestWriteErrorFailsJournal checks that a failed write is reported in the
// Commit and that every later message is reported with the same error.
func TestWriteErrorFailsJournal(t *testing.T) {
	s, _, _ := testOpen(t, filepath.Join(t.TempDir(), "chat.jsonl"), 10)
	s.f.Close() // make every write fail; Run is not running yet
	testAppendAll(t, s, testRecords(0, 2))
	testStart(t, s)
	first := testNext(t, s)
	if first.N != 2 || first.Err == nil {
		t.Fatalf("Commit = {N: %d, Err: %v}, want N 2 and an error", first.N, first.Err)
	}
	testAppendAll(t, s, testRecords(2, 1))
	second := testNext(t, s)
	if second.N != 1 || !errors.Is(second.Err, first.Err) {
		t.Errorf("Commit = {N: %d, Err: %v}, want N 1 and %v", second.N, second.Err, first.Err)
	}
}

// TestRunReturnsWhenConsumerStalls checks that Run, blocked sending a
// Commit nobody reads, still returns when its context ends, after making the
// queued messages durable.
func TestRunReturnsWhenConsumerStalls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	synctest.Test(t, func(t *testing.T) {
		s, _, _ := testOpen(t, path, 10)
		s.commits = make(chan Commit) // no buffer and no reader: the first send blocks
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Run(ctx)
		}()
		testAppendAll(t, s, testRecords(0, 1))
		synctest.Wait() // Run has written message 1 and is blocked sending its Commit
		testAppendAll(t, s, testRecords(1, 2))
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Run did not return after its context ended")
		}
	})
	s, got, _ := testOpen(t, path, 10)
	testClose(s)
	sameRecords(t, got, testRecords(0, 3))
}

// TestRunFlushesQueueOnShutdown checks that Run, started with a context
// that is already done, writes what is queued, reports it and returns.
func TestRunFlushesQueueOnShutdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	s, _, _ := testOpen(t, path, 10)
	msgs := testRecords(0, 5)
	testAppendAll(t, s, msgs)
	testClose(s)
	if c := testNext(t, s); c.N != 5 || c.Err != nil {
		t.Errorf("Commit = {N: %d, Err: %v}, want {N: 5, Err: nil}", c.N, c.Err)
	}
	s, got, _ := testOpen(t, path, 10)
	testClose(s)
	sameRecords(t, got, msgs)
}

// TestOpenErrors checks that Open refuses bad arguments and paths.
func TestOpenErrors(t *testing.T) {
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
			s, msgs, err := Open(tt.path, tt.keep, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Open error = %v, want one containing %q", err, tt.wantErr)
			}
			if s != nil || msgs != nil {
				t.Errorf("Open returned a journal or records with its error")
			}
		})
	}
}

// TestOpenRemovesStaleTemp checks that a compaction file left by a crash
// is removed and does not affect recovery.
func TestOpenRemovesStaleTemp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	msgs := testRecords(0, 2)
	if err := os.WriteFile(path, []byte(testLine(msgs[0])+testLine(msgs[1])), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", []byte(`{"id":"1-1","us`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, got, _ := testOpen(t, path, 10)
	testClose(s)
	sameRecords(t, got, msgs)
	if _, err := os.Stat(path + ".tmp"); err == nil {
		t.Errorf("%s.tmp still exists", path)
	}
}

// Environment variables that turn the test binary into the crash helper.
const (
	// crashPathEnv names the journal the helper writes.
	crashPathEnv = "CHAT_JOURNAL_CRASH_PATH"
	// crashKeepEnv holds the keep the helper opens the journal with.
	crashKeepEnv = "CHAT_JOURNAL_CRASH_KEEP"
)

// TestCrashHelper is not a test: TestCrashKeepsAcknowledged runs the
// test binary again with only this test selected and crashPathEnv set.
// It then opens the journal, continues it from the last recovered id, appends
// messages with up to 512 in flight, and prints "ack <id>" for each message
// once its Commit arrives, until it is killed (or after 200000 messages).
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashPathEnv)
	if path == "" {
		return
	}
	keep, err := strconv.Atoi(os.Getenv(crashKeepEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad keep:", err)
		os.Exit(2)
	}
	s, msgs, err := Open(path, keep, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	epoch, seq := int64(1), uint64(0)
	if len(msgs) > 0 {
		epoch, seq = msgs[len(msgs)-1].Epoch, msgs[len(msgs)-1].Seq
	}
	go s.Run(context.Background())
	out := bufio.NewWriter(os.Stdout)
	var pending []string
	for acked := 0; acked < 200000; {
		for len(pending) < 512 {
			m := testRecord(epoch, seq+1, strings.Repeat("y", int(seq%700)))
			if !s.Append(m) {
				break
			}
			seq++
			pending = append(pending, recID(m.Epoch, m.Seq))
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

// TestCrashKeepsAcknowledged kills a process that is appending to the
// journal with SIGKILL, mid-stream, several times in a row, and checks after
// each kill that every message whose Commit the process had received is
// recovered (or, with compaction, was older than the last keep messages).
func TestCrashKeepsAcknowledged(t *testing.T) {
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
				acked = append(acked, crashRound(t, path, tt.keep, killAfter)...)

				logs := &logBuffer{}
				s, msgs, err := Open(path, tt.keep, slog.New(slog.NewTextHandler(logs, nil)))
				if err != nil {
					t.Fatalf("round %d: reopen after kill: %v", round, err)
				}
				testClose(s)
				if len(msgs) == 0 {
					t.Fatalf("round %d: nothing recovered, %d acknowledged", round, len(acked))
				}
				present := make(map[uint64]bool, len(msgs))
				var first uint64
				for i, m := range msgs {
					id, seq := recID(m.Epoch, m.Seq), m.Seq
					if m.Epoch != 1 || !bytes.HasPrefix(m.Data, []byte(`{"id":"`+id+`"`)) {
						t.Fatalf("round %d: recovered record %s: %s", round, id, m.Data)
					}
					if i == 0 {
						first = seq
					} else if seq != first+uint64(i) {
						t.Fatalf("round %d: recovered ids jump to %s at %d", round, id, i)
					}
					present[seq] = true
				}
				for _, seq := range acked {
					if !present[seq] && (len(msgs) < tt.keep || seq >= first) {
						t.Fatalf("round %d: acknowledged id 1-%d missing (recovered 1-%d to %s)",
							round, seq, first, recID(msgs[len(msgs)-1].Epoch, msgs[len(msgs)-1].Seq))
					}
				}
				t.Logf("round %d: %d acknowledged so far, %d recovered, last %s, torn tail dropped: %t",
					round, len(acked), len(msgs), recID(msgs[len(msgs)-1].Epoch, msgs[len(msgs)-1].Seq), strings.Contains(logs.String(), "torn"))
			}
		})
	}
}

// crashRound runs the crash helper on the journal at path, kills it with
// SIGKILL once it has acknowledged killAfter messages, and returns the seqs of
// all the messages it acknowledged. It allows the helper one minute.
func crashRound(t *testing.T, path string, keep, killAfter int) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashHelper$")
	cmd.Env = append(os.Environ(), crashPathEnv+"="+path, crashKeepEnv+"="+strconv.Itoa(keep))
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
		_, seq, err := record.ParseID(id)
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

// BenchmarkCommit measures appending with up to 1024 messages in flight
// and reports how many messages share one fsync.
func BenchmarkCommit(b *testing.B) {
	s, _, err := Open(filepath.Join(b.TempDir(), "chat.jsonl"), 1000, nil)
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
		if !s.Append(testRecord(1, uint64(i+1), "benchmark message")) {
			b.Fatal("Append = false with fewer than queueSize messages in flight")
		}
		pending++
	}
	for pending > 0 {
		wait()
	}
	b.ReportMetric(float64(b.N)/float64(commits), "msgs/fsync")
}
