package roomlog

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"chat/internal/journal"
)

// authored returns a post of content by username from the identity author.
func authored(author, username, content string) *Proposal {
	p := proposal(username, content, "")
	p.Author = author
	return p
}

// edit returns author's edit of the message id to content.
func edit(author, id, content string) *Proposal {
	p := &Proposal{Reply: make(chan error, 1)}
	p.Edits, p.Author, p.Content = id, author, content
	return p
}

// ownDeletion returns author's deletion of their message id.
func ownDeletion(author, id string) *Proposal {
	p := deletion(id)
	p.Author = author
	return p
}

// mustPropose proposes p on a log whose store commits at once and fails
// the test unless its answer is want.
func mustPropose(t *testing.T, l *Log, p *Proposal, want error) {
	t.Helper()
	l.Propose(p)
	if err := answer(t, p); !errors.Is(err, want) {
		t.Fatalf("proposal %+v: %v, want %v", p.Record, err, want)
	}
}

// TestEditEvent checks an edit on a fake clock (which starts at
// 2000-01-01 UTC), byte for byte: the answer holds the message as edited,
// and the hub is told of an "edit" event with its own id whose data is
// that message with its "edited" time.
func TestEditEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, s := newMemoryLog(10)
		m := authored("A", "ann", "helo")
		mustPropose(t, l, m, nil)
		time.Sleep(90 * time.Second)
		e := edit("A", m.ID, "hello <b>")
		mustPropose(t, l, e, nil)
		want := Message{ID: m.ID, Username: "ann", Content: "hello <b>", Time: m.Time, Edited: m.Time.Add(90 * time.Second)}
		if e.ID != id(2) || e.Edited != want {
			t.Errorf("edit answered id %s, %+v; want %s, %+v", e.ID, e.Edited, id(2), want)
		}
		wantEvent := "event: edit\nid: " + id(2) + "\ndata: {\"id\":\"" + id(1) +
			"\",\"username\":\"ann\",\"content\":\"hello <b>\",\"time\":\"2000-01-01T00:00:00Z\",\"edited\":\"2000-01-01T00:01:30Z\"}\n\n"
		if got := string(s.events[1]); got != wantEvent {
			t.Errorf("edit event:\n got %q\nwant %q", got, wantEvent)
		}
	})
}

// TestAuthorsOnly checks who may edit and delete which message: its
// author both, anyone else (another identity, or none) neither, a
// moderator (a deletion without author) deletes any; and the answers for
// ids that name no message.
func TestAuthorsOnly(t *testing.T) {
	l, _ := newMemoryLog(10)
	mA := authored("A", "ann", "mine")
	mB := authored("B", "bob", "his")
	anon := authored("", "cat", "nobody's")
	for _, p := range []*Proposal{mA, mB, anon} {
		mustPropose(t, l, p, nil)
	}
	e := edit("A", mA.ID, "mine, fixed")
	mustPropose(t, l, e, nil)
	for _, tt := range []struct {
		name string
		p    *Proposal
		want error
	}{
		{"edit of another's message", edit("B", mA.ID, "x"), ErrNotAuthor},
		{"edit without identity", edit("", mA.ID, "x"), ErrNotAuthor},
		{"edit of a message posted without identity", edit("A", anon.ID, "x"), ErrNotAuthor},
		{"deletion of another's message", ownDeletion("A", mB.ID), ErrNotAuthor},
		{"deletion by an author of a message posted without identity", ownDeletion("A", anon.ID), ErrNotAuthor},
		{"edit of an id never used", edit("A", id(99), "x"), ErrNoSuchMessage},
		{"edit of an id of another epoch", edit("A", "5-1", "x"), ErrNoSuchMessage},
		{"edit of a malformed id", edit("A", "one", "x"), ErrNoSuchMessage},
		{"edit of an edit", edit("A", e.ID, "x"), ErrNoSuchMessage},
		{"deletion of an edit", ownDeletion("A", e.ID), ErrNoSuchMessage},
		{"own deletion", ownDeletion("B", mB.ID), nil},
		{"edit of a deleted message", edit("B", mB.ID, "x"), ErrNoSuchMessage},
		{"moderator's deletion of a message posted without identity", deletion(anon.ID), nil},
		{"moderator's deletion of an edited message", deletion(mA.ID), nil},
	} {
		t.Run(tt.name, func(t *testing.T) { mustPropose(t, l, tt.p, tt.want) })
	}
	if l.last != 7 {
		t.Errorf("%d records committed, want 7 (three posts, an edit, three deletions)", l.last)
	}
}

// TestEditWindow checks, on a fake clock, that a message may be edited
// until EditWindow has passed since its post, and deleted by its author
// after that.
func TestEditWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := newMemoryLog(10)
		m := authored("A", "ann", "v1")
		mustPropose(t, l, m, nil)
		time.Sleep(EditWindow - time.Second)
		mustPropose(t, l, edit("A", m.ID, "v2"), nil)
		time.Sleep(time.Second)
		mustPropose(t, l, edit("A", m.ID, "v3"), ErrTooLate)
		mustPropose(t, l, edit("B", m.ID, "v3"), ErrNotAuthor) // not theirs comes first
		mustPropose(t, l, ownDeletion("A", m.ID), nil)
	})
}

// TestEditHistory checks what pages and streams show of an edited
// message: pages and a new stream its latest content alone, a resuming
// stream every edit after its position, in order, each with the content
// it made.
func TestEditHistory(t *testing.T) {
	l, _ := newMemoryLog(10)
	m1 := authored("A", "ann", "v1")
	m2 := authored("B", "bob", "other")
	mustPropose(t, l, m1, nil)
	mustPropose(t, l, m2, nil)
	mustPropose(t, l, edit("A", m1.ID, "v2"), nil)
	mustPropose(t, l, edit("A", m1.ID, "v3"), nil)

	page, err := l.Page(Query{Limit: 10})
	if err != nil || !slices.Equal(contents(t, page.Msgs), []string{"v3", "other"}) || page.More {
		t.Fatalf("page = %v (more %v), %v; want v3 and other", contents(t, page.Msgs), page.More, err)
	}
	if !strings.Contains(string(page.Msgs[0]), `"edited":"`) || strings.Contains(string(page.Msgs[1]), `"edited"`) {
		t.Errorf("page %s: want edited on the first message alone", page.Msgs)
	}
	if r := l.Replay(nil, 10); !slices.Equal(eventIDs(r.Events), []string{"message:" + id(1), "message:" + id(2)}) {
		t.Errorf("new stream gets %v, want the two messages alone", eventIDs(r.Events))
	}
	from, _ := ParsePosition(id(2))
	r := l.Replay(from, 10)
	if got := eventIDs(r.Events); !slices.Equal(got, []string{"edit:" + id(3), "edit:" + id(4)}) {
		t.Fatalf("resume after %s gets %v, want both edits in order", id(2), got)
	}
	for i, want := range []string{`"content":"v2"`, `"content":"v3"`} {
		if !strings.Contains(string(r.Events[i]), want) || !strings.Contains(string(r.Events[i]), `"id":"`+id(1)+`"`) {
			t.Errorf("edit event %d = %q, want message %s with %s", i, r.Events[i], id(1), want)
		}
	}
}

// TestDeletionForgetsEdits checks that deleting an edited message takes
// its text out of history, the events of its edits included: a stream
// that resumes from before them gets no version of it.
func TestDeletionForgetsEdits(t *testing.T) {
	l, _ := newMemoryLog(10)
	m := authored("A", "ann", "secret v1")
	mustPropose(t, l, m, nil)
	mustPropose(t, l, edit("A", m.ID, "secret v2"), nil)
	mustPropose(t, l, ownDeletion("A", m.ID), nil)
	from, _ := ParsePosition(id(0))
	r := l.Replay(from, 10)
	if got := eventIDs(r.Events); !slices.Equal(got, []string{"delete:" + id(3)}) {
		t.Errorf("resume from the start gets %v, want the deletion alone", got)
	}
	for _, ev := range r.Events {
		if strings.Contains(string(ev), "secret") {
			t.Errorf("an event still holds the deleted text: %q", ev)
		}
	}
}

// TestEditsRecovered checks that a journal keeps edits and authors: the
// log over the records read back shows the edited content, and the author
// may still edit and delete while others may not.
func TestEditsRecovered(t *testing.T) {
	dir := t.TempDir()
	j, l, s := openJournal(t, dir)
	runJournal(t, j)
	m := authored("A", "ann", "v1")
	l.Propose(m)
	other := authored("B", "bob", "his")
	l.Propose(other)
	settle(t, l, s, 2)
	e := edit("A", m.ID, "v2")
	l.Propose(e)
	settle(t, l, s, 3)
	if err := answer(t, e); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, journalFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], `,"author":"A"}`) ||
		!strings.HasPrefix(lines[2], `{"id":"`+id(3)+`","edit":"`+id(1)+`","content":"v2","time":"`) || !strings.HasSuffix(lines[2], `,"author":"A"}`) {
		t.Fatalf("journal holds %q", lines)
	}

	var recs []journal.Record
	for i, line := range lines {
		recs = append(recs, journal.Record{Epoch: testEpoch, Seq: uint64(i + 1), Data: []byte(line)})
	}
	recovered, err := Recover(recs)
	if err != nil {
		t.Fatal(err)
	}
	back, _ := newMemoryLog(10, recovered...)
	page, err := back.Page(Query{Limit: 10})
	if err != nil || !slices.Equal(contents(t, page.Msgs), []string{"v2", "his"}) {
		t.Fatalf("page after recovery = %v, %v; want v2 and his", contents(t, page.Msgs), err)
	}
	mustPropose(t, back, edit("B", m.ID, "x"), ErrNotAuthor)
	mustPropose(t, back, ownDeletion("B", m.ID), ErrNotAuthor)
	mustPropose(t, back, ownDeletion("A", m.ID), nil)
}
