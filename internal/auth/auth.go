// Package auth checks the credentials of a private chat room: keys sent as
// "Authorization: Bearer" headers, compared in constant time, and session
// cookies whose values are signed with HMAC-SHA256 by a server secret. It
// also keeps the per-address count of tries of keys (the login throttle).
// It holds no keys in logs or errors and starts no goroutines.
package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Tuning values of sessions and of the login throttle.
const (
	// DefaultLifetime is how long a session cookie stays valid.
	DefaultLifetime = 30 * 24 * time.Hour
	// SecretSize is the size in bytes of the server secret that signs
	// sessions.
	SecretSize = 32
	// maxValue bounds the length of a session value worth checking; a
	// real one is about 90 bytes.
	maxValue = 256
	// nonceSize is the number of random bytes in each session value, so
	// that no two sessions have the same value.
	nonceSize = 12
	// maxThrottled bounds how many addresses and prefixes the login
	// throttle remembers; past it, ended windows are forgotten, then
	// arbitrary ones.
	maxThrottled = 100000
)

// CookieName is the name of the session cookie.
const CookieName = "chat_session"

// Role is what a credential allows.
type Role int

// The roles, from least to most.
const (
	// None is no valid credential.
	None Role = iota
	// Member may read and write the room (the room key).
	Member
	// Admin may also moderate (the admin key). An admin is a member too.
	Admin
)

// String returns the role's name.
func (r Role) String() string {
	switch r {
	case Member:
		return "member"
	case Admin:
		return "admin"
	}
	return "none"
}

// letter returns the role's one-letter code in session values.
func (r Role) letter() string {
	switch r {
	case Member:
		return "m"
	case Admin:
		return "a"
	}
	return ""
}

// KeyEqual reports whether got equals want, in time that does not depend
// on where they differ or on their lengths (both are hashed to a fixed
// size first). An empty want matches nothing.
func KeyEqual(got, want string) bool {
	if want == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Keys are the keys a server accepts. An empty key is not set.
type Keys struct {
	// Room makes the room private: only its holders read and write.
	Room string
	// Admin enables moderation for its holders.
	Admin string
}

// RoleOf returns what key grants: Admin for the admin key, Member for the
// room key, None otherwise. Both keys are always compared, so the time
// taken does not say which one was tried.
func (k Keys) RoleOf(key string) Role {
	admin := KeyEqual(key, k.Admin)
	member := KeyEqual(key, k.Room)
	switch {
	case admin:
		return Admin
	case member:
		return Member
	}
	return None
}

// Bearer returns the token of an "Authorization: Bearer <token>" header
// (the scheme is case-insensitive), and false when there is none.
func Bearer(h http.Header) (string, bool) {
	v := h.Get("Authorization")
	scheme, token, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// Sessions issues and checks session values: "v1.<role>.<expiry>.<nonce>.<mac>",
// where mac is the HMAC-SHA256 of everything before it. The MAC key of each
// role is derived from the server secret and the hashes of the keys that
// role depends on (the room key for members; the admin and room keys for
// admins), so changing a key ends every session made with it. Sessions is
// safe for concurrent use.
type Sessions struct {
	// macKeys holds the derived MAC key of each role; nil for a role whose
	// key is not set.
	macKeys map[string][]byte
	// lifetime is how long an issued session stays valid.
	lifetime time.Duration
}

// NewSessions returns a Sessions that signs with secret (at least
// SecretSize bytes) for the given keys. Sessions last lifetime
// (DefaultLifetime if not positive).
func NewSessions(secret []byte, keys Keys, lifetime time.Duration) (*Sessions, error) {
	if len(secret) < SecretSize {
		return nil, fmt.Errorf("session secret is %d bytes, want at least %d", len(secret), SecretSize)
	}
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	derive := func(role Role, deps ...string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("chat session v1\x00" + role.letter()))
		for _, k := range deps {
			h := sha256.Sum256([]byte(k))
			m.Write([]byte{0})
			m.Write(h[:])
		}
		return m.Sum(nil)
	}
	s := &Sessions{macKeys: map[string][]byte{}, lifetime: lifetime}
	if keys.Room != "" {
		s.macKeys[Member.letter()] = derive(Member, keys.Room)
	}
	if keys.Admin != "" {
		s.macKeys[Admin.letter()] = derive(Admin, keys.Admin, keys.Room)
	}
	return s, nil
}

// Lifetime returns how long an issued session stays valid.
func (s *Sessions) Lifetime() time.Duration { return s.lifetime }

// Issue returns a new session value for role, valid until the returned
// time. It fails for a role whose key is not set.
func (s *Sessions) Issue(role Role, now time.Time) (string, time.Time, error) {
	key := s.macKeys[role.letter()]
	if key == nil {
		return "", time.Time{}, fmt.Errorf("no key for role %s", role)
	}
	var nonce [nonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("session nonce: %w", err)
	}
	exp := now.Add(s.lifetime).Truncate(time.Second)
	payload := "v1." + role.letter() + "." + strconv.FormatInt(exp.Unix(), 10) + "." +
		base64.RawURLEncoding.EncodeToString(nonce[:])
	return payload + "." + sign(key, payload), exp, nil
}

// Check returns the role of a session value, or None if it is malformed,
// not signed by this server for the current keys, or expired at now. The
// signature is checked before any other part of the value is used.
func (s *Sessions) Check(value string, now time.Time) Role {
	if len(value) > maxValue {
		return None
	}
	i := strings.LastIndexByte(value, '.')
	if i < 0 {
		return None
	}
	payload, mac := value[:i], value[i+1:]
	parts := strings.Split(payload, ".")
	if len(parts) != 4 || parts[0] != "v1" {
		return None
	}
	key := s.macKeys[parts[1]]
	if key == nil {
		return None
	}
	if !hmac.Equal([]byte(mac), []byte(sign(key, payload))) {
		return None
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || now.Unix() >= exp {
		return None
	}
	if parts[1] == Admin.letter() {
		return Admin
	}
	return Member
}

// sign returns the base64url HMAC-SHA256 of payload under key.
func sign(key []byte, payload string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// NewSecret returns SecretSize random bytes.
func NewSecret() ([]byte, error) {
	b := make([]byte, SecretSize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("session secret: %w", err)
	}
	return b, nil
}

// LoadSecret returns the secret kept in the file at path, creating the file
// (mode 0600, written and synced before it is used) with a NewSecret when it
// does not exist. It refuses a file that others than its owner may read or
// that holds fewer than SecretSize bytes.
func LoadSecret(path string) ([]byte, error) {
	for range 2 {
		b, err := readSecret(path)
		if !errors.Is(err, fs.ErrNotExist) {
			return b, err
		}
		secret, err := NewSecret()
		if err != nil {
			return nil, err
		}
		err = writeSecret(path, secret)
		if errors.Is(err, fs.ErrExist) {
			continue // another process made it first: read that one
		}
		if err != nil {
			return nil, err
		}
		return secret, nil
	}
	return nil, fmt.Errorf("session secret %s: cannot create it", path)
}

// readSecret reads and checks an existing secret file.
func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("session secret: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("session secret %s is readable by others (mode %04o); run chmod 600 on it", path, fi.Mode().Perm())
	}
	b := make([]byte, SecretSize+1)
	n, _ := f.Read(b)
	if n < SecretSize {
		return nil, fmt.Errorf("session secret %s holds %d bytes, want %d; delete it to make a new one (this ends every session)", path, n, SecretSize)
	}
	return b[:SecretSize], nil
}

// writeSecret creates path (mode 0600) with data, failing with
// fs.ErrExist if it is already there, and makes it durable.
func writeSecret(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	syncDir(path)
	return nil
}

// syncDir fsyncs the directory that holds path, so that a file created or
// renamed there is durable (where the platform allows it).
func syncDir(path string) {
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// Gate tells what a request's credentials allow. Its zero value (no keys)
// allows nothing; a nil Sessions accepts no cookie and a nil Failures
// throttles nothing.
type Gate struct {
	// Keys are the keys the server accepts.
	Keys Keys
	// Sessions checks session cookies.
	Sessions *Sessions
	// Failures counts wrong keys per address.
	Failures *Throttle
}

// Private reports whether the room needs a key.
func (g *Gate) Private() bool { return g.Keys.Room != "" }

// Moderated reports whether moderation is enabled.
func (g *Gate) Moderated() bool { return g.Keys.Admin != "" }

// Authorize returns the role that the request's credentials grant at now:
// its Bearer key if it sends one, else its session cookie. A Bearer key is
// checked and counted against addr (the request's per-address key) in one
// step (Throttle.Record): a wrong one counts as a failed login, and once
// addr has used up its tries, Authorize returns None and the time left
// whatever key it sent.
func (g *Gate) Authorize(r *http.Request, addr string, now time.Time) (Role, time.Duration) {
	if key, ok := Bearer(r.Header); ok {
		role := g.Keys.RoleOf(key)
		if wait, blocked := g.Failures.Record(addr, now, role != None); blocked {
			return None, wait
		}
		return role, 0
	}
	if g.Sessions == nil {
		return None, 0
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		return None, 0
	}
	return g.Sessions.Check(c.Value, now), 0
}
