package journal

import (
	"os"
	"time"
)

// An Option changes how Open sets a journal up.
type Option func(*options)

// options holds what the Options asked for.
type options struct {
	// observeSync, when not nil, is called with the duration of every fsync.
	observeSync func(time.Duration)
	// wrap, when not nil, wraps every journal file the journal writes.
	wrap func(File) File
}

// File is the journal file as the journal writes to it: every write and
// fsync of the journal (and of a compacted replacement) goes through one.
// *os.File is one.
type File interface {
	// Write appends p to the file.
	Write(p []byte) (int, error)
	// Sync makes what was written durable (fsync).
	Sync() error
}

// ObserveSync makes the journal call observe with the duration of every fsync
// of its file and of a compacted replacement, failed ones included. The
// journal calls it from Open and then from Run, one call at a time, so it
// must be quick; a metrics histogram is what it is for.
func ObserveSync(observe func(d time.Duration)) Option {
	return func(o *options) { o.observeSync = observe }
}

// WrapFile makes the journal write and fsync its file through wrap(f) rather
// than f itself, for the file Open opens and for each compacted replacement.
// It is a seam for tests: a wrapper that fails a write or an fsync stands for
// a full or broken disk, which the journal cannot tell apart from the real
// thing.
func WrapFile(wrap func(f File) File) Option {
	return func(o *options) { o.wrap = wrap }
}

// wrap returns f as the journal writes it.
func (j *Journal) wrap(f *os.File) File {
	if j.opts.wrap == nil {
		return f
	}
	return j.opts.wrap(f)
}

// syncFile fsyncs w and reports how long that took to the ObserveSync
// option.
func (j *Journal) syncFile(w File) error {
	return j.timed(w.Sync)
}

// syncGroup fsyncs the journal file after a group commit (or an epoch
// marker): with the function SetSync installed, if any, else through w. Either
// way ObserveSync sees it.
func (j *Journal) syncGroup() error {
	if j.sync != nil {
		return j.timed(func() error { return j.sync(j.f) })
	}
	return j.syncFile(j.w)
}

// timed calls sync and reports how long it took to the ObserveSync option.
func (j *Journal) timed(sync func() error) error {
	start := time.Now()
	err := sync()
	if j.opts.observeSync != nil {
		j.opts.observeSync(time.Since(start))
	}
	return err
}
