package names

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// openFile opens the table at path, failing the test on an error.
func openFile(t *testing.T, path string, opts Options, now time.Time) *Table {
	t.Helper()
	tab, err := OpenFile(path, opts, now)
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	return tab
}

// lines returns the lines of the file at path.
func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestFileKeepsHolds checks that holds, releases and frees outlive a
// reopening without Close (as after a crash: every change is written
// before it is made), and that the file is private.
func TestFileKeepsHolds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "names.jsonl")
	opts := Options{Hold: DefaultHold}
	tab := openFile(t, path, opts, t0)
	for i, name := range []string{"Alice", "bob", "carol", "dave"} { // dave releases Alice
		mustUse(t, tab, name, "A", t0.Add(time.Duration(i)*time.Second))
	}
	mustUse(t, tab, "erin", "B", t0.Add(5*time.Second))
	mustUse(t, tab, "frank", "C", t0.Add(6*time.Second))
	if _, ok, err := tab.Free("FRANK", t0.Add(7*time.Second)); !ok || err != nil {
		t.Fatalf("Free: %v, %v", ok, err)
	}
	want := tab.List(t0.Add(8 * time.Second))

	again := openFile(t, path, opts, t0.Add(8*time.Second))
	if got := again.List(t0.Add(8 * time.Second)); !reflect.DeepEqual(got, want) {
		t.Errorf("after reopening:\n got %+v\nwant %+v", got, want)
	}
	mustUse(t, again, "alice", "Z", t0.Add(8*time.Second)) // dave released it
	wantHeld(t, again, "Bob", "Z", t0.Add(8*time.Second))
	mustUse(t, again, "frank", "Z", t0.Add(8*time.Second))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("names file mode %04o, want 0600", fi.Mode().Perm())
	}
	if err := os.WriteFile(path+".tmp", nil, 0o644); err != nil { // a stale temporary file
		t.Fatal(err)
	}
	os.Chmod(path+".tmp", 0o644)
	if err := again.Save(t0.Add(9 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("names file saved over a stale 0644 temporary file: mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

// TestFileKeepsReleases checks that the holds the bounds released stay
// released when the file is read with wider bounds.
func TestFileKeepsReleases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "names.jsonl")
	tab := openFile(t, path, Options{Hold: DefaultHold, MaxHolds: 2, PerIdentity: 1}, t0)
	mustUse(t, tab, "a", "A", t0)
	mustUse(t, tab, "b", "B", t0.Add(time.Second))
	mustUse(t, tab, "c", "C", t0.Add(2*time.Second)) // evicts a
	mustUse(t, tab, "d", "C", t0.Add(3*time.Second)) // releases c
	again := openFile(t, path, Options{Hold: DefaultHold}, t0.Add(4*time.Second))
	if got := strings.Join(names(again.List(t0.Add(4*time.Second))), " "); got != "b d" {
		t.Errorf("held %q, want b d", got)
	}
}

// TestFileExpiresAndBounds checks that holds that ended while the server
// was down are dropped, and the bounds applied, keeping the newest.
func TestFileExpiresAndBounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "names.jsonl")
	var b bytes.Buffer
	for i, name := range []string{"old", "a1", "a2", "a3", "a4", "b1", "c1"} {
		id := map[byte]string{'o': "A", 'a': "A", 'b': "B", 'c': "C"}[name[0]]
		last := t0.Add(time.Duration(i) * time.Hour)
		if name == "old" {
			last = t0.Add(-DefaultHold)
		}
		r := Record{ID: id, Name: name, Since: last.Unix(), Last: last.Unix()}
		json.NewEncoder(&b).Encode(r)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	tab := openFile(t, path, Options{Hold: DefaultHold, MaxHolds: 4}, t0.Add(7*time.Hour))
	if got := strings.Join(names(tab.List(t0.Add(7*time.Hour))), " "); got != "a3 a4 b1 c1" {
		t.Errorf("held %q, want the newest within the bounds: a3 a4 b1 c1", got)
	}
	if n := len(lines(t, path)); n != 4 {
		t.Errorf("file has %d lines after opening, want one per hold: 4", n)
	}
	tab = openFile(t, path, Options{Hold: DefaultHold}, t0.Add(6*time.Hour+DefaultHold))
	if got := strings.Join(names(tab.List(t0.Add(6*time.Hour+DefaultHold))), " "); got != "" {
		t.Errorf("held %q a hold time after the last use, want nothing", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("file after every hold ended: %v, %v; want it empty", fi.Size(), err)
	}
}

// TestFileCutShort checks that a last line cut short by a crash is
// dropped, and the lines before it kept.
func TestFileCutShort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "names.jsonl")
	tab := openFile(t, path, Options{Hold: DefaultHold}, t0)
	mustUse(t, tab, "alice", "A", t0)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":"B","name":"bo`)
	f.Close()
	tab = openFile(t, path, Options{Hold: DefaultHold}, t0)
	if got := names(tab.List(t0)); len(got) != 1 || got[0] != "alice" {
		t.Errorf("held %v, want [alice]", got)
	}
	if l := lines(t, path); len(l) != 1 || !strings.Contains(l[0], `"name":"alice"`) {
		t.Errorf("file after opening: %q, want the one whole line", l)
	}
}

// TestFileBadLine checks that a bad line that is not the last is an
// error that names the file and the line and says how to move it aside.
func TestFileBadLine(t *testing.T) {
	for _, bad := range []string{`{"id":"A","name":`, `{"id":"A"}`, `[]`, `{}`, `{"id":"A","name":"x","since":1}`} {
		path := filepath.Join(t.TempDir(), "names.jsonl")
		good := `{"id":"A","name":"alice","since":1800000000,"last":1800000000}`
		os.WriteFile(path, []byte(good+"\n"+bad+"\n"+good+"\n"), 0o600)
		_, err := OpenFile(path, Options{Hold: DefaultHold}, t0)
		if err == nil || !strings.Contains(err.Error(), "names file "+path+" cannot be used; fix it, or move it aside to start with no names held (mv "+path+" "+path+".bad): line 2: ") {
			t.Errorf("OpenFile with line %q: %v", bad, err)
		}
	}
	dir := filepath.Join(t.TempDir(), "unreadable.jsonl")
	os.Mkdir(dir, 0o700) // a directory: it cannot be read as a file
	if _, err := OpenFile(dir, Options{}, t0); err == nil || !strings.Contains(err.Error(), "cannot be used") {
		t.Errorf("OpenFile of a directory: %v", err)
	}
	path := filepath.Join(t.TempDir(), "names.jsonl")
	os.WriteFile(path, []byte(`{"id":"A","name":"al\u00adice","since":1800000000,"last":1800000000}`+"\n"), 0o600)
	tab, err := OpenFile(path, Options{Hold: DefaultHold}, t0)
	if err != nil || tab.Len() != 0 {
		t.Errorf("a name the rules now refuse: %v, %d holds; want it dropped", err, tab.Len())
	}
}

// TestFileSaveKeepsStreams checks that Save records the holds streams
// carry as used at the time of saving, so a crash after it keeps them.
func TestFileSaveKeepsStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "names.jsonl")
	opts := Options{Hold: time.Hour}
	tab := openFile(t, path, opts, t0)
	if _, err := tab.Open("alice", "A", t0); err != nil {
		t.Fatal(err)
	}
	if err := tab.Save(t0.Add(5 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	again := openFile(t, path, opts, t0.Add(5*time.Hour+59*time.Minute))
	wantHeld(t, again, "alice", "B", t0.Add(5*time.Hour+59*time.Minute))
	if err := tab.Close(t0.Add(6 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := tab.Use("bob", "B", t0.Add(6*time.Hour)); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Use after Close: %v, want an error", err)
	}
}

// syncCounter is a file that counts its syncs.
type syncCounter struct {
	file
	n *int
}

// Sync counts and syncs.
func (f syncCounter) Sync() error {
	*f.n++
	return f.file.Sync()
}

// TestFileWrites checks what is written when: a hold taken or freed at
// once and synced, a use that takes nothing new only once a minute and
// not synced, a change of written form at once, and the file rewritten
// once it has grown past twice the holds.
func TestFileWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "names.jsonl")
	tab := openFile(t, path, Options{Hold: DefaultHold}, t0)
	var syncs int
	tab.file.f = syncCounter{tab.file.f, &syncs}
	mustUse(t, tab, "alice", "A", t0)
	mustUse(t, tab, "alice", "A", t0.Add(59*time.Second))
	if n := len(lines(t, path)); n != 1 || syncs != 1 {
		t.Fatalf("%d lines and %d syncs after a take and a use within a minute, want 1 and 1", n, syncs)
	}
	mustUse(t, tab, "Alice", "A", t0.Add(59*time.Second))
	mustUse(t, tab, "Alice", "A", t0.Add(2*time.Minute))
	if l := lines(t, path); len(l) != 3 || !strings.Contains(l[1], `"name":"Alice","since":1800000000,"last":1800000059`) || syncs != 1 {
		t.Fatalf("lines %q, %d syncs; want a line for the new form and one for the use a minute later, unsynced", l, syncs)
	}
	mustUse(t, tab, "bob", "B", t0.Add(2*time.Minute))
	if _, _, err := tab.Free("bob", t0.Add(2*time.Minute)); err != nil || syncs != 3 {
		t.Fatalf("Free: %v; %d syncs after two more changes, want 3", err, syncs)
	}
	for i := range 2*compactSlack + 10 {
		mustUse(t, tab, "alice", "A", t0.Add(time.Duration(i+3)*time.Minute))
	}
	if n := len(lines(t, path)); n > compactSlack+5 {
		t.Errorf("%d lines for one hold, want the file rewritten", n)
	}
	again := openFile(t, path, Options{Hold: DefaultHold}, t0.Add(3*time.Hour))
	if l := again.List(t0.Add(3 * time.Hour)); len(l) != 1 || l[0].LastUsed.Before(t0.Add(2*time.Hour)) {
		t.Errorf("after rewriting: %+v", l)
	}
}

// halfFile is a file whose next write writes half its bytes and fails,
// as on a full disk.
type halfFile struct{ file }

// Write writes the first half of p and fails.
func (f halfFile) Write(p []byte) (int, error) {
	n, _ := f.file.Write(p[:len(p)/2])
	return n, errors.New("no space left on device")
}

// TestFileWriteFails checks that a change the file did not take is not
// made (a write ahead, then the change), and that a write cut short is
// cut off the file again.
func TestFileWriteFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "names.jsonl")
	tab := openFile(t, path, Options{Hold: DefaultHold}, t0)
	mustUse(t, tab, "alice", "A", t0)
	real := tab.file.f
	tab.file.f = halfFile{real}
	if err := tab.Use("bob", "B", t0); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Use on a full disk: %v", err)
	}
	tab.file.f = real
	mustUse(t, tab, "carol", "C", t0)
	if got := strings.Join(names(openFile(t, path, Options{Hold: DefaultHold}, t0).List(t0)), " "); got != "alice carol" {
		t.Fatalf("after a write cut short: held %q, want alice carol", got)
	}
	tab.file.f.Close() // every write now fails
	if err := tab.Use("bob", "B", t0); err == nil {
		t.Fatal("Use with a broken file succeeded")
	}
	if err := tab.Use("Alice", "A", t0.Add(time.Hour)); err == nil {
		t.Fatal("a use to write with a broken file succeeded")
	}
	if _, _, err := tab.Free("alice", t0); err == nil {
		t.Fatal("Free with a broken file succeeded")
	}
	if got := strings.Join(names(tab.List(t0)), " "); got != "alice carol" {
		t.Errorf("held %q after failed writes, want alice carol", got)
	}
}

// TestRecordEncoding checks the encoding a key/value store would keep:
// exact JSON, and keys that round-trip and use only key-safe characters.
func TestRecordEncoding(t *testing.T) {
	tab := New(Options{Hold: DefaultHold})
	mustUse(t, tab, "Zoë Ö", "kP3v", t0)
	recs := tab.Records(t0)
	b, err := json.Marshal(recs["zoë ö"])
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"kP3v","name":"Zoë Ö","since":1800000000,"last":1800000000}`; string(b) != want {
		t.Errorf("record = %s, want %s", b, want)
	}
	safe := regexp.MustCompile(`^[-_A-Za-z0-9]+$`)
	for _, sk := range []string{"zoë ö", "alice", "a/b.c", "山田", "?"} {
		k := Key(sk)
		back, err := ParseKey(k)
		if !safe.MatchString(k) || back != sk || err != nil {
			t.Errorf("Key(%q) = %q, back %q, %v", sk, k, back, err)
		}
	}
	if _, err := ParseKey("not base64!"); err == nil {
		t.Error("ParseKey accepted a bad key")
	}
	var l line
	if err := json.Unmarshal([]byte(`{"free":"alice"}`), &l); err != nil || l.Record != nil || l.Free != "alice" {
		t.Errorf("release line: %+v, %v", l, err)
	}
	if b, _ := json.Marshal(line{Free: "alice"}); string(b) != `{"free":"alice"}` {
		t.Errorf("release line = %s", b)
	}
	if err := errors.Unwrap(&HeldError{Name: "x"}); err != ErrHeld {
		t.Errorf("HeldError unwraps to %v", err)
	}
}
