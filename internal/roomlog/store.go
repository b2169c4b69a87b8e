package roomlog

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"chat/internal/journal"
	"chat/internal/record"
)

// Store orders the room's records, assigns their sequence numbers and says
// when each is committed. The log calls it from the hub goroutine alone;
// whatever goroutines a store runs, it hands its news to the hub only
// through Reports, and acts on it only in Settle.
type Store interface {
	// Epoch returns the epoch of the store's ids, the same for its whole
	// life (a journal's, or the creation time of an external log).
	Epoch() int64
	// Append offers p's record to the store; the log calls it in the
	// order it proposes. p.Time is set; p.Seq and p.ID are not. The store
	// either commits the record at once: it sets p.Seq and p.ID and
	// returns true; or takes it and returns false, and settles it later
	// (Settle); or refuses it with an error, when the record surely is not
	// stored (ErrBusy, ErrUnavailable).
	Append(p *Proposal) (committed bool, err error)
	// Reports returns the channel on which the store signals that records
	// are ready to settle (see record.Commit), or nil if it never does.
	Reports() <-chan record.Commit
	// Settle applies c, one report from Reports: for each record it
	// covers, in commit order, it calls to.Commit (a record committed,
	// with its proposal if it was proposed here), to.Fail or
	// to.Duplicate.
	Settle(c record.Commit, to Settler)
	// Close answers, through to.Fail, every proposal the store still
	// holds, and the store takes no more. The log calls it once, as it
	// stops, after settling the reports already sent.
	Close(to Settler)
}

// MemoryStore keeps nothing: it commits every record in Append, numbering
// them in order. It is the store of a room without a journal.
type MemoryStore struct {
	epoch int64
	last  uint64
}

// NewMemoryStore returns a store whose ids have epoch and whose first
// record has sequence number 1.
func NewMemoryStore(epoch int64) *MemoryStore { return &MemoryStore{epoch: epoch} }

// Epoch implements Store.
func (m *MemoryStore) Epoch() int64 { return m.epoch }

// Append implements Store: it commits the record at once.
func (m *MemoryStore) Append(p *Proposal) (bool, error) {
	m.last++
	p.Seq, p.ID = m.last, record.FormatID(m.epoch, m.last)
	return true, nil
}

// Reports implements Store: a MemoryStore never reports.
func (m *MemoryStore) Reports() <-chan record.Commit { return nil }

// Settle implements Store; it is never called.
func (m *MemoryStore) Settle(record.Commit, Settler) {}

// Close implements Store: a MemoryStore holds nothing.
func (m *MemoryStore) Close(Settler) {}

// JournalStore makes every record durable in a journal before it commits
// it: it numbers the record and appends its Line in Append, and commits it
// when the journal reports the group it was written in (group commit).
type JournalStore struct {
	j     *journal.Journal
	epoch int64
	// last is the sequence number of the last record appended.
	last uint64
	// pending holds the proposals appended and not yet reported, in
	// order.
	pending []*Proposal
}

// NewJournalStore returns a store that appends to j, whose epoch is epoch,
// after the records recovered from it (the output of Recover).
func NewJournalStore(j *journal.Journal, epoch int64, recovered []Record) *JournalStore {
	s := &JournalStore{j: j, epoch: epoch}
	if n := len(recovered); n > 0 {
		s.last = recovered[n-1].Seq
	}
	return s
}

// OpenJournal opens the journal at path, which keeps the last keep records
// (journal.Open with opts), and returns it, not yet running, with a store
// that appends to it and the records it recovered, decoded (Recover). A
// new journal's epoch is made durable before it is returned. On an error
// the journal is closed again.
func OpenJournal(path string, keep int, logger *slog.Logger, opts ...journal.Option) (*journal.Journal, *JournalStore, []Record, error) {
	j, records, err := journal.Open(path, keep, logger, opts...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open journal: %w", err)
	}
	recovered, err := Recover(records)
	epoch, marked := j.Epoch()
	if err == nil && !marked {
		epoch = time.Now().UnixMilli()
		err = j.MarkEpoch(epoch)
	}
	if err != nil {
		// Run with a done context closes the file.
		done, cancel := context.WithCancel(context.Background())
		cancel()
		j.Run(done)
		return nil, nil, nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	return j, NewJournalStore(j, epoch, recovered), recovered, nil
}

// Epoch implements Store.
func (s *JournalStore) Epoch() int64 { return s.epoch }

// Append implements Store: it numbers the record, appends its line to the
// journal and holds it until the journal reports it; ErrBusy if the
// journal's queue is full.
func (s *JournalStore) Append(p *Proposal) (bool, error) {
	seq := s.last + 1
	p.Seq, p.ID = seq, record.FormatID(s.epoch, seq)
	if !s.j.Append(journal.Record{Epoch: s.epoch, Seq: seq, Data: p.Line()}) {
		return false, ErrBusy
	}
	s.last = seq
	s.pending = append(s.pending, p)
	return false, nil
}

// Reports implements Store: the journal's commits.
func (s *JournalStore) Reports() <-chan record.Commit { return s.j.Commits() }

// Settle implements Store: the oldest c.N pending records are committed,
// or failed with c.Err.
func (s *JournalStore) Settle(c record.Commit, to Settler) {
	n := min(c.N, len(s.pending))
	for _, p := range s.pending[:n] {
		if c.Err != nil {
			to.Fail(p, fmt.Errorf("store message: %w", c.Err))
			continue
		}
		to.Commit(&p.Record, p)
	}
	clear(s.pending[:n])
	s.pending = s.pending[n:]
}

// Close implements Store: the records still pending have their ids and the
// journal writes what it holds before it stops, but they were not
// confirmed durable in time (ErrUnconfirmed).
func (s *JournalStore) Close(to Settler) {
	for _, p := range s.pending {
		to.Fail(p, ErrUnconfirmed)
	}
	s.pending = nil
}
