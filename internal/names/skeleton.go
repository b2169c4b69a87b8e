package names

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"unicode"
	"unicode/utf8"
)

// maxMarks is the longest run of combining marks a name may hold (the
// limit UTS #39 section 5.4 suggests).
const maxMarks = 4

// The rules a name can break. Every error of Skeleton is an *Error that
// wraps one of them.
var (
	// ErrEncoding: the name is not valid UTF-8.
	ErrEncoding = errors.New("name is not valid UTF-8")
	// ErrEmpty: the name has nothing but spaces.
	ErrEmpty = errors.New("name is empty")
	// ErrControl: a control character or a line or paragraph separator.
	ErrControl = errors.New("control character in name")
	// ErrInvisible: a character that draws nothing.
	ErrInvisible = errors.New("invisible character in name")
	// ErrUnassigned: an unassigned or private-use code point.
	ErrUnassigned = errors.New("unassigned character in name")
	// ErrCompatibility: a styled, enclosed or otherwise compatibility form
	// of a letter or digit.
	ErrCompatibility = errors.New("compatibility character in name")
	// ErrMark: a combining mark where none may stand.
	ErrMark = errors.New("misplaced combining mark in name")
	// ErrMixedScripts: letters of scripts that may not mix.
	ErrMixedScripts = errors.New("mixed scripts in name")
	// ErrMixedDigits: digits of more than one number system.
	ErrMixedDigits = errors.New("mixed number systems in name")
)

// Error is a refused name. Its message is a sentence fit for a 400
// response: it names the character at fault, as U+XXXX, and the rule.
type Error struct {
	// Rule is the rule broken: one of the Err values of this package.
	Rule error
	// Rune is the character at fault, or -1 when it is the whole name.
	Rune rune
	// msg is the message.
	msg string
}

// Error returns the message.
func (e *Error) Error() string { return e.msg }

// Unwrap returns the rule, so that errors.Is(err, ErrInvisible) works.
func (e *Error) Unwrap() error { return e.Rule }

// refuse returns an *Error for rule at r, with a message made of format
// and args.
func refuse(rule error, r rune, format string, args ...any) *Error {
	return &Error{Rule: rule, Rune: r, msg: fmt.Sprintf(format, args...)}
}

// Skeleton returns the form names are compared by, or an *Error that says
// why name is refused. Two names are one name when their skeletons are
// equal. The skeleton of a skeleton is itself. See the package comment for
// the rules.
func Skeleton(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", refuse(ErrEncoding, -1, "name is not valid UTF-8")
	}
	rs := make([]rune, 0, len(name))
	for _, r := range name {
		if err := checkRune(r); err != nil {
			return "", err
		}
		start := len(rs)
		rs = appendFold(rs, r)
		for _, f := range rs[start:] {
			if unicode.Is(compatibilityForms, f) {
				return "", refuse(ErrCompatibility, r, "name must not contain styled, enclosed or other compatibility forms of letters, digits or punctuation (found %s); write the plain character", code(r))
			}
		}
	}
	rs = collapseSpaces(normalize(rs))
	if len(rs) == 0 {
		return "", refuse(ErrEmpty, -1, "name must contain at least one visible character")
	}
	if err := checkMarks(rs); err != nil {
		return "", err
	}
	if err := checkScripts(rs); err != nil {
		return "", err
	}
	if err := checkDigits(rs); err != nil {
		return "", err
	}
	return string(rs), nil
}

// code writes r as U+XXXX.
func code(r rune) string { return fmt.Sprintf("U+%04X", r) }

// checkRune refuses the characters no name may hold whatever surrounds
// them: controls, invisible characters, unassigned and private-use code
// points.
func checkRune(r rune) *Error {
	switch {
	case unicode.In(r, unicode.Cc, unicode.Zl, unicode.Zp):
		return refuse(ErrControl, r, "name must not contain control characters or line breaks (found %s)", code(r))
	case Invisible(r):
		return refuse(ErrInvisible, r, "name must not contain invisible characters (found %s): they let one name pass for another", code(r))
	case !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Zs):
		return refuse(ErrUnassigned, r, "name must not contain unassigned or private-use characters (found %s)", code(r))
	}
	return nil
}

// Invisible reports whether r is a character a name may not hold because
// it draws nothing: the default-ignorable code points (format characters
// such as U+00AD SOFT HYPHEN, the zero-width characters, bidirectional
// controls and invisible operators U+2061–U+2064, variation selectors, tag
// characters, U+034F, U+180E, the Hangul fillers U+115F, U+1160, U+3164
// and U+FFA0, the Khmer inherent vowels U+17B4 and U+17B5) and U+2800
// BRAILLE PATTERN BLANK.
func Invisible(r rune) bool {
	return r == 0x2800 || unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

// appendFold appends to dst the folded form of r: its canonical
// equivalent (Normalization Form C), with full-width forms made plain,
// spaces made U+0020, typographic apostrophes and hyphens made ASCII, and
// case folded.
func appendFold(dst []rune, r rune) []rune {
	if seq, ok := canonical[r]; ok {
		for _, x := range seq {
			dst = append(dst, foldRune(x))
		}
		return dst
	}
	return append(dst, foldRune(r))
}

// fullwidthSigns holds the plain forms of U+FFE0–U+FFE6.
var fullwidthSigns = [...]rune{0xA2, 0xA3, 0xAC, 0xAF, 0xA6, 0xA5, 0x20A9}

// foldRune folds one character that Normalization Form C leaves alone.
// Case folding maps every member of a unicode.SimpleFold orbit to the
// same member: the lower case of its upper case, so that K (U+212A KELVIN
// SIGN), K and k are all k, ẞ and ß are ß, Σ, σ and ς are σ, and İ, ı, I
// and i are all i.
func foldRune(r rune) rune {
	switch {
	case r >= 0xFF01 && r <= 0xFF5E:
		r -= 0xFF01 - 0x21
	case r >= 0xFFE0 && r <= 0xFFE6:
		r = fullwidthSigns[r-0xFFE0]
	case r == 0x1680: // OGHAM SPACE MARK draws a line: not a space
	case unicode.Is(unicode.Zs, r):
		return ' '
	case r == 0x2018 || r == 0x2019 || r == 0x02BC:
		return '\''
	case r == 0x2010 || r == 0x2011:
		return '-'
	case unicode.Is(unicode.M, r): // U+0345 has case mappings, but is a mark
		return r
	}
	return unicode.ToLower(unicode.ToUpper(r))
}

// normalize composes what Normalization Form C composes (the pairs of
// compositionData, and Hangul jamo into syllables) and puts every run of
// non-spacing marks in code point order, until neither changes anything.
// Ordering the marks is coarser than Unicode's canonical ordering: it
// makes one name of any two that differ only in the order of stacked
// marks.
func normalize(rs []rune) []rune {
	for {
		next := sortMarks(compose(rs))
		if slices.Equal(next, rs) {
			return next
		}
		rs = next
	}
}

// compose returns rs with each composable pair replaced by its composite,
// left to right, so that chains (U+0CC6 U+0CC2 U+0CD5) compose fully.
func compose(rs []rune) []rune {
	out := make([]rune, 0, len(rs))
	for _, r := range rs {
		if n := len(out); n > 0 {
			if c, ok := composePair(out[n-1], r); ok {
				out[n-1] = foldRune(c)
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// Hangul syllable composition (The Unicode Standard, section 3.12).
const (
	hangulS = 0xAC00
	hangulL = 0x1100
	hangulV = 0x1161
	hangulT = 0x11A7
	countL  = 19
	countV  = 21
	countT  = 28
	countS  = countL * countV * countT
)

// composePair returns the character a followed by b compose into, if any.
func composePair(a, b rune) (rune, bool) {
	switch {
	case a >= hangulL && a < hangulL+countL && b >= hangulV && b < hangulV+countV:
		return hangulS + ((a-hangulL)*countV+(b-hangulV))*countT, true
	case a >= hangulS && a < hangulS+countS && (a-hangulS)%countT == 0 && b > hangulT && b < hangulT+countT:
		return a + (b - hangulT), true
	}
	c, ok := compositions[[2]rune{a, b}]
	return c, ok
}

// sortMarks returns rs with every run of non-spacing and enclosing marks
// in code point order.
func sortMarks(rs []rune) []rune {
	out := slices.Clone(rs)
	for i := 0; i < len(out); {
		j := i
		for j < len(out) && unicode.In(out[j], unicode.Mn, unicode.Me) {
			j++
		}
		if j-i > 1 {
			sort.Slice(out[i:j], func(a, b int) bool { return out[i+a] < out[i+b] })
		}
		i = max(j, i+1)
	}
	return out
}

// collapseSpaces drops leading and trailing spaces and makes every run of
// spaces one (a page shows "a  b" as "a b").
func collapseSpaces(rs []rune) []rune {
	out := rs[:0]
	for _, r := range rs {
		if r == ' ' && (len(out) == 0 || out[len(out)-1] == ' ') {
			continue
		}
		out = append(out, r)
	}
	if n := len(out); n > 0 && out[n-1] == ' ' {
		out = out[:n-1]
	}
	return out
}

// checkMarks refuses combining marks that stand on nothing, on a Latin,
// Greek or Cyrillic letter or a script-neutral character (what is left
// there after composition has no single-character form, or is a stack
// that spoofs one), more than maxMarks in a row, or the same mark twice
// in a row.
func checkMarks(rs []rune) *Error {
	run, base := 0, rune(-1)
	for i, r := range rs {
		if !unicode.Is(unicode.M, r) {
			run, base = 0, r
			continue
		}
		run++
		switch {
		case base < 0:
			return refuse(ErrMark, r, "name must not begin with a combining mark (found %s)", code(r))
		case markless(base):
			return refuse(ErrMark, r, "name must not put combining marks on Latin, Greek or Cyrillic letters, digits or symbols (found %s after %s); write the accented letter as one character", code(r), code(base))
		case run > maxMarks:
			return refuse(ErrMark, r, "name must not stack more than %d combining marks (found %s)", maxMarks, code(r))
		case rs[i-1] == r:
			return refuse(ErrMark, r, "name must not repeat a combining mark (found %s twice)", code(r))
		}
	}
	return nil
}

// markless reports whether a combining mark may not follow base: a letter
// of Latin, Greek or Cyrillic, whose accented letters all have
// single-character forms, or a script-neutral character.
func markless(base rune) bool {
	switch scriptOf(base) {
	case "Latin", "Greek", "Cyrillic", "Common", "Inherited", "":
		return true
	}
	return false
}

// checkDigits refuses a name whose decimal digits come from more than one
// number system (UTS #39 section 5.3: "৪" beside "4" reads as "84").
func checkDigits(rs []rune) *Error {
	first := rune(-1)
	for _, r := range rs {
		if !unicode.Is(unicode.Nd, r) {
			continue
		}
		zero := digitZero(r)
		if first < 0 {
			first = zero
		} else if zero != first {
			return refuse(ErrMixedDigits, r, "name must not mix digits of different number systems (found %s beside %s)", code(r), code(first))
		}
	}
	return nil
}

// digitZero returns the zero of decimal digit r's number system: Unicode
// encodes each system's digits as a run of ten, 0 to 9, and runs of
// systems that follow each other start at multiples of ten from the first.
func digitZero(r rune) rune {
	start := r
	for unicode.Is(unicode.Nd, start-1) {
		start--
	}
	return start + (r-start)/10*10
}
