// Package httpx is the one path that request bodies and error answers take
// in every handler of the chat server: reading a body within its limit,
// checking its media type and encoding, decoding it strictly into a struct,
// and answering with JSON (errors as {"error": "..."}, with Retry-After
// where a client should come back later).
package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The media types a body may have.
const (
	// JSON is a JSON object.
	JSON = "application/json"
	// Form is an HTML form, URL-encoded.
	Form = "application/x-www-form-urlencoded"
)

// The waits of the answers a client should retry.
const (
	// ShutdownRetry is the Retry-After of requests refused because the
	// server is shutting down: about the time a restart takes.
	ShutdownRetry = 2 * time.Second
	// BusyRetry is the Retry-After of requests refused because the
	// journal is too busy to take them.
	BusyRetry = time.Second
	// StoreRetry is the Retry-After of requests refused because the
	// room's shared log (NATS) cannot be reached: about the time a
	// reconnect takes.
	StoreRetry = 2 * time.Second
	// FateRetry is the Retry-After of a write whose fate is unknown: the
	// retry that settles it may come at once.
	FateRetry = time.Second
)

// Error is a client error with the HTTP status it is answered with.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Msg is what the client is told.
	Msg string
	// Name, when set, is the name the error is about (one in use by
	// someone else), sent beside the message as "name".
	Name string
	// Retry, when positive, is sent as Retry-After.
	Retry time.Duration
	// Err is the cause, when reading the body failed; it is logged at
	// debug level and never shown to the client.
	Err error
}

// Error returns the message the client is told.
func (e *Error) Error() string { return e.Msg }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Write answers the request with e.
func (e *Error) Write(w http.ResponseWriter) {
	if e.Retry > 0 {
		RetryAfter(w, e.Retry)
	}
	_ = Encode(w, e.Status, ErrorBody{Error: e.Msg, Name: e.Name})
}

// BadRequest returns a 400 error with a formatted message.
func BadRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// Body describes the request body an endpoint takes.
type Body struct {
	// Max is the largest body, in bytes.
	Max int64
	// Types are the media types accepted (JSON, Form), in UTF-8.
	Types []string
	// Example is the JSON object that a client who sent an empty JSON
	// body is told to send ("" for a generic hint).
	Example string
	// Log receives, at debug level, the errors of bodies that could not
	// be read (nil: not logged).
	Log *slog.Logger
}

// Parse reads r's body (Read) and decodes it into v (Decode).
func (b Body) Parse(w http.ResponseWriter, r *http.Request, v any) *Error {
	data, e := b.Read(w, r)
	if e != nil {
		return e
	}
	return b.Decode(r.Header.Get("Content-Type"), data, v)
}

// Read reads r's body whole. A body over Max is a 413 (refused before
// reading when its Content-Length says so, and the connection is then
// closed), a read that times out is a 408, and any other read error (a
// client that aborts its body, say) is a 400; both close the connection
// and are logged at debug level.
func (b Body) Read(w http.ResponseWriter, r *http.Request) ([]byte, *Error) {
	tooLarge := &Error{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("body is larger than %d bytes", b.Max)}
	if r.ContentLength > b.Max {
		w.Header().Set("Connection", "close")
		return nil, tooLarge
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, b.Max))
	if err == nil {
		return data, nil
	}
	var max *http.MaxBytesError
	if errors.As(err, &max) {
		return nil, tooLarge
	}
	// The rest of the request cannot be found on the connection.
	w.Header().Set("Connection", "close")
	if b.Log != nil {
		b.Log.Debug("could not read request body", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil, &Error{Status: http.StatusRequestTimeout, Msg: "timed out reading the body", Err: err}
	}
	return nil, &Error{Status: http.StatusBadRequest, Msg: "could not read body", Err: err}
}

// Decode checks that contentType is one of Types in UTF-8 (415 if not)
// and decodes data into v, a pointer to a flat struct, strictly (see
// DecodeJSON and DecodeForm).
func (b Body) Decode(contentType string, data []byte, v any) *Error {
	mediaType, e := b.mediaType(contentType)
	if e != nil {
		return e
	}
	if mediaType == Form {
		return DecodeForm(data, v)
	}
	return DecodeJSON(data, v, b.Example)
}

// mediaType returns the media type of contentType if it is one of Types,
// in UTF-8.
func (b Body) mediaType(contentType string) (string, *Error) {
	want := strings.Join(b.Types, " or ")
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil && contentType != "" {
		return "", &Error{Status: http.StatusUnsupportedMediaType, Msg: "malformed Content-Type; use " + want}
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return "", &Error{Status: http.StatusUnsupportedMediaType, Msg: "charset must be utf-8"}
	}
	for _, t := range b.Types {
		if mediaType == t {
			return mediaType, nil
		}
	}
	return "", &Error{Status: http.StatusUnsupportedMediaType, Msg: "Content-Type must be " + want}
}

// Encode writes v as a JSON response with the given status. HTML
// characters are not escaped.
func Encode[T any](w http.ResponseWriter, status int, v T) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	return nil
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	// Error says what went wrong.
	Error string `json:"error"`
	// Name is the name the error is about, when there is one (a name in
	// use by someone else: 409).
	Name string `json:"name,omitempty"`
}

// WriteError answers with status and {"error": msg}.
func WriteError(w http.ResponseWriter, status int, msg string) {
	_ = Encode(w, status, ErrorBody{Error: msg})
}

// RetryAfter sets the Retry-After header to wait, in whole seconds rounded
// up (at least 1).
func RetryAfter(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(Seconds(wait)))
}

// Seconds returns d in whole seconds, rounded up, and at least 1: the form
// of Retry-After and of a cookie's Max-Age.
func Seconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// Truncate returns s cut to n bytes, with an ellipsis if it was longer:
// what an error message quotes of a client's input.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Unavailable answers 503 with msg, telling the client to come back after
// wait.
func Unavailable(w http.ResponseWriter, wait time.Duration, msg string) {
	RetryAfter(w, wait)
	WriteError(w, http.StatusServiceUnavailable, msg)
}

// ShuttingDown answers 503: the server is shutting down.
func ShuttingDown(w http.ResponseWriter) {
	Unavailable(w, ShutdownRetry, "server is shutting down")
}

// Busy answers 503: the journal is too busy to take the request.
func Busy(w http.ResponseWriter) {
	Unavailable(w, BusyRetry, "server busy; try again")
}

// StoreDown answers 503: the room's shared log cannot be reached, and what
// (a message, a deletion) was not stored.
func StoreDown(w http.ResponseWriter, what string) {
	Unavailable(w, StoreRetry, "the room's message store cannot be reached: the "+what+" was not stored; retry")
}

// FateUnknown answers 504 with msg: the write went to the room's shared
// log and no confirmation came, so it may or may not be stored; msg says
// how to settle it (Retry-After FateRetry).
func FateUnknown(w http.ResponseWriter, msg string) {
	RetryAfter(w, FateRetry)
	WriteError(w, http.StatusGatewayTimeout, msg)
}
