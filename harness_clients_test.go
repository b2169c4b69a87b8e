package main

// The client side of the harness (see harness_test.go): requests read in
// full, posts with and without an Idempotency-Key, clients from other
// addresses and over TLS, streams read with internal/sse, and readers of
// /history and /presence, logins and deletions, clients with an identity
// cookie, streams and typing notices that carry a name, and edits.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"chat/internal/auth"
	"chat/internal/identity"
	"chat/internal/record"
	"chat/internal/roomlog"
	"chat/internal/sse"
)

// ---------------------------------------------------------------- requests

// reply is an answer read in full, but for the body of an event stream,
// which would not end.
type reply struct {
	status int
	header http.Header
	body   []byte
	// msg is the message of a 200 or 201 answer to POST /post.
	msg Message
}

// errorText returns the "error" field of a JSON error body, or "" if the
// body is not one.
func (r reply) errorText() string {
	var e errorBody
	if json.Unmarshal(r.body, &e) != nil {
		return ""
	}
	return e.Error
}

// send makes a request through c with the given headers and reads the
// answer within waitTimeout. It returns errors rather than failing the
// test, so goroutines may use it.
func send(c *http.Client, method, url, contentType, body string, header map[string]string) (reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		return reply{status: resp.StatusCode, header: resp.Header}, nil
	}
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// mustSend is send that fails the test on a transport error.
func mustSend(tb testing.TB, c *http.Client, method, url, contentType, body string, header map[string]string) reply {
	tb.Helper()
	r, err := send(c, method, url, contentType, body, header)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// get is GET url with http.DefaultClient.
func get(tb testing.TB, url string) reply {
	tb.Helper()
	return mustSend(tb, http.DefaultClient, "GET", url, "", "", nil)
}

// getJSON decodes the body of GET url, read through c, into v, and fails
// the test unless it is answered 200 with JSON.
func getJSON(tb testing.TB, c *http.Client, url string, v any) {
	tb.Helper()
	r := mustSend(tb, c, "GET", url, "", "", nil)
	if r.status != http.StatusOK {
		tb.Fatalf("GET %s: status %d: %s", url, r.status, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		tb.Fatalf("GET %s: %v: %s", url, err, r.body)
	}
}

// getStats returns GET /stats of the server at url, read through c.
func getStats(tb testing.TB, c *http.Client, url string) StatsSnapshot {
	tb.Helper()
	return endpoint{URL: url, client: c}.stats(tb)
}

// postJSON posts username and content as JSON through c, with extra
// headers, and returns the answer, its message decoded on 200 or 201. It
// returns errors rather than failing the test, so goroutines may use it.
func postJSON(c *http.Client, url, username, content string, header map[string]string) (reply, error) {
	body, _ := json.Marshal(map[string]string{"username": username, "content": content})
	r, err := send(c, "POST", url+"/post", "application/json", string(body), header)
	if err == nil && (r.status == http.StatusOK || r.status == http.StatusCreated) {
		if err := json.Unmarshal(r.body, &r.msg); err != nil {
			return r, fmt.Errorf("decode %d body %q: %w", r.status, r.body, err)
		}
	}
	return r, err
}

// postKeyed is postJSON with the given Idempotency-Key ("" for none).
func postKeyed(c *http.Client, url, key, username, content string) (reply, error) {
	var header map[string]string
	if key != "" {
		header = map[string]string{"Idempotency-Key": key}
	}
	return postJSON(c, url, username, content, header)
}

// postMsg is postJSON that fails the test on a transport error.
func postMsg(tb testing.TB, c *http.Client, url, username, content string, header map[string]string) reply {
	tb.Helper()
	r, err := postJSON(c, url, username, content, header)
	if err != nil {
		tb.Fatalf("POST /post %q: %v", content, err)
	}
	return r
}

// mustPostKeyed is postKeyed that fails the test on a transport error or
// a status other than want.
func mustPostKeyed(tb testing.TB, url, key, username, content string, want int) reply {
	tb.Helper()
	r, err := postKeyed(http.DefaultClient, url, key, username, content)
	if err != nil {
		tb.Fatalf("POST /post key %q: %v", key, err)
	}
	if r.status != want {
		tb.Fatalf("POST /post key %q %q/%q: status %d (%s), want %d", key, username, content, r.status, r.body, want)
	}
	return r
}

// checkRetryAfter fails the test unless r carries a JSON error with the
// given status and a Retry-After of a whole number of seconds in [lo, hi].
func checkRetryAfter(tb testing.TB, what string, r reply, status, lo, hi int) {
	tb.Helper()
	if r.status != status || r.errorText() == "" || r.header.Get("Content-Type") != "application/json" {
		tb.Errorf("%s: status %d, Content-Type %q, body %s; want %d with a JSON error", what, r.status, r.header.Get("Content-Type"), r.body, status)
	}
	ra := r.header.Get("Retry-After")
	if n, err := strconv.Atoi(ra); err != nil || n < lo || n > hi {
		tb.Errorf("%s: Retry-After %q, want whole seconds in [%d, %d]", what, ra, lo, hi)
	}
}

// ---------------------------------------------------------------- clients

// clientTransport returns a transport whose connections come from the
// loopback address from ("" for any; all of 127.0.0.0/8 is local on
// Linux, so one test can act as several client addresses), over TLS
// (accepting the test certificate) where the URL says so, and HTTP/2 when
// http2 is set.
func clientTransport(from string, http2 bool) *http.Transport {
	d := &net.Dialer{Timeout: waitTimeout}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return &http.Transport{
		DialContext:       d.DialContext,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: http2,
	}
}

// clientFrom returns an HTTP client whose connections come from the
// loopback address ip.
func clientFrom(tb testing.TB, ip string) *http.Client {
	tb.Helper()
	tr := clientTransport(ip, false)
	tr.MaxIdleConnsPerHost = 16
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitTimeout}
}

// tlsClient returns a client of a test server over TLS, over HTTP/2 if
// http2 is set.
func tlsClient(tb testing.TB, http2 bool) *http.Client {
	tb.Helper()
	tr := clientTransport("", http2)
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// http2Client returns a client of a test server over TLS and HTTP/2, with
// the given per-stream receive window (0: the default).
func http2Client(tb testing.TB, window int) *http.Client {
	tb.Helper()
	c := tlsClient(tb, true)
	if window > 0 {
		c.Transport.(*http.Transport).HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: window}
	}
	return c
}

// ---------------------------------------------------------------- streams

// subscriber is a test client of GET /stream.
type subscriber struct {
	resp *http.Response
	sse  *sse.Reader
}

// streamOpts says how to open a stream; the zero value opens GET /stream
// through http.DefaultClient.
type streamOpts struct {
	client *http.Client
	// query follows /stream, with its "?".
	query string
	// lastID is sent as Last-Event-ID, unless empty.
	lastID string
	header map[string]string
}

// openStream opens a stream on the server at url as o says. It returns an
// error for a transport error or any answer but 200 (naming its status
// and body), rather than failing the test, so goroutines may use it. The
// caller closes the stream.
func openStream(url string, o streamOpts) (*subscriber, error) {
	req, err := http.NewRequest("GET", url+"/stream"+o.query, nil)
	if err != nil {
		return nil, err
	}
	if o.lastID != "" {
		req.Header.Set("Last-Event-ID", o.lastID)
	}
	for k, v := range o.header {
		req.Header.Set(k, v)
	}
	resp, err := cmp.Or(o.client, http.DefaultClient).Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return &subscriber{resp: resp, sse: sse.NewReader(resp.Body)}, nil
}

// subscribe opens a stream, with lastID as Last-Event-ID unless empty.
func subscribe(tb testing.TB, url, lastID string) *subscriber {
	tb.Helper()
	return subscribeOpts(tb, url, streamOpts{lastID: lastID})
}

// subscribeOpts opens a stream as o says, fails the test unless it is
// answered 200, and closes it when the test ends.
func subscribeOpts(tb testing.TB, url string, o streamOpts) *subscriber {
	tb.Helper()
	s, err := openStream(url, o)
	if err != nil {
		tb.Fatalf("GET /stream%s: %v", o.query, err)
	}
	tb.Cleanup(s.close)
	return s
}

// close ends the stream.
func (s *subscriber) close() { s.resp.Body.Close() }

// read hands the stream's events to f, on another goroutine, until f
// reports that it has what it wants. It returns f's error, or the error
// that ended the stream, or an error once nothing more has come for
// waitTimeout (the stream is closed then).
func (s *subscriber) read(f func(sse.Event) (done bool, err error)) error {
	errc := make(chan error, 1)
	go func() {
		for {
			ev, err := s.sse.NextEvent()
			if err == nil {
				var done bool
				if done, err = f(ev); !done && err == nil {
					continue
				}
			}
			errc <- err
			return
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-time.After(waitTimeout):
		s.close()
		<-errc
		return fmt.Errorf("nothing within %v", waitTimeout)
	}
}

// decodeMessage returns the chat message a message event carries.
func decodeMessage(ev sse.Event) (Message, error) {
	var m Message
	if err := json.Unmarshal(ev.Data, &m); err != nil || m.ID != ev.ID {
		return m, fmt.Errorf("bad message event %+v: %v", ev, err)
	}
	return m, nil
}

// messages reads until n chat messages have arrived and returns them, with
// any other events seen on the way.
func (s *subscriber) messages(tb testing.TB, n int) (msgs []Message, other []sse.Event) {
	tb.Helper()
	return s.messagesUntil(tb, fmt.Sprint(n, " messages"), func(msgs []Message) bool { return len(msgs) == n })
}

// readUntil reads until the chat message with the given id and returns
// the chat messages up to it (included) and the other events on the way.
func (s *subscriber) readUntil(tb testing.TB, id string) (msgs []Message, other []sse.Event) {
	tb.Helper()
	return s.messagesUntil(tb, "message "+id, func(msgs []Message) bool { return msgs[len(msgs)-1].ID == id })
}

// messagesUntil reads chat messages until done holds for those read, and
// returns them with the other events seen on the way. It fails the test
// if the stream ends, holds a malformed message or stalls for waitTimeout.
func (s *subscriber) messagesUntil(tb testing.TB, what string, done func([]Message) bool) (msgs []Message, other []sse.Event) {
	tb.Helper()
	err := s.read(func(ev sse.Event) (bool, error) {
		if ev.Type != "message" {
			other = append(other, ev)
			return false, nil
		}
		m, err := decodeMessage(ev)
		msgs = append(msgs, m)
		return done(msgs), err
	})
	if err != nil {
		tb.Fatalf("reading until %s, after %d messages (last %v): %v", what, len(msgs), lastIDs(msgs, 3), err)
	}
	return msgs, other
}

// nextOf reads events until one of type typ arrives and returns it.
func (s *subscriber) nextOf(tb testing.TB, typ string) sse.Event {
	tb.Helper()
	var got sse.Event
	if err := s.read(func(ev sse.Event) (bool, error) { got = ev; return ev.Type == typ, nil }); err != nil {
		tb.Fatalf("reading for a %s event: %v", typ, err)
	}
	return got
}

// nextEvent returns the next event of the ordered stream: presence and
// typing events, which are not part of it, are skipped.
func (s *subscriber) nextEvent(tb testing.TB) sse.Event {
	tb.Helper()
	var got sse.Event
	if err := s.read(func(ev sse.Event) (bool, error) {
		got = ev
		return ev.Type != "presence" && ev.Type != "typing", nil
	}); err != nil {
		tb.Fatalf("reading the next event: %v", err)
	}
	return got
}

// parseSSE returns the events a browser would dispatch from the stream s.
func parseSSE(tb testing.TB, s string) []sse.Event {
	tb.Helper()
	r := sse.NewReader(strings.NewReader(s))
	var out []sse.Event
	for {
		ev, err := r.NextEvent()
		if err != nil {
			return out
		}
		out = append(out, ev)
	}
}

// rawStream is a GET /stream on a bare TCP connection.
type rawStream struct {
	conn net.Conn
	// r reads the response head; ev reads the body's events after it.
	r  *bufio.Reader
	ev *sse.Reader
}

// dialRaw connects to addr from the loopback address from ("" for any)
// and writes request; the caller reads the answer and closes the
// connection.
func dialRaw(addr, from, request string) (net.Conn, error) {
	d := &net.Dialer{Timeout: waitTimeout}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(conn, request); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// rawExchange sends request as is on a new connection to addr (so that
// what net/http's client would refuse or clean up can be sent) and reads
// the answer in full, within waitTimeout.
func rawExchange(tb testing.TB, addr, request string) reply {
	tb.Helper()
	c, err := dialRaw(addr, "", request)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: body}
}

// dialStream opens GET /stream on a bare connection from localIP (empty:
// the default) with extra header lines, and reads the status line and
// headers. For a 200 it also reads the preamble event, so the client is in
// the room when it returns. It returns errors rather than failing, so
// goroutines may use it.
func dialStream(addr, localIP, extra string) (*rawStream, int, error) {
	conn, err := dialRaw(addr, localIP, "GET /stream HTTP/1.1\r\nHost: chat.test\r\n"+extra+"\r\n")
	if err != nil {
		return nil, 0, err
	}
	s := &rawStream{conn: conn, r: bufio.NewReaderSize(conn, 4096)}
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	resp, err := http.ReadResponse(s.r, nil)
	if err != nil {
		conn.Close()
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, resp.StatusCode, nil
	}
	// The body follows the head on the same reader: the preamble is its
	// first block.
	s.ev = sse.NewReader(s.r)
	if _, err := s.ev.Next(); err != nil {
		conn.Close()
		return nil, 0, fmt.Errorf("reading preamble: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return s, http.StatusOK, nil
}

// ---------------------------------------------------------------- the room's state

// historyReply is the body of a 200 from GET /history, each message kept as
// its raw bytes.
type historyReply struct {
	Messages []json.RawMessage `json:"messages"`
	More     bool              `json:"more"`
}

// getHistory requests /history with query (which starts with "?" or is
// empty) and fails the test unless the status is want, with a JSON body
// (a page on 200, an error otherwise). On 200 it returns the page.
func getHistory(tb testing.TB, url, query string, want int) historyReply {
	tb.Helper()
	return getHistoryAs(tb, url, query, nil, want)
}

// getHistoryAs is getHistory with extra headers (credentials).
func getHistoryAs(tb testing.TB, url, query string, header map[string]string, want int) historyReply {
	tb.Helper()
	r := mustSend(tb, http.DefaultClient, "GET", url+"/history"+query, "", "", header)
	if r.status != want {
		tb.Fatalf("GET /history%s: status %d (%s), want %d", query, r.status, r.body, want)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("GET /history%s: Content-Type %q", query, ct)
	}
	var page historyReply
	if err := json.Unmarshal(r.body, &page); err != nil {
		tb.Fatalf("GET /history%s: body %q: %v", query, r.body, err)
	}
	if want == http.StatusOK && page.Messages == nil {
		tb.Errorf("GET /history%s: messages is null, want a list", query)
	}
	if want != http.StatusOK && r.errorText() == "" {
		tb.Errorf("GET /history%s: %d without a JSON error: %s", query, want, r.body)
	}
	return page
}

// historyOf returns every message GET /history holds, oldest first, as raw
// JSON, paging back from the newest.
func historyOf(tb testing.TB, url string) []json.RawMessage {
	tb.Helper()
	var all []json.RawMessage
	before := ""
	for range 10000 {
		q := "?limit=200"
		if before != "" {
			q += "&before=" + before
		}
		page := getHistory(tb, url, q, http.StatusOK)
		all = append(slices.Clone(page.Messages), all...)
		if !page.More {
			return all
		}
		before = rawIDs(tb, page.Messages[:1])[0]
	}
	tb.Fatal("history did not end")
	return nil
}

// historyIDs returns the ids GET /history (its newest page of 200) lists,
// asked with the given headers.
func historyIDs(tb testing.TB, url string, header map[string]string) []string {
	tb.Helper()
	return rawIDs(tb, getHistoryAs(tb, url, "?limit=200", header, http.StatusOK).Messages)
}

// rawIDs returns the ids of raw messages.
func rawIDs(tb testing.TB, msgs []json.RawMessage) []string {
	tb.Helper()
	out := make([]string, len(msgs))
	for i, raw := range msgs {
		var m Message
		if err := json.Unmarshal(raw, &m); err != nil {
			tb.Fatalf("message %s: %v", raw, err)
		}
		out[i] = m.ID
	}
	return out
}

// rosterEvent is the data of a presence event and the body of GET /presence.
type rosterEvent struct {
	People []struct {
		Name    string `json:"name"`
		Streams int    `json:"streams"`
	} `json:"people"`
	Anonymous   int `json:"anonymous"`
	PeopleTotal int `json:"people_total"`
}

// names returns the names listed, in order.
func (r rosterEvent) names() []string {
	var out []string
	for _, p := range r.People {
		out = append(out, p.Name)
	}
	return out
}

// getPresence returns GET /presence, failing the test unless it is a 200
// with JSON that has exactly the fields of a roster.
func getPresence(tb testing.TB, base string) rosterEvent {
	tb.Helper()
	r := get(tb, base+"/presence")
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		tb.Fatalf("GET /presence: %d %q", r.status, r.header.Get("Content-Type"))
	}
	var roster rosterEvent
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&roster); err != nil {
		tb.Fatalf("GET /presence: %v", err)
	}
	return roster
}

// ids returns the ids of msgs.
func ids(msgs []Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// lastIDs returns the ids of the last n of msgs.
func lastIDs(msgs []Message, n int) []string {
	return ids(msgs[max(0, len(msgs)-n):])
}

// mustParseID parses an id or fails the test.
func mustParseID(tb testing.TB, id string) (int64, uint64) {
	tb.Helper()
	e, s, err := record.ParseID(id)
	if err != nil {
		tb.Fatalf("id %q: %v", id, err)
	}
	return e, s
}

// idLess reports whether id a comes before id b in the sequence.
func idLess(tb testing.TB, a, b string) bool {
	tb.Helper()
	ea, sa := mustParseID(tb, a)
	eb, sb := mustParseID(tb, b)
	return ea < eb || (ea == eb && sa < sb)
}

// ---------------------------------------------------------------- credentials and moderation

// bearer returns headers that send key as a Bearer key.
func bearer(key string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + key}
}

// admin returns headers that send the admin key "boss" as a Bearer key.
func admin() map[string]string { return bearer("boss") }

// withCookie returns headers that send the session cookie value.
func withCookie(value string) map[string]string {
	return map[string]string{"Cookie": auth.CookieName + "=" + value}
}

// login posts key to /login through c and returns the reply.
func login(tb testing.TB, c *http.Client, url, key string) reply {
	tb.Helper()
	return mustSend(tb, c, "POST", url+"/login", "application/json", `{"key":"`+key+`"}`, nil)
}

// sessionCookie returns the session cookie a reply sets, failing the test
// if there is none.
func sessionCookie(tb testing.TB, r reply) *http.Cookie {
	tb.Helper()
	for _, line := range r.header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err == nil && c.Name == auth.CookieName {
			return c
		}
	}
	tb.Fatalf("no %s cookie in %d reply: %v", auth.CookieName, r.status, r.header)
	return nil
}

// check401 fails the test unless r is a 401 with a Bearer challenge, a
// JSON error and no cookie.
func check401(tb testing.TB, what string, r reply) {
	tb.Helper()
	if r.status != http.StatusUnauthorized {
		tb.Errorf("%s: status %d (%s), want 401", what, r.status, r.body)
		return
	}
	if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
		tb.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge", what, got)
	}
	if r.header.Get("Content-Type") != "application/json" || r.errorText() == "" {
		tb.Errorf("%s: Content-Type %q, body %q; want a JSON error", what, r.header.Get("Content-Type"), r.body)
	}
}

// deleteMsg sends DELETE /messages/id with headers and returns the reply.
func deleteMsg(tb testing.TB, url, id string, header map[string]string) reply {
	tb.Helper()
	return mustSend(tb, http.DefaultClient, "DELETE", url+"/messages/"+id, "", "", header)
}

// deletion decodes the 200 answer of a DELETE /messages/{id}.
func deletion(tb testing.TB, r reply) roomlog.Deletion {
	tb.Helper()
	var d roomlog.Deletion
	if r.status != http.StatusOK || json.Unmarshal(r.body, &d) != nil || d.ID == "" {
		tb.Fatalf("DELETE: %d %s, want 200 with the deletion", r.status, r.body)
	}
	return d
}

// ---------------------------------------------------------------- identities, names and own messages

// identityClient returns a client with a cookie jar that has loaded the
// page at base, as a browser does, and so carries the identity cookie the
// page sets. It checks the cookie's attributes.
func identityClient(tb testing.TB, base string) *http.Client {
	tb.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	r := mustSend(tb, c, "GET", base+"/", "", "", nil)
	set := r.header.Get("Set-Cookie")
	if r.status != http.StatusOK || !strings.HasPrefix(set, identity.CookieName+"=v1.") ||
		!strings.Contains(set, "; Path=/;") || !strings.Contains(set, "; HttpOnly; SameSite=Strict") {
		tb.Fatalf("GET /: %d, Set-Cookie %q; want 200 with the identity cookie", r.status, set)
	}
	return c
}

// typingAs sends POST /typing for name through c.
func typingAs(tb testing.TB, c *http.Client, base, name string) reply {
	tb.Helper()
	body, _ := json.Marshal(map[string]string{"username": name})
	return mustSend(tb, c, "POST", base+"/typing", "application/json", string(body), nil)
}

// streamURL returns the URL of a stream that carries name.
func streamURL(base, name string) string { return base + "/stream?name=" + url.QueryEscape(name) }

// streamAs opens a stream that carries name through c, and fails the test
// unless it is served.
func streamAs(tb testing.TB, c *http.Client, base, name string) *subscriber {
	tb.Helper()
	return subscribeOpts(tb, base, streamOpts{client: c, query: "?name=" + url.QueryEscape(name)})
}

// postedBy posts content as username through c and returns the message,
// failing the test unless it is stored.
func postedBy(tb testing.TB, c *http.Client, base, username, content string) Message {
	tb.Helper()
	r := postMsg(tb, c, base, username, content, nil)
	var m Message
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &m) != nil {
		tb.Fatalf("post %q as %s: %d %s", content, username, r.status, r.body)
	}
	return m
}

// editMsg sends PATCH /messages/id with body through c.
func editMsg(tb testing.TB, c *http.Client, base, id, body string, header map[string]string) reply {
	tb.Helper()
	return mustSend(tb, c, "PATCH", base+"/messages/"+id, "application/json", body, header)
}

// edited decodes the 200 answer of an edit, failing the test otherwise.
func edited(tb testing.TB, r reply) Message {
	tb.Helper()
	var m Message
	if r.status != http.StatusOK || json.Unmarshal(r.body, &m) != nil || m.Edited.IsZero() {
		tb.Fatalf("PATCH: %d %s, want 200 with the edited message", r.status, r.body)
	}
	return m
}

// banJSON is one ban as POST /bans answers it.
type banJSON struct {
	Addr          string     `json:"addr"`
	Until         *time.Time `json:"until"`
	StreamsClosed *int       `json:"streams_closed"`
	Note          string     `json:"note"`
}
