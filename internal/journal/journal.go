// Package journal is an append-only, group-committed, fsync'd journal of
// records, kept in one file, with recovery, torn-tail handling and
// compaction. It is the chat server's durable history, but it knows records,
// not chat messages.
//
// A record is one line of JSON: a JSON object whose first member is
// "id":"<epoch>-<seq>" (both decimal), followed by whatever the caller puts
// in it. The journal writes a record's Data verbatim, followed by a newline,
// and treats it as opaque apart from reading its "id". So other kinds of
// record (a deletion, an epoch marker, a message with more fields) can share
// the file without any change here, as long as each has an id that follows
// the previous record's: one epoch, and seq strictly increasing.
//
// Writing: Append queues a record and never blocks. Run is the only goroutine
// that touches the file. It takes everything queued, writes it with one write,
// makes it durable with one fsync (group commit) and then reports the group on
// Commits, so many concurrent appends share one fsync. Records must be
// appended in id order, continuing after the records Open recovered. Run
// refuses a record that would break that order, or whose Data is not one line
// of JSON starting with its id (its Commit carries the error), rather than
// write it, so the journal always stays readable. After a failed write or
// fsync the journal is failed for good: nothing more is written and every
// later record is reported with that error, because after a failed fsync the
// state of the kernel's page cache is unknown and retrying could acknowledge
// data that is already lost.
//
// Recovery: Open reads the file line by line. A torn last line (one with no
// trailing newline, or one that is not valid JSON at the end of the file) is
// what a crash in the middle of a write leaves behind. It was never
// acknowledged, so it is logged at warn level and truncated away. Any other
// bad line (invalid JSON, an id that does not parse, or an id that does not
// follow the previous one) means the file was damaged or edited, and Open
// refuses it with an error that names the file and the line.
//
// Epoch marker: a record whose seq is 0 and whose line is exactly
// {"id":"<epoch>-0"} marks the start of an epoch. MarkEpoch writes one (and
// fsyncs it) into a journal that holds no record, so that a new journal's
// epoch is durable before anything is appended: a server restarted on a
// journal that never received a record keeps its epoch. Recovery checks a
// marker like any record (it sets the id the next record must follow) but
// does not return it among the records; Epoch reports it. Since ids increase
// strictly, a marker can only be the first record of its epoch, and
// compaction drops it once keep later records exist. Journals without a
// marker open as they are: their epoch is that of their last record.
//
// Compaction: when the file holds more than 2*keep lines, Run rewrites it with
// the last keep records. It writes them to path+".tmp", fsyncs that file,
// renames it over path and fsyncs the directory, so a crash at any point
// leaves either the old or the new file, complete. The file therefore holds at
// most 2*keep lines plus one group, which bounds the work of recovery (it can
// hold more only after a failed rewrite, or if keep was lowered). Run keeps
// the lines of the last keep records in memory for this. If the rewrite
// fails, Run logs it, goes on appending to the old file and tries again after
// keep more lines. Open removes a stale path+".tmp".
//
// Ownership: Open takes an exclusive advisory lock (flock(2)) on path+".lock"
// and holds it until Run returns, so a second journal on the same path, in
// this process or another, fails to open with an error that wraps ErrLocked
// and names the holder's process id. The kernel drops the lock when the
// process dies, however it dies, so there is never a stale lock to clean up;
// the lock file itself stays and is harmless. Compaction renames a new file
// over path, which is why the lock is on a file of its own. Where the platform
// has no such lock (Windows, for one), Open logs a warning and goes on.
//
// Health: Err reports, from any goroutine, the error that failed the journal;
// ObserveSync reports the duration of every fsync; WrapFile lets a test put a
// failing disk under the journal.
package journal

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
	"strconv"
	"sync"
	"sync/atomic"

	"chat/internal/record"
)

// Tuning values of the journal.
const (
	// queueSize is how many records Append can queue ahead of Run. Append
	// returns false while that many are waiting.
	queueSize = 4096
	// commitBuffer is the capacity of the Commits channel: how many group
	// commits Run can report before it waits for the consumer to read them.
	commitBuffer = 64
	// fileMode is the mode of every file the journal makes (the journal,
	// its lock, compaction and repair files): they hold a private room's
	// messages, so only their owner may read them, whatever the umask.
	fileMode = 0o600
)

// Record is one line of the journal.
type Record struct {
	// Epoch and Seq are the parts of the record's id, "<epoch>-<seq>".
	Epoch int64
	Seq   uint64
	// Data is the record as one line of JSON, without the newline: an
	// object whose first member is "id":"<epoch>-<seq>". The journal writes
	// it verbatim and does not modify it; the caller must not modify it
	// after Append either.
	Data []byte
}

// Commit reports that the next N appended records, in Append order, were
// made durable (Err == nil) or could not be (Err != nil). It is the report
// every store of the room's records gives (record.Commit).
type Commit = record.Commit

// Journal is an append-only journal of records in one file; the package
// comment describes how it writes, recovers and compacts.
type Journal struct {
	// path is the name of the journal file.
	path string
	// keep is how many records Open returns and compaction keeps.
	keep int
	// logger receives recovery warnings and write and compaction failures.
	logger *slog.Logger
	// queue holds records that were appended but not yet taken by Run.
	queue chan Record
	// commits carries one Commit per group, in Append order. It is never
	// closed.
	commits chan Commit

	// mu guards closed. Append holds it shared while it queues, and Run holds
	// it exclusively to close the journal, so no record can be queued after
	// Run's final drain.
	mu sync.RWMutex
	// closed is set when Run begins to shut down. Append then returns false.
	closed bool

	// err holds the error that failed the journal, for Err. Run sets it
	// (with failed) and any goroutine may read it.
	err atomic.Pointer[error]

	// The fields below belong to Open and then to the Run goroutine.

	// lock is the open lock file, whose flock marks the journal as taken,
	// or nil where the platform cannot lock. It is closed after f.
	lock *os.File
	// opts holds the options Open was given.
	opts options
	// f is the open journal. It is in append mode.
	f *os.File
	// w is f as the journal writes and fsyncs it: f itself, or what the
	// WrapFile option made of it.
	w File
	// lines is the number of lines in the file.
	lines int
	// compactAt is the line count above which Run compacts the file.
	compactAt int
	// recent holds the lines (newline included) of the last keep records in
	// the file, for compaction.
	recent ring[[]byte]
	// lastEpoch and lastSeq are the parts of the id of the last record in the
	// file. They are meaningful only when hasLast is true.
	lastEpoch int64
	lastSeq   uint64
	hasLast   bool
	// sync, when SetSync installed one, makes a group commit durable in
	// place of w's Sync.
	sync func(*os.File) error
	// failed is the error of the write or fsync that failed the journal, or
	// nil. Only fail sets it.
	failed error
	// buf collects the lines of one group (or of a compacted file).
	buf bytes.Buffer
	// prefix holds the start a record's Data must have, while Run checks it.
	prefix []byte
	// errs holds each record's outcome while Run commits a group.
	errs []error
	// ends holds the end offset in buf of each line of a group.
	ends []int
}

// Open opens (creating if needed) the journal at path and recovers it: it
// returns the last keep records in order (oldest first), each with Data
// holding its line without the newline, epoch markers left out. It first
// takes the journal's lock (see the package comment): if another journal
// holds it, the error wraps ErrLocked and names the holder. A torn last line
// is logged at warn level and truncated away; any other bad line is an error
// that names the file and the line. keep must be at least 1. A nil logger
// discards the logs. The file and the lock stay open until Run returns; to
// release them without running the journal, call Run with a context that is
// already done.
func Open(path string, keep int, logger *slog.Logger, opts ...Option) (*Journal, []Record, error) {
	if keep < 1 {
		return nil, nil, fmt.Errorf("open journal %s: keep is %d, must be at least 1", path, keep)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	j := &Journal{
		path:      path,
		keep:      keep,
		logger:    logger,
		queue:     make(chan Record, queueSize),
		commits:   make(chan Commit, commitBuffer),
		compactAt: 2 * keep,
		recent:    ring[[]byte]{max: keep},
	}
	for _, opt := range opts {
		opt(&j.opts)
	}
	// The lock comes first: nothing below (truncating a torn tail, removing
	// a compaction file) may touch a journal another server is using.
	lk, err := lock(path)
	switch {
	case errors.Is(err, errNoLock):
		logger.Warn("journal not locked: make sure no other server uses it", "path", path, "reason", err)
	case err != nil:
		return nil, nil, err
	}
	j.lock = lk
	recs, err := j.open()
	if err != nil {
		j.closeLock()
		return nil, nil, err
	}
	return j, recs, nil
}

// open opens the journal file, recovers it and removes a stale compaction
// file, once Open holds the lock.
func (j *Journal) open() ([]Record, error) {
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, fileMode)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := restrict(f, j.logger); err != nil {
		f.Close()
		return nil, fmt.Errorf("open journal: %w", err)
	}
	j.f, j.w = f, j.wrap(f)
	recs, err := j.recover()
	if err != nil {
		f.Close()
		return nil, err
	}
	// A crash during compaction can leave the temporary file behind.
	tmp := j.path + ".tmp"
	if err := os.Remove(tmp); err == nil {
		j.logger.Warn("removed stale journal compaction file", "path", tmp)
	} else if !errors.Is(err, fs.ErrNotExist) {
		j.logger.Warn("cannot remove stale journal compaction file", "path", tmp, "err", err)
	}
	// Make the file's directory entry durable in case the file was just created.
	if err := syncDir(j.path); err != nil {
		f.Close()
		return nil, fmt.Errorf("open journal: %w", err)
	}
	j.logger.Debug("journal recovered", "path", j.path, "lines", j.lines, "records", len(recs))
	return recs, nil
}

// recover reads the whole journal, checks every line, truncates a torn last
// line and returns the last keep records. It also sets lines, recent and the
// last id.
func (j *Journal) recover() ([]Record, error) {
	recs := ring[Record]{max: j.keep}
	sc := scanner{r: bufio.NewReader(j.f)}
	for {
		line, epoch, seq, err := sc.next()
		if err == io.EOF {
			break
		}
		var bad *LineError
		if errors.As(err, &bad) {
			if !bad.Torn {
				return nil, fmt.Errorf("journal %s %w", j.path, bad)
			}
			if err := j.dropTornTail(bad.Line, bad.Offset, bad.Size, bad.Err); err != nil {
				return nil, err
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read journal %s: %w", j.path, err)
		}
		if seq != 0 { // seq 0 is an epoch marker, not a record to return
			recs.push(Record{Epoch: epoch, Seq: seq, Data: line[: len(line)-1 : len(line)-1]})
		}
		j.recent.push(line)
		j.lines++
	}
	j.lastEpoch, j.lastSeq, j.hasLast = sc.lastEpoch, sc.lastSeq, sc.hasLast
	return recs.ordered(), nil
}

// LineError says why a line of a journal file breaks the journal's rules.
type LineError struct {
	// Line is the line's number, from 1, Offset the offset of its first byte
	// and Size its length in bytes, newline included.
	Line   int
	Offset int64
	Size   int
	// Torn is set when the line is the last of the file and is not a whole
	// line of JSON: what a crash in the middle of a write leaves. It was never
	// acknowledged, and recovery drops it.
	Torn bool
	// OutOfOrder is set when the line is whole JSON with a well-formed id
	// that does not follow the line before it (a repeated or lower seq, or
	// another epoch): what two servers appending to one file leave.
	OutOfOrder bool
	// Err is what is wrong with the line.
	Err error
}

// Error names the line and what is wrong with it.
func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Unwrap returns Err.
func (e *LineError) Unwrap() error { return e.Err }

// scanner reads a journal line by line and checks each line by the rules
// recovery and Check apply: a whole line (ending in a newline) of valid JSON
// whose "id" parses and follows the previous line's id (the same epoch, a
// higher seq). Its zero value with r set starts at the file's first line.
type scanner struct {
	// r reads the file from the start of the next line.
	r *bufio.Reader
	// n is the number of lines read so far, and off the offset of the next.
	n   int
	off int64
	// lastEpoch and lastSeq are the parts of the last good line's id,
	// meaningful only when hasLast is true.
	lastEpoch int64
	lastSeq   uint64
	hasLast   bool
}

// next reads the next line and returns it, newline included, with the parts
// of its id. At the end of the file it returns io.EOF. A line that breaks the
// rules gives a *LineError and leaves the last good id as it was, so the
// caller may go on reading; a failed read gives the read's error.
func (s *scanner) next() (line []byte, epoch int64, seq uint64, err error) {
	line, err = s.r.ReadBytes('\n')
	if err != nil && err != io.EOF {
		return nil, 0, 0, err
	}
	if len(line) == 0 {
		return nil, 0, 0, io.EOF
	}
	s.n++
	le := &LineError{Line: s.n, Offset: s.off, Size: len(line)}
	s.off += int64(len(line))
	// Only the id is read; the rest of the record is the caller's.
	var head struct {
		ID string `json:"id"`
	}
	if line[len(line)-1] != '\n' {
		le.Err = errors.New("no trailing newline")
	} else {
		le.Err = json.Unmarshal(line, &head)
	}
	if le.Err != nil {
		_, err := s.r.Peek(1)
		if err != nil && err != io.EOF {
			return nil, 0, 0, err
		}
		le.Torn = err == io.EOF
		return line, 0, 0, le
	}
	if epoch, seq, le.Err = record.ParseID(head.ID); le.Err != nil {
		return line, 0, 0, le
	}
	if s.hasLast && (epoch != s.lastEpoch || seq <= s.lastSeq) {
		le.Err = fmt.Errorf("id %s does not follow %d-%d", head.ID, s.lastEpoch, s.lastSeq)
		le.OutOfOrder = true
		return line, epoch, seq, le
	}
	s.lastEpoch, s.lastSeq, s.hasLast = epoch, seq, true
	return line, epoch, seq, nil
}

// Epoch returns the epoch of the journal's last record (an epoch marker
// included), and false if the journal holds none. Call it before Run.
func (j *Journal) Epoch() (int64, bool) { return j.lastEpoch, j.hasLast }

// MarkEpoch writes the epoch marker of epoch, the record {"id":"<epoch>-0"},
// to a journal that holds no record, and fsyncs it, so that the epoch
// survives a restart before any record is appended. Records appended next
// must have this epoch. Call it before Run.
func (j *Journal) MarkEpoch(epoch int64) error {
	if j.hasLast {
		return fmt.Errorf("mark epoch %d in journal %s: it already holds records", epoch, j.path)
	}
	if epoch < 0 {
		return fmt.Errorf("mark epoch %d in journal %s: negative epoch", epoch, j.path)
	}
	j.buf.Reset()
	j.buf.WriteString(`{"id":"`)
	j.buf.WriteString(strconv.FormatInt(epoch, 10))
	j.buf.WriteString("-0\"}\n")
	if err := j.writeGroup(); err != nil {
		return fmt.Errorf("mark epoch: %w", err)
	}
	j.recent.push(bytes.Clone(j.buf.Bytes()))
	j.lines++
	j.lastEpoch, j.lastSeq, j.hasLast = epoch, 0, true
	return nil
}

// dropTornTail logs the torn last line n, which starts at offset off and is
// size bytes long, and truncates the file before it, durably.
func (j *Journal) dropTornTail(n int, off int64, size int, reason error) error {
	j.logger.Warn("dropping torn last line of journal",
		"path", j.path, "line", n, "offset", off, "bytes", size, "reason", reason)
	if err := j.f.Truncate(off); err != nil {
		return fmt.Errorf("truncate torn tail of journal %s: %w", j.path, err)
	}
	if err := j.syncFile(j.w); err != nil {
		return fmt.Errorf("sync journal %s: %w", j.path, err)
	}
	return nil
}

// Append queues r to be written. It never blocks: it returns false when the
// queue (queueSize = 4096) is full or the journal is closed. Run reports the
// outcome later on Commits. Call Append in id order (in practice from the one
// goroutine that assigns ids); Run refuses a record whose id does not follow
// the previous one. Append is safe for concurrent use.
func (j *Journal) Append(r Record) bool {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.closed {
		return false
	}
	select {
	case j.queue <- r:
		return true
	default:
		return false
	}
}

// Commits returns the channel on which Run reports each group commit, in the
// order of Append calls: each Commit covers the next N appended records. The
// channel holds commitBuffer Commits; when it is full, Run waits for the
// consumer (and meanwhile Append fills the queue), except that Run still
// returns when its context is done. The channel is never closed.
func (j *Journal) Commits() <-chan Commit {
	return j.commits
}

// Run writes queued records until ctx ends: it takes everything queued (at
// most queueSize records), writes one line per record, fsyncs once (group
// commit), then sends one Commit. (It sends more than one for a group only
// when some of its records are refused, so that each Commit covers records
// with the same outcome.) It compacts when needed. When ctx ends it writes
// what is queued, closes the file and returns; Append returns false from then
// on. The Commits for that final group, and any not yet sent, are sent only as
// far as the Commits buffer has room, in order. Call Run once.
func (j *Journal) Run(ctx context.Context) {
	defer j.closeFile()
	j.maybeCompact()
	var batch []Record
	for {
		select {
		case <-ctx.Done():
			j.shutdown(nil)
			return
		case r := <-j.queue:
			batch = j.drain(append(batch[:0], r))
			commits := j.commit(batch)
			clear(batch) // drop references to the records' data
			for i, c := range commits {
				select {
				case j.commits <- c:
				case <-ctx.Done():
					j.shutdown(commits[i:])
					return
				}
			}
			j.maybeCompact()
		}
	}
}

// drain appends to batch whatever is queued, up to queueSize records in all,
// without waiting.
func (j *Journal) drain(batch []Record) []Record {
	for len(batch) < queueSize {
		select {
		case r := <-j.queue:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// shutdown closes the journal to Append, writes what is still queued and
// sends the unsent Commits followed by the final group's, in order, as far as
// the Commits buffer has room.
func (j *Journal) shutdown(unsent []Commit) {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	// The queue can no longer grow and holds at most queueSize records, so
	// one drain takes them all.
	if batch := j.drain(nil); len(batch) > 0 {
		unsent = append(unsent, j.commit(batch)...)
	}
	for i, c := range unsent {
		select {
		case j.commits <- c:
		default:
			j.logger.Warn("journal commits not reported at shutdown: consumer not reading",
				"path", j.path, "commits", len(unsent)-i)
			return
		}
	}
}

// closeFile closes the journal file, then releases the lock, and logs a
// failure.
func (j *Journal) closeFile() {
	if err := j.f.Close(); err != nil {
		j.logger.Error("close journal", "path", j.path, "err", err)
	}
	j.closeLock()
}

// closeLock closes the lock file, which releases the lock.
func (j *Journal) closeLock() {
	if j.lock == nil {
		return
	}
	if err := j.lock.Close(); err != nil {
		j.logger.Error("close journal lock", "path", j.lock.Name(), "err", err)
	}
	j.lock = nil
}

// fail records err as the error that failed the journal for good.
func (j *Journal) fail(err error) {
	j.failed = err
	j.err.Store(&err)
}

// Err returns the error that failed the journal (a write or fsync that
// failed; nothing is written after it), or nil while the journal works. It is
// safe for concurrent use; a health check calls it.
func (j *Journal) Err() error {
	if p := j.err.Load(); p != nil {
		return *p
	}
	return nil
}

// commit writes batch as one group with one write and one fsync, and returns
// the Commits that report it: one per run of consecutive records with the
// same outcome.
func (j *Journal) commit(batch []Record) []Commit {
	j.buf.Reset()
	j.errs = j.errs[:0]
	j.ends = j.ends[:0]
	epoch, seq, hasLast := j.lastEpoch, j.lastSeq, j.hasLast
	for _, r := range batch {
		err := j.check(r, epoch, seq, hasLast)
		if err == nil {
			epoch, seq, hasLast = r.Epoch, r.Seq, true
			j.buf.Write(r.Data)
			j.buf.WriteByte('\n')
			j.ends = append(j.ends, j.buf.Len())
		}
		j.errs = append(j.errs, err)
	}
	if len(j.ends) > 0 {
		if err := j.writeGroup(); err != nil {
			j.fail(err)
			j.logger.Error("journal failed: messages are no longer made durable", "path", j.path, "err", err)
			for i, e := range j.errs {
				if e == nil {
					j.errs[i] = err
				}
			}
		} else {
			data, start := j.buf.Bytes(), 0
			for _, end := range j.ends {
				j.recent.push(bytes.Clone(data[start:end]))
				start = end
			}
			j.lines += len(j.ends)
			j.lastEpoch, j.lastSeq, j.hasLast = epoch, seq, hasLast
		}
	}
	var commits []Commit
	for i, err := range j.errs {
		if i > 0 && err == j.errs[i-1] {
			commits[len(commits)-1].N++
			continue
		}
		commits = append(commits, Commit{N: 1, Err: err})
	}
	return commits
}

// check returns nil if r may be written after the id (epoch, seq) (any id may
// come first when hasLast is false), or why r is refused, or the error that
// failed the journal. A record is refused when its id does not follow, or when
// its Data is not one line of valid JSON that starts with
// {"id":"<epoch>-<seq>" for its own Epoch and Seq, because recovery would then
// read it wrongly or not at all.
func (j *Journal) check(r Record, epoch int64, seq uint64, hasLast bool) error {
	if j.failed != nil {
		return j.failed
	}
	if r.Epoch < 0 {
		return fmt.Errorf("journal refuses record %d-%d: negative epoch", r.Epoch, r.Seq)
	}
	if hasLast && (r.Epoch != epoch || r.Seq <= seq) {
		return fmt.Errorf("journal refuses record: id %d-%d does not follow %d-%d", r.Epoch, r.Seq, epoch, seq)
	}
	p := append(j.prefix[:0], `{"id":"`...)
	p = strconv.AppendInt(p, r.Epoch, 10)
	p = append(p, '-')
	p = strconv.AppendUint(p, r.Seq, 10)
	p = append(p, '"')
	j.prefix = p
	switch {
	case !bytes.HasPrefix(r.Data, p):
		return fmt.Errorf("journal refuses record %d-%d: data does not start with %s", r.Epoch, r.Seq, p)
	case bytes.IndexByte(r.Data, '\n') >= 0:
		return fmt.Errorf("journal refuses record %d-%d: data holds a newline", r.Epoch, r.Seq)
	case !json.Valid(r.Data):
		return fmt.Errorf("journal refuses record %d-%d: data is not valid JSON", r.Epoch, r.Seq)
	}
	return nil
}

// writeGroup writes buf to the journal and fsyncs it.
func (j *Journal) writeGroup() error {
	if _, err := j.w.Write(j.buf.Bytes()); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := j.syncGroup(); err != nil {
		return fmt.Errorf("sync journal %s: %w", j.path, err)
	}
	return nil
}

// SetSync replaces the fsync of every later group commit (and epoch marker)
// with sync, which receives the journal file and must make it durable. It
// exists for tests that hold a commit inside its fsync, as a slow disk
// would. Call it before Run.
func (j *Journal) SetSync(sync func(*os.File) error) { j.sync = sync }

// maybeCompact compacts the journal when it holds more than compactAt lines.
// After a failure it logs and sets compactAt to try again after keep more lines.
func (j *Journal) maybeCompact() {
	if j.failed != nil || j.lines <= j.compactAt {
		return
	}
	before := j.lines
	if err := j.compact(); err != nil {
		if j.failed != nil {
			j.logger.Error("journal failed: messages are no longer made durable", "path", j.path, "err", err)
			return
		}
		j.compactAt = j.lines + j.keep
		j.logger.Error("journal compaction failed", "path", j.path, "lines", j.lines, "err", err)
		return
	}
	j.compactAt = 2 * j.keep
	j.logger.Debug("journal compacted", "path", j.path, "lines_before", before, "lines", j.lines)
}

// compact rewrites the journal with the last keep records: it writes them to
// path+".tmp", fsyncs it, renames it over path and fsyncs the directory. If the
// directory cannot be synced after the rename, later appends could be lost
// with the rename in a crash, so the journal fails.
func (j *Journal) compact() error {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, fileMode)
	if err != nil {
		return fmt.Errorf("compact journal: %w", err)
	}
	lines := j.recent.ordered()
	j.buf.Reset()
	for _, line := range lines {
		j.buf.Write(line)
	}
	w := j.wrap(f)
	if err := j.writeCompacted(w, j.buf.Bytes(), tmp); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact journal: %w", err)
	}
	// The new file is in place: append to it from now on.
	old := j.f
	j.f, j.w = f, w
	j.lines = len(lines)
	if err := old.Close(); err != nil {
		j.logger.Warn("close replaced journal", "path", j.path, "err", err)
	}
	if err := syncDir(j.path); err != nil {
		j.fail(fmt.Errorf("compact journal: %w", err))
		return j.failed
	}
	return nil
}

// writeCompacted writes data to w, the new journal file named tmp, fsyncs it
// and renames it to the journal's path.
func (j *Journal) writeCompacted(w File, data []byte, tmp string) error {
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := j.syncFile(w); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	return os.Rename(tmp, j.path)
}

// restrict makes f, a file the journal made (perhaps by an older version,
// with a wider mode), readable and writable by its owner only, and logs to
// logger (if not nil) when it had to.
func restrict(f *os.File, logger *slog.Logger) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 == 0 || runtime.GOOS == "windows" {
		return nil
	}
	if err := f.Chmod(fileMode); err != nil {
		return fmt.Errorf("make %s private: %w", f.Name(), err)
	}
	if logger != nil {
		logger.Warn("journal file was readable by others; its mode is now 0600", "path", f.Name(), "was", fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	return nil
}

// syncDir fsyncs the directory that holds the journal at path, which makes a
// creation or rename in it durable. Windows cannot sync a directory and does
// not need to, so there it does nothing.
func syncDir(path string) error {
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

// ring keeps the last max items pushed into it. Its zero value with max set is
// ready to use; it grows to max items only as they arrive.
type ring[T any] struct {
	// items holds at most max items. Once it is full, next indexes the oldest.
	items []T
	// next is where push writes once items is full.
	next int
	// max is how many items the ring keeps.
	max int
}

// push adds v, dropping the oldest item when the ring is full.
func (r *ring[T]) push(v T) {
	if len(r.items) < r.max {
		r.items = append(r.items, v)
		return
	}
	r.items[r.next] = v
	r.next = (r.next + 1) % r.max
}

// ordered returns a new slice with the items, oldest first.
func (r *ring[T]) ordered() []T {
	out := make([]T, 0, len(r.items))
	out = append(out, r.items[r.next:]...)
	return append(out, r.items[:r.next]...)
}
