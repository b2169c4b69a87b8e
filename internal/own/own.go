// Package own serves the endpoints by which people act on the messages they
// posted: PATCH /messages/{id} edits one, DELETE /messages/{id} deletes one
// (and lets a moderator delete any). Who is asking comes from the caller
// (the identity the request carries, whether it moderates); whose message
// it is, and whether it may still be edited, the room decides (package
// roomlog, whose errors the room's answers wrap).
package own

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"chat/internal/httpx"
	"chat/internal/limit"
	"chat/internal/query"
	"chat/internal/record"
	"chat/internal/roomlog"
	"chat/internal/text"
)

// The messages of the refusals, which the page shows as they are.
const (
	// notYoursEdit and notYoursDelete answer a request about another's
	// message (or one without identity).
	notYoursEdit   = "you can only edit your own messages"
	notYoursDelete = "you can only delete your own messages"
	// tooLate answers an edit after roomlog.EditWindow.
	tooLate = "this message can no longer be edited"
	// bannedMsg answers a banned address.
	bannedMsg = "your address is banned from this room"
)

// Room is what the endpoints need of the chat room: its log, to which they
// propose edits and deletions.
type Room interface {
	// Propose proposes p and returns the log's answer to it (nil, or an
	// error that wraps one of package roomlog's: ErrNoSuchMessage,
	// ErrNotAuthor, ErrTooLate, ErrUnconfirmed, ErrBusy, ErrUnavailable,
	// ErrFateUnknown), with answered set; or, unanswered,
	// query.ErrClosed or ctx's error, and p must not be read.
	Propose(ctx context.Context, p *roomlog.Proposal) (answered bool, err error)
}

// edit proposes author's edit of the message id to content and returns
// the message as edited.
func edit(ctx context.Context, room Room, id, author, content string) (roomlog.Message, error) {
	p := &roomlog.Proposal{}
	p.Edits, p.Author, p.Content = id, author, content
	answered, err := room.Propose(ctx, p)
	if !answered {
		return roomlog.Message{}, err
	}
	return p.Edited, err
}

// deletion proposes the deletion of the message id by its author ("": by
// a moderator, of any message) and returns it.
func deletion(ctx context.Context, room Room, id, author string) (roomlog.Deletion, error) {
	p := &roomlog.Proposal{}
	p.Deletes, p.Author = id, author
	answered, err := room.Propose(ctx, p)
	if !answered {
		return roomlog.Deletion{}, err
	}
	return p.Deletion(), err
}

// Config holds what the endpoints need.
type Config struct {
	// Room is the chat room.
	Room Room
	// Author returns the identity r carries ("" for none).
	Author func(r *http.Request) string
	// Moderator reports whether r moderates; it answers r itself, and
	// reports answered, when r's credentials are wrong (auth.Gate's
	// Moderator, with r's address).
	Moderator func(w http.ResponseWriter, r *http.Request) (moderator, answered bool)
	// Banned reports whether r's address is banned (nil: none is).
	Banned func(r *http.Request) bool
	// Rate is the post rate per address that edits draw on (nil: no
	// limit), and AddrOf the address a request counts against.
	Rate   *limit.Limiter
	AddrOf func(r *http.Request) string
	// MaxBody bounds a PATCH body, in bytes, and MaxContent the content,
	// in characters, as for posts.
	MaxBody    int64
	MaxContent int
	// Logger receives the bodies that could not be read (nil: none).
	Logger *slog.Logger
}

// messageID returns the request's {id}, or answers 400 and returns "".
func messageID(w http.ResponseWriter, r *http.Request) string {
	id := r.PathValue("id")
	if _, _, err := record.ParseID(id); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return ""
	}
	return id
}

// HandleEdit serves PATCH /messages/{id} with {"content": "..."}: the
// message's author (by identity) replaces its content, checked as a post's,
// within roomlog.EditWindow of the post. It answers 200 with the message
// as edited (with its "edited" time), and every stream gets an "edit"
// event. Others get 403, as does an edit after the window; an id history
// does not hold 404; a malformed id, body or content 400; a banned address
// 403; an address over its post rate 429. The answers of a store that
// fails are those of a post.
func HandleEdit(cfg Config) http.Handler {
	body := httpx.Body{Max: cfg.MaxBody, Types: []string{httpx.JSON}, Example: `{"content": "..."}`, Log: cfg.Logger}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := messageID(w, r)
		switch {
		case id == "":
			return
		case cfg.Banned != nil && cfg.Banned(r):
			httpx.WriteError(w, http.StatusForbidden, bannedMsg)
			return
		}
		if cfg.Rate != nil {
			if ok, wait := cfg.Rate.Allow(cfg.AddrOf(r), time.Now()); !ok {
				httpx.RetryAfter(w, wait)
				httpx.WriteError(w, http.StatusTooManyRequests, "too many messages; slow down")
				return
			}
		}
		author := cfg.Author(r)
		if author == "" {
			httpx.WriteError(w, http.StatusForbidden, notYoursEdit)
			return
		}
		var in struct {
			Content string `json:"content"`
		}
		if e := body.Parse(w, r, &in); e != nil {
			e.Write(w)
			return
		}
		content, err := text.Message(in.Content, cfg.MaxContent)
		if err != nil {
			httpx.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		m, err := edit(r.Context(), cfg.Room, id, author, content)
		switch {
		case err == nil:
			_ = httpx.Encode(w, http.StatusOK, m)
		case errors.Is(err, roomlog.ErrUnconfirmed):
			_ = httpx.Encode(w, http.StatusAccepted, m)
		case errors.Is(err, roomlog.ErrTooLate):
			httpx.WriteError(w, http.StatusForbidden, tooLate)
		case errors.Is(err, roomlog.ErrNotAuthor):
			httpx.WriteError(w, http.StatusForbidden, notYoursEdit)
		default:
			storeError(w, r, id, "edit", err)
		}
	})
}

// HandleDelete serves DELETE /messages/{id}: a moderator deletes any
// message, its author (by identity) their own, at any time while history
// holds it. The message leaves history and every stream gets a "delete"
// event, which has its own id in the sequence. It answers 200 with the
// deletion; 403 to anyone else (and to a banned address that is no
// moderator); 404 for an id history does not hold (or holds deleted); 400
// for a malformed one; 401 for a wrong key. At shutdown, a deletion the
// journal had not confirmed is answered as a post in that state is: 202
// with the deletion, which the journal still writes. With the room's log in
// NATS, a deletion that could not reach it is a 503 (not done), and one
// that went out unconfirmed a 504 (sending it again settles it: 200, or
// 404 when it was done).
func HandleDelete(cfg Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := messageID(w, r)
		if id == "" {
			return
		}
		moderator, answered := cfg.Moderator(w, r)
		if answered {
			return
		}
		author := ""
		if !moderator {
			if cfg.Banned != nil && cfg.Banned(r) {
				httpx.WriteError(w, http.StatusForbidden, bannedMsg)
				return
			}
			if author = cfg.Author(r); author == "" {
				httpx.WriteError(w, http.StatusForbidden, notYoursDelete)
				return
			}
		}
		d, err := deletion(r.Context(), cfg.Room, id, author)
		switch {
		case err == nil:
			_ = httpx.Encode(w, http.StatusOK, d)
		case errors.Is(err, roomlog.ErrUnconfirmed):
			// Not 503, which would say it did not happen.
			_ = httpx.Encode(w, http.StatusAccepted, d)
		case errors.Is(err, roomlog.ErrNotAuthor):
			httpx.WriteError(w, http.StatusForbidden, notYoursDelete)
		default:
			storeError(w, r, id, "deletion", err)
		}
	})
}

// storeError answers an edit or a deletion (what) of the message id that
// the room refused with err, for the reasons both share.
func storeError(w http.ResponseWriter, r *http.Request, id, what string, err error) {
	switch {
	case errors.Is(err, roomlog.ErrNoSuchMessage):
		httpx.WriteError(w, http.StatusNotFound, "no such message: "+httpx.Truncate(id, 40))
	case errors.Is(err, query.ErrClosed):
		httpx.ShuttingDown(w)
	case errors.Is(err, roomlog.ErrBusy):
		httpx.Busy(w)
	case errors.Is(err, roomlog.ErrUnavailable):
		httpx.StoreDown(w, what)
	case errors.Is(err, roomlog.ErrFateUnknown):
		hint := "send it again to settle it"
		if what == "deletion" {
			hint = "send it again (a 404 then means it was done)"
		}
		httpx.FateUnknown(w, "the message store did not confirm the "+what+": it may or may not be done; "+hint)
	case r.Context().Err() != nil:
		// The client has gone; nobody to answer.
	default:
		httpx.WriteError(w, http.StatusInternalServerError, "could not store the "+what)
	}
}
