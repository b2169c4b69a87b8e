package journal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// Report is what Check or Repair found in a journal file.
type Report struct {
	// Path is the journal's name and Size its length in bytes.
	Path string
	Size int64
	// Good is the number of lines before the first bad one (every line when
	// the file is sound) and GoodBytes their length: the prefix a server
	// starts from.
	Good      int
	GoodBytes int64
	// First and Last are the ids of the first and last good lines, or ""
	// when there are none, and Epoch is their epoch.
	First, Last string
	Epoch       int64
	// Bad is the first line that breaks the journal's rules, or nil when
	// the file is sound.
	Bad *LineError
	// Rest describes the lines from Bad to the end of the file: what Repair
	// moves aside. It is zero when Bad is nil.
	Rest Rest
}

// Rest counts the lines from a journal's first bad line to its end.
type Rest struct {
	// Lines and Bytes are the number and length of the lines.
	Lines int
	Bytes int64
	// Epochs counts, by epoch, the lines that hold a parseable id, so that
	// an operator can see whether another server wrote into the file (a
	// second epoch) and how much of the first epoch lies after the damage.
	Epochs map[int64]int
	// NoID counts the lines that are not JSON or hold no parseable id.
	NoID int
}

// Sound reports whether the server starts on the file as it is with every
// line in it: there is no bad line at all.
func (r Report) Sound() bool { return r.Bad == nil }

// Starts reports whether the server starts on the file as it is: it is
// sound, or only its last line is torn, which recovery drops by itself.
func (r Report) Starts() bool { return r.Bad == nil || r.Bad.Torn }

// Check reads the journal at path and judges every line by the rules
// recovery applies (see the package comment), without changing the file or
// taking its lock. It reports the first bad line, if any, and what follows
// it. The error is for a file that cannot be read, not for a bad line.
func Check(path string) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{}, fmt.Errorf("check journal: %w", err)
	}
	defer f.Close()
	return check(f, path)
}

// check reads f, the journal named path, from its start and reports on it.
func check(f *os.File, path string) (Report, error) {
	rep := Report{Path: path}
	fi, err := f.Stat()
	if err != nil {
		return rep, fmt.Errorf("check journal: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return rep, fmt.Errorf("check journal %s: not a regular file", path)
	}
	rep.Size = fi.Size()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return rep, fmt.Errorf("check journal: %w", err)
	}
	sc := scanner{r: bufio.NewReader(f)}
	for {
		line, epoch, seq, err := sc.next()
		if err == io.EOF {
			break
		}
		var bad *LineError
		if errors.As(err, &bad) {
			if rep.Bad == nil {
				rep.Bad = bad
				rep.Rest.Epochs = map[int64]int{}
			}
		} else if err != nil {
			return rep, fmt.Errorf("read journal %s: %w", path, err)
		}
		if rep.Bad == nil {
			rep.Good++
			rep.GoodBytes += int64(len(line))
			id := strconv.FormatInt(epoch, 10) + "-" + strconv.FormatUint(seq, 10)
			if rep.First == "" {
				rep.First, rep.Epoch = id, epoch
			}
			rep.Last = id
			continue
		}
		rep.Rest.Lines++
		rep.Rest.Bytes += int64(len(line))
		if e, ok := lineEpoch(line); ok {
			rep.Rest.Epochs[e]++
		} else {
			rep.Rest.NoID++
		}
	}
	return rep, nil
}

// lineEpoch returns the epoch of the id in line, judged on its own (not
// against the line before it), and whether it has one.
func lineEpoch(line []byte) (int64, bool) {
	one := scanner{r: bufio.NewReader(bytes.NewReader(line))}
	_, epoch, _, err := one.next()
	return epoch, err == nil
}

// Repair makes the journal at path start again with every record before its
// first bad line: it takes the journal's lock (so no server may be using it),
// copies everything from the first bad line to the end into
// path+".bad-<time>" (now, in UTC, as 20060102T150405Z) and fsyncs that
// file and the directory, then truncates the journal to its good prefix and
// fsyncs it. A crash at any point leaves the damaged lines in one of the two
// files. A sound journal is left as it is. It returns the report of the file
// as it was and the name of the file the rest went to ("" when nothing was
// moved).
func Repair(path string, now time.Time) (Report, string, error) {
	lk, err := lock(path)
	if err != nil && !errors.Is(err, errNoLock) {
		return Report{}, "", fmt.Errorf("repair journal: %w", err)
	}
	if lk != nil {
		defer lk.Close()
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return Report{}, "", fmt.Errorf("repair journal: %w", err)
	}
	defer f.Close()
	rep, err := check(f, path)
	if err != nil || rep.Bad == nil {
		return rep, "", err
	}
	badPath := path + ".bad-" + now.UTC().Format("20060102T150405Z")
	if err := saveRest(f, rep.GoodBytes, badPath); err != nil {
		return rep, "", fmt.Errorf("repair journal %s: %w", path, err)
	}
	if err := f.Truncate(rep.GoodBytes); err != nil {
		return rep, badPath, fmt.Errorf("repair journal: %w", err)
	}
	if err := f.Sync(); err != nil {
		return rep, badPath, fmt.Errorf("repair journal: sync %s: %w", path, err)
	}
	return rep, badPath, nil
}

// saveRest copies f from offset off to its end into a new file named
// badPath, fsyncs it and its directory.
func saveRest(f *os.File, off int64, badPath string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	bf, err := os.OpenFile(badPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(bf, io.NewSectionReader(f, off, fi.Size()-off)); err != nil {
		bf.Close()
		return fmt.Errorf("write %s: %w", badPath, err)
	}
	if err := bf.Sync(); err != nil {
		bf.Close()
		return fmt.Errorf("sync %s: %w", badPath, err)
	}
	if err := bf.Close(); err != nil {
		return err
	}
	return syncDir(badPath)
}
