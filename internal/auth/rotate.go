package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// MinLifetime is the shortest session lifetime a server may be given: a
// shorter one would issue cookies that expire before they are used.
const MinLifetime = time.Minute

// FingerprintPath returns the name of the file, beside the secret at
// secretPath, that holds the fingerprint of the keys the secret signs
// sessions for.
func FingerprintPath(secretPath string) string { return secretPath + ".fingerprint" }

// LoadSessions returns the Sessions of a server that keeps its secret in
// the file at secretPath (see LoadSecret), so that sessions survive
// restarts. Beside the secret it keeps a fingerprint of the keys (an
// HMAC of them under the secret, which says nothing of the keys without
// it; FingerprintPath). When the keys differ from the ones the fingerprint
// was made for, the secret is replaced by a new one before anything is
// signed with it: every session ends for good, also when the keys later
// change back (K1, K2, K1). With no key set, no file is made, but an
// existing secret is still replaced if keys were set before, and LoadSessions
// returns nil. It reports whether it replaced the secret.
func LoadSessions(secretPath string, keys Keys, lifetime time.Duration) (*Sessions, bool, error) {
	if _, err := os.Stat(secretPath); keys == (Keys{}) && errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	secret, err := LoadSecret(secretPath)
	if err != nil {
		return nil, false, err
	}
	fpPath := FingerprintPath(secretPath)
	fp := fingerprint(secret, keys)
	old, err := os.ReadFile(fpPath)
	rotated := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A new secret, or one from a server that kept no fingerprint: it
		// signs for these keys from now on.
	case err != nil:
		return nil, false, fmt.Errorf("session keys fingerprint: %w", err)
	case hmac.Equal([]byte(strings.TrimSpace(string(old))), []byte(fp)):
		s, err := sessionsFor(secret, keys, lifetime)
		return s, false, err
	default:
		if secret, err = NewSecret(); err != nil {
			return nil, false, err
		}
		if err := replaceFile(secretPath, secret); err != nil {
			return nil, false, fmt.Errorf("replace session secret: %w", err)
		}
		fp, rotated = fingerprint(secret, keys), true
	}
	if err := replaceFile(fpPath, []byte(fp+"\n")); err != nil {
		return nil, false, fmt.Errorf("session keys fingerprint: %w", err)
	}
	s, err := sessionsFor(secret, keys, lifetime)
	return s, rotated, err
}

// GateConfig is what NewGate makes a gate of.
type GateConfig struct {
	// Keys are the keys the server accepts.
	Keys Keys
	// SecretPath, if not empty, is the file that keeps the secret that
	// signs sessions (LoadSessions), so that they survive restarts; else
	// a random secret signs them.
	SecretPath string
	// Lifetime is how long a session lasts.
	Lifetime time.Duration
	// Failures is how many wrong keys one address may send per Window
	// (NewThrottle).
	Failures int
	Window   time.Duration
}

// NewGate returns the gate of c: with a key set, sessions (from the kept
// secret, or a random one) and the login throttle; with none, neither,
// though a kept secret is still replaced if keys were set before. It
// reports whether it replaced the kept secret because the keys changed,
// which ended every session for good.
func NewGate(c GateConfig) (g *Gate, rotated bool, err error) {
	g = &Gate{Keys: c.Keys}
	if c.SecretPath != "" {
		g.Sessions, rotated, err = LoadSessions(c.SecretPath, c.Keys, c.Lifetime)
	} else if g.Private() || g.Moderated() {
		var secret []byte
		if secret, err = NewSecret(); err == nil {
			g.Sessions, err = NewSessions(secret, c.Keys, c.Lifetime)
		}
	}
	if err != nil {
		return nil, rotated, err
	}
	if g.Private() || g.Moderated() {
		g.Failures = NewThrottle(c.Failures, c.Window)
	}
	return g, rotated, nil
}

// sessionsFor returns NewSessions for secret and keys, or nil if no key is
// set.
func sessionsFor(secret []byte, keys Keys, lifetime time.Duration) (*Sessions, error) {
	if keys == (Keys{}) {
		return nil, nil
	}
	return NewSessions(secret, keys, lifetime)
}

// fingerprint returns the base64url HMAC-SHA256, under secret, of the
// hashes of both keys (an unset key hashes as the empty string).
func fingerprint(secret []byte, keys Keys) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("chat keys v1\x00"))
	for _, k := range []string{keys.Room, keys.Admin} {
		h := sha256.Sum256([]byte(k))
		m.Write([]byte{0})
		m.Write(h[:])
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// replaceFile makes path hold data (mode 0600), durably: written to
// path+".tmp", synced, renamed over path and the directory synced, so a
// crash leaves the old file or the new one.
func replaceFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := writeSecret(tmp, data); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(path)
	return nil
}

// Fingerprint returns the fingerprint of keys under secret that
// LoadSessions keeps beside a secret file: an HMAC of the keys' hashes,
// which says nothing of the keys without the secret. A secret shared by
// other means is kept with it, so that a change of keys replaces it.
func Fingerprint(secret []byte, keys Keys) string { return fingerprint(secret, keys) }
