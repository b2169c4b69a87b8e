package ban

import (
	"os"
	"path/filepath"
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
	for _, bad := range []string{"", "example.com", "1.2.3", "1.2.3.4/33", "2001:db8::/129", "1.2.3.4/-1"} {
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
