// Package roomlog is the chat room's log: the ordered records (messages,
// deletions and edits) the room has committed, the history the room serves from them,
// and the store that orders and keeps them. It also holds the records'
// codec: a record as one line of JSON (Record.Line, DecodeLine, Recover)
// and as the event a stream receives.
//
// The hub (the room's one writer goroutine) owns a Log and asks it for four
// things: to append a record (Propose), to turn its store's reports into
// committed records (Settle), a page of history (Page), and what a stream
// starting at a position must be sent first (Replay). The Log tells the hub
// of every record committed, in order, through Config.Committed, whoever
// proposed it; it answers the poster of a record it proposed on Proposal.Reply.
//
// A Store decides the order and says when a record is committed and with
// which sequence number. Three kinds fit behind it:
//   - a store that commits in Append (MemoryStore): the record is committed,
//     its id assigned, before Propose returns, with no goroutine or channel
//     of its own;
//   - a store that makes records durable first (JournalStore): it assigns
//     the id in Append, and reports commits later, in order, on Reports;
//   - a store whose order comes from elsewhere (an external ordered log
//     shared by several nodes): it learns a record's sequence number only
//     when the record comes back from the log, in order, together with
//     records other nodes proposed, which it commits with no local proposal.
//     It may also fail a proposal (ErrUnavailable: surely not stored;
//     ErrFateUnknown: perhaps stored) or find it a duplicate of a record it
//     already holds under the same Idempotency-Key (Settler.Duplicate), and
//     commit void records (Record.Void: ones it could not decode), which
//     take their sequence number and nothing else. With several nodes two
//     moderators may delete one message at once: the deletion committed
//     second finds the message gone and does nothing (no event), on every
//     node alike, and its poster gets ErrNoSuchMessage.
//
// Each message keeps its author's identity ("" for a post without one). A
// deletion or an edit proposed by an author is refused (ErrNotAuthor)
// unless the message is theirs; an edit also once EditWindow has passed
// since the post (ErrTooLate). A moderator's deletion names no author and
// may delete any message. An edit replaces the message's content in
// history (so pages and new streams show the latest, with its Edited
// time) and goes out as an "edit" event with its own id, which a resuming
// stream is replayed in order; a deletion takes the message's text out of
// history, its edits' events included.
//
// Besides history the Log keeps the Idempotency-Keys: those of committed
// messages (idem.Table, which outlives history by its TTL), and those of
// posts still waiting for the store, so that a retry that arrives meanwhile
// waits for the same outcome instead of being stored twice.
//
// Nothing here is safe for concurrent use: the hub goroutine alone calls the
// Log, and the Log calls its store and Config.Committed from that goroutine.
package roomlog

import (
	"errors"
	"time"

	"chat/internal/idem"
	"chat/internal/record"
)

// Errors a proposal is answered with, and that Page returns.
var (
	// ErrBusy means the store's queue is full: the record surely was not
	// stored, and may be proposed again soon.
	ErrBusy = errors.New("message store busy")
	// ErrUnavailable means the store cannot be reached: the record surely
	// was not stored, and may be proposed again.
	ErrUnavailable = errors.New("message store unavailable")
	// ErrFateUnknown means the record went to the store and no answer
	// came: it may be stored or not. Proposing it again with the same
	// Idempotency-Key settles it without storing it twice.
	ErrFateUnknown = errors.New("message store did not confirm the message; retry with the same Idempotency-Key")
	// ErrUnconfirmed means the log stopped while the store still held the
	// record: it has its id, and the store may yet keep it, but that was
	// not confirmed in time.
	ErrUnconfirmed = errors.New("message not yet confirmed durable")
	// ErrKeyConflict means a post reused the Idempotency-Key of an earlier
	// post that had another username or content.
	ErrKeyConflict = errors.New("this Idempotency-Key was already used for a different message")
	// ErrDeleted means a post repeated, with its Idempotency-Key, a
	// message that has since been deleted.
	ErrDeleted = errors.New("the message posted with this Idempotency-Key was deleted")
	// ErrUnknownID means a query named an id from another epoch or one
	// not yet committed.
	ErrUnknownID = errors.New("unknown message id")
	// ErrNoSuchMessage means a deletion or an edit named a message that
	// history does not hold (never posted, gone from history, or already
	// deleted or being deleted).
	ErrNoSuchMessage = errors.New("no such message")
	// ErrNotAuthor means an author's deletion or edit named a message
	// posted by someone else (or by a post without identity).
	ErrNotAuthor = errors.New("not the message's author")
	// ErrTooLate means an edit came EditWindow or more after its post.
	ErrTooLate = errors.New("the message can no longer be edited")
)

// EditWindow is how long after its post a message may be edited by its
// author. Deleting it has no such limit: an author may delete their
// message as long as history holds it.
const EditWindow = 24 * time.Hour

// Proposal is a record proposed on this node, and how its poster hears of
// its fate.
type Proposal struct {
	// Record is what to append: Username, Content, Key, FP and Author
	// for a message; Deletes for a deletion, with Author for an author's;
	// Edits, Content and Author for an edit. Once Reply has an answer it
	// holds the committed record (its ID and Time, and for an edit
	// Edited), or for a repeat the message the key stored.
	Record
	// Reply receives one answer: nil once the record is committed or the
	// post is answered as a repeat, or the error why not. It must be
	// buffered (1), so that the log never blocks on a poster that has gone.
	Reply chan error
	// Repeat is set, before the nil answer, when the post repeated an
	// earlier one with the same key: nothing was stored.
	Repeat bool

	// dups holds the posts with the same key that arrived while this one
	// was waiting for the store; they get its outcome.
	dups []*Proposal
	// target is, for a deletion, the sequence number of the message.
	target uint64
}

// Config holds the settings of a Log.
type Config struct {
	// History is how many records history keeps (messages and
	// deletions).
	History int
	// Recovered holds the records to start with, oldest first (from a
	// store that kept them), each with its Seq (and its ID, or the log
	// sets it from the store's epoch): the last History of them are
	// history.
	Recovered []Record
	// MaxKeys and KeyTTL bound the Idempotency-Keys remembered beyond
	// those whose message is in history (idem.DefaultMax and
	// idem.DefaultTTL when zero).
	MaxKeys int
	KeyTTL  time.Duration
	// Committed, when set, is called for every record committed, in
	// sequence order, whether it was proposed here or elsewhere, before
	// its poster is answered: event is its encoded event (a chat message,
	// or a "delete" event), shared with history and not to be modified.
	Committed func(r *Record, event []byte)
}

// Log is the room's log; the package comment describes it.
type Log struct {
	// store orders and keeps the records.
	store Store
	// committed is Config.Committed (never nil).
	committed func(r *Record, event []byte)
	// epoch is the store's epoch, part of every id.
	epoch int64
	// last is the sequence number of the last committed record.
	last uint64
	// ring holds the newest committed records.
	ring ring
	// keys remembers the Idempotency-Keys of committed messages.
	keys *idem.Table
	// inflight holds the keyed posts waiting for the store, by key.
	inflight map[string]*Proposal
	// deleting holds the sequence numbers of messages whose deletion
	// waits for the store, so that a second deletion of one is refused.
	deleting map[uint64]bool
	// waiting holds the posts the store found to duplicate a record not
	// yet committed here, by that record's sequence number.
	waiting map[uint64][]*Proposal
}

// New returns a log kept by store, with cfg.Recovered as its history.
func New(store Store, cfg Config) *Log {
	l := &Log{
		store:     store,
		committed: cfg.Committed,
		epoch:     store.Epoch(),
		ring:      ring{buf: make([]entry, max(cfg.History, 0))},
		keys:      idem.New(cfg.MaxKeys, cfg.KeyTTL),
		inflight:  make(map[string]*Proposal),
		deleting:  make(map[uint64]bool),
		waiting:   make(map[uint64][]*Proposal),
	}
	if l.committed == nil {
		l.committed = func(*Record, []byte) {}
	}
	for i := range cfg.Recovered {
		r := &cfg.Recovered[i]
		if l.ring.n == 0 && r.Seq > 0 {
			l.ring.evicted = r.Seq - 1
		}
		if r.ID == "" {
			r.ID = record.FormatID(l.epoch, r.Seq)
		}
		l.apply(r)
	}
	l.keys.Expire(time.Now(), l.ring.evicted)
	return l
}

// Epoch returns the epoch of the log's ids.
func (l *Log) Epoch() int64 { return l.epoch }

// Len returns the number of records history holds.
func (l *Log) Len() int { return l.ring.n }

// Propose hands p to the store, or answers it at once: a post whose key the
// log knows gets the message the key stored (or ErrKeyConflict, or
// ErrDeleted); one whose key belongs to a post still waiting for the store
// waits with it; a deletion of a message history does not hold (or holds
// deleted) gets ErrNoSuchMessage. With a store that commits in Append, p is
// committed before Propose returns.
func (l *Log) Propose(p *Proposal) {
	switch {
	case p.Deletes != "":
		l.proposeDeletion(p)
		return
	case p.Edits != "":
		l.proposeEdit(p)
		return
	}
	if p.Key != "" && l.repeated(p) {
		return
	}
	l.append(p)
}

// append hands p to the store, stamped with the time: committed at once,
// or held by the store (and then in flight, by its key or the message it
// deletes), or refused.
func (l *Log) append(p *Proposal) {
	p.Time = time.Now().UTC()
	committed, err := l.store.Append(p)
	switch {
	case err != nil:
		p.Reply <- err
	case committed:
		l.Commit(&p.Record, p)
	case p.Deletes != "":
		l.deleting[p.target] = true
	case p.Key != "":
		l.inflight[p.Key] = p
	}
}

// proposeDeletion checks that history holds the message deletion p names,
// not deleted and not being deleted, and for an author's deletion that it
// is theirs, and hands p to the store.
func (l *Log) proposeDeletion(p *Proposal) {
	t := l.message(p.Deletes)
	switch {
	case t == nil:
		p.Reply <- ErrNoSuchMessage
		return
	case p.Author != "" && t.author != p.Author:
		p.Reply <- ErrNotAuthor
		return
	}
	p.target, p.Deletes = t.seq, t.msg.ID
	l.append(p)
}

// proposeEdit checks that history holds the message edit p names, not
// deleted and not being deleted, that p's author posted it, and that it
// was posted less than EditWindow ago, and hands p to the store.
func (l *Log) proposeEdit(p *Proposal) {
	t := l.message(p.Edits)
	switch {
	case t == nil:
		p.Reply <- ErrNoSuchMessage
		return
	case p.Author == "" || t.author != p.Author:
		p.Reply <- ErrNotAuthor
		return
	case time.Since(t.msg.Time) >= EditWindow:
		p.Reply <- ErrTooLate
		return
	}
	p.Edits = t.msg.ID
	l.append(p)
}

// message returns the history entry of the message with id, or nil if
// history does not hold it (or holds it deleted, or being deleted).
func (l *Log) message(id string) *entry {
	epoch, seq, err := record.ParseID(id)
	if err != nil || epoch != l.epoch {
		return nil
	}
	t := l.ring.find(seq)
	if t == nil || !t.visible() || l.deleting[seq] {
		return nil
	}
	return t
}

// repeated answers a keyed post whose key is known, with the message the
// key stored or an error, or makes it wait for the post with that key that
// the store holds, and reports true. It reports false for a key it does
// not know.
func (l *Log) repeated(p *Proposal) bool {
	if orig, ok := l.inflight[p.Key]; ok {
		if orig.FP != p.FP {
			p.Reply <- ErrKeyConflict
			return true
		}
		orig.dups = append(orig.dups, p)
		return true
	}
	e, ok := l.keys.Get(p.Key)
	if !ok {
		return false
	}
	p.Reply <- keyAnswer(p, e)
	return true
}

// keyAnswer returns the answer to p, a post whose key e remembers: nil,
// with p made a repeat of e's message, or ErrKeyConflict (other username
// or content) or ErrDeleted.
func keyAnswer(p *Proposal, e *idem.Entry) error {
	switch {
	case e.FP != p.FP:
		return ErrKeyConflict
	case e.Deleted:
		return ErrDeleted
	}
	// Same fingerprint: the same username and content, so the message is
	// rebuilt from them and the stored id and time, byte for byte.
	p.ID, p.Seq, p.Time, p.Repeat = e.ID, e.Seq, e.Time, true
	return nil
}

// Reports returns the channel on which the store signals news (nil for a
// store that commits in Append). The hub receives from it and hands each
// Commit to Settle.
func (l *Log) Reports() <-chan record.Commit { return l.store.Reports() }

// Settle has the store apply c, one of its reports: the records it
// covers are committed (and the hub told), or their proposals failed.
func (l *Log) Settle(c record.Commit) { l.store.Settle(c, l) }

// SettleReady settles the reports the store has already sent, without
// waiting for more, and reports whether there were any. The hub calls it
// before it answers a question that names a position, so that a record
// the store has read (and another node may already have served) counts.
func (l *Log) SettleReady() bool {
	ch := l.store.Reports()
	settled := false
	for ch != nil {
		select {
		case c := <-ch:
			l.store.Settle(c, l)
			settled = true
		default:
			return settled
		}
	}
	return settled
}

// Stop settles the reports the store has already sent, then has the store
// answer every proposal it still holds (ErrUnconfirmed, or what the store
// knows better), and answers the posts that wait for a duplicate's record
// with ErrFateUnknown. Call it once, as the hub stops; Propose must not be
// called after it.
func (l *Log) Stop() {
	l.SettleReady()
	l.store.Close(l)
	for seq, ps := range l.waiting {
		for _, p := range ps {
			l.Fail(p, ErrFateUnknown)
		}
		delete(l.waiting, seq)
	}
	clear(l.inflight)
}
