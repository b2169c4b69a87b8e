package journal

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusesMalformedData checks that Run refuses, instead of writing, a
// record whose Data recovery could not read back as that record: one that
// does not start with its own id, holds a newline, is not valid JSON, or has
// a negative epoch. Each is reported in a Commit of its own, the records
// around it are written, and the journal stays readable.
func TestRefusesMalformedData(t *testing.T) {
	good := testRecord(1, 2, "hi")
	tests := []struct {
		name    string
		bad     Record
		wantErr string
	}{
		{"id of another record", Record{Epoch: 1, Seq: 2, Data: testRecord(1, 3, "hi").Data}, "does not start with"},
		{"id not first", Record{Epoch: 1, Seq: 2, Data: []byte(`{"content":"hi","id":"1-2"}`)}, "does not start with"},
		{"no data", Record{Epoch: 1, Seq: 2}, "does not start with"},
		{"newline", Record{Epoch: 1, Seq: 2, Data: bytes.Replace(good.Data, []byte(`"hi"`), []byte("\n\"hi\""), 1)}, "newline"},
		{"not JSON", Record{Epoch: 1, Seq: 2, Data: []byte(`{"id":"1-2","content":oops}`)}, "not valid JSON"},
		{"torn JSON", Record{Epoch: 1, Seq: 2, Data: good.Data[:len(good.Data)-1]}, "not valid JSON"},
		{"negative epoch", Record{Epoch: -1, Seq: 2, Data: []byte(`{"id":"-1-2"}`)}, "negative epoch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chat.jsonl")
			s, _, _ := testOpen(t, path, 100)
			before, after := testRecord(1, 1, "before"), testRecord(1, 2, "after")
			testAppendAll(t, s, []Record{before, tt.bad, after}) // one group
			stop := testStart(t, s)
			if c := testNext(t, s); c.N != 1 || c.Err != nil {
				t.Errorf("first Commit = {N: %d, Err: %v}, want {N: 1, Err: nil}", c.N, c.Err)
			}
			if c := testNext(t, s); c.N != 1 || c.Err == nil || !strings.Contains(c.Err.Error(), tt.wantErr) {
				t.Errorf("second Commit = {N: %d, Err: %v}, want N 1 and an error containing %q", c.N, c.Err, tt.wantErr)
			}
			if c := testNext(t, s); c.N != 1 || c.Err != nil {
				t.Errorf("third Commit = {N: %d, Err: %v}, want {N: 1, Err: nil}", c.N, c.Err)
			}
			stop()
			s, got, _ := testOpen(t, path, 100)
			testClose(s)
			sameRecords(t, got, []Record{before, after})
		})
	}
}
