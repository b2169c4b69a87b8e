package names

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Tuning values of the file.
const (
	// refreshGrain is how far a hold's last use must move before a use
	// that takes nothing new is written: a busy name costs a line a minute,
	// and a hold read back may end up to a minute early.
	refreshGrain = time.Minute
	// compactSlack is how many lines beyond twice the holds the file may
	// grow before it is rewritten with one line per hold.
	compactSlack = 1024
)

// Record is one hold as it is stored: a line of the file, and the value a
// key/value store keeps under Key(skeleton). Times are Unix seconds.
type Record struct {
	// ID is the identity that holds the name.
	ID string `json:"id"`
	// Name is the name as last written; its skeleton is the key.
	Name string `json:"name"`
	// Since is when ID took the name.
	Since int64 `json:"since"`
	// Last is ID's last use of the name.
	Last int64 `json:"last"`
	// Streaming, in a shared store, says that open streams carry the name
	// on the server that wrote it: other servers keep it until the store
	// says otherwise, whatever the hold time.
	Streaming bool `json:"streaming,omitempty"`
}

// line is one line of the file: a Record (a hold taken or used), or the
// release of the hold on the skeleton Free (freed by a moderator,
// released for a newer name of its holder, or evicted from a full table).
type line struct {
	*Record
	Free string `json:"free,omitempty"`
}

// Key returns the key under which a key/value store keeps the hold on
// skeleton: the skeleton in unpadded base64url, so that it uses only
// characters such stores allow in keys (NATS: [-/_=.a-zA-Z0-9]).
func Key(skeleton string) string { return base64.RawURLEncoding.EncodeToString([]byte(skeleton)) }

// ParseKey returns the skeleton that Key turned into key.
func ParseKey(key string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil {
		return "", fmt.Errorf("hold key %q: %w", key, err)
	}
	return string(b), nil
}

// record returns h as stored, with last as its last use.
func (h *hold) record(last time.Time) *Record {
	return &Record{ID: h.id, Name: h.name, Since: h.since.Unix(), Last: last.Unix()}
}

// Records returns every hold in force at now, by skeleton, as a
// key/value store would keep them.
func (t *Table) Records(now time.Time) map[string]Record {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	out := make(map[string]Record, len(t.holds))
	for k, h := range t.holds {
		out[k] = *h.record(h.last)
	}
	return out
}

// file is what a Table writes to: an *os.File (tests put a failing one
// in its place).
type file interface {
	Write(p []byte) (int, error)
	Sync() error
	Truncate(size int64) error
	Close() error
}

// logFile is the file a Table writes its changes to: JSON lines, each
// appended (and, for a hold taken or released, synced) before the change
// is made in memory.
type logFile struct {
	// path is the file's name.
	path string
	// f is the file, open for appending; nil once closed.
	f file
	// size is the length of the file's whole lines.
	size int64
	// lines counts them; compactAt is the count that makes a rewrite.
	lines, compactAt int
}

// OpenFile returns the table kept in the file at path (created if it
// does not exist). The holds in it that have ended by now are dropped,
// and the bounds of opts are applied, keeping the most recently used. The
// file is then rewritten with one line per hold, and each change after is
// appended to it. A last line cut short by a crash is dropped; any other
// bad line is an error that says how to move the file aside.
func OpenFile(path string, opts Options, now time.Time) (*Table, error) {
	t := New(opts)
	recs, err := readFile(path)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(recs, func(a, b *Record) int { return cmp.Compare(a.Last, b.Last) })
	for _, r := range recs {
		t.restore(r, now)
	}
	t.file = &logFile{path: path}
	if err := t.rewrite(now); err != nil {
		return nil, err
	}
	return t, nil
}

// readFile reads the records in force at the end of the file at path:
// each skeleton's last record, unless released after it.
func readFile(path string) ([]*Record, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, unusable(path, err)
	}
	lines := bytes.Split(data, []byte{'\n'})
	lines = lines[:len(lines)-1] // after the last newline: empty, or cut short
	byKey := make(map[string]*Record)
	for i, b := range lines {
		var l line
		err := json.Unmarshal(b, &l)
		if err == nil && l.Free == "" && (l.Record == nil || l.ID == "" || l.Name == "" || l.Last <= 0) {
			err = errors.New("neither a hold nor a release")
		}
		if err != nil {
			return nil, unusable(path, fmt.Errorf("line %d: %w", i+1, err))
		}
		if l.Free != "" {
			if key, err := Skeleton(l.Free); err == nil {
				delete(byKey, key)
			}
		} else if key, err := Skeleton(l.Name); err == nil {
			byKey[key] = l.Record
		} // else the name is refused now: it holds nothing
	}
	out := make([]*Record, 0, len(byKey))
	for _, r := range byKey {
		out = append(out, r)
	}
	return out, nil
}

// unusable returns the error for a names file the server will not start
// with.
func unusable(path string, err error) error {
	return fmt.Errorf("names file %s cannot be used; fix it, or move it aside to start with no names held (mv %s %s.bad): %w", path, path, path, err)
}

// restore adds a hold read from the file, unless it has ended by now,
// making room by the bounds (the records come least recently used first,
// so the older holds give way).
func (t *Table) restore(r *Record, now time.Time) {
	last := time.Unix(r.Last, 0)
	if !now.Before(last.Add(t.opts.Hold)) {
		return
	}
	key, _ := Skeleton(r.Name) // readFile checked it
	if mine := t.byID[r.ID]; len(mine) >= t.opts.PerIdentity {
		t.remove(mine[0])
	} else if len(t.holds) >= t.opts.MaxHolds {
		t.remove(t.idle.Front().Value.(*hold))
	}
	h := &hold{key: key, id: r.ID, name: r.Name, since: time.Unix(r.Since, 0), last: last}
	h.savedName, h.savedLast = h.name, h.last
	t.holds[key] = h
	t.byID[r.ID] = append(t.byID[r.ID], h)
	h.elem = t.idle.PushBack(h)
}

// Save rewrites the file with one line per hold, writing now as the last
// use of the holds that streams carry (a crash does not close them), so
// call it now and then and before Close. A table without a file has
// nothing to save.
func (t *Table) Save(now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.shared != nil {
		t.expire(now)
		return t.refresh(now)
	}
	if t.file == nil {
		return nil
	}
	if t.file.f == nil {
		return fmt.Errorf("names file %s is closed", t.file.path)
	}
	t.expire(now)
	return t.rewrite(now)
}

// Close saves the table (see Save) and closes its file. Changes after
// Close fail.
func (t *Table) Close(now time.Time) error {
	err := t.Save(now)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.file != nil && t.file.f != nil {
		if cerr := t.file.f.Close(); err == nil {
			err = cerr
		}
		t.file.f = nil
	}
	return err
}

// rewrite writes every hold to a new file (streaming ones as used now)
// and renames it over the old one, durably, then appends to it.
func (t *Table) rewrite(now time.Time) error {
	l := t.file
	var buf bytes.Buffer
	for _, h := range t.holds {
		last := h.last
		if h.streams > 0 {
			last = now
		}
		b, err := json.Marshal(line{Record: h.record(last)})
		if err != nil {
			return fmt.Errorf("save names file: %w", err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	f, err := writeFile(l.path, buf.Bytes())
	if err != nil {
		return err
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f, l.size, l.lines = f, int64(buf.Len()), len(t.holds)
	l.compactAt = 2*l.lines + compactSlack
	for _, h := range t.holds {
		h.savedName, h.savedLast = h.name, h.last
	}
	return nil
}

// writeFile replaces the file at path with data (written to path+".tmp",
// synced, renamed over path, its directory synced) and returns it open
// for appending.
func writeFile(path string, data []byte) (*os.File, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("save names file: %w", err)
	}
	err = f.Chmod(0o600) // a stale temporary file keeps its own mode
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("save names file %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return f, nil
}

// appendLines writes ls at the end of the file, synced if sync is set.
// A failed write is cut off again, so that the file keeps whole lines.
// Once the file holds more than compactAt lines, it is rewritten; a
// failed rewrite is tried again when the file has grown as much again.
func (t *Table) appendLines(ls []line, sync bool) error {
	l := t.file
	if l.f == nil {
		return fmt.Errorf("names file %s is closed", l.path)
	}
	var buf []byte
	for _, x := range ls {
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Errorf("write names file: %w", err)
		}
		buf = append(append(buf, b...), '\n')
	}
	_, err := l.f.Write(buf)
	if err == nil && sync {
		err = l.f.Sync()
	}
	if err != nil {
		_ = l.f.Truncate(l.size)
		return fmt.Errorf("write names file %s: %w", l.path, err)
	}
	l.size += int64(len(buf))
	l.lines += len(ls)
	return nil
}

// compact rewrites the file if it has grown past compactAt lines. The
// change that made it grow is written and made, so a failure here only
// postpones the rewrite.
func (t *Table) compact(now time.Time) {
	l := t.file
	if l == nil || l.f == nil || l.lines <= l.compactAt {
		return
	}
	if err := t.rewrite(now); err != nil {
		l.compactAt = 2 * l.lines
	}
}

// saveUse writes a use of h (with name as written) at now, after which
// streams carry it, when the name changed or its last use moved by
// refreshGrain since the file last had it. It does not sync: losing the
// newest use to a power cut only ends a hold a little early. A table that
// shares its holds writes to the shared store instead (storeUse).
func (t *Table) saveUse(h *hold, name string, now time.Time, streams int) error {
	if t.shared != nil {
		return t.storeUse(h, name, now, streams)
	}
	if t.file == nil || (name == h.savedName && now.Sub(h.savedLast) < refreshGrain) {
		return nil
	}
	r := h.record(now)
	r.Name = name
	if err := t.appendLines([]line{{Record: r}}, false); err != nil {
		return err
	}
	h.savedName, h.savedLast = name, now
	return nil
}

// saveTake writes, synced, the new hold h (which streams carry) and the
// release of drop (if not nil) that makes room for it; to the shared
// store, if the table has one.
func (t *Table) saveTake(h, drop *hold, streams int) error {
	if t.shared != nil {
		return t.storeTake(h, drop, streams)
	}
	if t.file == nil {
		return nil
	}
	var ls []line
	if drop != nil {
		ls = append(ls, line{Free: drop.key})
	}
	ls = append(ls, line{Record: h.record(h.last)})
	if err := t.appendLines(ls, true); err != nil {
		return err
	}
	h.savedName, h.savedLast = h.name, h.last
	return nil
}

// saveFree writes, synced, the release of h (a moderator's Free); to the
// shared store, if the table has one.
func (t *Table) saveFree(h *hold) error {
	if t.shared != nil {
		return t.shared.Free(h.key)
	}
	if t.file == nil {
		return nil
	}
	return t.appendLines([]line{{Free: h.key}}, true)
}
