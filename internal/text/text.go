// Package text holds the rules for text people send: which characters a
// name may not contain (those that reorder or hide what a reader sees), and
// whether a message shows anything at all.
package text

import (
	"fmt"
	"unicode"
)

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
