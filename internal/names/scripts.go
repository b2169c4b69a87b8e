package names

import (
	"slices"
	"strings"
	"unicode"
)

// compatibilityForms holds the characters a name may not hold because
// they are another character in disguise (their Unicode compatibility
// decomposition is a plain letter, digit or punctuation): see the package
// comment for the list. It is checked after folding, so the full-width
// ASCII forms and KELVIN, OHM and ANGSTROM SIGN, which fold to plain
// characters, pass.
var compatibilityForms = &unicode.RangeTable{
	R16: []unicode.Range16{
		{Lo: 0x00AA, Hi: 0x00AA, Stride: 1}, // ª
		{Lo: 0x00B2, Hi: 0x00B3, Stride: 1}, // ² ³
		{Lo: 0x00B9, Hi: 0x00BA, Stride: 1}, // ¹ º
		{Lo: 0x00BC, Hi: 0x00BE, Stride: 1}, // ¼ ½ ¾
		{Lo: 0x0132, Hi: 0x0133, Stride: 1}, // Ĳ ĳ
		{Lo: 0x013F, Hi: 0x0140, Stride: 1}, // Ŀ ŀ
		{Lo: 0x0149, Hi: 0x0149, Stride: 1}, // ŉ
		{Lo: 0x01C4, Hi: 0x01CC, Stride: 1}, // Ǆ … ǌ
		{Lo: 0x01F1, Hi: 0x01F3, Stride: 1}, // Ǳ ǲ ǳ
		{Lo: 0x02B0, Hi: 0x02B8, Stride: 1}, // ʰ … ʸ
		{Lo: 0x02E0, Hi: 0x02E4, Stride: 1}, // ˠ … ˤ
		{Lo: 0x03D2, Hi: 0x03D4, Stride: 1}, // ϒ ϓ ϔ
		{Lo: 0x03F2, Hi: 0x03F2, Stride: 1}, // ϲ (and Ϲ, which folds to it)
		{Lo: 0x1D2C, Hi: 0x1D6A, Stride: 1}, // ᴬ … ᵪ
		{Lo: 0x1D78, Hi: 0x1D78, Stride: 1}, // ᵸ
		{Lo: 0x1D9B, Hi: 0x1DBF, Stride: 1}, // ᶛ … ᶿ
		{Lo: 0x2024, Hi: 0x2026, Stride: 1}, // ․ ‥ …
		{Lo: 0x2033, Hi: 0x2034, Stride: 1}, // ″ ‴
		{Lo: 0x2036, Hi: 0x2037, Stride: 1}, // ‶ ‷
		{Lo: 0x203C, Hi: 0x203C, Stride: 1}, // ‼
		{Lo: 0x2047, Hi: 0x2049, Stride: 1}, // ⁇ ⁈ ⁉
		{Lo: 0x2057, Hi: 0x2057, Stride: 1}, // ⁗
		{Lo: 0x2070, Hi: 0x209F, Stride: 1}, // superscripts and subscripts
		{Lo: 0x20A8, Hi: 0x20A8, Stride: 1}, // ₨
		{Lo: 0x2100, Hi: 0x218F, Stride: 1}, // letterlike symbols, number forms
		{Lo: 0x2460, Hi: 0x24FF, Stride: 1}, // enclosed alphanumerics
		{Lo: 0x2C7C, Hi: 0x2C7D, Stride: 1}, // ⱼ ⱽ
		{Lo: 0x2E80, Hi: 0x2FDF, Stride: 1}, // CJK and Kangxi radicals
		{Lo: 0x3038, Hi: 0x303A, Stride: 1}, // Hangzhou numerals
		{Lo: 0x309B, Hi: 0x309C, Stride: 1}, // spacing voiced sound marks
		{Lo: 0x309F, Hi: 0x309F, Stride: 1}, // ゟ
		{Lo: 0x30FF, Hi: 0x30FF, Stride: 1}, // ヿ
		{Lo: 0x3190, Hi: 0x319F, Stride: 1}, // kanbun
		{Lo: 0x3200, Hi: 0x33FF, Stride: 1}, // enclosed CJK, CJK compatibility
		{Lo: 0xA69C, Hi: 0xA69D, Stride: 1}, // ꚜ ꚝ
		{Lo: 0xA770, Hi: 0xA770, Stride: 1}, // ꝰ
		{Lo: 0xA7F2, Hi: 0xA7F4, Stride: 1}, // ꟲ ꟳ ꟴ
		{Lo: 0xA7F8, Hi: 0xA7F9, Stride: 1}, // ꟸ ꟹ
		{Lo: 0xAB5C, Hi: 0xAB5F, Stride: 1}, // ꭜ … ꭟ
		{Lo: 0xAB69, Hi: 0xAB69, Stride: 1}, // ꭩ
		{Lo: 0xFB00, Hi: 0xFDFF, Stride: 1}, // ligatures, Arabic presentation forms
		{Lo: 0xFE10, Hi: 0xFE1F, Stride: 1}, // vertical forms
		{Lo: 0xFE30, Hi: 0xFEFF, Stride: 1}, // CJK compatibility, small and Arabic forms
		{Lo: 0xFF00, Hi: 0xFFEF, Stride: 1}, // half- and full-width forms left after folding
	},
	R32: []unicode.Range32{
		{Lo: 0x10780, Hi: 0x107BA, Stride: 1}, // modifier letters
		{Lo: 0x1D400, Hi: 0x1D7FF, Stride: 1}, // mathematical alphanumerics
		{Lo: 0x1EE00, Hi: 0x1EEFF, Stride: 1}, // Arabic mathematical letters
		{Lo: 0x1F100, Hi: 0x1F14F, Stride: 1}, // enclosed alphanumerics
		{Lo: 0x1F16A, Hi: 0x1F16C, Stride: 1}, // raised MC MD MR
		{Lo: 0x1F190, Hi: 0x1F190, Stride: 1}, // squared DJ
		{Lo: 0x1FBF0, Hi: 0x1FBF9, Stride: 1}, // segmented digits
	},
	LatinOffset: 4,
}

// script is one of unicode.Scripts.
type script struct {
	name  string
	table *unicode.RangeTable
}

// scripts lists unicode.Scripts, the ones names most often use first so
// that scriptOf finds them soonest, then the rest by name.
var scripts = func() []script {
	first := []string{"Latin", "Common", "Inherited", "Han", "Cyrillic", "Greek",
		"Arabic", "Hiragana", "Katakana", "Hangul", "Devanagari", "Hebrew", "Thai"}
	var rest []string
	for name := range unicode.Scripts {
		if !slices.Contains(first, name) {
			rest = append(rest, name)
		}
	}
	slices.Sort(rest)
	var out []script
	for _, name := range append(first, rest...) {
		out = append(out, script{name, unicode.Scripts[name]})
	}
	return out
}()

// scriptOf returns the name of r's script (its Unicode Script property),
// or "" for an unassigned code point.
func scriptOf(r rune) string {
	for _, s := range scripts {
		if unicode.Is(s.table, r) {
			return s.name
		}
	}
	return ""
}

// recommended holds the scripts UAX #31 recommends for identifiers (its
// Table 4, less Common and Inherited), less the ones that may not join
// Latin because their letters pass for Latin ones: Cyrillic and Greek (as
// UTS #39's Moderately Restrictive level says) and Armenian (օ, ս, հ, ց
// pass for o, u, h, g).
var recommended = map[string]bool{
	"Arabic": true, "Bengali": true, "Bopomofo": true, "Devanagari": true,
	"Ethiopic": true, "Georgian": true, "Gujarati": true, "Gurmukhi": true,
	"Han": true, "Hangul": true, "Hebrew": true, "Hiragana": true,
	"Kannada": true, "Katakana": true, "Khmer": true, "Lao": true,
	"Malayalam": true, "Myanmar": true, "Oriya": true, "Sinhala": true,
	"Tamil": true, "Telugu": true, "Thaana": true, "Thai": true, "Tibetan": true,
}

// scriptsMix reports whether a name may hold letters of all of set, a
// set of scripts other than Common and Inherited. It applies UTS #39's
// Moderately Restrictive level, with Armenian kept apart from Latin too:
// one script; or Han with Hiragana and Katakana, with Bopomofo, or with
// Hangul (how Japanese, Chinese and Korean are written), with or without
// Latin; or Latin with one other recommended script.
func scriptsMix(set []string) bool {
	var others []string
	for _, s := range set {
		if s != "Latin" {
			others = append(others, s)
		}
	}
	if len(set) <= 1 || within(others, "Han", "Hiragana", "Katakana") ||
		within(others, "Han", "Bopomofo") || within(others, "Han", "Hangul") {
		return true
	}
	return len(others) == 1 && len(set) == 2 && recommended[others[0]]
}

// within reports whether every member of set is one of allowed.
func within(set []string, allowed ...string) bool {
	for _, s := range set {
		if !slices.Contains(allowed, s) {
			return false
		}
	}
	return true
}

// checkScripts refuses a name whose letters come from scripts that may
// not mix (scriptsMix), naming the first character of the script that
// breaks the mix: in "аlice" (Cyrillic а) it is U+0430, whichever comes
// first, because Latin counts as the name's first script when present.
func checkScripts(rs []rune) *Error {
	var order []string
	firstRune := map[string]rune{}
	for _, r := range rs {
		s := scriptOf(r)
		if s == "Common" || s == "Inherited" || s == "" {
			continue
		}
		if _, seen := firstRune[s]; !seen {
			firstRune[s] = r
			order = append(order, s)
		}
	}
	if scriptsMix(order) {
		return nil
	}
	if i := slices.Index(order, "Latin"); i > 0 {
		order = append([]string{"Latin"}, slices.Delete(order, i, i+1)...)
	}
	for k := 2; k <= len(order); k++ {
		if !scriptsMix(order[:k]) {
			bad := order[k-1]
			return refuse(ErrMixedScripts, firstRune[bad], "name must not mix %s and %s letters (found %s, %s); write it in one script",
				order[0], bad, code(firstRune[bad]), strings.ReplaceAll(bad, "_", " "))
		}
	}
	return refuse(ErrMixedScripts, -1, "name must not mix scripts; write it in one script")
}
