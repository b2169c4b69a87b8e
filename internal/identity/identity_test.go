package identity

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// newIssuer returns an Issuer with a secret of fill bytes.
func newIssuer(t *testing.T, fill byte) *Issuer {
	t.Helper()
	is, err := New(bytes.Repeat([]byte{fill}, MinSecret))
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// withCookie returns a request that carries the given identity cookie
// values.
func withCookie(values ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, v := range values {
		r.AddCookie(&http.Cookie{Name: CookieName, Value: v})
	}
	return r
}

// TestRoundTrip checks that a cookie's identity comes back, and that ids
// are 128 random bits in base64url.
func TestRoundTrip(t *testing.T) {
	is := newIssuer(t, 1)
	seen := map[string]bool{}
	for range 100 {
		id := NewID()
		if b, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(b) != 16 || seen[id] {
			t.Fatalf("id %q: %v, %d bytes, seen before: %v", id, err, len(b), seen[id])
		}
		seen[id] = true
		got, ok := is.FromRequest(withCookie(is.Cookie(id, false).Value))
		if !ok || got != id {
			t.Fatalf("FromRequest = %q, %v; want %q", got, ok, id)
		}
	}
}

// TestTamper checks that changing any byte of a value, cutting it or
// adding to it makes it no identity.
func TestTamper(t *testing.T) {
	is := newIssuer(t, 1)
	v := is.Cookie(NewID(), false).Value
	for i := range len(v) {
		for _, c := range []byte{'A', 'B', '.', '0'} {
			if v[i] == c {
				continue
			}
			bad := v[:i] + string(c) + v[i+1:]
			if _, ok := is.FromRequest(withCookie(bad)); ok {
				t.Errorf("accepted %q (byte %d changed)", bad, i)
			}
		}
		if _, ok := is.FromRequest(withCookie(v[:i])); ok {
			t.Errorf("accepted %q (cut to %d bytes)", v[:i], i)
		}
	}
	if _, ok := is.FromRequest(withCookie(v + "A")); ok {
		t.Error("accepted a value with a byte added")
	}
}

// TestOtherKey checks that a value signed with another secret is no
// identity.
func TestOtherKey(t *testing.T) {
	a, b := newIssuer(t, 1), newIssuer(t, 2)
	if _, ok := b.FromRequest(withCookie(a.Cookie(NewID(), false).Value)); ok {
		t.Error("a cookie of another secret was accepted")
	}
	if _, err := New(make([]byte, MinSecret-1)); err == nil {
		t.Error("New accepted a short secret")
	}
}

// TestKeyDerivation pins how the MAC key comes from the secret: a change
// would end every identity issued, and the label keeps the key apart from
// the session keys package auth derives from the same secret.
func TestKeyDerivation(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, MinSecret)
	is, err := New(secret)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("chat identity v1"))
	if !bytes.Equal(is.key, m.Sum(nil)) {
		t.Error("the key is not HMAC-SHA256(secret, \"chat identity v1\")")
	}
	raw := &Issuer{key: secret}
	if _, ok := is.FromRequest(withCookie(raw.Cookie(NewID(), false).Value)); ok {
		t.Error("accepted a value signed with the secret itself")
	}
}

// TestLifetime checks, on a fake clock, that a value is valid for
// Lifetime after it was issued, and one issued in the future is not.
func TestLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		is := newIssuer(t, 1)
		id := NewID()
		v := is.Cookie(id, false).Value
		time.Sleep(Lifetime - time.Second)
		if got, ok := is.FromRequest(withCookie(v)); !ok || got != id {
			t.Fatalf("a second before its end: %q, %v", got, ok)
		}
		time.Sleep(time.Second)
		if _, ok := is.FromRequest(withCookie(v)); ok {
			t.Fatal("accepted at its end")
		}
		if _, ok := is.FromRequest(withCookie(is.sign(id, time.Now().Add(maxSkew)))); !ok {
			t.Error("refused a value issued within the clock skew allowed")
		}
		if _, ok := is.FromRequest(withCookie(is.sign(id, time.Now().Add(maxSkew+time.Second)))); ok {
			t.Error("accepted a value issued in the future")
		}
	})
}

// TestMalformed checks values that are no identity, however signed.
func TestMalformed(t *testing.T) {
	is := newIssuer(t, 1)
	id := NewID()
	for _, v := range []string{
		"", ".", "v1", "garbage", strings.Repeat("A", maxValue+1),
		is.sign("short", time.Now()),
		is.sign(id+"AA", time.Now()),
		is.sign(id+".x", time.Now()),
		signed(is, "v2."+id+"."+strconv.FormatInt(time.Now().Unix(), 10)),
		signed(is, "v1."+id+"."+strconv.FormatInt(time.Now().Unix(), 10)+".x"),
		signed(is, "v1."+id+".nope"),
		signed(is, "v1."+id),
	} {
		if _, ok := is.FromRequest(withCookie(v)); ok {
			t.Errorf("accepted %q", v)
		}
	}
	if _, ok := is.FromRequest(httptest.NewRequest(http.MethodGet, "/", nil)); ok {
		t.Error("a request without cookies has an identity")
	}
	good := is.Cookie(id, false).Value
	if got, ok := is.FromRequest(withCookie("forged", good)); !ok || got != id {
		t.Errorf("a bad cookie before a good one: %q, %v", got, ok)
	}
}

// signed returns payload with its MAC under is.
func signed(is *Issuer, payload string) string { return payload + "." + is.mac(payload) }

// TestEnsure checks which responses set the cookie: one for a request
// without identity or with a bad one, none for a good one, a renewal with
// the same id for an old one.
func TestEnsure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		is := newIssuer(t, 1)
		ensure := func(r *http.Request) (string, *http.Cookie) {
			w := httptest.NewRecorder()
			id := is.Ensure(w, r)
			cs := w.Result().Cookies()
			if len(cs) > 1 {
				t.Fatalf("%d cookies set", len(cs))
			}
			if len(cs) == 0 {
				return id, nil
			}
			return id, cs[0]
		}
		id, c := ensure(withCookie())
		if c == nil || id == "" {
			t.Fatal("no cookie for a request without identity")
		}
		if got, c2 := ensure(withCookie(c.Value)); got != id || c2 != nil {
			t.Fatalf("with its cookie: id %q, cookie %v; want %q and none", got, c2, id)
		}
		if got, c2 := ensure(withCookie(c.Value[:len(c.Value)-1] + "x")); got == id || c2 == nil {
			t.Fatalf("with a forged cookie: id %q, cookie %v; want a new one", got, c2)
		}
		time.Sleep(RenewAfter)
		got, c2 := ensure(withCookie(c.Value))
		if got != id || c2 == nil || c2.Value == c.Value {
			t.Fatalf("an old cookie: id %q, cookie %v; want %q renewed", got, c2, id)
		}
	})
}

// TestCookieHeader checks the exact Set-Cookie header, on a fake clock
// (which starts at 2000-01-01 00:00:00 UTC).
func TestCookieHeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		is := newIssuer(t, 1)
		w := httptest.NewRecorder()
		id := is.Ensure(w, httptest.NewRequest(http.MethodGet, "/", nil))
		got := w.Header().Get("Set-Cookie")
		want := CookieName + "=v1." + id + ".946684800." + is.mac("v1."+id+".946684800") +
			"; Path=/; Expires=Sun, 04 Feb 2001 00:00:00 GMT; Max-Age=34560000; HttpOnly; SameSite=Strict"
		if got != want {
			t.Errorf("Set-Cookie:\n got %s\nwant %s", got, want)
		}
	})
}

// TestSecureOverTLS checks, over a real TLS connection, that the cookie
// is Secure there, and not over plain HTTP.
func TestSecureOverTLS(t *testing.T) {
	is := newIssuer(t, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, is.Ensure(w, r))
	})
	for _, tt := range []struct {
		srv    *httptest.Server
		secure bool
	}{{httptest.NewTLSServer(h), true}, {httptest.NewServer(h), false}} {
		t.Cleanup(tt.srv.Close)
		resp, err := tt.srv.Client().Get(tt.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cs := resp.Cookies()
		if len(cs) != 1 || cs[0].Secure != tt.secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
			t.Errorf("TLS %v: cookies %v (%q)", tt.secure, cs, resp.Header.Get("Set-Cookie"))
		}
	}
}

// TestCarried checks that Carried sets the cookie as Ensure does but
// reports only the identity the request itself carried.
func TestCarried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		is := newIssuer(t, 1)
		carried := func(r *http.Request) (string, []*http.Cookie) {
			w := httptest.NewRecorder()
			id := is.Carried(w, r)
			return id, w.Result().Cookies()
		}
		id, cs := carried(withCookie())
		if id != "" || len(cs) != 1 {
			t.Fatalf("without identity: %q and %d cookies, want none and 1", id, len(cs))
		}
		want, ok := is.FromRequest(withCookie(cs[0].Value))
		if !ok {
			t.Fatal("the cookie set carries no identity")
		}
		if id, cs := carried(withCookie(cs[0].Value)); id != want || len(cs) != 0 {
			t.Fatalf("with its cookie: %q and %d cookies, want %q and none", id, len(cs), want)
		}
		if id, cs := carried(withCookie("v1.forged")); id != "" || len(cs) != 1 {
			t.Fatalf("with a bad cookie: %q and %d cookies, want none and 1", id, len(cs))
		}
		old := is.Cookie(want, false).Value
		time.Sleep(RenewAfter)
		if id, cs := carried(withCookie(old)); id != want || len(cs) != 1 || cs[0].Value == old {
			t.Fatalf("with an old cookie: %q and %v, want %q renewed", id, cs, want)
		}
	})
}
