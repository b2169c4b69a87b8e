package main

// Tests of GET /history: paging back and forward across the whole history
// with no gap and no overlap, the exact bytes of each message, ids that
// history no longer holds, and bad parameters.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"chat/internal/record"
	"chat/internal/roomlog"
)

// postRaw posts a message and returns the raw body of its 201.
func postRaw(t *testing.T, url, username, content string) []byte {
	t.Helper()
	r := mustPostKeyed(t, url, "", username, content, http.StatusCreated)
	return bytes.TrimSuffix(r.body, []byte("\n"))
}

// TestHistoryPaging posts 250 messages and pages through them backwards
// from the newest and forwards from the start: each way gives every message
// once, in order, with the bytes POST /post returned.
func TestHistoryPaging(t *testing.T) {
	ts := startServer(t, "-history", "300")
	var posted [][]byte
	var want []string
	for i := range 250 {
		posted = append(posted, postRaw(t, ts.URL, fmt.Sprint("user", i%7), fmt.Sprintf("message %d <b>&amp; \"quoted\"\nline two é 👋", i)))
		var m Message
		_ = json.Unmarshal(posted[i], &m)
		want = append(want, m.ID)
	}
	epoch, _ := mustParseID(t, want[0])

	newest := getHistory(t, ts.URL, "", http.StatusOK)
	if got := rawIDs(t, newest.Messages); !slices.Equal(got, want[200:]) || !newest.More {
		t.Errorf("default page: %v, more %v; want the 50 newest and more", got, newest.More)
	}

	// Back from the newest, 37 at a time.
	var back []json.RawMessage
	page := getHistory(t, ts.URL, "?limit=37", http.StatusOK)
	pages := 1
	for {
		back = append(slices.Clone(page.Messages), back...)
		if !page.More {
			break
		}
		first := rawIDs(t, page.Messages[:1])[0]
		page = getHistory(t, ts.URL, "?limit=37&before="+first, http.StatusOK)
		if pages++; pages > 20 {
			t.Fatal("paging back does not end")
		}
	}
	if got := rawIDs(t, back); !slices.Equal(got, want) {
		t.Fatalf("paging back gave %d messages %v, want %v", len(got), got, want)
	}
	for i := range back {
		if !bytes.Equal(back[i], posted[i]) {
			t.Errorf("history message %d is %s, POST /post returned %s", i, back[i], posted[i])
		}
	}

	// Forward from the start of the epoch, 41 at a time.
	var fwd []json.RawMessage
	after := record.FormatID(epoch, 0)
	for pages = 0; ; pages++ {
		page := getHistory(t, ts.URL, "?limit=41&after="+after, http.StatusOK)
		fwd = append(fwd, page.Messages...)
		if !page.More {
			break
		}
		after = rawIDs(t, page.Messages)[len(page.Messages)-1]
		if pages > 20 {
			t.Fatal("paging forward does not end")
		}
	}
	if got := rawIDs(t, fwd); !slices.Equal(got, want) {
		t.Fatalf("paging forward gave %v, want %v", got, want)
	}

	// Limits: capped at 200; before the first or after the last: nothing.
	if p := getHistory(t, ts.URL, "?limit=1000", http.StatusOK); len(p.Messages) != 200 || !p.More {
		t.Errorf("limit=1000 gave %d messages, more %v; want 200 and more", len(p.Messages), p.More)
	}
	if p := getHistory(t, ts.URL, "?before="+want[0], http.StatusOK); len(p.Messages) != 0 || p.More {
		t.Errorf("before the first: %s, want none and no more", p.Messages)
	}
	if p := getHistory(t, ts.URL, "?after="+want[249], http.StatusOK); len(p.Messages) != 0 || p.More {
		t.Errorf("after the last: %s, want none and no more", p.Messages)
	}
	if p := getHistory(t, ts.URL, "?after="+want[9]+"&limit=3", http.StatusOK); !slices.Equal(rawIDs(t, p.Messages), want[10:13]) || !p.More {
		t.Errorf("after %s limit 3: %v, more %v", want[9], rawIDs(t, p.Messages), p.More)
	}
}

// TestHistoryExpiredIDs asks for ids older than what history holds: before
// one there is nothing (more false); after one come the oldest messages
// history still holds.
func TestHistoryExpiredIDs(t *testing.T) {
	ts := startServer(t, "-history", "20")
	var want []string
	for i := range 30 {
		want = append(want, ts.post(t, "u", fmt.Sprint("m", i)).ID)
	}
	if p := getHistory(t, ts.URL, "?before="+want[4], http.StatusOK); len(p.Messages) != 0 || p.More {
		t.Errorf("before an evicted id: %s more %v, want none and no more", p.Messages, p.More)
	}
	if p := getHistory(t, ts.URL, "?after="+want[4]+"&limit=200", http.StatusOK); !slices.Equal(rawIDs(t, p.Messages), want[10:]) || p.More {
		t.Errorf("after an evicted id: %v more %v, want the 20 kept and no more", rawIDs(t, p.Messages), p.More)
	}
	if p := getHistory(t, ts.URL, "?limit=200", http.StatusOK); !slices.Equal(rawIDs(t, p.Messages), want[10:]) || p.More {
		t.Errorf("everything: %v more %v, want the 20 kept and no more", rawIDs(t, p.Messages), p.More)
	}
}

// TestHistoryBadParameters checks that malformed parameters are 400 and
// ids this server never gave are 404, each with a JSON error.
func TestHistoryBadParameters(t *testing.T) {
	ts := startServer(t)
	m := ts.post(t, "u", "one")
	epoch, _ := mustParseID(t, m.ID)
	e := fmt.Sprint(epoch)
	for _, q := range []string{
		"?before=abc", "?before=-5", "?before=" + e + "-x", "?before=" + e + "-", "?after=+1-1",
		"?before=" + e + "-99999999999999999999999",
		"?limit=0", "?limit=-1", "?limit=abc", "?limit=", "?limit=1.5", "?limit=+5", "?limit=99999999999",
		"?before=" + m.ID + "&after=" + m.ID,
		"?before=" + m.ID + "&before=" + m.ID,
		"?limit=5&limit=5",
		"?since=" + m.ID,
		"?before=%zz",
	} {
		getHistory(t, ts.URL, q, http.StatusBadRequest)
	}
	for _, q := range []string{
		"?before=1-1", "?after=1-0", // another epoch
		"?after=" + e + "-2", "?before=" + e + "-3", // not assigned yet
	} {
		getHistory(t, ts.URL, q, http.StatusNotFound)
	}
	// The position a stream starts from (<epoch>-0) is fine.
	if p := getHistory(t, ts.URL, "?after="+e+"-0", http.StatusOK); len(p.Messages) != 1 {
		t.Errorf("after %s-0: %s", e, p.Messages)
	}
	resp, err := http.Post(ts.URL+"/history", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(resp.Header.Get("Allow"), "GET") {
		t.Errorf("POST /history: %d Allow %q, want 405 with GET", resp.StatusCode, resp.Header.Get("Allow"))
	}
	resp, err = http.Head(ts.URL + "/history")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /history: %d", resp.StatusCode)
	}
}

// TestHistoryAfterRestart checks that history served from a recovered
// journal has the bytes POST /post returned, keyed posts included (the key
// is in the journal line but not in the message).
func TestHistoryAfterRestart(t *testing.T) {
	path := t.TempDir() + "/chat.jsonl"
	ts := startServer(t, "-data", path)
	var posted [][]byte
	for i := range 5 {
		key := ""
		if i%2 == 0 {
			key = fmt.Sprint("restart-key-", i)
		}
		r := mustPostKeyed(t, ts.URL, key, "u", fmt.Sprint("before restart ", i), http.StatusCreated)
		posted = append(posted, bytes.TrimSuffix(r.body, []byte("\n")))
	}
	ts.stop(t)
	ts = startServer(t, "-data", path)
	got := historyOf(t, ts.URL)
	if len(got) != len(posted) {
		t.Fatalf("history after restart holds %d messages, want %d", len(got), len(posted))
	}
	for i := range got {
		if !bytes.Equal(got[i], posted[i]) {
			t.Errorf("after restart message %d is %s, want %s", i, got[i], posted[i])
		}
	}
	var first Message
	_ = json.Unmarshal(posted[0], &first)
	s := subscribe(t, ts.URL, fmt.Sprint(must(mustParseID(t, first.ID)), "-0"))
	msgs, _ := s.messages(t, 5)
	for i, m := range msgs {
		if b := roomlog.MarshalMessage(m); !bytes.Equal(b, posted[i]) {
			t.Errorf("stream after restart: %s, want %s", b, posted[i])
		}
	}
	r := mustPostKeyed(t, ts.URL, "restart-key-2", "u", "before restart 2", http.StatusOK)
	if !bytes.Equal(bytes.TrimSuffix(r.body, []byte("\n")), posted[2]) {
		t.Errorf("retry after restart got %s, want %s", r.body, posted[2])
	}
}

// must returns the first of two values.
func must[A, B any](a A, _ B) A { return a }
