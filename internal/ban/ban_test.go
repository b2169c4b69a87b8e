package ban

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct{ in, want string }{
		{"203.0.113.7", "203.0.113.7"},
		{"203.0.113.7/32", "203.0.113.7"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"2001:db8::1", "2001:db8::/64"},
		{"2001:db8::1/128", "2001:db8::/64"},
		{"2001:db8:1:2::/48", "2001:db8:1::/48"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::ffff:10.9.9.17/120", "10.9.9.0/24"},
		{"::ffff:10.9.9.17/96", "0.0.0.0/0"},
		{"::1", "::/64"},
		{"::1/128", "::/64"},
		{"::/64", "::/64"},
		{"::/0", "::/0"},
		{"0.0.0.0/0", "0.0.0.0/0"},
	}
	for _, tt := range tests {
		p, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := Format(p); got != tt.want {
			t.Errorf("Parse(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "example.com", "1.2.3", "1.2.3.4/33", "2001:db8::/129", "1.2.3.4/-1",
		"::ffff:10.9.9.17/80", "::ffff:10.9.9.17/95", "::ffff:1.2.3.4/129", // mapped, beyond IPv4 or any range
		"::10.9.9.18", "::10.9.9.18/128", "::", "::ffff:0:a09:912", "::2/120"} { // IPv4-compatible, reserved

		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestBannedMatchesLimitKeys(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := New()
	add := func(s string, until time.Time) {
		t.Helper()
		p, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Add(p, until, now); err != nil {
			t.Fatal(err)
		}
	}
	add("203.0.113.7", time.Time{})
	add("198.51.100.0/24", now.Add(time.Hour))
	add("2001:db8::5", time.Time{})   // its /64
	add("2001:db9::/32", time.Time{}) // a whole network
	tests := []struct {
		key    string
		banned bool
	}{
		{"203.0.113.7", true},
		{"203.0.113.8", false},
		{"198.51.100.200", true},
		{"198.51.101.1", false},
		{"2001:db8::/64", true},
		{"2001:db8:0:1::/64", false},
		{"2001:db9:ffff:1::/64", true},
		{"2001:dba::/64", false},
		{"not-an-ip", false},
	}
	for _, tt := range tests {
		if _, got := l.Banned(tt.key, now); got != tt.banned {
			t.Errorf("Banned(%q) = %v, want %v", tt.key, got, tt.banned)
		}
	}
	if _, got := l.Banned("198.51.100.1", now.Add(time.Hour)); got {
		t.Error("a ban still holds at its expiry")
	}
	if n := len(l.All(now.Add(time.Hour))); n != 3 {
		t.Errorf("%d bans after one expired, want 3", n)
	}
	p, _ := Parse("203.0.113.7")
	if ok, err := l.Remove(p, now); !ok || err != nil {
		t.Errorf("Remove: %v, %v", ok, err)
	}
	if ok, _ := l.Remove(p, now); ok {
		t.Error("removed the same ban twice")
	}
	if _, got := l.Banned("203.0.113.7", now); got {
		t.Error("still banned after Remove")
	}
}

func TestSavedAcrossOpen(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	path := filepath.Join(t.TempDir(), "bans.json")
	l, err := Open(path, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"203.0.113.7", "2001:db8::/48"} {
		p, _ := Parse(s)
		if _, err := l.Add(p, time.Time{}, now); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := Parse("198.51.100.0/24")
	if _, err := l.Add(p, now.Add(time.Minute), now); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("ban file mode %04o, want 0600", fi.Mode().Perm())
	}
	again, err := Open(path, now.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	got := again.All(now.Add(2 * time.Minute))
	if len(got) != 2 || got[0].String() != "203.0.113.7" || got[1].String() != "2001:db8::/48" {
		t.Errorf("reopened list: %v", got)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, now); err == nil {
		t.Error("opened a corrupt ban file")
	}
}

func TestListBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := New()
	for i := range MaxBans {
		p, _ := Parse("10.0.0.0/8")
		p, _ = p.Addr().Next().Prefix(32)
		_ = i
		l.bans = append(l.bans, Ban{Prefix: p})
	}
	p, _ := Parse("192.0.2.1")
	if _, err := l.Add(p, time.Time{}, now); err != ErrFull {
		t.Errorf("Add to a full list: %v, want ErrFull", err)
	}
}

// TestSaveIsPrivate checks that the saved list is 0600 even when a stale
// temporary file, readable by others, was left by an interrupted save.
func TestSaveIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans")
	if err := os.WriteFile(path+".tmp", []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path+".tmp", 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	l, err := Open(path, now)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := Parse("192.0.2.1")
	if _, err := l.Add(p, time.Time{}, now); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("saved ban list: mode %04o, want 0600", fi.Mode().Perm())
	}
}

func TestParseDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{{"1s", time.Second}, {"30m", 30 * time.Minute}, {"24h", 24 * time.Hour}} {
		if d, err := ParseDuration(tt.in); err != nil || d != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, d, err, tt.want)
		}
	}
	for _, bad := range []string{"", "soon", "1ns", "999ms", "0", "0s", "-1h"} {
		if d, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", bad, d)
		}
	}
}

// writeBans writes a ban file holding the given entries (JSON objects).
func writeBans(t *testing.T, path string, entries []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("["+strings.Join(entries, ",")+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRefusesUnusableFiles checks that a ban file the server cannot
// use stops Open with an error that names the file and says how to move
// it aside: one that cannot be read, one that does not parse, one with an
// entry Parse refuses, and one with more bans in force than MaxBans.
func TestOpenRefusesUnusableFiles(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	dir := t.TempDir()
	over := make([]string, MaxBans+1)
	for i := range over {
		over[i] = fmt.Sprintf(`{"addr":"10.%d.%d.%d","until":null}`, i>>16, (i>>8)&255, i&255)
	}
	for _, tt := range []struct {
		name  string
		setup func(path string)
		want  string
	}{
		{"unreadable", func(path string) { _ = os.Mkdir(path, 0o700) }, "is a directory"},
		{"not JSON", func(path string) { _ = os.WriteFile(path, []byte("{not json"), 0o600) }, "invalid character"},
		{"bad entry", func(path string) { writeBans(t, path, []string{`{"addr":"::10.9.9.18","until":null}`}) }, "entry 1"},
		{"over the cap", func(path string) { writeBans(t, path, over) }, fmt.Sprintf("%d bans in force, more than the %d", MaxBans+1, MaxBans)},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".bans")
		tt.setup(path)
		_, err := Open(path, now)
		if err == nil {
			t.Errorf("%s: opened", tt.name)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tt.want) || !strings.Contains(msg, "mv "+path+" "+path+".bad") {
			t.Errorf("%s: error %q, want it to say %q and how to move the file aside", tt.name, msg, tt.want)
		}
	}
}

// TestOpenAtTheCap checks a file at the cap, with expired bans and a
// prefix given twice besides: it loads, a new ban is refused while the list
// is full, and once a ban is lifted, a new one is taken.
func TestOpenAtTheCap(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	path := filepath.Join(t.TempDir(), "bans")
	entries := make([]string, 0, MaxBans+10)
	for i := range MaxBans {
		entries = append(entries, fmt.Sprintf(`{"addr":"10.%d.%d.%d","until":null}`, i>>16, (i>>8)&255, i&255))
	}
	for i := range 9 {
		entries = append(entries, fmt.Sprintf(`{"addr":"192.0.2.%d","until":"2020-01-01T00:00:00Z"}`, i))
	}
	entries = append(entries, `{"addr":"10.0.0.0","until":"2030-01-01T00:00:00Z"}`)
	writeBans(t, path, entries)
	l, err := Open(path, now)
	if err != nil {
		t.Fatalf("a file at the cap with expired and repeated entries: %v", err)
	}
	if n := len(l.All(now)); n != MaxBans {
		t.Fatalf("%d bans loaded, want %d", n, MaxBans)
	}
	extra, _ := Parse("198.51.100.1")
	if _, err := l.Add(extra, time.Time{}, now); err != ErrFull {
		t.Fatalf("Add to the full list: %v, want ErrFull", err)
	}
	first, _ := Parse("10.0.0.0")
	if b, ok := l.Banned("10.0.0.0", now); !ok || b.Until.IsZero() {
		t.Errorf("the later entry for 10.0.0.0 did not replace the earlier: %v %v", b, ok)
	}
	if ok, err := l.Remove(first, now); !ok || err != nil {
		t.Fatalf("lift 10.0.0.0: %v %v", ok, err)
	}
	if _, ok := l.Banned("10.0.0.0", now); ok {
		t.Error("10.0.0.0 still banned after its ban was lifted")
	}
	if _, err := l.Add(extra, time.Time{}, now); err != nil {
		t.Errorf("Add after a ban was lifted: %v", err)
	}
}
