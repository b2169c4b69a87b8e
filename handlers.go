package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"chat/internal/auth"
	"chat/internal/connlimit"
	"chat/internal/fanout"
	"chat/internal/httpx"
	"chat/internal/idem"
	"chat/internal/limit"
	"chat/internal/moderation"
	"chat/internal/nameguard"
	"chat/internal/names"
	"chat/internal/own"
	"chat/internal/roomlog"
	"chat/internal/static"
	"chat/internal/stream"
	"chat/internal/text"
)

// Tuning values of the HTTP side. The defaults of those that flags set are
// in main.go.
const (
	// maxTypingBody is the largest POST /typing body, in bytes.
	maxTypingBody = 1 << 10
	// hstsMaxAge is the max-age of Strict-Transport-Security over TLS.
	hstsMaxAge = 24 * time.Hour
	// retryFull is the Retry-After of streams refused by a stream limit.
	retryFull = 5 * time.Second
)

// pageFiles are the page (index.html) and its script and style (web/).
//
//go:embed index.html web
var pageFiles embed.FS

// pageCSP is the page's Content-Security-Policy: its script and style are
// this server's own files, it talks to this server only, and nothing else
// loads or frames it.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// site serves the page and its files, each with its ETag and the page's
// security headers.
var site = static.MustLoad(pageFiles, http.Header{
	"Content-Security-Policy": {pageCSP},
	"Referrer-Policy":         {"no-referrer"},
	"X-Frame-Options":         {"DENY"},
})

// serverConfig holds the settings of the HTTP handlers.
type serverConfig struct {
	heartbeat    time.Duration
	writeTimeout time.Duration
	maxContent   int
	maxBody      int64
	// limiter rate-limits posts per address (nil: no limit).
	limiter *limit.Limiter
	// typingLimiter rate-limits POST /typing per address, apart from
	// posts (nil: no limit).
	typingLimiter *limit.Limiter
	// addrOf returns the address a request counts against for limits.
	addrOf func(*http.Request) string
	// gate decides who may use the room and who may moderate it (nil: an
	// open room without moderation).
	gate *auth.Gate
	// bans lists the banned addresses (nil: none): a ban.List, or the
	// list the nodes of a cluster share.
	bans moderation.Bans
	// guard tells who a request is and whether it may use its name, and
	// names holds the names (newServer makes both, in memory, if nil).
	guard *nameguard.Guard
	names *names.Table
	// reach, when set (a log shared by several nodes), waits a moment for
	// the node to read the record a client names, which another node may
	// have served first.
	reach func(ctx context.Context, p *roomlog.Position)
	// logger receives what the handlers log (newServer sets it).
	logger *slog.Logger
}

// reachAll waits (see serverConfig.reach) for the positions that are set.
func (cfg serverConfig) reachAll(ctx context.Context, ps ...*roomlog.Position) {
	for _, p := range ps {
		if p != nil && cfg.reach != nil {
			cfg.reach(ctx, p)
		}
	}
}

// bannedMsg is the error a banned address gets.
const bannedMsg = "your address is banned from this room"

// banned reports whether the request's address (its per-address key) is
// banned now.
func (cfg serverConfig) banned(r *http.Request) bool {
	if cfg.bans == nil {
		return false
	}
	_, banned := cfg.bans.Banned(cfg.addrOf(r), time.Now())
	return banned
}

// newServer returns the chat server's handler.
func newServer(room *ChatRoom, stats *Stats, streams *stream.Tracker, health *atomic.Bool, cfg serverConfig, logger *slog.Logger) http.Handler {
	if cfg.addrOf == nil {
		cfg.addrOf = limit.PeerHost
	}
	if cfg.gate == nil {
		cfg.gate = &auth.Gate{}
	}
	if cfg.guard == nil {
		// In memory with a random secret: this cannot fail.
		issuer, table, _ := nameguard.Open("", "", names.Options{Hold: names.DefaultHold}, time.Now())
		cfg.guard, cfg.names = nameguard.New(nameguard.Config{Issuer: issuer, Table: table, Rate: cfg.limiter, AddrOf: cfg.addrOf}), table
	}
	cfg.logger = logger
	mux := http.NewServeMux()
	addRoutes(mux, room, stats, streams, health, cfg, logger)
	return secureHeaders(mux)
}

// access says who may use a route.
type access int

const (
	// accessOpen routes answer everyone.
	accessOpen access = iota
	// accessRoom routes read or write the room: with a room key, they
	// need it (or a session, or the admin key).
	accessRoom
	// accessLogin routes exist only when a room or admin key is set.
	accessLogin
	// accessAdmin routes moderate: they exist only with an admin key, and
	// need it (or an admin session).
	accessAdmin
)

// addRoutes lists the whole API. Every path answers wrong methods with a
// JSON 405 and an Allow header, and unknown paths with a JSON 404. Each
// route's access decides the wrapper that checks credentials; a new
// endpoint that serves the room's messages or presence must be accessRoom.
func addRoutes(mux *http.ServeMux, room *ChatRoom, stats *Stats, streams *stream.Tracker, health *atomic.Bool, cfg serverConfig, logger *slog.Logger) {
	routes := []struct {
		method, path string
		access       access
		h            http.Handler
	}{
		{"GET", "/{$}", accessOpen, identified(cfg.guard, site.File("index.html"))},
		{"GET", "/web/{file...}", accessOpen, site.Dir("/web/")},
		{"POST", "/post", accessRoom, crossOriginProtection(stats, handlePost(room, stats, cfg))},
		{"GET", "/stream", accessRoom, handleStream(room, stats, streams, cfg, logger)},
		{"GET", "/history", accessRoom, handleHistory(room, cfg)},
		{"GET", "/presence", accessRoom, handlePresence(room)},
		{"POST", "/typing", accessRoom, crossOriginProtection(nil, handleTyping(room, cfg))},
		{"GET", "/session", accessOpen, cfg.gate.HandleSession(cfg.addrOf)},
		{"POST", "/login", accessLogin, crossOriginProtection(nil, cfg.gate.HandleLogin(cfg.addrOf, logger))},
		{"POST", "/logout", accessLogin, crossOriginProtection(nil, auth.HandleLogout())},
		{"PATCH", "/messages/{id}", accessRoom, crossOriginProtection(nil, own.HandleEdit(ownConfig(room, cfg)))},
		{"DELETE", "/messages/{id}", accessRoom, crossOriginProtection(nil, own.HandleDelete(ownConfig(room, cfg)))},
		{"GET", "/names", accessAdmin, moderation.HandleListNames(cfg.names)},
		{"DELETE", "/names/{name...}", accessAdmin, crossOriginProtection(nil, moderation.HandleFreeName(cfg.names))},
		{"GET", "/bans", accessAdmin, moderation.HandleListBans(cfg.bans)},
		{"POST", "/bans", accessAdmin, crossOriginProtection(nil, moderation.HandleAddBan(moderated{room}, cfg.bans, logger))},
		{"DELETE", "/bans/{addr...}", accessAdmin, crossOriginProtection(nil, moderation.HandleLiftBan(cfg.bans))},
		{"GET", "/stats", accessOpen, handleStats(stats)},
		{"GET", "/healthz", accessOpen, handleHealth(health, stats)},
		{"GET", "/metrics", accessOpen, handleMetrics(stats)},
	}
	allowed := map[string][]string{}
	for _, rt := range routes {
		h := rt.h
		switch rt.access {
		case accessRoom:
			h = cfg.gate.RequireRoom(cfg.addrOf, h)
		case accessLogin:
			if !cfg.gate.Private() && !cfg.gate.Moderated() {
				continue
			}
		case accessAdmin:
			if !cfg.gate.Moderated() {
				continue
			}
			h = cfg.gate.RequireAdmin(cfg.addrOf, h)
		}
		mux.Handle(rt.method+" "+rt.path, h)
		if rt.method == "GET" {
			allowed[rt.path] = append(allowed[rt.path], "GET", "HEAD")
		} else {
			allowed[rt.path] = append(allowed[rt.path], rt.method)
		}
	}
	for path, methods := range allowed {
		mux.Handle(path, handleMethodNotAllowed(strings.Join(methods, ", ")))
	}
	mux.Handle("/", handleNotFound())
}

// hsts is the Strict-Transport-Security value of responses over TLS: a
// day, modest enough that a server which stops serving HTTPS strands its
// users for a day at most, and no includeSubDomains, which is the
// domain's call rather than this server's.
var hsts = "max-age=" + strconv.Itoa(int(hstsMaxAge/time.Second))

// secureHeaders adds the headers every response carries, and
// Strict-Transport-Security to those served over TLS.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", hsts)
		}
		next.ServeHTTP(w, r)
	})
}

// crossOriginProtection refuses cross-site browser requests (a form or
// fetch from another origin's page) with a JSON 403. Requests without
// browser fetch metadata, such as curl's, and same-origin pages pass.
// A nil stats counts nothing (the route is not /post).
func crossOriginProtection(stats *Stats, next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stats != nil {
			stats.rejectedPost()
		}
		httpx.WriteError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	return cop.Handler(next)
}

// identified sets the identity cookie on the responses of next for a
// client that has none (the page's own load, so that a browser has one
// before it streams or posts).
func identified(guard *nameguard.Guard, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		guard.Identify(w, r)
		next.ServeHTTP(w, r)
	})
}

// handleNotFound answers unknown paths.
func handleNotFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, http.StatusNotFound, "no such endpoint: "+httpx.Truncate(r.URL.Path, 100))
	})
}

// handleMethodNotAllowed answers a known path requested with a method it
// does not support.
func handleMethodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		httpx.WriteError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; use %s", httpx.Truncate(r.Method, 20), allow))
	})
}

// postInput is a message from POST /post: a JSON object or a form with the
// fields username and content.
type postInput struct {
	Username string `json:"username"`
	Content  string `json:"content"`
}

// postTypes are the media types of POST /post and POST /typing bodies.
var postTypes = []string{httpx.JSON, httpx.Form}

// parsePost decodes and validates the body of POST /post, sent with the
// given Content-Type.
func parsePost(contentType string, body []byte, maxContent int) (postInput, *httpx.Error) {
	var in postInput
	if e := (httpx.Body{Types: postTypes}).Decode(contentType, body, &in); e != nil {
		return in, e
	}
	return validatePost(in, maxContent)
}

// validatePost trims and checks a message (package text's rules).
func validatePost(in postInput, maxContent int) (postInput, *httpx.Error) {
	var err error
	if in.Username, err = text.Name("username", in.Username); err == nil {
		in.Content, err = text.Message(in.Content, maxContent)
	}
	if err != nil {
		return in, httpx.BadRequest("%s", err)
	}
	return in, nil
}

// validRecord returns the rules a message or an edit read from a log
// shared by several nodes must pass: those of a post (an edit's content
// those of a post's content), in the form a node stores it (trimmed, with
// line ends made "\n"). Every node of a room applies the same rules (the
// same -max-content), so every node skips the same records.
func validRecord(maxContent int) func(r *roomlog.Record) error {
	return func(r *roomlog.Record) error {
		in := postInput{Username: r.Username, Content: r.Content}
		if r.Edits != "" {
			in.Username = "edit" // an edit has no name of its own
		}
		out, e := validatePost(in, maxContent)
		switch {
		case e != nil:
			return e
		case out != in:
			return errors.New("username or content not in the form a node stores")
		}
		return nil
	}
}

// validateName trims and checks a person's name given in the named field
// (package text's rules).
func validateName(field, name string) (string, *httpx.Error) {
	name, err := text.Name(field, name)
	if err != nil {
		return name, httpx.BadRequest("%s", err)
	}
	return name, nil
}

// handlePost accepts a message and answers 201 with it once every client
// has it queued (and, with a journal, once it is durable), or 202 with it
// when shutdown ended before the journal confirmed it.
func handlePost(room *ChatRoom, stats *Stats, cfg serverConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer func() { stats.postLatency.observe(time.Since(start), 1) }()
		author := cfg.guard.Identify(w, r)
		fail := func(status int, msg string) {
			stats.rejectedPost()
			httpx.WriteError(w, status, msg)
		}
		if cfg.banned(r) {
			fail(http.StatusForbidden, bannedMsg)
			return
		}
		if cfg.limiter != nil {
			if ok, wait := cfg.limiter.Allow(cfg.addrOf(r), time.Now()); !ok {
				httpx.RetryAfter(w, wait)
				fail(http.StatusTooManyRequests, "too many messages; slow down")
				return
			}
		}
		body, apiErr := httpx.Body{Max: cfg.maxBody, Log: cfg.logger}.Read(w, r)
		if apiErr != nil {
			fail(apiErr.Status, apiErr.Msg)
			return
		}
		in, apiErr := parsePost(r.Header.Get("Content-Type"), body, cfg.maxContent)
		if apiErr != nil {
			fail(apiErr.Status, apiErr.Msg)
			return
		}
		key, err := idem.FromHeader(r.Header)
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		if apiErr := cfg.guard.Post(in.Username, author); apiErr != nil {
			stats.rejectedPost()
			apiErr.Write(w)
			return
		}
		msg, repeat, err := room.PostBy(r.Context(), author, in.Username, in.Content, key)
		answerPost(w, r, stats, msg, repeat, err)
	})
}

// answerPost answers a post with the room's verdict on it: the message
// (201, or 200 for a repeat of a stored post, or 202 when shutdown could
// not wait for the journal), or the status that says why it was not stored
// or may not be.
func answerPost(w http.ResponseWriter, r *http.Request, stats *Stats, msg Message, repeat bool, err error) {
	switch {
	case err == nil && repeat:
		// A retry of a post already stored: the same message, and
		// nothing sent again.
		w.Header().Set("Idempotent-Replayed", "true")
		_ = httpx.Encode(w, http.StatusOK, msg)
		return
	case err == nil:
		_ = httpx.Encode(w, http.StatusCreated, msg)
		return
	case errors.Is(err, errUnconfirmed):
		// Shutdown could not wait for the journal's fsync: the
		// message has its id and is being written, but is not
		// confirmed durable. Not 503, which would say it was not
		// stored and invite a duplicate.
		_ = httpx.Encode(w, http.StatusAccepted, msg)
		return
	}
	stats.rejectedPost()
	switch {
	case errors.Is(err, errKeyConflict):
		httpx.WriteError(w, http.StatusUnprocessableEntity, err.Error())
	case errors.Is(err, errDeleted):
		httpx.WriteError(w, http.StatusGone, err.Error())
	case errors.Is(err, errRoomClosed):
		httpx.ShuttingDown(w)
	case errors.Is(err, errJournalBusy):
		httpx.Busy(w)
	case errors.Is(err, errUnavailable):
		httpx.StoreDown(w, "message")
	case errors.Is(err, errFateUnknown):
		// Not a 503: it may be stored. The retry with the same
		// Idempotency-Key settles it, storing it at most once.
		httpx.FateUnknown(w, "the message store did not confirm the message: it may or may not be stored; send it again with the same Idempotency-Key to settle it")
	case r.Context().Err() != nil:
		// The poster has gone; nobody to answer.
	default:
		httpx.WriteError(w, http.StatusInternalServerError, "could not store the message")
	}
}

// parseHistoryQuery reads the query of GET /history: at most one of before
// and after (message ids), and limit (1 or more; capped at
// maxHistoryLimit, defaultHistoryLimit if absent). Anything else, or any
// parameter given twice, is a 400 error.
func parseHistoryQuery(rawQuery string) (roomlog.Query, *httpx.Error) {
	q := roomlog.Query{Limit: defaultHistoryLimit}
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		return q, httpx.BadRequest("malformed query string")
	}
	for k, v := range vals {
		if k != "before" && k != "after" && k != "limit" {
			return q, httpx.BadRequest("unknown parameter %q; use before, after and limit", httpx.Truncate(k, 40))
		}
		if len(v) > 1 {
			return q, httpx.BadRequest("parameter %q given more than once", k)
		}
	}
	if _, ok := vals["before"]; ok {
		if _, ok := vals["after"]; ok {
			return q, httpx.BadRequest("give before or after, not both")
		}
	}
	for _, name := range []string{"before", "after"} {
		v, ok := vals[name]
		if !ok {
			continue
		}
		p, err := roomlog.ParsePosition(v[0])
		if err != nil {
			return q, httpx.BadRequest("%s: %s", name, err.Error())
		}
		if name == "before" {
			q.Before = p
		} else {
			q.After = p
		}
	}
	if v, ok := vals["limit"]; ok {
		n, err := strconv.ParseUint(v[0], 10, 32)
		if err != nil || n == 0 {
			return q, httpx.BadRequest("limit must be a whole number from 1 to %d", maxHistoryLimit)
		}
		q.Limit = int(min(n, maxHistoryLimit))
	}
	return q, nil
}

// handleHistory serves GET /history: one page of messages from history,
// oldest first, as {"messages": [...], "more": bool}; each message is the
// very JSON POST /post returned for it.
func handleHistory(room *ChatRoom, cfg serverConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, apiErr := parseHistoryQuery(r.URL.RawQuery)
		if apiErr != nil {
			apiErr.Write(w)
			return
		}
		cfg.reachAll(r.Context(), q.Before, q.After)
		page, err := room.History(r.Context(), q)
		switch {
		case err == nil:
		case errors.Is(err, errUnknownID):
			httpx.WriteError(w, http.StatusNotFound, "this server does not know that id (it is from another run of the server, or from the future)")
			return
		case errors.Is(err, errRoomClosed):
			httpx.ShuttingDown(w)
			return
		default:
			return // the client has gone
		}
		size := len(`{"messages":[],"more":false}`) + 1
		for _, m := range page.Msgs {
			size += len(m) + 1
		}
		body := make([]byte, 0, size)
		body = append(body, `{"messages":[`...)
		for i, m := range page.Msgs {
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, m...)
		}
		body = append(body, `],"more":`...)
		body = strconv.AppendBool(body, page.More)
		body = append(body, "}\n"...)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}

// handlePresence serves GET /presence: the whole roster as JSON, from the
// hub.
func handlePresence(room *ChatRoom) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		b, err := room.Presence(r.Context())
		if err != nil {
			if errors.Is(err, errRoomClosed) {
				httpx.ShuttingDown(w)
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(append(b[:len(b):len(b)], '\n'))
		}
	})
}

// parseTyping decodes and validates the body of POST /typing: a JSON object
// or a form with the one field username.
func parseTyping(contentType string, body []byte) (string, *httpx.Error) {
	var in struct {
		Username string `json:"username"`
	}
	if e := (httpx.Body{Types: postTypes}).Decode(contentType, body, &in); e != nil {
		return "", e
	}
	return validateName("username", in.Username)
}

// handleTyping serves POST /typing: the person named in the body is typing.
// It answers 204 once the hub has the name. Nothing is stored or counted as
// a message.
func handleTyping(room *ChatRoom, cfg serverConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		author := cfg.guard.Identify(w, r)
		if cfg.banned(r) {
			httpx.WriteError(w, http.StatusForbidden, bannedMsg)
			return
		}
		if cfg.typingLimiter != nil {
			if ok, wait := cfg.typingLimiter.Allow(cfg.addrOf(r), time.Now()); !ok {
				httpx.RetryAfter(w, wait)
				httpx.WriteError(w, http.StatusTooManyRequests, "too many typing notices; slow down")
				return
			}
		}
		body, e := httpx.Body{Max: maxTypingBody, Log: cfg.logger}.Read(w, r)
		if e != nil {
			e.Write(w)
			return
		}
		name, e := parseTyping(r.Header.Get("Content-Type"), body)
		if e == nil {
			e = cfg.guard.Typing(w, r, name, author)
		}
		if e != nil {
			e.Write(w)
			return
		}
		switch err := room.Typing(r.Context(), name); {
		case err == nil:
			w.WriteHeader(http.StatusNoContent)
		case errors.Is(err, errRoomClosed):
			httpx.ShuttingDown(w)
		}
	})
}

// resumePosition returns where a stream request wants to resume: the
// Last-Event-ID header, or else the lastEventId query parameter (which a
// page uses on its first connection). It returns nil for a new client,
// and an error for a malformed id or for either given more than once.
func resumePosition(r *http.Request) (*roomlog.Position, error) {
	headers, params := r.Header.Values("Last-Event-ID"), r.URL.Query()["lastEventId"]
	switch {
	case len(headers) > 1:
		return nil, errors.New("Last-Event-ID given more than once")
	case len(params) > 1:
		return nil, errors.New("lastEventId given more than once")
	}
	id := r.Header.Get("Last-Event-ID")
	if id == "" && len(params) == 1 {
		id = params[0]
	}
	if id == "" {
		return nil, nil
	}
	p, err := roomlog.ParsePosition(id)
	if err != nil {
		return nil, fmt.Errorf("invalid Last-Event-ID: %w", err)
	}
	return p, nil
}

// streamName returns the name a stream request carries in its name query
// parameter, validated like a post's username, or "" for an anonymous
// watcher (no name parameter).
func streamName(r *http.Request) (string, *httpx.Error) {
	v, ok := r.URL.Query()["name"]
	switch {
	case !ok:
		return "", nil
	case len(v) > 1:
		return "", httpx.BadRequest("name given more than once")
	case !utf8.ValidString(v[0]):
		return "", httpx.BadRequest("name is not valid UTF-8")
	}
	return validateName("name", v[0])
}

// Frames returns the client's queue, for its stream writer.
func (c *client) Frames() <-chan *fanout.Frame { return c.send }

// Slow reports whether the hub cut the client for a full queue; its
// writer asks once the queue is closed.
func (c *client) Slow() bool { return c.slow }

// streamCounters counts the stream writers' writes in the statistics.
type streamCounters struct{ *Stats }

// Delivered counts one write of n chat messages.
func (s streamCounters) Delivered(n int) { s.delivered(n) }

// Latency records n messages written d after the oldest was accepted.
func (s streamCounters) Latency(d time.Duration, n int) { s.deliveryLatency.observe(d, n) }

// streamConfig returns the configuration of the stream writers of room.
func streamConfig(room *ChatRoom, stats *Stats, heartbeat, writeTimeout time.Duration, streams *stream.Tracker, logger *slog.Logger) *stream.Config {
	return &stream.Config{
		Heartbeat:    heartbeat,
		WriteTimeout: writeTimeout,
		Counters:     streamCounters{stats},
		Leave: func(c stream.Client) {
			cl := c.(*client)
			room.Leave(cl)
			_ = cl.hold.Close(time.Now())
		},
		Tracker: streams,
		Logger:  logger,
	}
}

// joinError answers a stream request that the room refused (JoinAs or
// CanJoin), and reports whether it was refused. A refusal by a limit is
// counted unless the request is a HEAD.
func joinError(w http.ResponseWriter, r *http.Request, stats *Stats, err error) bool {
	count := func() {
		if r.Method != http.MethodHead {
			stats.rejectedStream()
		}
	}
	switch {
	case err == nil:
		return false
	case errors.Is(err, errRoomFull):
		count()
		httpx.Unavailable(w, retryFull, "server full; retry later")
	case errors.Is(err, errTooManyStreams):
		count()
		httpx.RetryAfter(w, retryFull)
		httpx.WriteError(w, http.StatusTooManyRequests, "too many streams from your address")
	case errors.Is(err, errRoomClosed):
		httpx.ShuttingDown(w)
	}
	return true
}

// handleStream serves GET /stream as Server-Sent Events, written by
// package stream. A HEAD answers what the GET would, without joining.
func handleStream(room *ChatRoom, stats *Stats, streams *stream.Tracker, cfg serverConfig, logger *slog.Logger) http.Handler {
	sc := streamConfig(room, stats, cfg.heartbeat, cfg.writeTimeout, streams, logger)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		head := r.Method == http.MethodHead
		author := cfg.guard.Identify(w, r)
		// A page on another site may open streams in its visitors'
		// browsers, which drop them after the CORS check but hold the
		// server's slot until its next probe: refuse them before they
		// take one. The page itself sends same-origin; curl sends none.
		if sfs := r.Header.Get("Sec-Fetch-Site"); sfs == "cross-site" || sfs == "same-site" {
			if !head {
				stats.rejectedStream()
			}
			httpx.WriteError(w, http.StatusForbidden, "cross-site stream refused; open the chat's own page")
			return
		}
		from, err := resumePosition(r)
		if err != nil {
			httpx.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		name, e := streamName(r)
		if e != nil {
			e.Write(w)
			return
		}
		if cfg.banned(r) {
			if !head {
				stats.rejectedStream()
			}
			httpx.WriteError(w, http.StatusForbidden, bannedMsg)
			return
		}
		addr := cfg.addrOf(r)
		cfg.reachAll(r.Context(), from)
		if head {
			if e := cfg.guard.Check(name, author); e != nil {
				e.Write(w)
			} else if !joinError(w, r, stats, room.CanJoin(r.Context(), addr)) {
				stream.SetHeaders(w.Header())
			}
			return
		}
		hold, e := cfg.guard.Stream(w, r, name, author)
		if e != nil {
			e.Write(w)
			return
		}
		c, bufs, err := room.JoinAs(r.Context(), addr, name, from)
		if joinError(w, r, stats, err) {
			_ = hold.Close(time.Now())
			return
		}
		c.hold = hold // closed as the client leaves (streamConfig)
		logger.Debug("stream opened", "addr", addr, "resume", from != nil, "named", name != "")
		connlimit.Release(r) // streams have caps of their own
		// The head's first buffer is the preamble; each other is a
		// message, except the presence and typing events at its end.
		sc.Serve(w, r, c, stream.Head{Bufs: bufs, Messages: len(bufs) - 1 - c.headEvents, Events: c.headEvents}, addr)
	})
}

// moderated is the room as package moderation sees it.
type moderated struct{ room *ChatRoom }

// Kick closes the streams whose address match reports true.
func (m moderated) Kick(ctx context.Context, match func(addr string) bool) (int, error) {
	n, err := m.room.Kick(ctx, match)
	if errors.Is(err, errRoomClosed) {
		err = fmt.Errorf("%w: %w", moderation.ErrClosed, err)
	}
	return n, err
}

// ownConfig returns the configuration of the endpoints by which people
// edit and delete their messages (package own): the author is the
// identity the request carries, and moderators are those of cfg.gate.
func ownConfig(room *ChatRoom, cfg serverConfig) own.Config {
	return own.Config{
		Room:   room,
		Author: cfg.guard.Author,
		Moderator: func(w http.ResponseWriter, r *http.Request) (bool, bool) {
			return cfg.gate.Moderator(w, r, cfg.addrOf(r))
		},
		Banned:     cfg.banned,
		Rate:       cfg.limiter,
		AddrOf:     cfg.addrOf,
		MaxBody:    cfg.maxBody,
		MaxContent: cfg.maxContent,
		Logger:     cfg.logger,
	}
}
