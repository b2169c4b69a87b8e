package journal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCheckAgreesWithOpen checks, over sound, torn and damaged files, that
// Check finds the line recovery stops at and that Starts says whether Open
// succeeds, so the offline check and the server judge lines alike.
func TestCheckAgreesWithOpen(t *testing.T) {
	m := func(epoch int64, seq uint64) string { return testLine(testRecord(epoch, seq, "hi")) }
	tests := []struct {
		name     string
		lines    []string
		wantGood int
		wantBad  int // 0: sound
		torn     bool
	}{
		{"empty", nil, 0, 0, false},
		{"sound", []string{m(1, 1), m(1, 2), m(1, 5)}, 3, 0, false},
		{"torn tail", []string{m(1, 1), m(1, 2), `{"id":"1-3","con`}, 2, 3, true},
		{"no trailing newline", []string{m(1, 1), strings.TrimSuffix(m(1, 2), "\n")}, 1, 2, true},
		{"invalid JSON in the middle", []string{m(1, 1), "not json\n", m(1, 3)}, 1, 2, false},
		{"empty line in the middle", []string{m(1, 1), "\n", m(1, 3)}, 1, 2, false},
		{"unparseable id", []string{m(1, 1), `{"id":"x"}` + "\n", m(1, 3)}, 1, 2, false},
		{"decreasing id on the last line", []string{m(1, 1), m(1, 5), m(1, 3)}, 2, 3, false},
		{"bad first line", []string{"{\n", m(1, 1)}, 0, 1, false},
		{"second epoch", []string{m(1, 1), m(2, 1), m(1, 2)}, 1, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chat.jsonl")
			data := strings.Join(tt.lines, "")
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			rep, err := Check(path)
			if err != nil {
				t.Fatal(err)
			}
			gotBad := 0
			if rep.Bad != nil {
				gotBad = rep.Bad.Line
				if rep.Bad.Torn != tt.torn {
					t.Errorf("Bad.Torn = %v, want %v", rep.Bad.Torn, tt.torn)
				}
			}
			if rep.Good != tt.wantGood || gotBad != tt.wantBad || rep.Size != int64(len(data)) {
				t.Errorf("Check = %d good, bad line %d, size %d; want %d, %d, %d", rep.Good, gotBad, rep.Size, tt.wantGood, tt.wantBad, len(data))
			}
			if after, _ := os.ReadFile(path); string(after) != data {
				t.Error("Check changed the file")
			}
			s, recs, err := Open(path, 100, nil)
			if (err == nil) != rep.Starts() {
				t.Errorf("Open error %v, but Starts() = %v", err, rep.Starts())
			}
			if err != nil {
				if want := "line " + strconv.Itoa(tt.wantBad) + ":"; !strings.Contains(err.Error(), want) {
					t.Errorf("Open error %q does not name %q", err, want)
				}
				return
			}
			testClose(s)
			if len(recs) != rep.Good {
				t.Errorf("Open recovered %d records, Check counted %d good lines", len(recs), rep.Good)
			}
		})
	}
}

// TestRepair checks the repair of a journal that two servers wrote into at
// once (a second epoch interleaved with the first), with a corrupt line in
// the middle and a torn tail: the journal keeps the lines before the first
// bad one, the rest is in the .bad file byte for byte, the journal then opens
// and continues, and a second repair has nothing to do.
func TestRepair(t *testing.T) {
	const a, b = 1764094637123, 1764094637999
	line := func(epoch int64, seq uint64) string { return testLine(testRecord(epoch, seq, "hi")) }
	good := line(a, 1) + line(a, 2) + line(a, 3)
	rest := line(b, 1) + line(a, 4) + line(b, 2) + "{\"id\": oops}\n" + line(a, 5) + `{"id":"` + recID(a, 6) + `","user`
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	if err := os.WriteFile(path, []byte(good+rest), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(path, 100, nil); err == nil || !strings.Contains(err.Error(), "line 4: id "+recID(b, 1)+" does not follow "+recID(a, 3)) {
		t.Fatalf("Open before the repair = %v, want line 4 refused", err)
	}

	now := time.Date(2026, 12, 1, 21, 30, 5, 0, time.FixedZone("CET", 3600))
	rep, badPath, err := Repair(path, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := path + ".bad-20261201T203005Z"; badPath != want {
		t.Errorf("bad file %s, want %s", badPath, want)
	}
	if rep.Good != 3 || rep.GoodBytes != int64(len(good)) || rep.First != recID(a, 1) || rep.Last != recID(a, 3) {
		t.Errorf("report: %d good lines, %d bytes, ids %s to %s", rep.Good, rep.GoodBytes, rep.First, rep.Last)
	}
	if rep.Bad == nil || rep.Bad.Line != 4 || rep.Bad.Offset != int64(len(good)) || rep.Bad.Torn || !rep.Bad.OutOfOrder {
		t.Errorf("report: bad line %+v, want line 4 at %d", rep.Bad, len(good))
	}
	if r := rep.Rest; r.Lines != 6 || r.Bytes != int64(len(rest)) || r.Epochs[a] != 2 || r.Epochs[b] != 2 || len(r.Epochs) != 2 || r.NoID != 2 {
		t.Errorf("report: rest %+v, want 6 lines, %d bytes, 2 of each epoch, 2 without an id", r, len(rest))
	}
	if got, _ := os.ReadFile(path); string(got) != good {
		t.Errorf("journal after repair:\n%s\nwant:\n%s", got, good)
	}
	if got, _ := os.ReadFile(badPath); string(got) != rest {
		t.Errorf("bad file:\n%s\nwant:\n%s", got, rest)
	}

	s, recs, _ := testOpen(t, path, 100)
	if len(recs) != 3 || recs[2].Seq != 3 {
		t.Fatalf("recovered %d records after the repair, want 3", len(recs))
	}
	testStart(t, s)
	next := testRecord(a, 4, "after the repair")
	testAppendAll(t, s, []Record{next})
	testAwait(t, s, 1)

	// The repaired journal is in use: a second repair may not touch it.
	if _, _, err := Repair(path, now); canLock && !errors.Is(err, ErrLocked) {
		t.Errorf("Repair of a journal in use = %v, want ErrLocked", err)
	}
}

// TestRepairSound checks that Repair leaves a sound journal alone.
func TestRepairSound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	data := testLine(testRecord(1, 1, "one")) + testLine(testRecord(1, 2, "two"))
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, badPath, err := Repair(path, time.Now())
	if err != nil || badPath != "" || !rep.Sound() || rep.Good != 2 {
		t.Fatalf("Repair = %+v, %q, %v; want a sound report and nothing moved", rep, badPath, err)
	}
	if got, _ := os.ReadFile(path); string(got) != data {
		t.Error("Repair changed a sound journal")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".bad-") {
			t.Errorf("Repair left %s", e.Name())
		}
	}
}

// TestRepairErrors checks Check and Repair on paths that are not journals,
// and that Repair does not overwrite an earlier .bad file.
func TestRepairErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Check(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Check of a missing file = %v", err)
	}
	if _, _, err := Repair(filepath.Join(dir, "missing"), time.Now()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Repair of a missing file = %v", err)
	}
	if _, err := Check(dir); err == nil {
		t.Error("Check of a directory succeeded")
	}
	path := filepath.Join(dir, "chat.jsonl")
	data := []byte(testLine(testRecord(1, 1, "one")) + "junk\n" + testLine(testRecord(1, 2, "two")))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := os.WriteFile(path+".bad-"+now.UTC().Format("20060102T150405Z"), []byte("earlier"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Repair(path, now); !errors.Is(err, os.ErrExist) {
		t.Errorf("Repair onto an existing .bad file = %v, want ErrExist", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Error("a failed Repair changed the journal")
	}
}
