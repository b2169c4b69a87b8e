package auth

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLoadSessionsEndsSessionsOnKeyChange follows a server's keys across
// restarts with a kept secret: the same keys keep their sessions; any
// change of keys, back to earlier ones or to none included, ends every
// session for good.
func TestLoadSessionsEndsSessionsOnKeyChange(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	path := filepath.Join(t.TempDir(), "chat.jsonl.secret")
	load := func(keys Keys, wantRotated bool) *Sessions {
		t.Helper()
		s, rotated, err := LoadSessions(path, keys, time.Hour)
		if err != nil {
			t.Fatalf("LoadSessions(%+v): %v", keys, err)
		}
		if rotated != wantRotated {
			t.Fatalf("LoadSessions(%+v): rotated %v, want %v", keys, rotated, wantRotated)
		}
		return s
	}
	issue := func(s *Sessions, role Role) string {
		t.Helper()
		v, _, err := s.Issue(role, now)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	k1 := Keys{Room: "k1", Admin: "a1"}
	s := load(k1, false)
	member, admin := issue(s, Member), issue(s, Admin)
	if s = load(k1, false); s.Check(member, now) != Member || s.Check(admin, now) != Admin {
		t.Fatal("sessions did not survive a restart with the same keys")
	}
	load(Keys{Room: "k2", Admin: "a1"}, true)
	if s = load(k1, true); s.Check(member, now) != None || s.Check(admin, now) != None {
		t.Error("K1, K2, K1: the first K1's sessions are valid again")
	}
	member = issue(s, Member)
	if s = load(Keys{Room: "k1", Admin: "a2"}, true); s.Check(member, now) != None {
		t.Error("a member session outlived a change of the admin key")
	}
	member = issue(s, Member)
	if s := load(Keys{}, true); s != nil {
		t.Errorf("no keys: sessions %v, want nil", s)
	}
	if s = load(Keys{Room: "k1", Admin: "a2"}, true); s.Check(member, now) != None {
		t.Error("keys removed and set again: the old sessions are valid again")
	}
	for _, p := range []string{path, FingerprintPath(path)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

// TestLoadSessionsKeepsOlderSecret checks the first start after an
// upgrade (a secret without a fingerprint): the sessions it signed stay
// valid, and from then on a key change ends them. With no keys and no
// secret, no file is made.
func TestLoadSessionsKeepsOlderSecret(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	dir := t.TempDir()
	path := filepath.Join(dir, "chat.jsonl.secret")
	if s, rotated, err := LoadSessions(path, Keys{}, time.Hour); s != nil || rotated || err != nil {
		t.Fatalf("no keys, no secret: %v %v %v", s, rotated, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("no keys, no secret: %d files made", len(entries))
	}
	secret, err := LoadSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := Keys{Room: "k1"}
	old, _ := NewSessions(secret, keys, time.Hour)
	v, _, _ := old.Issue(Member, now)
	s, rotated, err := LoadSessions(path, keys, time.Hour)
	if err != nil || rotated || s.Check(v, now) != Member {
		t.Fatalf("upgrade: rotated %v, err %v, old session %v; want kept", rotated, err, s.Check(v, now))
	}
	if _, rotated, _ = LoadSessions(path, Keys{Room: "k2"}, time.Hour); !rotated {
		t.Error("a key change after the upgrade did not replace the secret")
	}
	if s, _, _ = LoadSessions(path, keys, time.Hour); s.Check(v, now) != None {
		t.Error("the old session is valid again after K1, K2, K1")
	}
}
