// Package names decides when two names are one name, and who holds which.
//
// # Skeletons
//
// Names compare by their Skeleton, so that two names that look alike are
// one name. A skeleton is the name
//
//   - case-folded with Unicode simple case folding: each character becomes
//     the lower case of its upper case, so Alice is alice, ẞ is ß, Σ and ς
//     are σ, K (U+212A KELVIN SIGN) is k, and İ and ı are i;
//   - in Normalization Form C, from the tables of ucd.go: é written as e
//     and U+0301 is é, が written as か and U+3099 is が, Hangul jamo are
//     composed into syllables, U+212B ANGSTROM SIGN is å and the CJK
//     compatibility ideographs are their unified ideographs; runs of
//     non-spacing marks are also put in code point order;
//   - with full-width forms folded: U+FF01–U+FF5E are ASCII (ＡＬＩＣＥ is
//     alice) and U+FFE0–U+FFE6 are ¢ £ ¬ ¯ ¦ ¥ ₩;
//   - with every space character (U+00A0, U+2000–U+200A, U+3000, …) made
//     U+0020, runs of spaces made one and spaces at the ends dropped;
//   - with the apostrophes U+2018, U+2019 and U+02BC made ' and the
//     hyphens U+2010 and U+2011 made -, as phones and word processors
//     substitute them.
//
// The standard library has no Normalization Form KC, so the other
// compatibility forms are refused rather than folded: ª º ¹ ² ³ ¼ ½ ¾,
// the Latin ligatures and digraphs Ĳ Ŀ ŉ Ǆ–ǌ Ǳ–ǳ ﬀ–ﬆ, superscript and
// modifier letters (ʰ ᴬ ᵃ ᶜ …), the Greek symbols ϒ ϓ ϔ ϲ, ․ ‥ … ″ ‴ ‼
// ⁇ ⁈ ⁉ ₨, superscripts and subscripts U+2070–U+209F, letterlike symbols
// and number forms U+2100–U+218F (ℂ, ℓ, ™, Ⅻ, ⅼ), enclosed alphanumerics
// (①, ⓐ, 🄰), the CJK and Kangxi radicals, enclosed CJK and CJK
// compatibility characters U+3200–U+33FF, kanbun, the Hangzhou numerals,
// the presentation, small and CJK compatibility forms U+FB00–U+FDFF and
// U+FE30–U+FEFF, vertical forms, the half-width forms U+FF61–U+FFDC and U+FFE8–U+FFEE,
// mathematical alphanumerics U+1D400–U+1D7FF (𝐚𝐥𝐢𝐜𝐞) and U+1EE00–U+1EEFF,
// and the segmented digits U+1FBF0–U+1FBF9. Two compatibility forms
// that people write on purpose stay as they are: the Hangul compatibility
// jamo (ㅋㅋ) and Thai and Lao SARA AM.
//
// A name is refused outright (never stripped) when it holds
//
//   - a control character, or a line or paragraph separator;
//   - an invisible character (see Invisible): soft hyphen, U+034F, the
//     invisible operators U+2061–U+2064, U+180E, variation selectors, tag
//     characters, the Hangul fillers, zero-width and bidirectional
//     controls, word joiner, byte order mark, and every other
//     default-ignorable or format (Cf) character;
//   - an unassigned or private-use code point;
//   - a compatibility form listed above;
//   - a combining mark that stands on nothing, or on a Latin, Greek or
//     Cyrillic letter or a script-neutral character once composition is
//     done (every accented letter these scripts use has a one-character
//     form, and what is left is a spoof such as i with U+0307), more than
//     four marks in a row, or the same mark twice in a row;
//   - letters of scripts that may not mix, by UTS #39's Moderately
//     Restrictive level: a name is in one script; or in Han with kana,
//     Bopomofo or Hangul, with or without Latin; or in Latin and one other
//     script that UAX #31 recommends, except Cyrillic and Greek and, here,
//     Armenian too (օ and ս pass for o and u). So аlice (Cyrillic а) is
//     refused while Алиса, Αλίκη, 山田たろう, Kim 민준 and Ali علي pass.
//     Digits, spaces, punctuation and symbols belong to no script (Common)
//     and combining marks to their base (Inherited);
//   - decimal digits of more than one number system (4 with ৪).
//
// Refusals are *Error values whose messages name the character, as
// U+XXXX, and the rule, fit for a 400 response.
//
// # Holds
//
// A Table says who holds which name. A name (by skeleton) is held by the
// identity that last used it while that identity has a stream open with
// it and for a hold time after its last use; a request without an
// identity may use a free name but holds nothing. A Table is safe for
// concurrent use: one mutex guards it, and with a file the writes to it.
//
// # The file
//
// OpenFile keeps a Table in a file (mode 0600) of JSON lines, one per
// change: a hold taken, as a Record, synced before the change is made; a
// hold released (freed, given up for a newer name, or evicted), synced
// likewise; a use of a held name, written when its form changes or a
// minute after the last use written, not synced. Appending costs one short
// write per change, where rewriting the whole file, as package ban does
// for its few bans, would cost the whole table for each new hold. The file
// is rewritten with one line per hold (to a temporary file, synced,
// renamed over it, its directory synced) when it is opened, by Save and
// Close, and once it has grown past twice the holds. Expiry writes
// nothing: a hold read back after its end is dropped. A Record is also
// what a key/value store keeps for a hold, under Key(skeleton).
//
// # Sharing
//
// A Table may share its holds with the tables of other servers, the nodes
// of a cluster, through a Shared store (Share) in place of a file: it
// writes each change there before making it, and the store refuses a name
// another identity holds in it. The other servers' changes reach the table
// through Apply. A hold that open streams carry is written with Lease as
// its lifetime and written again by Save; others live their hold time.
package names
