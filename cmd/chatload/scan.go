package main

import (
	"bytes"
	"time"
)

// msgID is a parsed message id "<epoch>-<seq>".
type msgID struct {
	epoch, seq uint64
}

// less orders ids by (epoch, seq).
func (a msgID) less(b msgID) bool {
	if a.epoch != b.epoch {
		return a.epoch < b.epoch
	}
	return a.seq < b.seq
}

// parseMsgID parses "<epoch>-<seq>" (both decimal).
func parseMsgID(b []byte) (msgID, bool) {
	i := bytes.IndexByte(b, '-')
	if i <= 0 {
		return msgID{}, false
	}
	e, ok1 := parseUint(b[:i])
	s, ok2 := parseUint(b[i+1:])
	return msgID{e, s}, ok1 && ok2
}

// parseUint parses a non-empty decimal number of at most 19 digits.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// jsonStringField returns the raw (still escaped) value of the first string
// member named by key, given as `"name":"`, in a single-line JSON object, as
// the server writes it (no spaces around the colon).
func jsonStringField(data, key []byte) ([]byte, bool) {
	i := bytes.Index(data, key)
	if i < 0 {
		return nil, false
	}
	v := data[i+len(key):]
	for j := 0; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return v[:j], true
		}
	}
	return nil, false
}

// scanUint reads a decimal number at the start of b and returns it with the
// rest of b.
func scanUint(b []byte) (uint64, []byte, bool) {
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	n, ok := parseUint(b[:i])
	return n, b[i:], ok
}

// parseRFC3339Nano parses "YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm)" into Unix
// nanoseconds without allocating; anything else falls back to time.Parse.
func parseRFC3339Nano(b []byte) (int64, bool) {
	if t, ok := fastRFC3339(b); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

// fastRFC3339 is the allocation-free path of parseRFC3339Nano.
func fastRFC3339(b []byte) (int64, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't') || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	num := func(s []byte) (int64, bool) {
		n, ok := parseUint(s)
		return int64(n), ok
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || day > 31 ||
		hour > 23 || minute > 59 || sec > 60 {
		return 0, false
	}
	rest := b[19:]
	var nanos int64
	if len(rest) > 0 && rest[0] == '.' {
		rest = rest[1:]
		digits := 0
		for digits < len(rest) && rest[digits] >= '0' && rest[digits] <= '9' {
			if digits < 9 {
				nanos = nanos*10 + int64(rest[digits]-'0')
			}
			digits++
		}
		if digits == 0 {
			return 0, false
		}
		for k := digits; k < 9; k++ {
			nanos *= 10
		}
		rest = rest[digits:]
	}
	var offset int64
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, okh := num(rest[1:3])
		om, okm := num(rest[4:6])
		if !okh || !okm || oh > 23 || om > 59 {
			return 0, false
		}
		offset = (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}
	secs := daysFromCivil(year, month, day)*86400 + hour*3600 + minute*60 + sec - offset
	return secs*1e9 + nanos, true
}

// daysFromCivil returns the number of days from 1970-01-01 to the given
// proleptic Gregorian date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}
