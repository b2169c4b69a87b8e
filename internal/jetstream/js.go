package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"chat/internal/nats"
)

// Tuning of the API requests.
const (
	// apiPrefix starts every JetStream API subject.
	apiPrefix = "$JS.API."
	// DefaultTimeout bounds an API request (or publish) whose context has
	// no deadline.
	DefaultTimeout = 5 * time.Second
	// retryAttempt bounds one attempt of a request that is safe to repeat:
	// while a cluster elects a leader requests go unanswered, and an
	// attempt after the election is answered at once.
	retryAttempt = 2 * time.Second
	// retryWait is the first pause between two attempts; it doubles up to
	// maxRetryWait.
	retryWait    = 50 * time.Millisecond
	maxRetryWait = time.Second
)

// ErrNoJetStream means the server (or the account) has no JetStream.
var ErrNoJetStream = errors.New("JetStream not enabled on the NATS server")

// ErrNoStream means no stream took a published message: nobody listened
// on its subject (no stream has it, or JetStream is unavailable). The
// message was not stored.
var ErrNoStream = errors.New("no stream answered: message not stored")

// APIError is an error the JetStream API answered with. Code is the
// HTTP-like status, ErrCode JetStream's own code, which errors.Is compares
// (so errors.Is(err, ErrStreamNotFound) works whatever the description).
type APIError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

// Error returns the description and the code.
func (e *APIError) Error() string {
	return fmt.Sprintf("JetStream: %s (err_code %d)", e.Description, e.ErrCode)
}

// Is reports whether target is an *APIError with the same ErrCode.
func (e *APIError) Is(target error) bool {
	t, ok := target.(*APIError)
	return ok && t.ErrCode == e.ErrCode
}

// The API errors callers react to, for errors.Is.
var (
	ErrStreamNotFound    = &APIError{Code: 404, ErrCode: 10059, Description: "stream not found"}
	ErrStreamNameInUse   = &APIError{Code: 400, ErrCode: 10058, Description: "stream name already in use with a different configuration"}
	ErrMsgNotFound       = &APIError{Code: 404, ErrCode: 10037, Description: "no message found"}
	ErrConsumerNotFound  = &APIError{Code: 404, ErrCode: 10014, Description: "consumer not found"}
	ErrWrongLastSequence = &APIError{Code: 400, ErrCode: 10071, Description: "wrong last sequence"}
	// ErrWrongLastSequenceReplicated is what a replicated stream answers
	// where a single-replica one answers ErrWrongLastSequence.
	ErrWrongLastSequenceReplicated = &APIError{Code: 400, ErrCode: 10164, Description: "wrong last sequence"}
	errNotEnabled                  = &APIError{Code: 503, ErrCode: 10076}
	errNotEnabledForAccount        = &APIError{Code: 503, ErrCode: 10039}
)

// JS makes JetStream API requests over one NATS connection.
type JS struct {
	nc *nats.Conn
}

// New returns a JS using nc, which stays the caller's to close.
func New(nc *nats.Conn) *JS { return &JS{nc: nc} }

// Connect connects to the first reachable server of urls (see
// nats.Connect) and checks that it has JetStream. Its error is one line
// without credentials; a server without JetStream gives ErrNoJetStream.
// Close the JS to close its connection.
func Connect(ctx context.Context, urls []string, opts nats.Options) (*JS, error) {
	nc, err := nats.Connect(ctx, urls, opts)
	if err != nil {
		return nil, err
	}
	js := New(nc)
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("%s: %w", nc.Status().URL, err)
	}
	return js, nil
}

// Conn returns the NATS connection.
func (js *JS) Conn() *nats.Conn { return js.nc }

// Close closes the NATS connection.
func (js *JS) Close() error { return js.nc.Close() }

// AccountInfo is the part of the account's JetStream information used to
// check that JetStream is there.
type AccountInfo struct {
	Streams   int `json:"streams"`
	Consumers int `json:"consumers"`
	API       struct {
		Level int `json:"level"`
	} `json:"api"`
}

// AccountInfo asks for the account's JetStream information; ErrNoJetStream
// means there is no JetStream to ask.
func (js *JS) AccountInfo(ctx context.Context) (*AccountInfo, error) {
	var resp struct {
		apiResponse
		AccountInfo
	}
	if err := js.request(ctx, "INFO", nil, &resp); err != nil {
		return nil, err
	}
	return &resp.AccountInfo, nil
}

// apiResponse is the envelope of every API response.
type apiResponse struct {
	Type  string    `json:"type"`
	Error *APIError `json:"error,omitempty"`
}

// apiError returns the response's error, if any.
func (r *apiResponse) apiError() *APIError { return r.Error }

// response is what request decodes into.
type response interface{ apiError() *APIError }

// request sends req (JSON; nil sends an empty body) to $JS.API.<subject>
// and decodes the reply into resp, returning its API error if it has one.
// Without a deadline in ctx it waits DefaultTimeout.
func (js *JS) request(ctx context.Context, subject string, req any, resp response) error {
	var data []byte
	if req != nil {
		var err error
		if data, err = json.Marshal(req); err != nil {
			return err
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	m, err := js.nc.Request(ctx, &nats.Msg{Subject: apiPrefix + subject, Data: data})
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w (%w)", ErrNoJetStream, err)
	}
	if err != nil {
		return fmt.Errorf("JetStream API %s: %w", subject, err)
	}
	reflect.ValueOf(resp).Elem().SetZero() // nothing left from an earlier attempt
	if err := json.Unmarshal(m.Data, resp); err != nil {
		return fmt.Errorf("JetStream API %s: bad response: %w", subject, err)
	}
	if e := resp.apiError(); e != nil {
		if e.Is(errNotEnabled) || e.Is(errNotEnabledForAccount) {
			return fmt.Errorf("%w (%w)", ErrNoJetStream, e)
		}
		return e
	}
	return nil
}

// requestRetry is request for the requests that may be repeated (reads,
// and creates or updates that give the same result twice): each attempt
// is bounded by retryAttempt, and one that went unanswered, found the
// connection down, or met a transient JetStream error is tried again after
// a pause, until ctx ends (DefaultTimeout without a deadline).
func (js *JS) requestRetry(ctx context.Context, subject string, req any, resp response) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	wait := retryWait
	for {
		actx, cancel := context.WithTimeout(ctx, retryAttempt)
		err := js.request(actx, subject, req, resp)
		cancel()
		if err == nil || errors.Is(err, ErrNoJetStream) || !transient(err) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		wait = min(2*wait, maxRetryWait)
	}
}

// validName reports whether name may be a stream or consumer name: not
// empty, and none of the characters that would change the API subject.
func validName(name string) bool {
	return name != "" && !strings.ContainsAny(name, ".*> \t\r\n\x00") && len(name) <= 255
}

// transientCodes are the JetStream errors that go away by themselves: the
// cluster has no leader yet, or this server cannot answer for now. (The
// HTTP-like code does not tell: an invalid configuration is a 500 too.)
var transientCodes = map[int]bool{
	10004: true, // incomplete results
	10007: true, // JetStream cluster not assigned to this server
	10008: true, // JetStream system temporarily unavailable
	10009: true, // JetStream cluster can not handle request
	10163: true, // expected last sequence per subject temporarily unavailable
}

// transient reports whether err may go away by itself: the connection is
// down, a request went unanswered or had no responder, or JetStream said
// it is unavailable for now (as during a leader election).
func transient(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return transientCodes[apiErr.ErrCode]
	}
	return errors.Is(err, nats.ErrNotConnected) || errors.Is(err, nats.ErrNoReply) ||
		errors.Is(err, nats.ErrNoResponders)
}
