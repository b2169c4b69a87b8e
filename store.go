package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

const (
	// storeQueue is how many messages Append can queue ahead of Run. Append
	// returns false while that many are waiting.
	storeQueue = 4096
	// storeCommitBuffer is the capacity of the Commits channel: how many group
	// commits Run can report before it waits for the consumer to read them.
	storeCommitBuffer = 64
)

// Store is an append-only journal of accepted messages, kept in one file that
// holds one JSON object (a Message) per line.
//
// Writing: Append queues a message and never blocks. Run is the only goroutine
// that touches the file. It takes everything queued, writes it with one write,
// makes it durable with one fsync (group commit) and then reports the group on
// Commits, so many concurrent posts share one fsync. Messages must be appended
// in id order: one epoch, and seq strictly increasing, continuing after the
// messages OpenStore recovered. Run refuses a message that would break that
// order (its Commit carries the error) rather than write it, so the journal
// always stays readable. After a failed write or fsync the store is failed for
// good: nothing more is written and every later message is reported with that
// error, because after a failed fsync the state of the kernel's page cache is
// unknown and retrying could acknowledge data that is already lost.
//
// Recovery: OpenStore reads the file line by line. A torn last line (one with
// no trailing newline, or one that is not valid JSON at the end of the file)
// is what a crash in the middle of a write leaves behind. It was never
// acknowledged, so it is logged at warn level and truncated away. Any other bad
// line (invalid JSON, an id that does not parse, or an id that does not follow
// the previous one) means the file was damaged or edited, and OpenStore refuses
// it with an error that names the file and the line.
//
// Compaction: when the file holds more than 2*keep lines, Run rewrites it with
// the last keep messages. It writes them to path+".tmp", fsyncs that file,
// renames it over path and fsyncs the directory, so a crash at any point
// leaves either the old or the new file, complete. The file therefore holds at
// most 2*keep lines plus one group, which bounds the work of recovery (it can
// hold more only after a failed rewrite, or if keep was lowered). Run
// keeps the encoded lines of the last keep messages in memory for this. If the
// rewrite fails, Run logs it, goes on appending to the old file and tries
// again after keep more lines. OpenStore removes a stale path+".tmp".
//
// Only one process may use a journal at a time; nothing enforces this.
type Store struct {
	// path is the name of the journal file.
	path string
	// keep is how many messages OpenStore returns and compaction keeps.
	keep int
	// logger receives recovery warnings and write and compaction failures.
	logger *slog.Logger
	// queue holds messages that were appended but not yet taken by Run.
	queue chan Message
	// commits carries one Commit per group, in Append order. It is never closed.
	commits chan Commit

	// mu guards closed. Append holds it shared while it queues, and Run holds
	// it exclusively to close the store, so no message can be queued after
	// Run's final drain.
	mu sync.RWMutex
	// closed is set when Run begins to shut down. Append then returns false.
	closed bool

	// The fields below belong to OpenStore and then to the Run goroutine.

	// f is the open journal. It is in append mode.
	f *os.File
	// lines is the number of lines in the file.
	lines int
	// compactAt is the line count above which Run compacts the file.
	compactAt int
	// recent holds the encoded lines (newline included) of the last keep
	// messages in the file, for compaction.
	recent journalRing[[]byte]
	// lastEpoch and lastSeq are the parts of the id of the last message in the
	// file. They are meaningful only when hasLast is true.
	lastEpoch int64
	lastSeq   uint64
	hasLast   bool
	// failed is the error of the write or fsync that failed the store, or nil.
	failed error
	// buf collects the lines of one group (or of a compacted file), and enc
	// encodes messages into it.
	buf bytes.Buffer
	enc *json.Encoder
	// errs holds each message's outcome while Run commits a group.
	errs []error
	// ends holds the end offset in buf of each line of a group.
	ends []int
}

// Commit reports that the next N appended messages were made durable
// (Err == nil) or could not be (Err != nil).
type Commit struct {
	// N is how many messages, in Append order, this Commit covers.
	N int
	// Err is nil if the N messages are durable, or why they are not.
	Err error
}

// OpenStore opens (creating if needed) the journal at path and recovers it: it
// returns the last keep messages in order (oldest first). A torn last line is
// logged at warn level and truncated away; any other bad line is an error that
// names the file and the line. keep must be at least 1. A nil logger discards
// the logs. The file stays open until Run returns; to release it without
// running the store, call Run with a context that is already done.
func OpenStore(path string, keep int, logger *slog.Logger) (*Store, []Message, error) {
	if keep < 1 {
		return nil, nil, fmt.Errorf("open journal %s: keep is %d, must be at least 1", path, keep)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	s := &Store{
		path:      path,
		keep:      keep,
		logger:    logger,
		queue:     make(chan Message, storeQueue),
		commits:   make(chan Commit, storeCommitBuffer),
		f:         f,
		compactAt: 2 * keep,
		recent:    journalRing[[]byte]{max: keep},
	}
	s.enc = json.NewEncoder(&s.buf)
	s.enc.SetEscapeHTML(false)
	msgs, err := s.recover()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	// A crash during compaction can leave the temporary file behind.
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err == nil {
		logger.Warn("removed stale journal compaction file", "path", tmp)
	} else if !errors.Is(err, fs.ErrNotExist) {
		logger.Warn("cannot remove stale journal compaction file", "path", tmp, "err", err)
	}
	// Make the file's directory entry durable in case the file was just created.
	if err := syncJournalDir(path); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	logger.Debug("journal recovered", "path", path, "lines", s.lines, "messages", len(msgs))
	return s, msgs, nil
}

// recover reads the whole journal, checks every line, truncates a torn last
// line and returns the last keep messages. It also sets lines, recent and the
// last id.
func (s *Store) recover() ([]Message, error) {
	msgs := journalRing[Message]{max: s.keep}
	r := bufio.NewReader(s.f)
	var off int64 // offset of the start of the current line
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read journal %s: %w", s.path, err)
		}
		if len(line) == 0 {
			break
		}
		var m Message
		var bad error
		if line[len(line)-1] != '\n' {
			bad = errors.New("no trailing newline")
		} else {
			bad = json.Unmarshal(line, &m)
		}
		if bad != nil {
			if _, err := r.Peek(1); err == nil {
				return nil, fmt.Errorf("journal %s line %d: %w", s.path, n, bad)
			} else if !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("read journal %s: %w", s.path, err)
			}
			if err := s.dropTornTail(n, off, len(line), bad); err != nil {
				return nil, err
			}
			break
		}
		epoch, seq, err := parseID(m.ID)
		if err != nil {
			return nil, fmt.Errorf("journal %s line %d: %w", s.path, n, err)
		}
		if s.hasLast && (epoch != s.lastEpoch || seq <= s.lastSeq) {
			return nil, fmt.Errorf("journal %s line %d: id %s does not follow %s",
				s.path, n, m.ID, formatID(s.lastEpoch, s.lastSeq))
		}
		s.lastEpoch, s.lastSeq, s.hasLast = epoch, seq, true
		msgs.push(m)
		s.recent.push(line)
		s.lines++
		off += int64(len(line))
	}
	return msgs.ordered(), nil
}

// dropTornTail logs the torn last line n, which starts at offset off and is
// size bytes long, and truncates the file before it, durably.
func (s *Store) dropTornTail(n int, off int64, size int, reason error) error {
	s.logger.Warn("dropping torn last line of journal",
		"path", s.path, "line", n, "offset", off, "bytes", size, "reason", reason)
	if err := s.f.Truncate(off); err != nil {
		return fmt.Errorf("truncate torn tail of journal %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync journal %s: %w", s.path, err)
	}
	return nil
}

// Append queues m to be written. It never blocks: it returns false when the
// queue (storeQueue = 4096) is full or the store is closed. Run reports the
// outcome later on Commits. Call Append in id order (in practice from the one
// goroutine that assigns ids); Run refuses a message whose id does not follow
// the previous one. Append is safe for concurrent use.
func (s *Store) Append(m Message) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	select {
	case s.queue <- m:
		return true
	default:
		return false
	}
}

// Commits returns the channel on which Run reports each group commit, in the
// order of Append calls: each Commit covers the next N appended messages. The
// channel holds storeCommitBuffer Commits; when it is full, Run waits for the
// consumer (and meanwhile Append fills the queue), except that Run still
// returns when its context is done. The channel is never closed.
func (s *Store) Commits() <-chan Commit {
	return s.commits
}

// Run writes queued messages until ctx ends: it takes everything queued
// (at most storeQueue messages), writes one JSON line per message, fsyncs once
// (group commit), then sends one Commit. (It sends more than one for a group
// only when some of its messages are refused, so that each Commit covers
// messages with the same outcome.) It compacts when needed. When ctx ends it
// writes what is queued, closes the file and returns; Append returns false
// from then on. The Commits for that final group, and any not yet sent, are
// sent only as far as the Commits buffer has room, in order. Call Run once.
func (s *Store) Run(ctx context.Context) {
	defer s.closeFile()
	s.maybeCompact()
	var batch []Message
	for {
		select {
		case <-ctx.Done():
			s.shutdown(nil)
			return
		case m := <-s.queue:
			batch = s.drain(append(batch[:0], m))
			commits := s.commit(batch)
			clear(batch) // drop references to the messages' strings
			for i, c := range commits {
				select {
				case s.commits <- c:
				case <-ctx.Done():
					s.shutdown(commits[i:])
					return
				}
			}
			s.maybeCompact()
		}
	}
}

// drain appends to batch whatever is queued, up to storeQueue messages in all,
// without waiting.
func (s *Store) drain(batch []Message) []Message {
	for len(batch) < storeQueue {
		select {
		case m := <-s.queue:
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

// shutdown closes the store to Append, writes what is still queued and sends
// the unsent Commits followed by the final group's, in order, as far as the
// Commits buffer has room.
func (s *Store) shutdown(unsent []Commit) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	// The queue can no longer grow and holds at most storeQueue messages, so
	// one drain takes them all.
	if batch := s.drain(nil); len(batch) > 0 {
		unsent = append(unsent, s.commit(batch)...)
	}
	for i, c := range unsent {
		select {
		case s.commits <- c:
		default:
			s.logger.Warn("journal commits not reported at shutdown: consumer not reading",
				"path", s.path, "commits", len(unsent)-i)
			return
		}
	}
}

// closeFile closes the journal file and logs a failure.
func (s *Store) closeFile() {
	if err := s.f.Close(); err != nil {
		s.logger.Error("close journal", "path", s.path, "err", err)
	}
}

// commit writes batch as one group with one write and one fsync, and returns
// the Commits that report it: one per run of consecutive messages with the
// same outcome.
func (s *Store) commit(batch []Message) []Commit {
	s.buf.Reset()
	s.errs = s.errs[:0]
	s.ends = s.ends[:0]
	epoch, seq, hasLast := s.lastEpoch, s.lastSeq, s.hasLast
	for _, m := range batch {
		e, q, err := s.encode(m, epoch, seq, hasLast)
		if err == nil {
			epoch, seq, hasLast = e, q, true
			s.ends = append(s.ends, s.buf.Len())
		}
		s.errs = append(s.errs, err)
	}
	if len(s.ends) > 0 {
		if err := s.writeGroup(); err != nil {
			s.failed = err
			s.logger.Error("journal failed: messages are no longer made durable", "path", s.path, "err", err)
			for i, e := range s.errs {
				if e == nil {
					s.errs[i] = err
				}
			}
		} else {
			data, start := s.buf.Bytes(), 0
			for _, end := range s.ends {
				s.recent.push(bytes.Clone(data[start:end]))
				start = end
			}
			s.lines += len(s.ends)
			s.lastEpoch, s.lastSeq, s.hasLast = epoch, seq, hasLast
		}
	}
	var commits []Commit
	for i, err := range s.errs {
		if i > 0 && err == s.errs[i-1] {
			commits[len(commits)-1].N++
			continue
		}
		commits = append(commits, Commit{N: 1, Err: err})
	}
	return commits
}

// encode checks that m may follow the id (epoch, seq) (any id may come first
// when hasLast is false) and appends its line to buf. It returns the parts of
// m's id, or why m is refused, or the error that failed the store.
func (s *Store) encode(m Message, epoch int64, seq uint64, hasLast bool) (int64, uint64, error) {
	if s.failed != nil {
		return 0, 0, s.failed
	}
	e, q, err := parseID(m.ID)
	if err != nil {
		return 0, 0, fmt.Errorf("journal refuses message: %w", err)
	}
	if hasLast && (e != epoch || q <= seq) {
		return 0, 0, fmt.Errorf("journal refuses message: id %s does not follow %s", m.ID, formatID(epoch, seq))
	}
	if err := s.enc.Encode(m); err != nil { // Encode writes nothing on error
		return 0, 0, fmt.Errorf("encode journal message %s: %w", m.ID, err)
	}
	return e, q, nil
}

// writeGroup writes buf to the journal and fsyncs it.
func (s *Store) writeGroup() error {
	if _, err := s.f.Write(s.buf.Bytes()); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync journal %s: %w", s.path, err)
	}
	return nil
}

// maybeCompact compacts the journal when it holds more than compactAt lines.
// After a failure it logs and sets compactAt to try again after keep more lines.
func (s *Store) maybeCompact() {
	if s.failed != nil || s.lines <= s.compactAt {
		return
	}
	before := s.lines
	if err := s.compact(); err != nil {
		if s.failed != nil {
			s.logger.Error("journal failed: messages are no longer made durable", "path", s.path, "err", err)
			return
		}
		s.compactAt = s.lines + s.keep
		s.logger.Error("journal compaction failed", "path", s.path, "lines", s.lines, "err", err)
		return
	}
	s.compactAt = 2 * s.keep
	s.logger.Debug("journal compacted", "path", s.path, "lines_before", before, "lines", s.lines)
}

// compact rewrites the journal with the last keep messages: it writes them to
// path+".tmp", fsyncs it, renames it over path and fsyncs the directory. If the
// directory cannot be synced after the rename, later appends could be lost
// with the rename in a crash, so the store fails.
func (s *Store) compact() error {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("compact journal: %w", err)
	}
	lines := s.recent.ordered()
	s.buf.Reset()
	for _, line := range lines {
		s.buf.Write(line)
	}
	if err := writeCompacted(f, s.buf.Bytes(), s.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact journal: %w", err)
	}
	// The new file is in place: append to it from now on.
	old := s.f
	s.f = f
	s.lines = len(lines)
	if err := old.Close(); err != nil {
		s.logger.Warn("close replaced journal", "path", s.path, "err", err)
	}
	if err := syncJournalDir(s.path); err != nil {
		s.failed = fmt.Errorf("compact journal: %w", err)
		return s.failed
	}
	return nil
}

// writeCompacted writes data to f, the new journal, fsyncs it and renames it
// to path.
func writeCompacted(f *os.File, data []byte, path string) error {
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	return os.Rename(f.Name(), path)
}

// syncJournalDir fsyncs the directory that holds the journal at path, which
// makes a creation or rename in it durable. Windows cannot sync a directory
// and does not need to, so there it does nothing.
func syncJournalDir(path string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	dir := filepath.Dir(path)
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync journal directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync journal directory %s: %w", dir, err)
	}
	return nil
}

// journalRing keeps the last max items pushed into it. Its zero value with
// max set is ready to use; it grows to max items only as they arrive.
type journalRing[T any] struct {
	// items holds at most max items. Once it is full, next indexes the oldest.
	items []T
	// next is where push writes once items is full.
	next int
	// max is how many items the ring keeps.
	max int
}

// push adds v, dropping the oldest item when the ring is full.
func (r *journalRing[T]) push(v T) {
	if len(r.items) < r.max {
		r.items = append(r.items, v)
		return
	}
	r.items[r.next] = v
	r.next = (r.next + 1) % r.max
}

// ordered returns a new slice with the items, oldest first.
func (r *journalRing[T]) ordered() []T {
	out := make([]T, 0, len(r.items))
	out = append(out, r.items[r.next:]...)
	return append(out, r.items[:r.next]...)
}
