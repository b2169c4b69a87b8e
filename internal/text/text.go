// Package text holds the rules for text people send: what a name and a
// message may be (Name, Message), which characters a name may not contain
// (those that reorder or hide what a reader sees), and whether a message
// shows anything at all.
package text

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxName is the longest name a person may give, in characters.
const MaxName = 32

// lineEnds turns CRLF and CR line ends into LF.
var lineEnds = strings.NewReplacer("\r\n", "\n", "\r", "\n")

// Name trims a person's name, given in the named field, and checks it: the
// one rule for every name the server accepts (posts, and any other input
// that carries a name). A name is 1 to MaxName characters with no control
// characters, no bidirectional controls and no zero-width characters, and
// shows at least one visible character, so that no name can pass itself
// off as another. The error names field.
func Name(field, name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return name, fmt.Errorf("%s is required", field)
	case utf8.RuneCountInString(name) > MaxName:
		return name, fmt.Errorf("%s is longer than %d characters", field, MaxName)
	case strings.ContainsFunc(name, unicode.IsControl):
		return name, fmt.Errorf("%s must not contain control characters", field)
	}
	return name, CheckName(field, name)
}

// Message trims a message's content, with its line ends made "\n", and
// checks it: 1 to max characters, no control characters other than newline
// and tab, and at least one visible character.
func Message(content string, max int) (string, error) {
	content = strings.TrimSpace(lineEnds.Replace(content))
	switch {
	case content == "":
		return content, errors.New("content is required")
	case utf8.RuneCountInString(content) > max:
		return content, fmt.Errorf("content is longer than %d characters", max)
	case strings.ContainsFunc(content, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }):
		return content, errors.New("content must not contain control characters other than newline and tab")
	case !Visible(content):
		return content, errors.New("content must contain at least one visible character")
	}
	return content, nil
}

// Invisible reports whether r draws nothing on its own: white space,
// control and format characters (zero-width and bidirectional controls
// among them), combining marks without a base, unassigned code points, and
// the letters and symbols that fonts draw as blanks (U+2800 BRAILLE
// PATTERN BLANK, the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0, the
// Khmer inherent vowels U+17B4 and U+17B5).
func Invisible(r rune) bool {
	switch r {
	case 0x2800, 0x115F, 0x1160, 0x3164, 0xFFA0, 0x17B4, 0x17B5:
		return true
	}
	return !unicode.In(r, unicode.L, unicode.N, unicode.P, unicode.S)
}

// Visible reports whether s holds at least one character that is not
// Invisible.
func Visible(s string) bool {
	for _, r := range s {
		if !Invisible(r) {
			return true
		}
	}
	return false
}

// IsBidiControl reports whether r is a bidirectional control: the
// embeddings, overrides and isolates U+202A–U+202E and U+2066–U+2069, the
// marks U+200E and U+200F, and ARABIC LETTER MARK U+061C. In a name they
// let "\u202eecila" read as "alice".
func IsBidiControl(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 || r == 0x200E || r == 0x200F || r == 0x061C
}

// IsZeroWidth reports whether r is a zero-width character: U+200B–U+200D
// (space, non-joiner, joiner), WORD JOINER U+2060 and the byte order mark
// U+FEFF. In a name they make "alice\u200b" a different name that looks
// the same.
func IsZeroWidth(r rune) bool {
	return r >= 0x200B && r <= 0x200D || r == 0x2060 || r == 0xFEFF
}

// CheckName returns an error, naming field and the offending code point,
// if name holds a bidirectional control or a zero-width character, or no
// visible character at all. Control characters, length and blank names are
// the caller's rules.
func CheckName(field, name string) error {
	for _, r := range name {
		switch {
		case IsBidiControl(r):
			return fmt.Errorf("%s must not contain bidirectional control characters (found U+%04X)", field, r)
		case IsZeroWidth(r):
			return fmt.Errorf("%s must not contain zero-width characters (found U+%04X)", field, r)
		}
	}
	if !Visible(name) {
		return fmt.Errorf("%s must contain at least one visible character", field)
	}
	return nil
}
