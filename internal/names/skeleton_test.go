package names

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"
)

// TestSkeletonFolds checks that names that look alike have one skeleton,
// and what it is.
func TestSkeletonFolds(t *testing.T) {
	tests := []struct {
		names []string
		want  string
	}{
		{[]string{"alice", "Alice", "ALICE", "aLiCe"}, "alice"},
		{[]string{"ＡＬＩＣＥ", "ａｌｉｃｅ", "Ａlice"}, "alice"},
		{[]string{"bob_42", "ＢＯＢ＿４２"}, "bob_42"},
		{[]string{"straße", "STRAẞE", "Straße"}, "straße"},
		{[]string{"ΣΟΦΙΑ ΣΑΣ", "σοφια σας", "Σοφια Σας"}, "σοφια σασ"},
		{[]string{"Kelvin", "\u212Aelvin", "kelvin"}, "kelvin"},
		{[]string{"\u212Bsa", "Åsa", "åsa", "A\u030Asa"}, "åsa"},
		{[]string{"\u2126μέγα", "ΩΜΈΓΑ", "ωμέγα"}, "ωμέγα"},
		{[]string{"İsmail", "ismail", "Ismail", "ısmail"}, "ismail"},
		{[]string{"µ", "μ", "Μ"}, "μ"},
		{[]string{"ſam", "sam", "Sam"}, "sam"},
		{[]string{"José", "Jose\u0301", "JOSÉ", "JOSE\u0301"}, "josé"},
		{[]string{"Nguyễn", "Nguye\u0302\u0303n", "Nguyê\u0303n", "NGUYỄN"}, "nguyễn"},
		{[]string{"Việt", "Vie\u0323\u0302t", "Vi\u1EB9\u0302t"}, "việt"},
		{[]string{"ά", "\u1F71", "α\u0301", "Ά", "\u1FBB"}, "ά"},
		{[]string{"ᾳ", "α\u0345", "ᾼ"}, "ᾳ"},
		{[]string{"がくと", "か\u3099くと"}, "がくと"},
		{[]string{"パン", "ハ\u309Aン"}, "パン"},
		{[]string{"한글", "\u1112\u1161\u11AB\u1100\u1173\u11AF"}, "한글"},
		{[]string{"आज़ाद", "आ\u095Bाद"}, "आज\u093Cाद"},
		{[]string{"ঠাকোর", "ঠাক\u09C7\u09BEর"}, "ঠাকোর"},
		{[]string{"\uFA10", "\u585A"}, "\u585A"},
		{[]string{"שָׁלוֹם", "ש\u05B8\u05C1לוֹם", "ש\u05C1\u05B8לוֹם", "\uFB2Aָלוֹם"}, "ש\u05B8\u05C1לוֹם"},
		{[]string{"a b", " a b ", "a  b", "a\u00A0b", "a\u3000b", "a\u2003b", "a\u202Fb"}, "a b"},
		{[]string{"O'Brien", "O’Brien", "O‘Brien", "Oʼbrien", "Ｏ＇Ｂｒｉｅｎ"}, "o'brien"},
		{[]string{"jean-luc", "jean‐luc", "jean‑luc", "JEAN－LUC"}, "jean-luc"},
		{[]string{"¥en", "￥en"}, "¥en"},
		{[]string{"ㅋㅋ"}, "ㅋㅋ"},
		{[]string{"น้ำ"}, "น้ำ"},
	}
	for _, tt := range tests {
		for _, name := range tt.names {
			got, err := Skeleton(name)
			if err != nil || got != tt.want {
				t.Errorf("Skeleton(%+q) = %+q, %v; want %+q", name, got, err, tt.want)
			}
		}
	}
}

// TestSkeletonAccepts checks names people use.
func TestSkeletonAccepts(t *testing.T) {
	for _, name := range []string{
		"alice", "Zoë", "Øyvind", "Łukasz", "Ünal", "José María", "d.j. 42",
		"محمد", "王小明", "山田たろう", "カタカナー", "李 민준", "Kim 민준", "ㄅㄆ王",
		"Дмитрий", "Αλέξης", "Ali علي", "Yossi יוסי", "Anu अनु", "नमस्ते", "สมชาย",
		"😀 dan", "bob 🇫🇷", "✨", "x-ray", "user_1", "٣٤٥", "Ալիս", "ქართული",
	} {
		if _, err := Skeleton(name); err != nil {
			t.Errorf("Skeleton(%+q): %v", name, err)
		}
	}
}

// TestSkeletonRefuses checks refused names: the rule, and that the message
// names the character.
func TestSkeletonRefuses(t *testing.T) {
	tests := []struct {
		name string
		rule error
		want string // part of the message
	}{
		{"alice\u00AD", ErrInvisible, "U+00AD"},
		{"ali\u034Fce", ErrInvisible, "U+034F"},
		{"alice\u2061", ErrInvisible, "U+2061"},
		{"alice\u2062", ErrInvisible, "U+2062"},
		{"alice\u2063", ErrInvisible, "U+2063"},
		{"alice\u2064", ErrInvisible, "U+2064"},
		{"alice\u180E", ErrInvisible, "U+180E"},
		{"alice\uFE0F", ErrInvisible, "U+FE0F"},
		{"❤\uFE0F", ErrInvisible, "U+FE0F"},
		{"alice\U000E0041\U000E007F", ErrInvisible, "U+E0041"},
		{"\u3164alice", ErrInvisible, "U+3164"},
		{"alice\u115F", ErrInvisible, "U+115F"},
		{"alice\u1160", ErrInvisible, "U+1160"},
		{"alice\uFFA0", ErrInvisible, "U+FFA0"},
		{"alice\u200B", ErrInvisible, "U+200B"},
		{"ali\u200Dce", ErrInvisible, "U+200D"},
		{"\u202Eecila", ErrInvisible, "U+202E"},
		{"alice\u2066", ErrInvisible, "U+2066"},
		{"ali\u2060ce", ErrInvisible, "U+2060"},
		{"\uFEFFalice", ErrInvisible, "U+FEFF"},
		{"alice\u17B4", ErrInvisible, "U+17B4"},
		{"\u2800", ErrInvisible, "U+2800"},
		{"alice\U0001D173", ErrInvisible, "U+1D173"},
		{"ali\tce", ErrControl, "U+0009"},
		{"alice\n", ErrControl, "U+000A"},
		{"alice\u2028", ErrControl, "U+2028"},
		{"alice\u0085", ErrControl, "U+0085"},
		{"alice\uE000", ErrUnassigned, "U+E000"},
		{"alice\U000F0000", ErrUnassigned, "U+F0000"},
		{"alice\u0378", ErrUnassigned, "U+0378"},
		{"𝐚𝐥𝐢𝐜𝐞", ErrCompatibility, "U+1D41A"},
		{"𝔞lice", ErrCompatibility, "U+1D51E"},
		{"ⓐlice", ErrCompatibility, "U+24D0"},
		{"Ⓐlice", ErrCompatibility, "U+24B6"},
		{"🄰lice", ErrCompatibility, "U+1F130"},
		{"ﬁona", ErrCompatibility, "U+FB01"},
		{"a\u2160", ErrCompatibility, "U+2160"},
		{"a\u217C", ErrCompatibility, "U+217C"},
		{"alice™", ErrCompatibility, "U+2122"},
		{"ℓ", ErrCompatibility, "U+2113"},
		{"alice²", ErrCompatibility, "U+00B2"},
		{"aliceᵃ", ErrCompatibility, "U+1D43"},
		{"alice‼", ErrCompatibility, "U+203C"},
		{"alice…", ErrCompatibility, "U+2026"},
		{"ｱﾘｽ", ErrCompatibility, "U+FF71"},
		{"㍿", ErrCompatibility, "U+337F"},
		{"⼀", ErrCompatibility, "U+2F00"},
		{"ϲat", ErrCompatibility, "U+03F2"},
		{"\U0001FBF1", ErrCompatibility, "U+1FBF1"},
		{"i\u0307", ErrMark, "U+0307 after U+0069"},
		{"e\u0302\u0323", ErrMark, "U+0323"},
		{"a\u0338", ErrMark, "U+0338"},
		{"\u0301alice", ErrMark, "begin with a combining mark"},
		{"x \u0301", ErrMark, "U+0301 after U+0020"},
		{"д\u0306", ErrMark, "U+0306"},
		{"क\u094D\u094D", ErrMark, "repeat"},
		{"क\u0900\u0901\u0902\u093C\u0941", ErrMark, "more than 4"},
		{"аlice", ErrMixedScripts, "Latin and Cyrillic letters (found U+0430, Cyrillic)"},
		{"alicе", ErrMixedScripts, "found U+0435, Cyrillic"},
		{"pаypal", ErrMixedScripts, "U+0430"},
		{"αlice", ErrMixedScripts, "Latin and Greek letters (found U+03B1, Greek)"},
		{"ΑLICE", ErrMixedScripts, "U+03B1"},
		{"aլice", ErrMixedScripts, "Latin and Armenian"},
		{"Ꭺlice", ErrMixedScripts, "Cherokee"},
		{"Алиса Αλίκη", ErrMixedScripts, "Cyrillic and Greek"},
		{"Ali علي יוסי", ErrMixedScripts, "Hebrew"},
		{"كيم 민준", ErrMixedScripts, "Hangul"},
		{"x4৪", ErrMixedDigits, "U+09EA beside U+0030"},
		{"a1١", ErrMixedDigits, "U+0661"},
		{"", ErrEmpty, "at least one visible character"},
		{"   ", ErrEmpty, "at least one visible character"},
		{"\u3000", ErrEmpty, "at least one visible character"},
		{"\xff", ErrEncoding, "UTF-8"},
	}
	for _, tt := range tests {
		_, err := Skeleton(tt.name)
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, tt.rule) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Skeleton(%+q) = %v; want %v mentioning %q", tt.name, err, tt.rule, tt.want)
		}
	}
}

// TestInvisibleRanges refuses every character of the ranges the rules
// name, at either end of a name and inside it.
func TestInvisibleRanges(t *testing.T) {
	ranges := [][2]rune{
		{0x00AD, 0x00AD}, {0x034F, 0x034F}, {0x115F, 0x1160}, {0x17B4, 0x17B5},
		{0x180E, 0x180E}, {0x200B, 0x200F}, {0x202A, 0x202E}, {0x2060, 0x2064},
		{0x2066, 0x2069}, {0x3164, 0x3164}, {0xFE00, 0xFE0F}, {0xFEFF, 0xFEFF},
		{0xFFA0, 0xFFA0}, {0xE0000, 0xE007F}, {0xE0100, 0xE01EF},
	}
	for _, rg := range ranges {
		for r := rg[0]; r <= rg[1]; r++ {
			for _, name := range []string{"alice" + string(r), string(r) + "alice", "al" + string(r) + "ice"} {
				if _, err := Skeleton(name); !errors.Is(err, ErrInvisible) || !strings.Contains(err.Error(), fmt.Sprintf("U+%04X", r)) {
					t.Errorf("Skeleton(%+q) = %v, want ErrInvisible naming U+%04X", name, err, r)
				}
			}
		}
	}
}

// TestFoldEveryCharacter checks, for every code point a name may hold,
// that its skeleton is its own skeleton, and that every member of its
// case orbit (unicode.SimpleFold) has the same skeleton.
func TestFoldEveryCharacter(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		sk, err := Skeleton(string(r))
		if err != nil {
			continue
		}
		if again, err := Skeleton(sk); again != sk || err != nil {
			t.Errorf("%U: skeleton %+q has skeleton %+q, %v", r, sk, again, err)
		}
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if o, err := Skeleton(string(f)); err == nil && o != sk {
				t.Errorf("%U and %U fold together but have skeletons %+q and %+q", r, f, sk, o)
			}
		}
	}
}

// TestCompositions checks every pair of the composition table: written as
// a pair or as its composite, a name has one skeleton, its own skeleton's.
func TestCompositions(t *testing.T) {
	if len(compositions) != 941 || len(canonical) != 1120 {
		t.Fatalf("tables hold %d compositions and %d canonical mappings, want 941 and 1120", len(compositions), len(canonical))
	}
	if compositions[[2]rune{'e', 0x301}] != 'é' || string(canonical[0x212A]) != "K" || string(canonical[0x0958]) != "\u0915\u093C" {
		t.Fatal("tables do not hold é = e + U+0301, U+212A = K, U+0958 = U+0915 U+093C")
	}
	for p, c := range compositions {
		pair, err := Skeleton(string(p[:]))
		if err != nil {
			continue
		}
		if again, err := Skeleton(pair); again != pair || err != nil {
			t.Errorf("%U %U: skeleton %+q has skeleton %+q, %v", p[0], p[1], pair, again, err)
		}
		if one, err := Skeleton(string(c)); err == nil && one != pair {
			t.Errorf("%U %U has skeleton %+q but %U has %+q", p[0], p[1], pair, c, one)
		}
	}
}
