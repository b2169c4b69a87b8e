package record

import (
	"strings"
	"testing"
)

// TestParseID checks the parser on good ids and on every kind of bad one,
// and that FormatID gives back what ParseID read.
func TestParseID(t *testing.T) {
	tests := []struct {
		in      string
		epoch   int64
		seq     uint64
		wantErr string
	}{
		{"1-0", 1, 0, ""},
		{"0-1", 0, 1, ""},
		{"1764094637123-42", 1764094637123, 42, ""},
		{"9223372036854775807-18446744073709551615", 1<<63 - 1, 1<<64 - 1, ""},
		{"", 0, 0, "not of the form"},
		{"42", 0, 0, "not of the form"},
		{"-1-2", 0, 0, "not of the form"},
		{"1-", 0, 0, "not of the form"},
		{"1--2", 0, 0, "bad sequence number"},
		{"+1-2", 0, 0, "not of the form"},
		{"1-+2", 0, 0, "not of the form"},
		{"a-1", 0, 0, "bad epoch"},
		{"9223372036854775808-1", 0, 0, "bad epoch"},
		{"1-99999999999999999999999", 0, 0, "bad sequence number"},
		{"1-2-3", 0, 0, "bad sequence number"},
		{"1 -2", 0, 0, "bad epoch"},
		{"1-2 ", 0, 0, "bad sequence number"},
	}
	for _, tt := range tests {
		epoch, seq, err := ParseID(tt.in)
		if epoch != tt.epoch || seq != tt.seq || (err == nil) != (tt.wantErr == "") ||
			(err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("ParseID(%q) = %d, %d, %v; want %d, %d, error containing %q", tt.in, epoch, seq, err, tt.epoch, tt.seq, tt.wantErr)
		}
		if err == nil && FormatID(epoch, seq) != tt.in {
			t.Errorf("FormatID(ParseID(%q)) = %q", tt.in, FormatID(epoch, seq))
		}
	}
}

// TestParseIDQuotesAtMost40Bytes checks that the error about a long bad id
// quotes only its start, so that a hostile id cannot fill a log or a
// response.
func TestParseIDQuotesAtMost40Bytes(t *testing.T) {
	long := strings.Repeat("x", 1000)
	_, _, err := ParseID(long)
	want := `id "` + strings.Repeat("x", 40) + `…" is not of the form <epoch>-<seq>`
	if err == nil || err.Error() != want {
		t.Errorf("ParseID(1000 bytes) error = %v, want %s", err, want)
	}
}

// TestAppendID checks that AppendID appends to what dst holds.
func TestAppendID(t *testing.T) {
	if got := string(AppendID([]byte(`{"id":"`), 17, 4)); got != `{"id":"17-4` {
		t.Errorf("AppendID = %q", got)
	}
}
