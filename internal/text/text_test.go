package text

import (
	"strings"
	"testing"
)

// TestCheckName checks the name rules with the examples and with
// names people really use.
func TestCheckName(t *testing.T) {
	tests := []struct {
		name, want string // want: a part of the error, "" for none
	}{
		{"alice", ""},
		{"Zoë", ""},
		{"محمد", ""},
		{"王小明", ""},
		{"😀 dan", ""},
		{"a b", ""},
		{"\u202eecila", "bidirectional control characters (found U+202E)"},
		{"bob\u202a", "U+202A"},
		{"bob\u2066x", "U+2066"},
		{"bob\u2069", "U+2069"},
		{"\u200ebob", "U+200E"},
		{"bob\u200f", "U+200F"},
		{"bob\u061c", "U+061C"},
		{"\u200b", "zero-width characters (found U+200B)"},
		{"ali\u200cce", "U+200C"},
		{"ali\u200dce", "U+200D"},
		{"ali\u2060ce", "U+2060"},
		{"\ufeffalice", "U+FEFF"},
		{"\u3164", "at least one visible character"},
		{"\u2800\u2800", "at least one visible character"},
		{"\u00ad", "at least one visible character"},
	}
	for _, tt := range tests {
		err := CheckName("username", tt.name)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckName(%+q) = %v, want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckName(%+q) = %v, want an error containing %q", tt.name, err, tt.want)
		case err != nil && !strings.HasPrefix(err.Error(), "username "):
			t.Errorf("CheckName(%+q) = %v, want it to name the field", tt.name, err)
		}
	}
}

// TestVisible checks which texts show something.
func TestVisible(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"hi", true},
		{".", true},
		{"1", true},
		{"😀", true},
		{"\u2800", false},
		{"\u115f\u1160\u3164\uffa0", false},
		{" \t\n\u00a0\u3000", false},
		{"\u200b\u200d\u2060\ufeff", false},
		{"\u202e\u2066", false},
		{"\u0301", false},
		{"\u00ad", false},
		{"\u17b4\u17b5", false},
		{"\u2800x", true},
		{"", false},
	}
	for _, tt := range tests {
		if got := Visible(tt.s); got != tt.want {
			t.Errorf("Visible(%+q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

// TestNameAndMessage checks the trimming and the whole rules of a name and
// of a message's content, with the error each breach gets.
func TestNameAndMessage(t *testing.T) {
	long := strings.Repeat("é", MaxName+1)
	for _, tt := range []struct {
		field, in, out, err string
	}{
		{"username", "  ann \n", "ann", ""},
		{"username", " ", "", "username is required"},
		{"name", long, long, "name is longer than 32 characters"},
		{"username", "a\tb", "a\tb", "username must not contain control characters"},
		{"username", "\u202eecila", "\u202eecila", "bidirectional control characters"},
	} {
		out, err := Name(tt.field, tt.in)
		if out != tt.out || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("Name(%q, %q) = %q, %v; want %q, %q", tt.field, tt.in, out, err, tt.out, tt.err)
		}
	}
	for _, tt := range []struct {
		in, out, err string
		max          int
	}{
		{" two\r\nlines\rhere \n", "two\nlines\nhere", "", 20},
		{"tab\there", "tab\there", "", 20},
		{" \r\n ", "", "content is required", 20},
		{"12345", "12345", "content is longer than 4 characters", 4},
		{"bell\a", "bell\a", "content must not contain control characters other than newline and tab", 20},
		{"\u2800\u3164", "\u2800\u3164", "content must contain at least one visible character", 20},
	} {
		out, err := Message(tt.in, tt.max)
		if out != tt.out || (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("Message(%q, %d) = %q, %v; want %q, %q", tt.in, tt.max, out, err, tt.out, tt.err)
		}
	}
}
