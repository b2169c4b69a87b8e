package clusterlog

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"chat/internal/roomlog"
)

// authoredMessage returns a post of content by username from the identity
// author.
func authoredMessage(author, username, content string) *roomlog.Proposal {
	p := message(username, content, "")
	p.Author = author
	return p
}

// editOf returns author's edit of the message id to content.
func editOf(author, id, content string) *roomlog.Proposal {
	p := &roomlog.Proposal{Reply: make(chan error, 1)}
	p.Edits, p.Author, p.Content = id, author, content
	return p
}

// TestEditsAcrossNodes checks that authors and edits travel through the
// stream: a message posted on one node is edited by its author on the
// other, where someone else may not edit it nor delete it; both nodes,
// and one started later, show the edited content, and the author may
// then delete it on the first node.
func TestEditsAcrossNodes(t *testing.T) {
	s := startServer(t)
	a := openNode(t, testConfig([]string{s.URL()}, 100))
	b := openNode(t, testConfig([]string{s.URL()}, 100))
	m := authoredMessage("A", "ann", "helo")
	a.propose(m)
	if err := answer(t, m); err != nil {
		t.Fatal(err)
	}
	b.waitSeq(m.Seq)
	for _, p := range []*roomlog.Proposal{editOf("B", m.ID, "x"), editOf("", m.ID, "x")} {
		b.propose(p)
		if err := answer(t, p); !errors.Is(err, roomlog.ErrNotAuthor) {
			t.Errorf("edit by %q on b: %v, want ErrNotAuthor", p.Author, err)
		}
	}
	e := editOf("A", m.ID, "hello")
	b.propose(e)
	if err := answer(t, e); err != nil || e.Edited.Content != "hello" || e.Edited.ID != m.ID || e.Edited.Edited != e.Time {
		t.Fatalf("edit by its author on b: %v, %+v", err, e.Edited)
	}
	a.waitSeq(e.Seq)
	ra, eva := a.seen()
	rb, evb := b.seen()
	want := []string{"1:ann:helo", "2:edit:" + m.ID + ":hello"}
	if !slices.Equal(summary(ra), want) || !slices.Equal(summary(rb), want) || !slices.EqualFunc(eva, evb, bytes.Equal) {
		t.Fatalf("committed: a %v, b %v; want %v with the same events", summary(ra), summary(rb), want)
	}
	if ra[0].Author != "A" || ra[1].Author != "A" {
		t.Errorf("a read authors %q and %q, want A", ra[0].Author, ra[1].Author)
	}
	if !strings.HasPrefix(string(eva[1]), "event: edit\nid: "+e.ID+"\n") {
		t.Errorf("edit event %q", eva[1])
	}
	c := openNode(t, testConfig([]string{s.URL()}, 100))
	for name, n := range map[string]*node{"a": a, "b": b, "c": c} {
		if p := n.page(); len(p.Msgs) != 1 || !strings.Contains(string(p.Msgs[0]), `"content":"hello","time"`) || !strings.Contains(string(p.Msgs[0]), `"edited":"`) {
			t.Errorf("node %s pages %q, want the edited message", name, p.Msgs)
		}
	}
	other := deletion(m.ID)
	other.Author = "B"
	c.propose(other)
	if err := answer(t, other); !errors.Is(err, roomlog.ErrNotAuthor) {
		t.Errorf("deletion by another author on c: %v, want ErrNotAuthor", err)
	}
	own := deletion(m.ID)
	own.Author = "A"
	c.propose(own)
	if err := answer(t, own); err != nil {
		t.Errorf("deletion by its author on c: %v", err)
	}
}

// TestVoidEdits publishes edits no node could have written: each is void
// on every node, and the message stays as it was.
func TestVoidEdits(t *testing.T) {
	s := startServer(t)
	a := openNode(t, testConfig([]string{s.URL()}, 100))
	m := authoredMessage("A", "ann", "original")
	a.propose(m)
	if err := answer(t, m); err != nil {
		t.Fatal(err)
	}
	js := client(t, []string{s.URL()})
	for _, data := range []string{
		`{"edit":"` + m.ID + `","content":"no author"}`,
		`{"edit":"` + m.ID + `","author":"A"}`,
		`{"edit":"nope","content":"x","author":"A"}`,
		`{"edit":"` + m.ID + `","content":"x","author":"A","username":"ann"}`,
		`{"edit":"` + m.ID + `","delete":"` + m.ID + `","content":"x","author":"A"}`,
	} {
		publishRaw(t, js, nil, data)
	}
	// Valid in form, but by someone who is not the author: it takes its
	// place and changes nothing.
	seq := publishRaw(t, js, nil, `{"edit":"`+m.ID+`","content":"forged","author":"B"}`)
	a.waitSeq(seq)
	recs, _ := a.seen()
	if got := summary(recs); !slices.Equal(got, []string{"1:ann:original"}) {
		t.Errorf("committed %v, want the message alone", got)
	}
	if p := a.page(); len(p.Msgs) != 1 || !strings.Contains(string(p.Msgs[0]), `"content":"original"`) {
		t.Errorf("page %q, want the original message", p.Msgs)
	}
	if n := strings.Count(a.logs.String(), "void record"); n != 5 {
		t.Errorf("%d void records logged, want 5:\n%s", n, a.logs)
	}
}
