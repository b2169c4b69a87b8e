package roomlog

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestRingEvicts checks the ring's order, eviction and lookup: it keeps the
// newest records, oldest first, and remembers the newest it evicted.
func TestRingEvicts(t *testing.T) {
	tests := []struct {
		name        string
		size, added int
		wantSeqs    []uint64
		wantEvicted uint64
	}{
		{"empty", 3, 0, nil, 0},
		{"not full", 3, 2, []uint64{1, 2}, 0},
		{"full", 3, 3, []uint64{1, 2, 3}, 0},
		{"wrapped", 3, 7, []uint64{5, 6, 7}, 4},
		{"no room", 0, 2, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := ring{buf: make([]entry, tt.size)}
			for seq := uint64(1); seq <= uint64(tt.added); seq++ {
				h.add(entry{seq: seq})
			}
			var got []uint64
			for i := range h.n {
				got = append(got, h.at(i).seq)
			}
			if !slices.Equal(got, tt.wantSeqs) || h.evicted != tt.wantEvicted {
				t.Errorf("ring holds %v, evicted %d; want %v, evicted %d", got, h.evicted, tt.wantSeqs, tt.wantEvicted)
			}
			for seq := uint64(0); seq <= uint64(tt.added)+1; seq++ {
				e := h.find(seq)
				if want := slices.Contains(tt.wantSeqs, seq); (e != nil) != want || (e != nil && e.seq != seq) {
					t.Errorf("find(%d) = %v, want found %v", seq, e, want)
				}
			}
		})
	}
}

// TestPage checks paging of history: the newest page, pages before and
// after an id, limits, "more" in each direction, deleted messages skipped,
// and ids the log does not know.
func TestPage(t *testing.T) {
	l, _ := newMemoryLog(8)
	for i := 1; i <= 10; i++ {
		post(t, l, fmt.Sprint("m", i))
	}
	// History holds m3..m10. Delete m5 and m8: history then holds m5 and m8
	// as deleted, and the two deletions (11, 12) evict m3 and m4.
	for _, seq := range []uint64{5, 8} {
		d := deletion(id(seq))
		l.Propose(d)
		if err := answer(t, d); err != nil {
			t.Fatalf("delete %s: %v", id(seq), err)
		}
	}
	at := func(seq uint64) *Position { return &Position{ID: id(seq), Epoch: testEpoch, Seq: seq} }
	tests := []struct {
		name     string
		q        Query
		want     []string
		wantMore bool
		wantErr  error
	}{
		{"newest", Query{Limit: 3}, []string{"m7", "m9", "m10"}, true, nil},
		{"all", Query{Limit: 50}, []string{"m6", "m7", "m9", "m10"}, false, nil},
		{"before", Query{Before: at(9), Limit: 2}, []string{"m6", "m7"}, false, nil},
		{"before a deleted one", Query{Before: at(8), Limit: 1}, []string{"m7"}, true, nil},
		{"before the first", Query{Before: at(1), Limit: 5}, nil, false, nil},
		{"before 0", Query{Before: at(0), Limit: 5}, nil, false, nil},
		{"after", Query{After: at(6), Limit: 2}, []string{"m7", "m9"}, true, nil},
		{"after the evicted", Query{After: at(2), Limit: 10}, []string{"m6", "m7", "m9", "m10"}, false, nil},
		{"after the last", Query{After: at(12), Limit: 5}, nil, false, nil},
		{"after the future", Query{After: at(13), Limit: 5}, nil, false, ErrUnknownID},
		{"before another epoch", Query{Before: &Position{ID: "1-1", Epoch: 1, Seq: 1}, Limit: 5}, nil, false, ErrUnknownID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := l.Page(tt.q)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Page = %v, want error %v", err, tt.wantErr)
			}
			if got := contents(t, page.Msgs); !slices.Equal(got, tt.want) || page.More != tt.wantMore {
				t.Errorf("Page = %v, more %v; want %v, more %v", got, page.More, tt.want, tt.wantMore)
			}
		})
	}
}

// TestReplay checks what a stream gets first: a new stream the backlog
// without deletions, a resuming one everything after its id with the
// deletions, and a reset (with all of history) for an id of another epoch,
// from the future, or older than history holds.
func TestReplay(t *testing.T) {
	l, _ := newMemoryLog(5)
	for i := 1; i <= 6; i++ {
		post(t, l, fmt.Sprint("m", i))
	}
	d := deletion(id(5))
	l.Propose(d)
	if err := answer(t, d); err != nil {
		t.Fatal(err)
	}
	// History: 3, 4, 5 (deleted), 6, 7 (the deletion of 5); 2 evicted.
	at := func(epoch int64, seq uint64) *Position { return &Position{ID: "x", Epoch: epoch, Seq: seq} }
	tests := []struct {
		name       string
		from       *Position
		backlog    int
		wantID     string
		wantReset  string
		wantEvents []string
	}{
		{"new, backlog 2", nil, 2, id(5), "", []string{"message:" + id(6)}},
		{"new, backlog 50", nil, 50, id(2), "", []string{"message:" + id(3), "message:" + id(4), "message:" + id(6)}},
		{"new, no backlog", nil, 0, id(7), "", []string{}},
		{"resume after 3", at(testEpoch, 3), 2, id(3), "", []string{"message:" + id(4), "message:" + id(6), "delete:" + id(7)}},
		{"resume at the end", at(testEpoch, 7), 2, id(7), "", []string{}},
		{"resume at the last evicted", at(testEpoch, 2), 2, id(2), "", []string{"message:" + id(3), "message:" + id(4), "message:" + id(6), "delete:" + id(7)}},
		{"expired", at(testEpoch, 1), 2, id(2), ResetExpired, []string{"message:" + id(3), "message:" + id(4), "message:" + id(6), "delete:" + id(7)}},
		{"future", at(testEpoch, 8), 2, id(2), ResetUnknown, []string{"message:" + id(3), "message:" + id(4), "message:" + id(6), "delete:" + id(7)}},
		{"other epoch", at(testEpoch-1, 3), 2, id(2), ResetUnknown, []string{"message:" + id(3), "message:" + id(4), "message:" + id(6), "delete:" + id(7)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := l.Replay(tt.from, tt.backlog)
			if got := eventIDs(r.Events); r.ID != tt.wantID || r.Reset != tt.wantReset || !slices.Equal(got, tt.wantEvents) {
				t.Errorf("Replay = id %s, reset %q, events %v; want id %s, reset %q, events %v", r.ID, r.Reset, got, tt.wantID, tt.wantReset, tt.wantEvents)
			}
		})
	}
}

// TestDeletion checks a deletion: it takes the next id, its "delete" event
// goes to the hub, the message leaves pages and replays with nothing of its
// text kept, and a second deletion of it, or a deletion of what history
// does not hold, is refused.
func TestDeletion(t *testing.T) {
	l, s := newMemoryLog(10)
	m := post(t, l, "secret")
	post(t, l, "other")
	d := deletion(m.ID)
	l.Propose(d)
	if err := answer(t, d); err != nil {
		t.Fatal(err)
	}
	if d.ID != id(3) || d.Deletes != m.ID || d.Time.IsZero() {
		t.Errorf("deletion = %+v, want id %s deleting %s, with a time", d.Deletion(), id(3), m.ID)
	}
	want := "event: delete\nid: " + id(3) + "\ndata: {\"id\":\"" + m.ID + "\"}\n\n"
	if got := string(s.events[2]); got != want {
		t.Errorf("delete event = %q, want %q", got, want)
	}
	if e := l.ring.find(1); e.msg.Content != "" || e.enc != nil || e.data != nil {
		t.Errorf("deleted entry keeps %+v", e)
	}
	for _, bad := range []string{m.ID, id(9), "1-1", "junk", id(3)} {
		p := deletion(bad)
		l.Propose(p)
		if err := answer(t, p); !errors.Is(err, ErrNoSuchMessage) {
			t.Errorf("delete %s: %v, want ErrNoSuchMessage", bad, err)
		}
	}
	// An id with a leading zero names the same message; the deletion
	// names it by its id.
	p := deletion(fmt.Sprintf("%d-02", testEpoch))
	l.Propose(p)
	if err := answer(t, p); err != nil || p.Deletes != id(2) {
		t.Errorf("delete %d-02: %v, deletes %s; want nil, %s", testEpoch, err, p.Deletes, id(2))
	}
}
