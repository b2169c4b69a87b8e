package names

import (
	"errors"
	"testing"
)

// FuzzSkeleton checks, for any two names, that Skeleton never panics,
// that the skeleton of a skeleton is itself, and that a table refuses the
// second name to another identity exactly when the skeletons are equal.
func FuzzSkeleton(f *testing.F) {
	for _, seed := range [][2]string{
		{"alice", "Alice"}, {"ＡＬＩＣＥ", "alice"}, {"alice\u00AD", "alice"},
		{"аlice", "alice"}, {"e\u0301", "é"}, {"か\u3099", "が"}, {"ß", "ẞ"},
		{"\u212A", "k"}, {"ς", "Σ"}, {"O’Brien", "o'brien"}, {"a  b", "a b"},
		{"\u1112\u1161\u11AB", "한"}, {"ש\u05C1\u05B8", "ש\u05B8\u05C1"},
		{"x4৪", "x4"}, {"\xff", "a"}, {"\U000E0041", "😀"}, {"İ", "ı"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ska, erra := Skeleton(a)
		skb, errb := Skeleton(b)
		for _, c := range []struct {
			name, sk string
			err      error
		}{{a, ska, erra}, {b, skb, errb}} {
			var e *Error
			if c.err != nil && !errors.As(c.err, &e) {
				t.Fatalf("Skeleton(%+q): %v is not an *Error", c.name, c.err)
			}
			if c.err == nil {
				if again, err := Skeleton(c.sk); again != c.sk || err != nil {
					t.Fatalf("Skeleton(%+q) = %+q, whose skeleton is %+q, %v", c.name, c.sk, again, err)
				}
			}
		}
		if erra != nil || errb != nil {
			return
		}
		tab := New(Options{Hold: DefaultHold})
		if err := tab.Use(a, "A", t0); err != nil {
			t.Fatalf("Use(%+q) in an empty table: %v", a, err)
		}
		err := tab.Use(b, "B", t0)
		if held := errors.Is(err, ErrHeld); held != (ska == skb) || (err != nil && !held) {
			t.Fatalf("skeletons %+q and %+q: second Use = %v", ska, skb, err)
		}
	})
}
