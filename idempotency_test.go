package main

// Tests of idempotent posting: the Idempotency-Key rules of POST /post,
// concurrent duplicates, the bound on the keys remembered, and keys that
// survive kill -9 of the real binary.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestIdempotentRepeat posts with a key, then again with the same key and
// message: the second answer is 200 with the very bytes of the first, and
// nothing is stored or sent again. A post without a key is unaffected.
func TestIdempotentRepeat(t *testing.T) {
	ts := startServer(t)
	s := subscribe(t, ts.URL, "")
	first := mustPostKeyed(t, ts.URL, "k-1", "alice", "hello <b>&", http.StatusCreated)
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Error("201 carries Idempotent-Replayed")
	}
	for range 3 {
		again := mustPostKeyed(t, ts.URL, "k-1", "alice", "hello <b>&", http.StatusOK)
		if !bytes.Equal(again.body, first.body) {
			t.Errorf("repeat answered %s, want the first answer %s", again.body, first.body)
		}
		if again.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("repeat: Idempotent-Replayed = %q, want true", again.header.Get("Idempotent-Replayed"))
		}
	}
	// Trimmed to the same message: still a repeat.
	mustPostKeyed(t, ts.URL, "k-1", " alice ", "hello <b>&\n", http.StatusOK)
	plain := ts.post(t, "bob", "no key")
	plain2 := ts.post(t, "bob", "no key")
	if plain.ID == plain2.ID {
		t.Error("two posts without a key got one id")
	}

	got, _ := s.messages(t, 3)
	if want := []string{first.msg.ID, plain.ID, plain2.ID}; !slices.Equal(ids(got), want) {
		t.Errorf("stream got %v, want %v (a repeat must not be sent)", ids(got), want)
	}
	hist := historyOf(t, ts.URL)
	if len(hist) != 3 || !bytes.Equal(hist[0], bytes.TrimSuffix(first.body, []byte("\n"))) {
		t.Errorf("history = %s, want 3 messages starting with %s", hist, first.body)
	}
	for _, h := range hist {
		if bytes.Contains(h, []byte("k-1")) || bytes.Contains(h, []byte(`"key"`)) {
			t.Errorf("history message %s shows the key", h)
		}
	}
	if st := ts.stats(t); st.MessagesPosted != 3 {
		t.Errorf("messages_posted = %d, want 3", st.MessagesPosted)
	}
}

// TestIdempotentConflict reuses a key for another message: 422 with a JSON
// error, and nothing stored.
func TestIdempotentConflict(t *testing.T) {
	ts := startServer(t)
	first := mustPostKeyed(t, ts.URL, "same", "alice", "one", http.StatusCreated)
	for _, tt := range []struct{ username, content string }{
		{"alice", "two"},
		{"mallory", "one"},
		{"alice", "one "}, // trimmed: the same message, so not a conflict
	} {
		r, err := postKeyed(http.DefaultClient, ts.URL, "same", tt.username, tt.content)
		if err != nil {
			t.Fatal(err)
		}
		want := http.StatusUnprocessableEntity
		if tt.content == "one " {
			want = http.StatusOK
		}
		if r.status != want {
			t.Errorf("same key, %q/%q: status %d, want %d", tt.username, tt.content, r.status, want)
		}
		if want == http.StatusUnprocessableEntity {
			var e errorBody
			if err := json.Unmarshal(r.body, &e); err != nil || !strings.Contains(e.Error, "Idempotency-Key") {
				t.Errorf("422 body %s, want a JSON error naming the Idempotency-Key", r.body)
			}
		}
	}
	if hist := historyOf(t, ts.URL); len(hist) != 1 {
		t.Errorf("history holds %d messages, want only %s", len(hist), first.body)
	}
}

// TestRetryOfDeletedMessage retries, with its Idempotency-Key, a post whose
// message a moderator has deleted: 410 with a JSON error saying so, without
// the message's content or Idempotent-Replayed, and nothing stored; with a
// journal, the same after a restart (the journal keeps the deletion). The
// same key with other content is still a conflict.
func TestRetryOfDeletedMessage(t *testing.T) {
	for _, withJournal := range []bool{false, true} {
		t.Run(fmt.Sprint("journal=", withJournal), func(t *testing.T) {
			flags := []string{"-admin-key", "boss"}
			if withJournal {
				flags = append(flags, "-data", filepath.Join(t.TempDir(), "chat.jsonl"))
			}
			ts := startServer(t, flags...)
			first := mustPostKeyed(t, ts.URL, "k-del", "alice", "regrettable words", http.StatusCreated)
			deletion(t, deleteMsg(t, ts.URL, first.msg.ID, admin()))
			check := func(when string) {
				t.Helper()
				r := mustPostKeyed(t, ts.URL, "k-del", "alice", "regrettable words", http.StatusGone)
				var e errorBody
				if err := json.Unmarshal(r.body, &e); err != nil || !strings.Contains(e.Error, "deleted") {
					t.Errorf("%s: 410 body %s, want a JSON error saying the message was deleted", when, r.body)
				}
				if bytes.Contains(r.body, []byte("regrettable")) || r.header.Get("Idempotent-Replayed") != "" {
					t.Errorf("%s: 410 carries the message (%s) or Idempotent-Replayed (%q)", when, r.body, r.header.Get("Idempotent-Replayed"))
				}
				mustPostKeyed(t, ts.URL, "k-del", "alice", "other words", http.StatusUnprocessableEntity)
				if hist := historyOf(t, ts.URL); len(hist) != 0 {
					t.Errorf("%s: history holds %s, want nothing", when, hist)
				}
			}
			check("before a restart")
			if !withJournal {
				return
			}
			ts.stop(t)
			ts = startServer(t, flags...)
			check("after a restart")
		})
	}
}

// rawPost sends a POST /post with extra raw header lines over a plain TCP
// connection, so that bytes net/http's client refuses can be sent, and
// returns the status.
func rawPost(t *testing.T, url, headerLines string) int {
	t.Helper()
	body := `{"username":"u","content":"raw"}`
	return rawExchange(t, strings.TrimPrefix(url, "http://"), fmt.Sprintf("POST /post HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n%s", len(body), headerLines, body)).status
}

// TestIdempotencyKeyMalformed sends keys that are not 1–128 visible ASCII
// characters, or several keys: each is a 400 and stores nothing.
func TestIdempotencyKeyMalformed(t *testing.T) {
	ts := startServer(t)
	for _, tt := range []struct{ name, lines string }{
		{"empty", "Idempotency-Key:\r\n"},
		{"blank", "Idempotency-Key:    \r\n"},
		{"129 characters", "Idempotency-Key: " + strings.Repeat("k", 129) + "\r\n"},
		{"inner space", "Idempotency-Key: a b\r\n"},
		{"tab", "Idempotency-Key: a\tb\r\n"},
		{"non-ASCII", "Idempotency-Key: clé\r\n"},
		{"DEL", "Idempotency-Key: a\x7fb\r\n"},
		{"twice", "Idempotency-Key: a\r\nIdempotency-Key: b\r\n"},
		{"twice the same", "Idempotency-Key: a\r\nIdempotency-Key: a\r\n"},
	} {
		if got := rawPost(t, ts.URL, tt.lines); got != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", tt.name, got)
		}
	}
	r, err := postKeyed(http.DefaultClient, ts.URL, "a b", "u", "x")
	if err != nil || r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"error":"idempotency key`) {
		t.Errorf("key with a space: %d %s %v, want a 400 JSON error", r.status, r.body, err)
	}
	if hist := historyOf(t, ts.URL); len(hist) != 0 {
		t.Errorf("history holds %s after bad keys, want nothing", hist)
	}
	// The longest key is fine.
	mustPostKeyed(t, ts.URL, strings.Repeat("~", 128), "u", "longest key", http.StatusCreated)
}

// TestIdempotentConcurrent posts one message with one key from many
// goroutines at once, with and without a journal: exactly one 201, the rest
// 200, all with the same message, and one message in history.
func TestIdempotentConcurrent(t *testing.T) {
	for _, journal := range []bool{false, true} {
		t.Run(fmt.Sprint("journal=", journal), func(t *testing.T) {
			var flags []string
			if journal {
				flags = []string{"-data", filepath.Join(t.TempDir(), "chat.jsonl")}
			}
			ts := startServer(t, flags...)
			const keys, posters = 8, 16
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: posters}}
			t.Cleanup(client.CloseIdleConnections)
			for k := range keys {
				key := fmt.Sprint("concurrent-", k)
				replies := make([]reply, posters)
				errs := make([]error, posters)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range posters {
					wg.Go(func() {
						<-start
						replies[i], errs[i] = postKeyed(client, ts.URL, key, "u", "once "+key)
					})
				}
				close(start)
				wg.Wait()
				created := 0
				for i, r := range replies {
					if errs[i] != nil {
						t.Fatalf("%s poster %d: %v", key, i, errs[i])
					}
					switch r.status {
					case http.StatusCreated:
						created++
					case http.StatusOK:
					default:
						t.Errorf("%s poster %d: status %d %s", key, i, r.status, r.body)
					}
					if !bytes.Equal(r.body, replies[0].body) {
						t.Errorf("%s poster %d got %s, poster 0 %s", key, i, r.body, replies[0].body)
					}
				}
				if created != 1 {
					t.Errorf("%s: %d answers were 201, want exactly 1", key, created)
				}
			}
			if hist := historyOf(t, ts.URL); len(hist) != keys {
				t.Errorf("history holds %d messages, want %d", len(hist), keys)
			}
		})
	}
}

// hubPost posts through the room's API with a key and returns whether the
// room answered it as a repeat.
func hubPost(t *testing.T, cr *ChatRoom, key, content string) (Message, bool) {
	t.Helper()
	m, repeat, err := cr.PostKeyed(t.Context(), "u", content, key)
	if err != nil {
		t.Fatalf("PostKeyed %s: %v", key, err)
	}
	return m, repeat
}

// TestIdempotencyExpiry checks the bound on remembered keys, in fake time:
// keys whose message is in history are kept whatever their age and number;
// keys out of history are kept for the TTL while the table is under its
// maximum, and forgotten oldest first beyond it.
func TestIdempotencyExpiry(t *testing.T) {
	t.Run("InHistoryKept", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, cr := startRoom(t, RoomConfig{History: 10, MaxKeys: 1, KeyTTL: time.Hour})
			for i := range 5 {
				hubPost(t, cr, fmt.Sprint("k", i), fmt.Sprint("m", i))
			}
			time.Sleep(48 * time.Hour)
			hubPost(t, cr, "k5", "m5")
			for i := range 5 {
				if _, repeat := hubPost(t, cr, fmt.Sprint("k", i), fmt.Sprint("m", i)); !repeat {
					t.Errorf("k%d forgotten while its message is in history", i)
				}
			}
		})
	})
	t.Run("Bound", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, cr := startRoom(t, RoomConfig{History: 2, MaxKeys: 3, KeyTTL: time.Hour})
			first := make([]Message, 6)
			for i := range 6 {
				first[i], _ = hubPost(t, cr, fmt.Sprint("k", i), fmt.Sprint("m", i))
			}
			// History holds m4 and m5; the table keeps the 3 newest keys.
			for i := 5; i >= 3; i-- {
				m, repeat := hubPost(t, cr, fmt.Sprint("k", i), fmt.Sprint("m", i))
				if !repeat || m != first[i] {
					t.Errorf("k%d: repeat %v, message %+v; want the first %+v", i, repeat, m, first[i])
				}
			}
			for i := 2; i >= 0; i-- {
				m, repeat := hubPost(t, cr, fmt.Sprint("k", i), fmt.Sprint("m", i))
				if repeat || m.ID == first[i].ID {
					t.Errorf("k%d still remembered beyond the bound (repeat %v, id %s)", i, repeat, m.ID)
				}
			}
		})
	})
	t.Run("TTL", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, cr := startRoom(t, RoomConfig{History: 1, MaxKeys: 100, KeyTTL: 24 * time.Hour})
			hubPost(t, cr, "k0", "m0")
			hubPost(t, cr, "k1", "m1") // k0 leaves history
			time.Sleep(23 * time.Hour)
			hubPost(t, cr, "k2", "m2")
			if _, repeat := hubPost(t, cr, "k0", "m0"); !repeat {
				t.Error("k0 forgotten after 23 h, want it kept for 24 h")
			}
			time.Sleep(2 * time.Hour)
			hubPost(t, cr, "k3", "m3") // k0 and k1 are now 25 h old
			if _, repeat := hubPost(t, cr, "k1", "m1"); repeat {
				t.Error("k1 remembered 25 h after, out of history, want it forgotten")
			}
			if _, repeat := hubPost(t, cr, "k2", "m2"); !repeat {
				t.Error("k2 forgotten after 2 h")
			}
		})
	})
}

// TestIdempotencySurvivesKill posts with keys from several goroutines to the
// real binary with a journal, kills it with SIGKILL in the middle, restarts
// it and retries every key: an acknowledged post gets 200 with its original
// message, an unanswered one 200 (it was made durable) or 201 (it was not),
// and history holds every message exactly once, without its key. Twice, so
// that the keys of the second run survive too.
func TestIdempotencySurvivesKill(t *testing.T) {
	bin := chatBinary(t)
	journal := filepath.Join(t.TempDir(), "chat.jsonl")
	args := []string{"-data", journal, "-history", "100000"}

	type attempt struct {
		key, username, content string
		// acked is the message of a 200 or 201 answer.
		acked *Message
	}
	var mu sync.Mutex
	var tried []*attempt
	for round := range 2 {
		p := startChatProc(t, bin, args...)
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var acks atomic.Int64
		for w := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					a := &attempt{key: fmt.Sprintf("r%d-w%d-%d", round, w, i), username: fmt.Sprint("w", w), content: fmt.Sprintf("round %d w%d #%d", round, w, i)}
					mu.Lock()
					tried = append(tried, a)
					mu.Unlock()
					r, err := postKeyed(client, p.URL, a.key, a.username, a.content)
					if err != nil {
						continue // killed: no answer
					}
					if r.status == http.StatusCreated {
						mu.Lock()
						a.acked = &r.msg
						mu.Unlock()
						acks.Add(1)
					}
				}
			})
		}
		waitFor(t, "100 acknowledged posts", func() bool { return acks.Load() >= 100 })
		p.kill(t) // posts are still in flight
		close(stop)
		wg.Wait()
		client.CloseIdleConnections()

		p = startChatProc(t, bin, args...)
		again := make(map[string]int)
		for _, a := range tried {
			r, err := postKeyed(http.DefaultClient, p.URL, a.key, a.username, a.content)
			if err != nil {
				t.Fatalf("POST /post key %s: %v", a.key, err)
			}
			again[fmt.Sprint(r.status)]++
			switch {
			case a.acked != nil && r.status != http.StatusOK:
				t.Errorf("retry of acknowledged %s after SIGKILL: status %d, want 200", a.key, r.status)
			case a.acked != nil && (r.msg.ID != a.acked.ID || !r.msg.Time.Equal(a.acked.Time)):
				t.Errorf("retry of %s got %+v, want the original %+v", a.key, r.msg, *a.acked)
			case r.status != http.StatusOK && r.status != http.StatusCreated:
				t.Errorf("retry of unanswered %s: status %d", a.key, r.status)
			}
			m := r.msg
			a.acked = &m
		}
		t.Logf("round %d: %d keys tried; retries after restart answered %v", round, len(tried), again)

		hist := historyOf(t, p.URL)
		seen := make(map[string]int)
		for _, h := range hist {
			if bytes.Contains(h, []byte(`"key"`)) {
				t.Fatalf("history message %s shows its key", h)
			}
			var m Message
			if err := json.Unmarshal(h, &m); err != nil {
				t.Fatal(err)
			}
			seen[m.Content]++
		}
		for _, a := range tried {
			if seen[a.content] != 1 {
				t.Errorf("history holds %q %d times, want once", a.content, seen[a.content])
			}
		}
		if len(hist) != len(tried) {
			t.Errorf("history holds %d messages for %d keys", len(hist), len(tried))
		}
		p.kill(t)
		if t.Failed() {
			t.Fatalf("server log:\n%s", p.logs)
		}
	}
}

// BenchmarkHubPostKeyed measures the hub's cost of a post with and without
// an Idempotency-Key (a fresh key each time, so the table fills to its bound
// and then forgets one key per post), with 100 clients draining their
// queues, as BenchmarkFanOut does.
func BenchmarkHubPostKeyed(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		b.Run(fmt.Sprint("keyed=", keyed), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			room := NewChatRoom(RoomConfig{History: 100, ClientBuffer: 1024}, NewStats())
			go room.Run(ctx)
			var wg sync.WaitGroup
			for range 100 {
				c, _, err := room.Join(ctx, "bench", nil)
				if err != nil {
					b.Fatal(err)
				}
				wg.Go(func() {
					for range c.frames() {
					}
				})
			}
			i := 0
			for b.Loop() {
				key := ""
				if keyed {
					i++
					key = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
				}
				if _, _, err := room.PostKeyed(ctx, "alice", "hello", key); err != nil {
					b.Fatal(err)
				}
			}
			cancel()
			wg.Wait()
		})
	}
}
