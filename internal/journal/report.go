package journal

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// RunRepair is the server's -repair mode: it checks the journal at path
// (Check) and writes what it found to out (Describe); with write it
// repairs it first (Repair, now naming the file the rest goes to). It
// returns an error, so that the command exits 1, when the journal is left
// in a state the server refuses, or cannot be read or repaired.
func RunRepair(path string, write bool, now time.Time, out io.Writer) error {
	var rep Report
	var moved string
	var err error
	if write {
		rep, moved, err = Repair(path, now)
	} else {
		rep, err = Check(path)
	}
	if err != nil {
		return err
	}
	return rep.Describe(out, moved)
}

// Describe writes to out what r found, for an operator: the journal's
// size, its first bad line and why, the good lines before it and what
// lies after it; and, moved being where Repair put the rest ("" if it was
// not repaired), what the server will start from. It returns an error
// when the journal is left in a state the server refuses to start on. A
// torn last line alone is not an error: the server drops it.
func (r Report) Describe(out io.Writer, moved string) error {
	lines := r.Good + r.Rest.Lines
	if r.Sound() {
		ids := "no records"
		if r.Good > 0 {
			ids = "ids " + r.First + " to " + r.Last
		}
		fmt.Fprintf(out, "journal %s: %d lines, %d bytes, %s: sound\n", r.Path, lines, r.Size, ids)
		return nil
	}
	bad := r.Bad
	reason := bad.Err.Error()
	if bad.Torn {
		reason = "torn last line (" + reason + ")"
	}
	fmt.Fprintf(out, "journal %s: %d lines, %d bytes\nline %d at byte %d: %s\n", r.Path, lines, r.Size, bad.Line, bad.Offset, reason)
	keep := "no line (the server starts a new epoch)"
	if r.Good > 0 {
		keep = fmt.Sprintf("lines 1-%d", r.Good)
		fmt.Fprintf(out, "  lines 1-%d are good (%d bytes): ids %s to %s\n", r.Good, r.GoodBytes, r.First, r.Last)
	}
	var parts []string
	epochs := slices.Sorted(maps.Keys(r.Rest.Epochs))
	for _, e := range epochs {
		parts = append(parts, fmt.Sprintf("%d with ids of epoch %d", r.Rest.Epochs[e], e))
	}
	if r.Rest.NoID > 0 {
		parts = append(parts, fmt.Sprintf("%d without an id", r.Rest.NoID))
	}
	fmt.Fprintf(out, "  lines %d-%d (%d bytes) from there on: %s\n", bad.Line, lines, r.Rest.Bytes, strings.Join(parts, ", "))
	if bad.OutOfOrder || len(epochs) > 1 {
		fmt.Fprintf(out, "  ids out of order: two servers may have written into this journal at once\n")
	}
	switch {
	case moved != "":
		fmt.Fprintf(out, "moved lines %d-%d to %s\njournal %s keeps %s; the server starts from there\n", bad.Line, lines, moved, r.Path, keep)
		return nil
	case bad.Torn:
		fmt.Fprintf(out, "the server drops a torn last line by itself and starts with %s\n", keep)
		return nil
	}
	fmt.Fprintf(out, "-repair-write keeps %s and moves lines %d-%d to %s.bad-<time>\n", keep, bad.Line, lines, r.Path)
	return fmt.Errorf("journal %s is damaged at line %d: the server will not start on it", r.Path, bad.Line)
}
