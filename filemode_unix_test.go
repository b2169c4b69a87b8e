//go:build unix

package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFilesArePrivate runs the server with -data, a room key and an admin
// key under a umask that lets everyone read what is created, and makes it
// write every file it can (the journal and its lock, a compaction, the
// session secret and its keys' fingerprint, the bans file, the identity
// secret and the held names, then a repair's file of damaged lines).
// Every one of them must be 0600: they hold a private room's messages,
// its Idempotency-Keys, the keys that sign sessions and identities, the
// bans and who holds which name.
func TestFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := t.TempDir()
	path := filepath.Join(dir, "chat.jsonl")
	ts := startServer(t, "-data", path, "-history", "2", "-room-key", "room", "-admin-key", "boss")
	for i := range 10 {
		body := fmt.Sprintf(`{"username":"u","content":"message %d"}`, i)
		if r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/post", "application/json", body, bearer("room")); r.status != http.StatusCreated {
			t.Fatalf("post %d: %d %s", i, r.status, r.body)
		}
	}
	if r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/bans", "application/json", `{"addr":"192.0.2.1","for":"1h"}`, admin()); r.status != http.StatusCreated {
		t.Fatalf("POST /bans: %d %s", r.status, r.body)
	}
	ts.stop(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("\n")); n >= 10 {
		t.Fatalf("journal holds %d lines after 10 posts with -history 2: it was never compacted", n)
	}
	// A torn line in the middle: -repair-write moves the rest aside.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("{\"id\": garbage}\n" + journalLine(t, 1, 99, "after the damage"))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runRepair(t, "-repair", path, "-repair-write"); err != nil {
		t.Fatalf("-repair-write: %v\n%s", err, out)
	}

	want := []string{"chat.jsonl", "chat.jsonl.lock", "chat.jsonl.secret", "chat.jsonl.secret.fingerprint", "chat.jsonl.bans",
		"chat.jsonl.identity", "chat.jsonl.names", "chat.jsonl.bad-*"}
	for _, pattern := range want {
		if m, _ := filepath.Glob(filepath.Join(dir, pattern)); len(m) != 1 {
			t.Errorf("%s: files %q, want one", pattern, m)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	if len(names) != len(want) {
		t.Errorf("files made: %s; want %d (%s)", strings.Join(names, ", "), len(want), strings.Join(want, ", "))
	}
}

// TestOldJournalMadePrivate checks that a journal and lock file an older
// server made readable by others are made 0600 when the server opens them.
func TestOldJournalMadePrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chat.jsonl")
	for _, p := range []string{path, path + ".lock"} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, "-data", path)
	ts.post(t, "u", "hello")
	ts.stop(t)
	for _, p := range []string{path, path + ".lock"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o after the server opened it, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
	if !strings.Contains(ts.logs.String(), "its mode is now 0600") {
		t.Errorf("no warning that the journal's mode was changed:\n%s", ts.logs)
	}
}
