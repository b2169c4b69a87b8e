package roomlog

import (
	"errors"

	"chat/internal/idem"
	"chat/internal/record"
)

// Settler is what a store tells the log as it settles records, in commit
// order; *Log implements it. A store calls it from Settle and Close only,
// in the hub goroutine (a record committed in Append needs no call: Append
// says so).
type Settler interface {
	// Commit records that r is committed with sequence number r.Seq (r.ID
	// may be left empty: the log sets it from its epoch). p is the local
	// proposal r settles (r may be &p.Record), or nil for a record
	// proposed elsewhere. Records must come in increasing Seq order; one
	// at or below the last committed is ignored (its proposal is answered
	// as a duplicate of it).
	Commit(r *Record, p *Proposal)
	// Fail answers p with err: surely not stored (ErrBusy,
	// ErrUnavailable, a store's error), perhaps stored (ErrFateUnknown),
	// or not confirmed in time (ErrUnconfirmed). The posts that waited on
	// p get the same answer.
	Fail(p *Proposal, err error)
	// Duplicate answers p, a post with an Idempotency-Key, as a repeat of
	// the record with sequence number seq, which the store already holds
	// under that key: once that record is committed here, p gets its
	// message (or ErrKeyConflict if p's username or content differ, or
	// ErrDeleted if it has since been deleted).
	Duplicate(p *Proposal, seq uint64)
}

// Commit implements Settler: it adds r to history, remembers its key, tells
// the hub (Config.Committed) and answers its poster, the posts that waited
// on it, and the duplicates that waited for it.
func (l *Log) Commit(r *Record, p *Proposal) {
	if r.Seq <= l.last {
		if p != nil {
			l.Duplicate(p, r.Seq)
		}
		return
	}
	if r.ID == "" {
		r.ID = record.FormatID(l.epoch, r.Seq)
	}
	if p != nil && r != &p.Record {
		p.Record = *r
		r = &p.Record
	}
	event := l.apply(r)
	var err error
	if event != nil {
		l.committed(r, event)
	} else {
		// A deletion whose message was already gone: it did nothing.
		err = ErrNoSuchMessage
	}
	if p != nil {
		l.settled(p)
		p.Reply <- err
		answerDups(p, err)
	}
	if len(l.waiting) > 0 {
		l.answerWaiting()
	}
}

// apply adds committed record r to history and returns its event: a
// message with its key, a deletion, which marks the message it deletes
// (and that message's key) deleted, or an edit (see applyEdit). A void
// record, and a deletion or an edit that cannot apply (see deletes and
// edits), take their place in history with no event, and apply returns
// nil.
func (l *Log) apply(r *Record) []byte {
	l.last = r.Seq
	switch {
	case r.Void:
		l.ring.add(entry{seq: r.Seq, msg: Message{ID: r.ID}})
		return nil
	case r.Deletes != "":
		return l.applyDeletion(r)
	case r.Edits != "":
		return l.applyEdit(r)
	}
	if r.JSON == nil {
		r.JSON = MarshalMessage(r.Message)
	}
	e := newEntry(r)
	e.author = r.Author
	l.ring.add(e)
	if r.Key != "" {
		l.keys.Add(idem.Entry{Key: r.Key, FP: r.FP, Seq: r.Seq, ID: r.ID, Time: r.Time})
		l.keys.Expire(r.Time, l.ring.evicted)
	}
	return e.enc
}

// applyDeletion adds deletion r to history and returns its event, or nil
// for one that cannot delete (see deletes). The message it deletes, if
// history still holds it, keeps its place with nothing of its text, and
// so do the edits of it.
func (l *Log) applyDeletion(r *Record) []byte {
	t, ok := l.deletes(r)
	if !ok {
		l.ring.add(entry{seq: r.Seq, msg: Message{ID: r.ID}})
		return nil
	}
	if t != nil {
		if e, ok := l.keys.Get(t.key); t.key != "" && ok && e.Seq == t.seq {
			e.Deleted = true
		}
		*t = entry{seq: t.seq, msg: Message{ID: t.msg.ID}}
	}
	_, seq, _ := record.ParseID(r.Deletes) // deletes parsed it
	l.ring.forgetEdits(record.FormatID(l.epoch, seq))
	event := deleteEvent(r)
	l.ring.add(entry{seq: r.Seq, msg: Message{ID: r.ID, Time: r.Time}, deletes: r.Deletes, enc: event})
	return event
}

// applyEdit adds edit r to history and returns its "edit" event, or nil
// for one that cannot apply (see edits). The message it edits takes r's
// content and r's time as its Edited time, in history and in r.Edited.
func (l *Log) applyEdit(r *Record) []byte {
	t := l.edits(r)
	if t == nil {
		l.ring.add(entry{seq: r.Seq, msg: Message{ID: r.ID}})
		return nil
	}
	m := t.msg
	m.Content, m.Edited = r.Content, r.Time
	r.Edited = m
	data := MarshalMessage(m)
	t.msg = m
	t.enc, t.data = encodeMessage(m.ID, data)
	event := editEvent(r, data)
	l.ring.add(entry{seq: r.Seq, msg: Message{ID: r.ID, Time: r.Time}, edits: m.ID, enc: event})
	return event
}

// edits returns the history entry of the message edit r edits, or nil
// when the edit cannot apply: the message is of another epoch, not before
// it, gone from history or deleted (by a deletion committed a moment
// earlier, perhaps on another node), or not the edit's author's. Like
// deletes, the rule depends on history alone.
func (l *Log) edits(r *Record) *entry {
	epoch, seq, err := record.ParseID(r.Edits)
	if err != nil || epoch != l.epoch || seq >= r.Seq {
		return nil
	}
	t := l.ring.find(seq)
	if t == nil || !t.visible() || r.Author == "" || t.author != r.Author {
		return nil
	}
	return t
}

// deletes returns the history entry of the message deletion r deletes, or
// nil when that message has left history (the deletion then still goes
// out, for clients that hold the message). It reports false for a deletion
// that cannot delete: its target is of another epoch, not before it, or
// held in history as something other than a message still there (already
// deleted, by a deletion that came a moment earlier from another node). The
// rule depends on history alone, so every node that reads the same records
// decides the same.
func (l *Log) deletes(r *Record) (*entry, bool) {
	epoch, seq, err := record.ParseID(r.Deletes)
	if err != nil || epoch != l.epoch || seq >= r.Seq {
		return nil, false
	}
	t := l.ring.find(seq)
	if t != nil && !t.visible() {
		return nil, false
	}
	return t, true
}

// Fail implements Settler.
func (l *Log) Fail(p *Proposal, err error) {
	l.settled(p)
	p.Reply <- err
	answerDups(p, err)
}

// settled forgets p as in flight: its key, or the message it deletes.
func (l *Log) settled(p *Proposal) {
	if p.Key != "" && l.inflight[p.Key] == p {
		delete(l.inflight, p.Key)
	}
	if p.Deletes != "" {
		delete(l.deleting, p.target)
	}
}

// Duplicate implements Settler.
func (l *Log) Duplicate(p *Proposal, seq uint64) {
	l.settled(p)
	if seq > l.last {
		l.waiting[seq] = append(l.waiting[seq], p)
		return
	}
	l.answerDuplicate(p, seq)
}

// answerDuplicate answers p, found to duplicate the committed record seq,
// and the posts that waited on p.
func (l *Log) answerDuplicate(p *Proposal, seq uint64) {
	var err error
	if e, ok := l.keys.Get(p.Key); ok && p.Key != "" && e.Seq == seq {
		err = keyAnswer(p, e)
	} else if t := l.ring.find(seq); p.Key == "" && t != nil && t.visible() {
		// A post without a key that the store took twice (its own
		// retry): it is that record.
		p.Message, p.Seq = t.msg, t.seq
	} else {
		// The record is no longer known here (its key has expired):
		// the key was used, for what cannot be told.
		err = ErrKeyConflict
	}
	p.Reply <- err
	answerDups(p, err)
}

// answerWaiting answers the duplicates whose record is now committed (or
// passed over: the store's sequence went beyond it).
func (l *Log) answerWaiting() {
	for seq, ps := range l.waiting {
		if seq > l.last {
			continue
		}
		delete(l.waiting, seq)
		for _, p := range ps {
			l.answerDuplicate(p, seq)
		}
	}
}

// answerDups gives the posts that waited on p its outcome: its message as
// a repeat, if it was committed or may yet be (ErrUnconfirmed), and its
// error.
func answerDups(p *Proposal, err error) {
	for _, d := range p.dups {
		if err == nil || errors.Is(err, ErrUnconfirmed) {
			d.Message, d.Seq, d.Repeat = p.Message, p.Seq, true
		}
		d.Reply <- err
	}
	p.dups = nil
}
