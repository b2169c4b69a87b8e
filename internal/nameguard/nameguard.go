// Package nameguard keeps a name in the hands of one person at a time, at
// the HTTP edge of the chat server. It tells who a request is (its identity
// cookie, package identity, which it sets on the response of a client that
// has none) and whether that identity may use the name the request gives
// (the holds of package names), and says how to answer a request that may
// not: 409 with the name for a name someone else holds, or for a new name
// of an identity whose three names each have a stream open; 400 with the
// name for a name the skeleton rules refuse; 429 when taking a new name would exceed the
// address's post rate; 503 when the table of holds is full, or (with
// Retry-After) when the store the table shares with other nodes cannot be
// reached.
//
// A request without identity may use a free name and holds nothing. A post
// already draws on its address's post rate, so the name it takes costs
// nothing more; a stream or a typing notice that takes a name anew draws
// one post from that rate.
//
// A Guard is safe for concurrent use; Keep is the one goroutine it may
// have, which saves the holds now and then and closes their file.
package nameguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"chat/internal/auth"
	"chat/internal/httpx"
	"chat/internal/identity"
	"chat/internal/limit"
	"chat/internal/names"
)

// Tuning value of the guard.
const (
	// saveEvery is how often Keep saves the holds to their file: it
	// writes the holds that open streams carry as used then, so that a
	// crash ends them at most this long before their time.
	saveEvery = time.Hour
)

// Config holds what a Guard needs.
type Config struct {
	// Issuer signs and checks the identity cookies.
	Issuer *identity.Issuer
	// Table holds the names.
	Table *names.Table
	// Rate is the post rate per address that taking a new name for a
	// stream or a typing notice draws on (nil: no limit).
	Rate *limit.Limiter
	// AddrOf returns the address a request counts against.
	AddrOf func(*http.Request) string
	// Logger receives the failures to write the holds' file (nil: none).
	Logger *slog.Logger
}

// Guard checks the names requests use; see the package comment.
type Guard struct {
	cfg Config
}

// New returns a guard with cfg.
func New(cfg Config) *Guard {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Guard{cfg: cfg}
}

// Open returns the identity issuer and the table of holds of a server:
// with data (the -data path) the secret kept in data+".identity" and the
// holds in data+".names", both mode 0600, so that both survive restarts;
// without, a random secret and a table in memory. A secretFile, when
// given, holds the secret instead (made if missing): several nodes of one
// room share one so that a cookie one issued is good on all.
func Open(data, secretFile string, opts names.Options, now time.Time) (*identity.Issuer, *names.Table, error) {
	if secretFile == "" && data != "" {
		secretFile = data + ".identity"
	}
	var secret []byte
	var err error
	if secretFile != "" {
		secret, err = auth.LoadSecret(secretFile)
	} else {
		secret, err = auth.NewSecret()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("identity secret: %w", err)
	}
	is, err := identity.New(secret)
	if err != nil {
		return nil, nil, err
	}
	if data == "" {
		return is, names.New(opts), nil
	}
	t, err := names.OpenFile(data+".names", opts, now)
	if err != nil {
		return nil, nil, err
	}
	return is, t, nil
}

// Identify returns the identity r carries, "" if none, and sets the
// identity cookie on w for a client that has none (or an old one); see
// identity.Issuer.Carried. Call it before writing the response's header.
func (g *Guard) Identify(w http.ResponseWriter, r *http.Request) string {
	return g.cfg.Issuer.Carried(w, r)
}

// Post takes or refreshes name for id, the identity of a post (drawn on the
// post rate already), or returns the error to answer the post with.
func (g *Guard) Post(name, id string) *httpx.Error {
	_, err := g.cfg.Table.Take(name, id, time.Now(), false, nil)
	return g.answer(name, err)
}

// Typing takes or refreshes name for id, the identity of a typing notice,
// drawing one post from r's address's rate when the name is new to id; or
// returns the error to answer with (a 429 with its Retry-After set on w).
func (g *Guard) Typing(w http.ResponseWriter, r *http.Request, name, id string) *httpx.Error {
	_, err := g.cfg.Table.Take(name, id, time.Now(), false, g.admit(w, r))
	return g.answer(name, err)
}

// Stream takes name for id, the identity of a stream, until the returned
// Stream is closed (as the stream ends), drawing on the post rate as Typing
// does; or returns the error to answer with. The Stream is nil when the
// stream carries no name.
func (g *Guard) Stream(w http.ResponseWriter, r *http.Request, name, id string) (*names.Stream, *httpx.Error) {
	if name == "" {
		return nil, nil
	}
	s, err := g.cfg.Table.Take(name, id, time.Now(), true, g.admit(w, r))
	return s, g.answer(name, err)
}

// Check returns the error a use of name by id would get now, taking
// nothing (the answer to a HEAD of a stream).
func (g *Guard) Check(name, id string) *httpx.Error {
	if name == "" {
		return nil
	}
	return g.answer(name, g.cfg.Table.Check(name, id, time.Now()))
}

// errRate is admit's error: the address has used up its post rate.
var errRate = errors.New("too many new names; slow down")

// admit returns the function that lets r take a new name when its address
// has a post left in its rate, setting Retry-After on w when not.
func (g *Guard) admit(w http.ResponseWriter, r *http.Request) func() error {
	if g.cfg.Rate == nil {
		return nil
	}
	return func() error {
		if ok, wait := g.cfg.Rate.Allow(g.cfg.AddrOf(r), time.Now()); !ok {
			httpx.RetryAfter(w, wait)
			return errRate
		}
		return nil
	}
}

// answer returns the error to answer a use of name with, for err from the
// table (nil for none).
func (g *Guard) answer(name string, err error) *httpx.Error {
	var refused *names.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, names.ErrHeld), errors.Is(err, names.ErrTooMany):
		return &httpx.Error{Status: http.StatusConflict, Msg: err.Error(), Name: name}
	case errors.As(err, &refused):
		return &httpx.Error{Status: http.StatusBadRequest, Msg: err.Error(), Name: name}
	case errors.Is(err, errRate):
		return &httpx.Error{Status: http.StatusTooManyRequests, Msg: err.Error()}
	case errors.Is(err, names.ErrFull):
		return &httpx.Error{Status: http.StatusServiceUnavailable, Msg: err.Error()}
	case errors.Is(err, names.ErrUnavailable):
		g.cfg.Logger.Warn("could not reach the room's held names", "err", err)
		return &httpx.Error{Status: http.StatusServiceUnavailable, Msg: names.ErrUnavailable.Error(), Retry: httpx.StoreRetry}
	}
	g.cfg.Logger.Error("could not write the held names' file", "err", err)
	return &httpx.Error{Status: http.StatusInternalServerError, Msg: "could not save the hold on the name"}
}

// Keep saves the holds to their file every saveEvery until ctx ends, then
// closes the file (see names.Table.Save and Close). Run it once, with go,
// and end it after the streams have ended.
func (g *Guard) Keep(ctx context.Context) {
	t := time.NewTicker(saveEvery)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			if err := g.cfg.Table.Save(now); err != nil {
				g.cfg.Logger.Error("could not save the held names", "err", err)
			}
		case <-ctx.Done():
			if err := g.cfg.Table.Close(time.Now()); err != nil {
				g.cfg.Logger.Error("could not save the held names", "err", err)
			}
			return
		}
	}
}

// Author returns the identity r carries, "" if none, and sets nothing: the
// author of an edit or a deletion, which a client without identity cannot
// be.
func (g *Guard) Author(r *http.Request) string {
	id, _ := g.cfg.Issuer.FromRequest(r)
	return id
}
