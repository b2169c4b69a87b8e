package auth

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func secret(b byte) []byte { return bytes.Repeat([]byte{b}, SecretSize) }

func TestKeyEqual(t *testing.T) {
	tests := []struct {
		got, want string
		ok        bool
	}{
		{"k", "k", true},
		{"correct horse", "correct horse", true},
		{"k", "K", false},
		{"k", "kk", false},
		{"", "", false}, // an unset key matches nothing
		{"x", "", false},
		{"", "x", false},
	}
	for _, tt := range tests {
		if got := KeyEqual(tt.got, tt.want); got != tt.ok {
			t.Errorf("KeyEqual(%q, %q) = %v, want %v", tt.got, tt.want, got, tt.ok)
		}
	}
}

func TestRoleOf(t *testing.T) {
	k := Keys{Room: "room", Admin: "admin"}
	for key, want := range map[string]Role{"room": Member, "admin": Admin, "": None, "roo": None, "admin ": None} {
		if got := k.RoleOf(key); got != want {
			t.Errorf("RoleOf(%q) = %v, want %v", key, got, want)
		}
	}
	if got := (Keys{Admin: "a"}).RoleOf(""); got != None {
		t.Errorf("empty key with no room key: %v, want none", got)
	}
}

func TestBearer(t *testing.T) {
	tests := []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Basic YWxhZGRpbjpvcGVuc2VzYW1l", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.header != "" {
			h.Set("Authorization", tt.header)
		}
		tok, ok := Bearer(h)
		if tok != tt.token || ok != tt.ok {
			t.Errorf("Bearer(%q) = %q, %v; want %q, %v", tt.header, tok, ok, tt.token, tt.ok)
		}
	}
}

func TestSessionsIssueAndCheck(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	keys := Keys{Room: "room", Admin: "admin"}
	s, err := NewSessions(secret(1), keys, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	member, exp, err := s.Issue(Member, now)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("expiry %v, want %v", exp, now.Add(time.Hour))
	}
	admin, _, err := s.Issue(Admin, now)
	if err != nil {
		t.Fatal(err)
	}
	if again, _, _ := s.Issue(Member, now); again == member {
		t.Error("two sessions got the same value")
	}
	if got := s.Check(member, now); got != Member {
		t.Errorf("member session: %v", got)
	}
	if got := s.Check(admin, now.Add(59*time.Minute)); got != Admin {
		t.Errorf("admin session: %v", got)
	}

	other := func(sec []byte, k Keys) *Sessions {
		o, err := NewSessions(sec, k, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	// Flip the role letter, the expiry, the nonce or the MAC: all refused.
	parts := strings.Split(member, ".")
	forge := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, ".")
	}
	refused := []struct {
		name, value string
		s           *Sessions
		at          time.Time
	}{
		{"expired", member, s, now.Add(time.Hour)},
		{"long expired", admin, s, now.Add(48 * time.Hour)},
		{"role raised", forge(1, "a"), s, now},
		{"expiry moved", forge(2, "99999999999"), s, now},
		{"nonce changed", forge(3, "AAAAAAAAAAAAAAAA"), s, now},
		{"mac changed", forge(4, strings.Repeat("A", len(parts[4]))), s, now},
		{"mac dropped", strings.Join(parts[:4], "."), s, now},
		{"other version", forge(0, "v2"), s, now},
		{"empty", "", s, now},
		{"garbage", "not a session", s, now},
		{"too long", member + strings.Repeat("x", 300), s, now},
		{"other secret", member, other(secret(2), keys), now},
		{"room key changed", member, other(secret(1), Keys{Room: "new", Admin: "admin"}), now},
		{"admin key changed", admin, other(secret(1), Keys{Room: "room", Admin: "new"}), now},
		{"room key changed, admin", admin, other(secret(1), Keys{Room: "new", Admin: "admin"}), now},
		{"room key removed", member, other(secret(1), Keys{Admin: "admin"}), now},
	}
	for _, tt := range refused {
		if got := tt.s.Check(tt.value, tt.at); got != None {
			t.Errorf("%s: Check = %v, want none", tt.name, got)
		}
	}
	// The admin key changing leaves member sessions alone.
	if got := other(secret(1), Keys{Room: "room", Admin: "new"}).Check(member, now); got != Member {
		t.Errorf("member session after the admin key changed: %v, want member", got)
	}
}

func TestSessionsWithoutKeys(t *testing.T) {
	s, err := NewSessions(secret(1), Keys{Admin: "admin"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Lifetime() != DefaultLifetime {
		t.Errorf("lifetime %v, want %v", s.Lifetime(), DefaultLifetime)
	}
	if _, _, err := s.Issue(Member, time.Now()); err == nil {
		t.Error("issued a member session with no room key")
	}
	if _, err := NewSessions(make([]byte, 8), Keys{Room: "r"}, 0); err == nil {
		t.Error("accepted an 8-byte secret")
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	a, err := LoadSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	b, err := LoadSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || len(a) != SecretSize {
		t.Errorf("second load gave another secret (%d bytes)", len(b))
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecret(path); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("world-readable secret: err = %v", err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecret(short); err == nil {
		t.Error("accepted a 3-byte secret file")
	}
	if _, err := LoadSecret(filepath.Join(dir, "missing", "secret")); err == nil {
		t.Error("no error for a missing directory")
	}
}

func TestGateAuthorize(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	keys := Keys{Room: "room", Admin: "admin"}
	s, err := NewSessions(secret(1), keys, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	g := &Gate{Keys: keys, Sessions: s, Failures: NewThrottle(2, time.Minute)}
	if !g.Private() || !g.Moderated() {
		t.Error("gate with both keys: not private or not moderated")
	}
	member, _, _ := s.Issue(Member, now)
	req := func(bearer, cookie string) *http.Request {
		r, _ := http.NewRequest("GET", "http://x/stream", nil)
		if bearer != "" {
			r.Header.Set("Authorization", "Bearer "+bearer)
		}
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
		}
		return r
	}
	tests := []struct {
		name           string
		bearer, cookie string
		want           Role
	}{
		{"nothing", "", "", None},
		{"room key", "room", "", Member},
		{"admin key", "admin", "", Admin},
		{"member cookie", "", member, Member},
		{"forged cookie", "", member[:len(member)-2] + "AA", None},
		{"bearer wins over cookie", "admin", member, Admin},
	}
	for _, tt := range tests {
		if got, _ := g.Authorize(req(tt.bearer, tt.cookie), "a", now); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	// Two wrong keys block the address, even for the right key, but not
	// its cookie or another address.
	for range 2 {
		if got, wait := g.Authorize(req("wrong", ""), "b", now); got != None || wait != 0 {
			t.Fatalf("wrong key: %v, %v", got, wait)
		}
	}
	if got, wait := g.Authorize(req("room", ""), "b", now); got != None || wait != time.Minute {
		t.Errorf("right key from a blocked address: %v, wait %v; want none, 1m", got, wait)
	}
	if got, _ := g.Authorize(req("", member), "b", now); got != Member {
		t.Errorf("cookie from a blocked address: %v", got)
	}
	if got, _ := g.Authorize(req("room", ""), "c", now); got != Member {
		t.Errorf("another address: %v", got)
	}
	if got, _ := g.Authorize(req("room", ""), "b", now.Add(time.Minute)); got != Member {
		t.Errorf("after the window: %v", got)
	}
}
