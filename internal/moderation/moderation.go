// Package moderation serves the moderators' endpoints of a chat room:
// listing, adding and lifting bans on client addresses (/bans), and
// listing and freeing held names (/names). It knows the room only through
// the Room interface, the bans through package ban and the names through
// package names; who may call the endpoints is decided before them
// (package auth). Deleting a message, which authors may do too, is
// package own's.
package moderation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"chat/internal/ban"
	"chat/internal/httpx"
	"chat/internal/names"
)

// maxBanBody is the largest POST /bans body, in bytes.
const maxBanBody = 4 << 10

// banBody is the body of POST /bans.
var banBody = httpx.Body{Max: maxBanBody, Types: []string{httpx.JSON}, Example: `{"addr": "...", "for": "1h"}`}

// ErrClosed is what a Room reports once the room has shut down.
var ErrClosed = errors.New("room closed")

// Bans is the ban list the endpoints read and change, and the server
// checks requests against: a ban.List, or a list that the nodes of a
// cluster share (whose changes fail with ban.ErrUnavailable while it
// cannot be reached).
type Bans interface {
	// Banned returns the ban that covers a rate-limit key at now, and
	// whether there is one.
	Banned(key string, now time.Time) (ban.Ban, bool)
	// All returns the bans in force at now, oldest change first.
	All(now time.Time) []ban.Ban
	// Add bans p until the given time (zero: for ever) and returns the
	// ban as stored.
	Add(p netip.Prefix, until, now time.Time) (ban.Ban, error)
	// Remove lifts the ban on exactly p and reports whether there was one.
	Remove(p netip.Prefix, now time.Time) (bool, error)
}

// Room is what moderation needs of the chat room.
type Room interface {
	// Kick closes the streams of the clients whose address (their
	// per-address key) match reports true, and returns how many it
	// closed, or ErrClosed, or ctx's error.
	Kick(ctx context.Context, match func(addr string) bool) (int, error)
}

// banJSON is one ban as GET and POST /bans show it.
type banJSON struct {
	// Addr is the banned address or prefix.
	Addr string `json:"addr"`
	// Until is when the ban ends; null for a ban without end.
	Until *time.Time `json:"until"`
	// StreamsClosed is how many open streams the new ban closed (POST
	// only; left out when the streams were not looked at).
	StreamsClosed *int `json:"streams_closed,omitempty"`
	// Note says why the streams were not looked at (POST only).
	Note string `json:"note,omitempty"`
}

// toBanJSON returns b as JSON shows it.
func toBanJSON(b ban.Ban) banJSON {
	out := banJSON{Addr: b.String()}
	if !b.Until.IsZero() {
		u := b.Until.UTC()
		out.Until = &u
	}
	return out
}

// HandleListBans serves GET /bans: the bans in force, oldest first.
func HandleListBans(bans Bans) http.Handler {
	type response struct {
		Bans []banJSON `json:"bans"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		out := response{Bans: []banJSON{}}
		for _, b := range bans.All(time.Now()) {
			out.Bans = append(out.Bans, toBanJSON(b))
		}
		_ = httpx.Encode(w, http.StatusOK, out)
	})
}

// parseBan decodes and checks a POST /bans body: the prefix to ban and
// when the ban ends (zero: never), from now.
func parseBan(w http.ResponseWriter, r *http.Request, body httpx.Body, now time.Time) (ban.Ban, *httpx.Error) {
	var in struct {
		Addr string `json:"addr"`
		For  string `json:"for"`
	}
	if e := body.Parse(w, r, &in); e != nil {
		return ban.Ban{}, e
	}
	if in.Addr == "" {
		return ban.Ban{}, httpx.BadRequest("addr is required")
	}
	p, err := ban.Parse(in.Addr)
	if err != nil {
		return ban.Ban{}, httpx.BadRequest("addr: %s", err.Error())
	}
	b := ban.Ban{Prefix: p}
	if in.For != "" {
		d, err := ban.ParseDuration(in.For)
		if err != nil {
			return ban.Ban{}, httpx.BadRequest("for: %s", err.Error())
		}
		b.Until = now.Add(d)
	}
	return b, nil
}

// HandleAddBan serves POST /bans with {"addr": "203.0.113.7" or a prefix,
// "for": "1h"} ("for" left out: no end). The address is keyed as the rate
// limits key it (an IPv6 address bans its /64). Its posts and new streams
// get 403 from then on, and its open streams are closed at once. It answers
// 201 with the ban and how many streams it closed. At shutdown, the ban is
// stored (201) but the room can no longer close streams: the answer then
// leaves streams_closed out and says so in note; the shutdown closes every
// stream anyway. Bodies that cannot be read are logged to log at debug
// level. A list shared by a cluster that cannot be reached gets 503: the
// ban may not be stored, and sending it again is safe. In a cluster,
// streams_closed counts this node's streams; every other node closes its
// own as the ban reaches it.
func HandleAddBan(room Room, bans Bans, log *slog.Logger) http.Handler {
	body := banBody
	body.Log = log
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		in, e := parseBan(w, r, body, now)
		if e != nil {
			e.Write(w)
			return
		}
		b, err := bans.Add(in.Prefix, in.Until, now)
		switch {
		case errors.Is(err, ban.ErrFull):
			httpx.WriteError(w, http.StatusConflict, fmt.Sprintf("the ban list is full (%d bans); lift some first", ban.MaxBans))
			return
		case errors.Is(err, ban.ErrUnavailable):
			httpx.Unavailable(w, httpx.StoreRetry, "the room's shared ban list cannot be reached: the ban may not be stored; retry")
			return
		case err != nil:
			httpx.WriteError(w, http.StatusInternalServerError, "could not save the ban list")
			return
		}
		out := toBanJSON(b)
		n, err := room.Kick(r.Context(), func(addr string) bool { return ban.Covers(b, addr) })
		switch {
		case err == nil:
			out.StreamsClosed = &n
		case errors.Is(err, ErrClosed):
			out.Note = "the ban is stored, but open streams were not looked at: the server is shutting down, which closes every stream"
		default:
			return // the moderator has gone; nobody to answer
		}
		_ = httpx.Encode(w, http.StatusCreated, out)
	})
}

// HandleLiftBan serves DELETE /bans/{addr}: it lifts the ban on exactly
// that address or prefix (204), or answers 404 if there is none; 503 when
// a list shared by a cluster cannot be reached (sending it again is safe).
func HandleLiftBan(bans Bans) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := ban.Parse(r.PathValue("addr"))
		if err != nil {
			httpx.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		ok, err := bans.Remove(p, time.Now())
		switch {
		case errors.Is(err, ban.ErrUnavailable):
			httpx.Unavailable(w, httpx.StoreRetry, "the room's shared ban list cannot be reached: the ban may not be lifted; retry")
		case err != nil:
			httpx.WriteError(w, http.StatusInternalServerError, "could not save the ban list")
		case !ok:
			httpx.WriteError(w, http.StatusNotFound, "no ban on "+ban.Format(p))
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

// HandleListNames serves GET /names: the names held now, by skeleton, each
// with when its holder took it and last used it, when the hold ends (left
// out while a stream carries the name) and how many of its holder's
// streams carry it. The holders' identities are not shown.
func HandleListNames(table *names.Table) http.Handler {
	type response struct {
		Names []names.Hold `json:"names"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		_ = httpx.Encode(w, http.StatusOK, response{Names: table.List(time.Now())})
	})
}

// HandleFreeName serves DELETE /names/{name}: it frees the name (any form
// of it: names compare by skeleton) whoever holds it, and answers 200 with
// the hold it ended; 404 if nobody holds it, 400 for a name the rules
// refuse. The holder's open streams go on, but no longer hold the name:
// anyone may take it.
func HandleFreeName(table *names.Table) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		h, ok, err := table.Free(name, time.Now())
		var refused *names.Error
		switch {
		case errors.As(err, &refused):
			httpx.WriteError(w, http.StatusBadRequest, err.Error())
		case err != nil:
			httpx.WriteError(w, http.StatusInternalServerError, "could not save the held names")
		case !ok:
			httpx.WriteError(w, http.StatusNotFound, "nobody holds the name "+strconv.Quote(httpx.Truncate(name, 64)))
		default:
			_ = httpx.Encode(w, http.StatusOK, h)
		}
	})
}
