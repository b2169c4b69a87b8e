package roomlog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"chat/internal/journal"
	"chat/internal/record"
)

// TestMemoryStoreCommitsInPropose checks the memory path: Propose commits
// at once, numbers records in order, tells the hub before it answers the
// poster, and leaves no report to wait for.
func TestMemoryStoreCommitsInPropose(t *testing.T) {
	l, s := newMemoryLog(10)
	if l.Reports() != nil {
		t.Error("a memory log has a Reports channel; the hub would wait on it")
	}
	for i, content := range []string{"one", "two", "three"} {
		p := proposal("u", content, "")
		l.Propose(p)
		if err := answer(t, p); err != nil || p.ID != id(uint64(i+1)) || p.Seq != uint64(i+1) || p.Time.IsZero() {
			t.Fatalf("post %d: %v, id %s, seq %d, time %v; want id %s", i, err, p.ID, p.Seq, p.Time, id(uint64(i+1)))
		}
		if len(s.ids) != i+1 || s.ids[i] != p.ID {
			t.Fatalf("the hub was told %v after post %d", s.ids, i)
		}
		want := string(AppendMessageEvent(nil, p.Message))
		if got := string(s.events[i]); got != want {
			t.Errorf("event = %q, want %q", got, want)
		}
	}
}

// journalFile is the name of the tests' journal in their temporary
// directory.
const journalFile = "chat.jsonl"

// openJournal opens a journal in dir and returns it with a log over it;
// the journal's Run is not started, so what is appended waits until the
// test starts it (runJournal).
func openJournal(t *testing.T, dir string) (*journal.Journal, *Log, *seen) {
	t.Helper()
	j, recs, err := journal.Open(filepath.Join(dir, journalFile), 100, nil)
	if err != nil || len(recs) != 0 {
		t.Fatalf("journal.Open = %d records, %v", len(recs), err)
	}
	s := &seen{}
	l := New(NewJournalStore(j, testEpoch, nil), Config{History: 100, Committed: s.committed})
	return j, l, s
}

// runJournal runs j until the test ends.
func runJournal(t *testing.T, j *journal.Journal) { t.Cleanup(startJournal(j)) }

// settle hands the log its store's reports until the hub has been told of
// n records, for at most five seconds (a failsafe: a journal on a quiet
// disk commits in milliseconds).
func settle(t *testing.T, l *Log, s *seen, n int) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for len(s.ids) < n {
		select {
		case c := <-l.Reports():
			l.Settle(c)
		case <-deadline:
			t.Fatalf("%d records committed after 5s, want %d", len(s.ids), n)
		}
	}
}

// TestInflightKeys checks in-flight idempotency with a store that commits
// later: a retry that arrives while the post with its key waits for the
// store waits with it and gets its message as a repeat; one with other
// content gets ErrKeyConflict at once; the journal holds the message once.
func TestInflightKeys(t *testing.T) {
	j, l, s := openJournal(t, t.TempDir())
	first := proposal("u", "hello", "k1")
	l.Propose(first)
	retry := proposal("u", "hello", "k1")
	l.Propose(retry)
	other := proposal("u", "bye", "k1")
	l.Propose(other)
	plain := proposal("u", "plain", "")
	l.Propose(plain)
	if err := answer(t, other); !errors.Is(err, ErrKeyConflict) {
		t.Errorf("other content under the key in flight: %v, want ErrKeyConflict", err)
	}
	unanswered(t, first)
	unanswered(t, retry)
	unanswered(t, plain)
	if len(s.ids) != 0 {
		t.Fatalf("the hub was told of %v before the journal committed", s.ids)
	}

	runJournal(t, j)
	settle(t, l, s, 2)
	if err := answer(t, first); err != nil || first.Repeat || first.ID != id(1) {
		t.Errorf("first: %v, repeat %v, id %s; want %s", err, first.Repeat, first.ID, id(1))
	}
	if err := answer(t, retry); err != nil || !retry.Repeat || retry.Message != first.Message {
		t.Errorf("retry in flight: %v, repeat %v, %+v; want a repeat of %+v", err, retry.Repeat, retry.Message, first.Message)
	}
	if err := answer(t, plain); err != nil || plain.ID != id(2) {
		t.Errorf("plain: %v, id %s; want %s", err, plain.ID, id(2))
	}
	later := proposal("u", "hello", "k1")
	l.Propose(later)
	if err := answer(t, later); err != nil || !later.Repeat || later.Message != first.Message {
		t.Errorf("retry after the commit: %v, repeat %v; want a repeat at once", err, later.Repeat)
	}
	if len(l.inflight) != 0 {
		t.Errorf("%d keys still in flight", len(l.inflight))
	}
}

// fullDisk is a journal file whose writes fail: a disk that has filled up.
type fullDisk struct{ journal.File }

// errFull is what a fullDisk's writes fail with.
var errFull = errors.New("no space left on device")

// Write fails.
func (fullDisk) Write([]byte) (int, error) { return 0, errFull }

// TestInflightFailure checks that a store's failure reaches the post and
// the retries that waited on it, and forgets the key, so that the next
// retry is proposed to the store again rather than answered.
func TestInflightFailure(t *testing.T) {
	wrap := journal.WrapFile(func(f journal.File) journal.File { return fullDisk{f} })
	j, recs, err := journal.Open(filepath.Join(t.TempDir(), journalFile), 100, nil, wrap)
	if err != nil || len(recs) != 0 {
		t.Fatalf("journal.Open = %d records, %v", len(recs), err)
	}
	s := &seen{}
	l := New(NewJournalStore(j, testEpoch, nil), Config{History: 100, Committed: s.committed})
	first := proposal("u", "hello", "k1")
	l.Propose(first)
	retry := proposal("u", "hello", "k1")
	l.Propose(retry)
	runJournal(t, j)
	for len(first.Reply) == 0 {
		select {
		case c := <-l.Reports():
			l.Settle(c)
		case <-time.After(5 * time.Second):
			t.Fatal("no report within 5s")
		}
	}
	for _, p := range []*Proposal{first, retry} {
		if err := answer(t, p); !errors.Is(err, errFull) || p.Repeat {
			t.Errorf("after the disk filled up: %v, repeat %v; want the disk's error", err, p.Repeat)
		}
	}
	again := proposal("u", "hello", "k1")
	l.Propose(again)
	unanswered(t, again)
	if l.inflight["k1"] != again || len(s.ids) != 0 {
		t.Errorf("after the failure: in flight %v, committed %v; want the new retry in flight, nothing committed", l.inflight["k1"] == again, s.ids)
	}
}

// TestStopAnswersUnconfirmed checks shutdown with posts in the store: they
// and the retries waiting on them get ErrUnconfirmed, the retries with the
// message they wait for (it has its id, and may yet be stored).
func TestStopAnswersUnconfirmed(t *testing.T) {
	j, l, _ := openJournal(t, t.TempDir())
	first := proposal("u", "hello", "k1")
	l.Propose(first)
	retry := proposal("u", "hello", "k1")
	l.Propose(retry)
	l.Stop()
	if err := answer(t, first); !errors.Is(err, ErrUnconfirmed) || first.ID != id(1) {
		t.Errorf("post held at shutdown: %v, id %q; want ErrUnconfirmed with id %s", err, first.ID, id(1))
	}
	if err := answer(t, retry); !errors.Is(err, ErrUnconfirmed) || !retry.Repeat || retry.ID != id(1) {
		t.Errorf("retry held at shutdown: %v, repeat %v, id %q; want ErrUnconfirmed, a repeat of %s", err, retry.Repeat, retry.ID, id(1))
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	j.Run(done)
}

// TestJournalStoreBusy checks that a store whose queue is full refuses a
// record with ErrBusy, at once, without using up its id.
func TestJournalStoreBusy(t *testing.T) {
	j, l, s := openJournal(t, t.TempDir())
	var last *Proposal
	for {
		p := proposal("u", "m", "")
		l.Propose(p)
		if len(p.Reply) > 0 {
			if err := answer(t, p); !errors.Is(err, ErrBusy) {
				t.Fatalf("a full journal answered %v, want ErrBusy", err)
			}
			break
		}
		last = p
		if last.Seq > 10000 {
			t.Fatal("the journal took 10 000 records without running")
		}
	}
	runJournal(t, j)
	settle(t, l, s, int(last.Seq))
	p := proposal("u", "after", "")
	l.Propose(p)
	settle(t, l, s, int(last.Seq)+1)
	if err := answer(t, p); err != nil || p.Seq != last.Seq+1 {
		t.Errorf("post after the busy one: %v, seq %d; want seq %d", err, p.Seq, last.Seq+1)
	}
}

// TestJournalStoreDeletion checks a deletion through the journal: a second
// deletion of a message whose deletion is in flight is refused, the
// journal keeps the deletion's line, and the key of the deleted message
// then answers ErrDeleted.
func TestJournalStoreDeletion(t *testing.T) {
	dir := t.TempDir()
	j, l, s := openJournal(t, dir)
	runJournal(t, j)
	p := proposal("u", "oops", "k")
	l.Propose(p)
	settle(t, l, s, 1)
	if err := answer(t, p); err != nil {
		t.Fatal(err)
	}
	d := deletion(p.ID)
	l.Propose(d)
	again := deletion(p.ID)
	l.Propose(again)
	if err := answer(t, again); !errors.Is(err, ErrNoSuchMessage) {
		t.Errorf("second deletion while the first is in flight: %v, want ErrNoSuchMessage", err)
	}
	settle(t, l, s, 2)
	if err := answer(t, d); err != nil || d.ID != id(2) {
		t.Errorf("deletion: %v, id %s; want %s", err, d.ID, id(2))
	}
	retry := proposal("u", "oops", "k")
	l.Propose(retry)
	if err := answer(t, retry); !errors.Is(err, ErrDeleted) {
		t.Errorf("retry of the deleted message's key: %v, want ErrDeleted", err)
	}
	if got := eventIDs(s.events); !slices.Equal(got, []string{"message:" + id(1), "delete:" + id(2)}) {
		t.Errorf("events %v", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, journalFile))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 2 || !strings.Contains(lines[1], `"delete":"`+p.ID+`"`) {
		t.Errorf("journal holds %q, want the message and its deletion", lines)
	}
}

// TestOpenJournal checks OpenJournal: a new journal gets an epoch that is
// durable at once (a reopen keeps it, though nothing was appended), a
// journal's records come back decoded with the store numbering after
// them, and a record that does not decode is an error naming the file,
// with the journal closed (it can be opened again).
func TestOpenJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), journalFile)
	j, store, recs, err := OpenJournal(path, 100, nil)
	if err != nil || len(recs) != 0 {
		t.Fatalf("new journal: %d records, %v", len(recs), err)
	}
	epoch := store.Epoch()
	s := &seen{}
	l := New(store, Config{History: 100, Committed: s.committed})
	stop := startJournal(j)
	p := proposal("u", "kept", "")
	l.Propose(p)
	settle(t, l, s, 1)
	l.Stop()
	stop()

	j, store, recs, err = OpenJournal(path, 100, nil)
	if err != nil || len(recs) != 1 || recs[0].ID != p.ID || store.Epoch() != epoch {
		t.Fatalf("reopened: %d records, %v, epoch %d; want %s in epoch %d", len(recs), err, store.Epoch(), p.ID, epoch)
	}
	s = &seen{}
	l = New(store, Config{History: 100, Committed: s.committed, Recovered: recs})
	stop = startJournal(j)
	next := proposal("u", "next", "")
	l.Propose(next)
	settle(t, l, s, 1)
	if want := record.FormatID(epoch, 2); next.ID != want {
		t.Errorf("after a reopen the next id is %s, want %s", next.ID, want)
	}
	l.Stop()
	stop()

	bad := filepath.Join(t.TempDir(), journalFile)
	if err := os.WriteFile(bad, []byte(`{"id":"7-1","time":"soon"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, _, first := OpenJournal(bad, 100, nil)
	if first == nil || !strings.Contains(first.Error(), bad) {
		t.Fatalf("a record that does not decode: %v, want an error naming %s", first, bad)
	}
	if _, _, _, again := OpenJournal(bad, 100, nil); again == nil || again.Error() != first.Error() {
		t.Errorf("opened again: %v; want the same error (not the journal left open)", again)
	}
}

// startJournal runs j until the returned function is called, which waits
// for Run to return (and so for the journal to be closed).
func startJournal(j *journal.Journal) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		j.Run(ctx)
		close(done)
	}()
	return func() {
		cancel()
		<-done
	}
}
