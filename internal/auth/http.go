package auth

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"chat/internal/httpx"
)

// maxLoginBody is the largest POST /login body, in bytes.
const maxLoginBody = 4 << 10

// loginBody is the body of POST /login.
var loginBody = httpx.Body{Max: maxLoginBody, Types: []string{httpx.JSON, httpx.Form}, Example: `{"key": "..."}`}

// unauthorized answers 401 with a Bearer challenge and says nothing about
// the resource asked for.
func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="chat"`)
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteError(w, http.StatusUnauthorized, msg)
}

// tooManyFailures answers 429 to an address that sent too many wrong keys.
func tooManyFailures(w http.ResponseWriter, wait time.Duration) {
	httpx.RetryAfter(w, wait)
	httpx.WriteError(w, http.StatusTooManyRequests, "too many wrong keys from your address; try again later")
}

// RequireRoom passes requests that may use the room: all of them in an
// open room; in a private one, those with the room or admin key as a
// Bearer key or a valid session cookie. The others get 401 before next
// sees them, so nothing about the room leaks. addrOf gives the address a
// request's wrong keys count against.
func (g *Gate) RequireRoom(addrOf func(*http.Request) string, next http.Handler) http.Handler {
	if !g.Private() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, wait := g.Authorize(r, addrOf(r), time.Now())
		switch {
		case role >= Member:
			next.ServeHTTP(w, r)
		case wait > 0:
			tooManyFailures(w, wait)
		default:
			unauthorized(w, "this room needs its key: log in, or send Authorization: Bearer <room key>")
		}
	})
}

// RequireAdmin passes requests with the admin key as a Bearer key or an
// admin session: others get 401 (no valid credentials) or 403 (the room's
// credentials, which do not moderate).
func (g *Gate) RequireAdmin(addrOf func(*http.Request) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, wait := g.Authorize(r, addrOf(r), time.Now())
		switch {
		case role == Admin:
			next.ServeHTTP(w, r)
		case wait > 0:
			tooManyFailures(w, wait)
		case role == Member:
			httpx.WriteError(w, http.StatusForbidden, "this needs the admin key")
		default:
			unauthorized(w, "this needs the admin key: log in with it, or send Authorization: Bearer <admin key>")
		}
	})
}

// Moderator reports whether r carries the admin's credentials (the admin
// key as a Bearer key, or an admin session), for a route that serves
// moderators and others alike. A request that sends a Bearer key which is
// no key of the room is answered 401, or 429 once its address has used up
// its tries, and answered is true; a request without credentials, or with
// the room's, is no moderator and is not answered. In a room without an
// admin key nobody moderates and nothing is answered.
func (g *Gate) Moderator(w http.ResponseWriter, r *http.Request, addr string) (moderator, answered bool) {
	if !g.Moderated() {
		return false, false
	}
	role, wait := g.Authorize(r, addr, time.Now())
	_, bearer := Bearer(r.Header)
	switch {
	case role == Admin:
		return true, false
	case wait > 0:
		tooManyFailures(w, wait)
		return false, true
	case bearer && role == None:
		unauthorized(w, "wrong key: send Authorization: Bearer <admin key> to moderate, or no key to act on your own messages")
		return false, true
	}
	return false, false
}

// parseLogin decodes the key from a POST /login body: a JSON object
// {"key": "..."} or a form with the one field key.
func parseLogin(contentType string, body []byte) (string, *httpx.Error) {
	var in struct {
		Key string `json:"key"`
	}
	if e := loginBody.Decode(contentType, body, &in); e != nil {
		return "", e
	}
	key := strings.TrimSpace(in.Key)
	if key == "" {
		return "", httpx.BadRequest("key is required")
	}
	return key, nil
}

// HandleLogin serves POST /login: the room key or the admin key buys a
// session cookie (204). A wrong key is 401; an address (addrOf) that sent
// too many wrong keys in the throttle's window, or has as many logins
// waiting for their bodies, gets 429 without its body being read. Keys
// are compared in constant time and never logged; bodies that cannot be
// read are logged to log at debug level.
func (g *Gate) HandleLogin(addrOf func(*http.Request) string, log *slog.Logger) http.Handler {
	body := loginBody
	body.Log = log
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		now := time.Now()
		// The try counts before the body is read, so requests that hold
		// their bodies back cannot all pass the check; it is given back
		// unless the key turns out wrong.
		try, wait := g.Failures.Take(addrOf(r), now)
		if try == nil {
			tooManyFailures(w, wait)
			return
		}
		defer try.Refund()
		data, e := body.Read(w, r)
		if e != nil {
			e.Write(w)
			return
		}
		key, e := parseLogin(r.Header.Get("Content-Type"), data)
		if e != nil {
			e.Write(w)
			return
		}
		role := g.Keys.RoleOf(key)
		if role == None {
			try.Fail()
			unauthorized(w, "wrong key")
			return
		}
		value, exp, err := g.Sessions.Issue(role, now)
		if err != nil {
			httpx.WriteError(w, http.StatusInternalServerError, "could not make a session")
			return
		}
		setCookie(w, r, value, exp, httpx.Seconds(exp.Sub(now)))
		w.WriteHeader(http.StatusNoContent)
	})
}

// setCookie sets the session cookie to value, expiring at exp and after
// maxAge seconds (negative: at once): HttpOnly, SameSite=Strict, and
// Secure over TLS.
func setCookie(w http.ResponseWriter, r *http.Request, value string, exp time.Time, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     "/",
		Expires:  exp,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
}

// HandleLogout serves POST /logout: it clears the session cookie (204).
// The signed value itself stays valid until it expires; a browser that
// logged out no longer has it.
func HandleLogout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		setCookie(w, r, "", time.Time{}, -1)
		w.WriteHeader(http.StatusNoContent)
	})
}

// HandleSession serves GET /session, which the page reads to know whether
// to ask for a key and whether to show moderation controls: whether the
// room is private, whether moderation is on, and what the caller's own
// credentials allow ("none", "member" or "admin"). It never answers 401.
func (g *Gate) HandleSession(addrOf func(*http.Request) string) http.Handler {
	type response struct {
		Private    bool   `json:"private"`
		Moderation bool   `json:"moderation"`
		Role       string `json:"role"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		role := None
		if g.Private() || g.Moderated() {
			var wait time.Duration
			if role, wait = g.Authorize(r, addrOf(r), time.Now()); wait > 0 {
				tooManyFailures(w, wait)
				return
			}
		}
		if role == None && !g.Private() {
			role = Member // an open room: everyone is a member
		}
		_ = httpx.Encode(w, http.StatusOK, response{g.Private(), g.Moderated(), role.String()})
	})
}
