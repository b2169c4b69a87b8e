package main

// Tests of the real binary killed and restarted on its journal: SIGKILL in
// the middle of posts (every message answered 201 survives, ids go on, a
// client resumes without a reset), a clean SIGTERM, a corrupt journal, and
// the journal's lock, which a second binary does not wait for and a killed
// holder drops.

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"chat/internal/journal"
	"chat/internal/record"
)

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
				r, err := postJSON(client, url, fmt.Sprintf("w%d", w), fmt.Sprintf("%s w%d #%d", tag, w, i), nil)
				switch {
				case err != nil:
					// The server is gone (killed): nothing was acknowledged.
				case r.status == http.StatusCreated:
					acked.add(r.msg)
				case r.status == http.StatusServiceUnavailable:
					// Journal busy: not stored, not acknowledged.
				default:
					select {
					case errs <- fmt.Errorf("POST %s: status %d", tag, r.status):
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
func checkRecovered(t *testing.T, srv endpoint, epoch int64, acked []Message, lastAcked Message) Message {
	t.Helper()
	whole := subscribe(t, srv.URL, record.FormatID(epoch, 0))
	resumed := subscribe(t, srv.URL, lastAcked.ID)
	next := srv.post(t, "checker", fmt.Sprintf("after restart at %d", time.Now().UnixNano()))

	hist, other := whole.readUntil(t, next.ID)
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

	got, other := resumed.readUntil(t, next.ID)
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
	bin := chatBinary(t)

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
				next := checkRecovered(t, p.endpoint, epoch, acked, lastOf(t, acked))
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
		checkRecovered(t, p.endpoint, epoch, acked, lastOf(t, acked))
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
			acked = append(acked, p.post(t, "a", fmt.Sprintf("clean %d", i)))
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
		next := checkRecovered(t, p.endpoint, epoch, acked, acked[len(acked)-1])
		if want := record.FormatID(epoch, 6); next.ID != want {
			t.Errorf("first post after restart got id %s, want %s", next.ID, want)
		}
	})

	// CorruptMiddleLine starts the binary on a journal whose middle line
	// is damaged: it must refuse to start, exit 1 and name the line.
	t.Run("CorruptMiddleLine", func(t *testing.T) {
		t.Parallel()
		journal := filepath.Join(t.TempDir(), "chat.jsonl")
		writeJournal(t, journal, journalLine(t, testEpoch, 1, "one"), "{not json\n", journalLine(t, testEpoch, 3, "three"))
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
