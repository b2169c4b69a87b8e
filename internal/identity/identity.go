// Package identity gives every client a stable anonymous identity: a
// random id carried in a cookie that the server signs, so that it keeps
// no state of its own. The cookie's value is
//
//	v1.<id>.<issued>.<mac>
//
// where id is 128 random bits in unpadded base64url, issued the Unix time
// it was issued, and mac the HMAC-SHA256, in unpadded base64url, of
// everything before it under a key derived from the server's secret. A
// value that is malformed, signed with another key, issued more than
// Lifetime ago or in the future is no identity: the client gets a new one,
// never an error.
//
// In a private room the session cookie of package auth and this cookie
// simply coexist: the session says what the client may do, the identity
// who it is. Logging out ends the session and keeps the identity.
//
// An Issuer is safe for concurrent use and starts no goroutines.
package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Tuning values of the identity cookie.
const (
	// CookieName is the name of the cookie.
	CookieName = "chat_identity"
	// Lifetime is how long a cookie stays valid: 400 days, the longest
	// that browsers keep a cookie.
	Lifetime = 400 * 24 * time.Hour
	// RenewAfter is the age after which Ensure sets the cookie again, with
	// the same id, so that a client that comes back keeps its identity.
	RenewAfter = 30 * 24 * time.Hour
	// MinSecret is the least number of bytes of secret New accepts.
	MinSecret = 32
	// idSize is the number of random bytes of an id.
	idSize = 16
	// maxValue bounds the length of a cookie value worth checking; a real
	// one is 81 bytes.
	maxValue = 128
	// maxSkew is how far in the future an issue time may be (another
	// server's clock) before the value is refused.
	maxSkew = 5 * time.Minute
)

// keyLabel separates the identity key from other keys derived from the
// same secret (package auth derives session keys).
const keyLabel = "chat identity v1"

// Issuer issues and checks identity cookies.
type Issuer struct {
	// key is the MAC key, derived from the server's secret.
	key []byte
}

// New returns an Issuer whose key is derived from secret (at least
// MinSecret bytes). A server that keeps its state keeps this secret in a
// file of its own (auth.LoadSecret makes one): not the session secret,
// which is replaced when the room's keys change, and with it would go
// every identity.
func New(secret []byte) (*Issuer, error) {
	if len(secret) < MinSecret {
		return nil, fmt.Errorf("identity secret is %d bytes, want at least %d", len(secret), MinSecret)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(keyLabel))
	return &Issuer{key: m.Sum(nil)}, nil
}

// NewID returns a new random identity id: 128 bits in unpadded base64url.
func NewID() string {
	var b [idSize]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand.Read)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// FromRequest returns the identity the request's cookie carries, and
// whether it carries a valid one.
func (is *Issuer) FromRequest(r *http.Request) (string, bool) {
	id, _, ok := is.fromRequest(r, time.Now())
	return id, ok
}

// fromRequest returns the id and issue time of the first valid identity
// cookie of r at now.
func (is *Issuer) fromRequest(r *http.Request, now time.Time) (string, time.Time, bool) {
	for _, c := range r.CookiesNamed(CookieName) {
		if id, issued, ok := is.check(c.Value, now); ok {
			return id, issued, true
		}
	}
	return "", time.Time{}, false
}

// Cookie returns a cookie that carries id (from NewID or FromRequest),
// issued now: Path=/, HttpOnly, SameSite=Strict, Secure if secure (the
// request came over TLS), and lasting Lifetime.
func (is *Issuer) Cookie(id string, secure bool) *http.Cookie {
	now := time.Now()
	return &http.Cookie{
		Name:     CookieName,
		Value:    is.sign(id, now),
		Path:     "/",
		Expires:  now.Add(Lifetime).UTC(),
		MaxAge:   int(Lifetime / time.Second),
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteStrictMode,
	}
}

// Ensure returns the request's identity. If the request has none (or a
// bad one), it makes a new one and sets its cookie on w; if the cookie is
// older than RenewAfter, it sets it again with the same id. Call it
// before writing the response's header.
func (is *Issuer) Ensure(w http.ResponseWriter, r *http.Request) string {
	id, carried := is.ensure(w, r)
	if carried != "" {
		return carried
	}
	return id
}

// Carried returns the identity the request carries, or "" if it carries
// none (or a bad one), and sets the cookie on w as Ensure does. A request
// without identity stays without one even though its response now sets
// one: a client that keeps no cookies (curl without a jar) must not be
// taken for the holder of an identity it will never send back. Call it
// before writing the response's header.
func (is *Issuer) Carried(w http.ResponseWriter, r *http.Request) string {
	_, carried := is.ensure(w, r)
	return carried
}

// ensure returns the request's identity as carried ("" if none) and the
// one its response sets or keeps: a new one when it carries none, the same
// one renewed when its cookie is older than RenewAfter.
func (is *Issuer) ensure(w http.ResponseWriter, r *http.Request) (id, carried string) {
	id, issued, ok := is.fromRequest(r, time.Now())
	if ok && time.Since(issued) < RenewAfter {
		return id, id
	}
	if ok {
		carried = id
	} else {
		id = NewID()
	}
	http.SetCookie(w, is.Cookie(id, r.TLS != nil))
	return id, carried
}

// sign returns the cookie value that carries id, issued at issued.
func (is *Issuer) sign(id string, issued time.Time) string {
	payload := "v1." + id + "." + strconv.FormatInt(issued.Unix(), 10)
	return payload + "." + is.mac(payload)
}

// mac returns the HMAC-SHA256 of payload, in unpadded base64url.
func (is *Issuer) mac(payload string) string {
	m := hmac.New(sha256.New, is.key)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// check returns the id and issue time of a cookie value, and whether it
// is valid at now. The MAC is compared in constant time before any other
// part of the value is used.
func (is *Issuer) check(value string, now time.Time) (string, time.Time, bool) {
	if len(value) > maxValue {
		return "", time.Time{}, false
	}
	i := strings.LastIndexByte(value, '.')
	if i < 0 {
		return "", time.Time{}, false
	}
	payload, mac := value[:i], value[i+1:]
	if !hmac.Equal([]byte(mac), []byte(is.mac(payload))) {
		return "", time.Time{}, false
	}
	parts := strings.Split(payload, ".")
	if len(parts) != 3 || parts[0] != "v1" {
		return "", time.Time{}, false
	}
	if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err != nil || len(b) != idSize {
		return "", time.Time{}, false
	}
	sec, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	issued := time.Unix(sec, 0)
	if issued.After(now.Add(maxSkew)) || !now.Before(issued.Add(Lifetime)) {
		return "", time.Time{}, false
	}
	return parts[1], issued, true
}
