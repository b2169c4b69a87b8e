// Package moderation serves the moderators' endpoints of a chat room:
// deleting a message (DELETE /messages/{id}) and listing, adding and
// lifting bans on client addresses (/bans). It knows the room only through
// the Room interface, and the bans through package ban; who may call the
// endpoints is decided before them (package auth).
package moderation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"chat/internal/ban"
	"chat/internal/httpx"
	"chat/internal/record"
)

// maxBanBody is the largest POST /bans body, in bytes.
const maxBanBody = 4 << 10

// banBody is the body of POST /bans.
var banBody = httpx.Body{Max: maxBanBody, Types: []string{httpx.JSON}, Example: `{"addr": "...", "for": "1h"}`}

// The errors a Room reports, which the handlers answer.
var (
	// ErrNoSuchMessage means the room does not hold the message to
	// delete (or holds it deleted).
	ErrNoSuchMessage = errors.New("no such message")
	// ErrClosed means the room has shut down.
	ErrClosed = errors.New("room closed")
	// ErrUnconfirmed means the room shut down while the journal was
	// writing the deletion: it has its id and is written before the
	// process exits, but was not confirmed durable.
	ErrUnconfirmed = errors.New("deletion not yet confirmed durable")
	// ErrBusy means the journal is too busy to take the deletion.
	ErrBusy = errors.New("journal busy")
	// ErrUnavailable means the room's shared log cannot be reached: the
	// deletion was not stored.
	ErrUnavailable = errors.New("message store unavailable")
	// ErrFateUnknown means the deletion went to the room's shared log and
	// no confirmation came: it may or may not be stored.
	ErrFateUnknown = errors.New("deletion not confirmed")
)

// Room is what moderation needs of the chat room.
type Room interface {
	// Delete removes the message with id from the room and returns the
	// deletion, as DELETE /messages/{id} answers it (encoded as JSON),
	// or an error: one of the errors above, or ctx's.
	Delete(ctx context.Context, id string) (any, error)
	// Kick closes the streams of the clients whose address (their
	// per-address key) match reports true, and returns how many it
	// closed, or ErrClosed, or ctx's error.
	Kick(ctx context.Context, match func(addr string) bool) (int, error)
}

// HandleDelete serves DELETE /messages/{id}: the message leaves history
// and every stream gets a "delete" event, which has its own id in the
// sequence. It answers 200 with the deletion, 404 for an id that history
// does not hold (or holds deleted), 400 for a malformed one. At shutdown,
// a deletion the journal had not confirmed is answered as a post in that
// state is: 202 with the deletion, which the journal still writes, so
// that its outcome is settled after the restart (the message is then
// deleted, and deleting it again is a 404). With the room's log in NATS, a
// deletion that could not reach it is a 503 (not done), and one that went
// out unconfirmed a 504 (sending it again settles it: 200, or 404 when it
// was done); a message another moderator deleted a moment earlier on
// another node is a 404.
func HandleDelete(room Room) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if _, _, err := record.ParseID(id); err != nil {
			httpx.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		d, err := room.Delete(r.Context(), id)
		switch {
		case err == nil:
			_ = httpx.Encode(w, http.StatusOK, d)
		case errors.Is(err, ErrUnconfirmed):
			// Not 503, which would say it did not happen.
			_ = httpx.Encode(w, http.StatusAccepted, d)
		case errors.Is(err, ErrNoSuchMessage):
			httpx.WriteError(w, http.StatusNotFound, "no such message: "+httpx.Truncate(id, 40))
		case errors.Is(err, ErrClosed):
			httpx.ShuttingDown(w)
		case errors.Is(err, ErrBusy):
			httpx.Busy(w)
		case errors.Is(err, ErrUnavailable):
			httpx.StoreDown(w, "deletion")
		case errors.Is(err, ErrFateUnknown):
			httpx.FateUnknown(w, "the message store did not confirm the deletion: it may or may not be done; send it again (a 404 then means it was done)")
		case r.Context().Err() != nil:
			// The moderator has gone; nobody to answer.
		default:
			httpx.WriteError(w, http.StatusInternalServerError, "could not store the deletion")
		}
	})
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
func HandleListBans(bans *ban.List) http.Handler {
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
// level.
func HandleAddBan(room Room, bans *ban.List, log *slog.Logger) http.Handler {
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
// that address or prefix (204), or answers 404 if there is none.
func HandleLiftBan(bans *ban.List) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := ban.Parse(r.PathValue("addr"))
		if err != nil {
			httpx.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		ok, err := bans.Remove(p, time.Now())
		switch {
		case err != nil:
			httpx.WriteError(w, http.StatusInternalServerError, "could not save the ban list")
		case !ok:
			httpx.WriteError(w, http.StatusNotFound, "no ban on "+ban.Format(p))
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
}
