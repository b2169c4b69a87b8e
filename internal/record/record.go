// Package record holds what an ordered log of records and the code around
// it share: a record's id, "<epoch>-<seq>", with the one parser and the one
// formatter the server has for it, and Commit, the report by which a store
// says that its next records are settled.
//
// An epoch names one history (a journal's, or an external log's); seq
// numbers the records of that history from 1, and an id with seq 0 names
// the point before its first record. Both parts are decimal, without signs;
// an epoch is never negative.
package record

import (
	"fmt"
	"strconv"
	"strings"
)

// maxQuoted is how many bytes of a bad id an error message quotes.
const maxQuoted = 40

// FormatID returns the id of record seq of the history that began at
// epoch.
func FormatID(epoch int64, seq uint64) string {
	return string(AppendID(make([]byte, 0, 24), epoch, seq))
}

// AppendID appends the id of record seq of epoch to dst.
func AppendID(dst []byte, epoch int64, seq uint64) []byte {
	dst = strconv.AppendInt(dst, epoch, 10)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, seq, 10)
}

// ParseID splits an id of the form "<epoch>-<seq>" into its parts. The
// error quotes at most the first 40 bytes of id.
func ParseID(id string) (epoch int64, seq uint64, err error) {
	e, s, ok := strings.Cut(id, "-")
	if !ok || e == "" || s == "" || e[0] == '+' || s[0] == '+' {
		return 0, 0, fmt.Errorf("id %q is not of the form <epoch>-<seq>", quote(id))
	}
	epoch, err = strconv.ParseInt(e, 10, 64)
	if err != nil || epoch < 0 {
		return 0, 0, fmt.Errorf("id %q has a bad epoch", quote(id))
	}
	seq, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("id %q has a bad sequence number", quote(id))
	}
	return epoch, seq, nil
}

// quote shortens id to maxQuoted bytes for an error message.
func quote(id string) string {
	if len(id) <= maxQuoted {
		return id
	}
	return id[:maxQuoted] + "…"
}

// Commit reports that a store has settled the next N records it holds, in
// order: the N oldest records it was handed and has not yet reported on
// (a journal: made durable when Err is nil, failed with Err otherwise), or,
// for a store whose records also arrive from elsewhere, the next N it has
// received and keeps for its reader, whose outcomes it keeps with them.
type Commit struct {
	// N is how many records this Commit covers.
	N int
	// Err is nil if the N records are settled as the store keeps them, or
	// why none of them is stored.
	Err error
}
