package journal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEpochMarker checks the epoch marker: MarkEpoch makes a new journal's
// epoch durable at once, recovery reports the epoch without returning the
// marker as a record, records continue it, and compaction may drop it.
func TestEpochMarker(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	j, recs, _ := testOpen(t, path, 2)
	if e, ok := j.Epoch(); ok || len(recs) != 0 {
		t.Fatalf("new journal: Epoch() = %d, %v and %d records; want none", e, ok, len(recs))
	}
	if err := j.MarkEpoch(7); err != nil {
		t.Fatalf("MarkEpoch(7): %v", err)
	}
	if err := j.MarkEpoch(8); err == nil {
		t.Errorf("MarkEpoch(8) on a marked journal succeeded, want an error")
	}
	testClose(j)
	if got := fileLines(t, path); len(got) != 1 || got[0] != `{"id":"7-0"}` {
		t.Fatalf("marked journal holds %q, want the one line {\"id\":\"7-0\"}", got)
	}

	// Reopened with nothing else in it: the epoch, and no record.
	j, recs, _ = testOpen(t, path, 2)
	if e, ok := j.Epoch(); !ok || e != 7 || len(recs) != 0 {
		t.Fatalf("reopened marked journal: Epoch() = %d, %v and %d records; want 7, true and none", e, ok, len(recs))
	}
	// Records must continue the marker's epoch.
	stop := testStart(t, j)
	want := []Record{testRecord(7, 1, "one"), testRecord(7, 2, "two"), testRecord(7, 3, "three"), testRecord(7, 4, "four"), testRecord(7, 5, "five")}
	if !j.Append(testRecord(9, 1, "other epoch")) {
		t.Fatal("Append refused a record")
	}
	if c := testNext(t, j); c.Err == nil || !strings.Contains(c.Err.Error(), "does not follow 7-0") {
		t.Errorf("record of another epoch after the marker: Commit %+v, want an error naming 7-0", c)
	}
	testAppendAll(t, j, want[:1])
	testAwait(t, j, 1)
	stop()

	j, recs, _ = testOpen(t, path, 2)
	if e, ok := j.Epoch(); !ok || e != 7 {
		t.Errorf("Epoch() = %d, %v; want 7, true", e, ok)
	}
	sameRecords(t, recs, want[:1])
	// Four more records make six lines with keep 2: compaction keeps the
	// last two records, and the marker goes.
	stop = testStart(t, j)
	testAppendAll(t, j, want[1:])
	testAwait(t, j, 4)
	stop()
	j, recs, _ = testOpen(t, path, 2)
	testClose(j)
	sameRecords(t, recs, want[3:])
	if got := fileLines(t, path); len(got) != 2 || strings.Contains(got[0], `"7-0"`) {
		t.Errorf("compacted journal holds %q, want the last two records", got)
	}
}

// TestEpochWithoutMarker checks that a journal written before markers
// existed opens as it is, with the epoch of its last record, and that a
// torn marker is dropped like any torn last line.
func TestEpochWithoutMarker(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.jsonl")
	recs := []Record{testRecord(5, 1, "one"), testRecord(5, 2, "two")}
	if err := os.WriteFile(old, []byte(testLine(recs[0])+testLine(recs[1])), 0o644); err != nil {
		t.Fatal(err)
	}
	j, got, _ := testOpen(t, old, 10)
	testClose(j)
	if e, ok := j.Epoch(); !ok || e != 5 {
		t.Errorf("journal without a marker: Epoch() = %d, %v; want 5, true", e, ok)
	}
	sameRecords(t, got, recs)

	torn := filepath.Join(dir, "torn.jsonl")
	if err := os.WriteFile(torn, []byte(`{"id":"5-0`), 0o644); err != nil {
		t.Fatal(err)
	}
	j, got, logs := testOpen(t, torn, 10)
	if e, ok := j.Epoch(); ok || len(got) != 0 {
		t.Errorf("journal with a torn marker: Epoch() = %d, %v and %d records; want none", e, ok, len(got))
	}
	if !strings.Contains(logs.String(), "dropping torn last line") {
		t.Errorf("torn marker not logged:\n%s", logs)
	}
	if err := j.MarkEpoch(6); err != nil {
		t.Errorf("MarkEpoch after a torn marker: %v", err)
	}
	testClose(j)
}
