package journal

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDescribe checks the operator's report, byte for byte, for a sound
// journal, a torn tail, a damaged one before and after its repair, and
// which of them is an error.
func TestDescribe(t *testing.T) {
	damaged := Report{Path: "j", Size: 500, Good: 2, GoodBytes: 200, First: "7-1", Last: "7-2",
		Bad:  &LineError{Line: 3, Offset: 200, Err: errors.New("id 9-1 does not follow 7-2"), OutOfOrder: true},
		Rest: Rest{Lines: 3, Bytes: 300, Epochs: map[int64]int{9: 1, 7: 1}, NoID: 1}}
	tests := []struct {
		name  string
		r     Report
		moved string
		want  string
		fails bool
	}{
		{"sound", Report{Path: "j", Size: 200, Good: 2, First: "7-1", Last: "7-2"}, "",
			"journal j: 2 lines, 200 bytes, ids 7-1 to 7-2: sound\n", false},
		{"empty", Report{Path: "j"}, "", "journal j: 0 lines, 0 bytes, no records: sound\n", false},
		{"torn", Report{Path: "j", Size: 120, Good: 1, GoodBytes: 100, First: "7-1", Last: "7-1",
			Bad: &LineError{Line: 2, Offset: 100, Err: errors.New("no newline"), Torn: true}, Rest: Rest{Lines: 1, Bytes: 20, NoID: 1}}, "",
			"journal j: 2 lines, 120 bytes\nline 2 at byte 100: torn last line (no newline)\n  lines 1-1 are good (100 bytes): ids 7-1 to 7-1\n" +
				"  lines 2-2 (20 bytes) from there on: 1 without an id\nthe server drops a torn last line by itself and starts with lines 1-1\n", false},
		{"damaged", damaged, "",
			"journal j: 5 lines, 500 bytes\nline 3 at byte 200: id 9-1 does not follow 7-2\n  lines 1-2 are good (200 bytes): ids 7-1 to 7-2\n" +
				"  lines 3-5 (300 bytes) from there on: 1 with ids of epoch 7, 1 with ids of epoch 9, 1 without an id\n" +
				"  ids out of order: two servers may have written into this journal at once\n" +
				"-repair-write keeps lines 1-2 and moves lines 3-5 to j.bad-<time>\n", true},
		{"repaired", damaged, "j.bad-x",
			"journal j: 5 lines, 500 bytes\nline 3 at byte 200: id 9-1 does not follow 7-2\n  lines 1-2 are good (200 bytes): ids 7-1 to 7-2\n" +
				"  lines 3-5 (300 bytes) from there on: 1 with ids of epoch 7, 1 with ids of epoch 9, 1 without an id\n" +
				"  ids out of order: two servers may have written into this journal at once\n" +
				"moved lines 3-5 to j.bad-x\njournal j keeps lines 1-2; the server starts from there\n", false},
	}
	for _, tt := range tests {
		var out strings.Builder
		err := tt.r.Describe(&out, tt.moved)
		if out.String() != tt.want {
			t.Errorf("%s: Describe wrote\n%s\nwant\n%s", tt.name, out.String(), tt.want)
		}
		if (err != nil) != tt.fails {
			t.Errorf("%s: Describe = %v, want an error: %v", tt.name, err, tt.fails)
		}
	}
}

// TestRunRepair checks the -repair mode on a damaged journal: the check
// reports the bad line, changes nothing and is an error; with write it
// moves the rest aside, says so and is not; a second check finds the
// journal sound.
func TestRunRepair(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	good := testLine(testRecord(1, 1, "one")) + testLine(testRecord(1, 2, "two"))
	data := good + "{\"id\": oops}\n" + testLine(testRecord(1, 3, "three"))
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 20, 30, 5, 0, time.UTC)
	for _, tt := range []struct {
		name  string
		write bool
		want  string
		fails bool
		left  string
	}{
		{"check", false, "line 3 at byte " + strconv.Itoa(len(good)), true, data},
		{"write", true, "moved lines 3-4 to " + path + ".bad-20261201T203005Z", false, good},
		{"check again", false, "2 lines, " + strconv.Itoa(len(good)) + " bytes, ids 1-1 to 1-2: sound", false, good},
	} {
		var out strings.Builder
		err := RunRepair(path, tt.write, now, &out)
		if !strings.Contains(out.String(), tt.want) || (err != nil) != tt.fails {
			t.Errorf("%s: wrote %q, err %v; want %q and an error: %v", tt.name, out.String(), err, tt.want, tt.fails)
		}
		if got, _ := os.ReadFile(path); string(got) != tt.left {
			t.Errorf("%s: journal holds %q, want %q", tt.name, got, tt.left)
		}
	}
	if err := RunRepair(filepath.Join(t.TempDir(), "none"), false, now, io.Discard); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a journal that is not there: %v, want ErrNotExist", err)
	}
}
