package auth

import (
	"os"
	"path/filepath"
	"strings"
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

// TestNewGate checks the gates NewGate makes: none of a room without keys
// has sessions or a throttle; a room with a key has both, with a random
// secret when none is kept, and with a kept one its sessions survive a
// restart with the same keys and end when the keys change (rotated).
func TestNewGate(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	path := filepath.Join(t.TempDir(), "chat.jsonl.secret")
	cfg := GateConfig{Lifetime: time.Hour, Failures: 3, Window: time.Minute}
	for _, secretPath := range []string{"", path} {
		cfg.SecretPath = secretPath
		g, rotated, err := NewGate(cfg)
		if err != nil || rotated || g.Sessions != nil || g.Failures != nil {
			t.Errorf("no keys, secret %q: sessions %v, throttle %v, rotated %v, %v; want none", secretPath, g.Sessions, g.Failures, rotated, err)
		}
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("a room without keys made a secret file")
	}

	cfg.Keys, cfg.SecretPath = Keys{Room: "k1"}, ""
	g, _, err := NewGate(cfg)
	if err != nil || g.Sessions == nil || g.Failures == nil || g.Failures.max != 3 || g.Failures.window != time.Minute {
		t.Fatalf("room key, no kept secret: %+v, %v; want sessions and a throttle of 3 a minute", g, err)
	}

	cfg.SecretPath = path
	g, rotated, err := NewGate(cfg)
	if err != nil || rotated {
		t.Fatalf("kept secret: rotated %v, %v", rotated, err)
	}
	v, _, err := g.Sessions.Issue(Member, now)
	if err != nil {
		t.Fatal(err)
	}
	if g, rotated, err = NewGate(cfg); err != nil || rotated || g.Sessions.Check(v, now) != Member {
		t.Errorf("restart with the same keys: rotated %v, %v; the session did not survive", rotated, err)
	}
	cfg.Keys = Keys{Room: "k2"}
	if g, rotated, err = NewGate(cfg); err != nil || !rotated || g.Sessions.Check(v, now) != None {
		t.Errorf("restart with another key: rotated %v, %v; want rotated and the session ended", rotated, err)
	}
}

// TestFingerprint checks the fingerprint of keys that a shared secret is
// kept with: the one LoadSessions writes beside its file, the same for the
// same secret and keys, different for another key (room or admin) or
// another secret, and without the keys in it.
func TestFingerprint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl.secret")
	keys := Keys{Room: "room-key-1", Admin: "admin-key-1"}
	if _, _, err := LoadSessions(path, keys, time.Hour); err != nil {
		t.Fatal(err)
	}
	secret, _ := os.ReadFile(path)
	kept, _ := os.ReadFile(FingerprintPath(path))
	fp := Fingerprint(secret, keys)
	if string(kept) != fp+"\n" || Fingerprint(secret, keys) != fp {
		t.Errorf("Fingerprint = %q, the file holds %q", fp, kept)
	}
	other, _ := NewSecret()
	for _, o := range []string{Fingerprint(secret, Keys{Room: "room-key-2", Admin: "admin-key-1"}),
		Fingerprint(secret, Keys{Room: "room-key-1"}), Fingerprint(other, keys)} {
		if o == fp {
			t.Errorf("another key or secret has the same fingerprint %q", fp)
		}
	}
	if strings.Contains(fp, "room-key") || strings.Contains(fp, "admin-key") {
		t.Errorf("fingerprint %q shows a key", fp)
	}
}
