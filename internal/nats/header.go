package nats

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// headerPreamble starts every header block: the version line.
const headerPreamble = "NATS/1.0"

// Header is a message's header block: keys, case-sensitive as NATS keeps
// them, to their values in order.
type Header map[string][]string

// Get returns the first value of key, or "" when there is none.
func (h Header) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Values returns every value of key.
func (h Header) Values(key string) []string { return h[key] }

// Set replaces the values of key with value.
func (h Header) Set(key, value string) { h[key] = []string{value} }

// Add appends value to the values of key.
func (h Header) Add(key, value string) { h[key] = append(h[key], value) }

// Del removes key.
func (h Header) Del(key string) { delete(h, key) }

// errBadHeader is wrapped by every error of ParseHeader.
var errBadHeader = errors.New("nats: bad header block")

// ParseHeader parses a header block as HMSG carries it (and as JetStream
// stores it): the line "NATS/1.0", optionally followed by a three-digit
// status code and a description (as in "NATS/1.0 503" or "NATS/1.0 100
// Idle Heartbeat"), then "Key: Value" lines, then an empty line, each line
// ending in CRLF. It returns the header (nil when it has no keys), the
// status (0 when none) and the description.
func ParseHeader(b []byte) (h Header, status int, desc string, err error) {
	first, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok || !bytes.HasPrefix(first, []byte(headerPreamble)) {
		return nil, 0, "", fmt.Errorf("%w: no %s line", errBadHeader, headerPreamble)
	}
	if st := first[len(headerPreamble):]; len(st) > 0 {
		if status, desc, err = parseStatus(st); err != nil {
			return nil, 0, "", err
		}
	}
	for {
		var line []byte
		line, rest, ok = bytes.Cut(rest, []byte("\r\n"))
		if !ok {
			return nil, 0, "", fmt.Errorf("%w: not ended by an empty line", errBadHeader)
		}
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		key := string(k)
		if !ok || !validHeaderKey(key) {
			return nil, 0, "", fmt.Errorf("%w: bad line %q", errBadHeader, line)
		}
		if h == nil {
			h = Header{}
		}
		h.Add(key, strings.TrimSpace(string(v)))
	}
	if len(rest) != 0 {
		return nil, 0, "", fmt.Errorf("%w: %d bytes after the empty line", errBadHeader, len(rest))
	}
	return h, status, desc, nil
}

// parseStatus parses " 503" or " 100 Idle Heartbeat" after the version.
func parseStatus(st []byte) (int, string, error) {
	if st[0] != ' ' || len(st) < 4 {
		return 0, "", fmt.Errorf("%w: bad status %q", errBadHeader, st)
	}
	code, d := st[1:4], st[4:]
	if len(d) > 0 && d[0] != ' ' {
		return 0, "", fmt.Errorf("%w: bad status %q", errBadHeader, st)
	}
	n := 0
	for _, c := range code {
		if c < '0' || c > '9' {
			return 0, "", fmt.Errorf("%w: bad status %q", errBadHeader, st)
		}
		n = n*10 + int(c-'0')
	}
	return n, strings.TrimSpace(string(d)), nil
}

// validHeaderKey reports whether k may be a header key: not empty, and
// printable ASCII without space or colon.
func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v may be a header value: no CR, LF or
// NUL, which would end the line or the block.
func validHeaderValue(v string) bool {
	return !strings.ContainsAny(v, "\r\n\x00")
}

// appendHeader appends h encoded as a header block, its keys sorted so the
// bytes are the same every time. It fails on a key or value that would
// break the block.
func appendHeader(b []byte, h Header) ([]byte, error) {
	b = append(b, headerPreamble+"\r\n"...)
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !validHeaderKey(k) {
			return nil, fmt.Errorf("nats: invalid header key %q", k)
		}
		for _, v := range h[k] {
			if !validHeaderValue(v) {
				return nil, fmt.Errorf("nats: invalid value of header %q", k)
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...), nil
}
