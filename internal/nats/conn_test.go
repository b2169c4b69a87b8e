package nats

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"chat/internal/natstest"
)

// waitTimeout bounds every wait of these tests; a passing run needs a
// small part of it, but the machine may be slow and busy.
const waitTimeout = 20 * time.Second

// connect connects to urls within waitTimeout and closes the connection
// when the test ends.
func connect(t *testing.T, urls []string, opts Options) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	c, err := Connect(ctx, urls, opts)
	if err != nil {
		t.Fatalf("Connect(%v): %v", urls, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// flush waits until the server has processed everything c sent.
func flush(t *testing.T, c *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// next returns the subscription's next message, failing the test after
// waitTimeout.
func next(t *testing.T, s *Subscription) *Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	m, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next on %s: %v", s.Subject(), err)
	}
	return m
}

// waitStatus waits up to waitTimeout for c's status to satisfy cond.
func waitStatus(t *testing.T, c *Conn, what string, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		changed := c.StatusChanged()
		if st := c.Status(); cond(st) {
			return st
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("status not %s after %v: %+v", what, waitTimeout, c.Status())
		}
	}
}

// TestPubSub publishes from one connection and reads on another: plain
// and header messages, a payload with CRLF inside, an empty payload and a
// reply subject all arrive byte for byte.
func TestPubSub(t *testing.T) {
	s := natstest.Start(t, natstest.Options{NoJetStream: true})
	pub := connect(t, []string{s.URL()}, Options{Name: "pub"})
	subConn := connect(t, []string{s.URL()}, Options{Name: "sub"})
	sub, err := subConn.Subscribe("t.>")
	if err != nil {
		t.Fatal(err)
	}
	flush(t, subConn)
	msgs := []*Msg{
		{Subject: "t.plain", Data: []byte("hello")},
		{Subject: "t.crlf", Data: []byte("a\r\nMSG x 1 1\r\nb\r\n")},
		{Subject: "t.empty", Data: nil},
		{Subject: "t.reply", Reply: "back.here", Data: []byte("r")},
		{Subject: "t.hdr", Header: Header{"Nats-Msg-Id": {"k1"}, "Multi": {"1", "2"}}, Data: []byte("with header")},
		{Subject: "t.hdr.empty", Header: Header{}, Data: []byte("empty header")},
	}
	for _, m := range msgs {
		if err := pub.PublishMsg(m); err != nil {
			t.Fatalf("PublishMsg(%s): %v", m.Subject, err)
		}
	}
	for _, want := range msgs {
		got := next(t, sub)
		wantHdr := want.Header
		if len(wantHdr) == 0 {
			wantHdr = nil
		}
		if got.Subject != want.Subject || got.Reply != want.Reply || !bytes.Equal(got.Data, want.Data) ||
			!reflect.DeepEqual(got.Header, wantHdr) || got.Status != 0 {
			t.Errorf("received %+v, want %+v", got, want)
		}
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Unsubscribe: %v, want ErrClosed", err)
	}
}

// TestRequestReply answers a request through the one inbox subscription,
// and tells no responders and no reply apart.
func TestRequestReply(t *testing.T) {
	s := natstest.Start(t, natstest.Options{NoJetStream: true})
	c := connect(t, []string{s.URL()}, Options{})
	srv := connect(t, []string{s.URL()}, Options{})
	echo, _ := srv.Subscribe("svc.echo")
	silent, _ := srv.Subscribe("svc.silent")
	flush(t, srv)
	go func() { // the responder: upper-cases every request until unsubscribed
		for {
			m, err := echo.Next(context.Background())
			if err != nil {
				return
			}
			_ = srv.PublishMsg(&Msg{Subject: m.Reply, Header: Header{"Echo": {"yes"}}, Data: bytes.ToUpper(m.Data)})
		}
	}()
	t.Cleanup(func() { echo.Unsubscribe() })

	for i, word := range []string{"one", "two", "three"} {
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		r, err := c.Request(ctx, &Msg{Subject: "svc.echo", Data: []byte(word)})
		cancel()
		if err != nil || string(r.Data) != strings.ToUpper(word) || r.Header.Get("Echo") != "yes" {
			t.Fatalf("request %d: reply %+v, %v", i, r, err)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if _, err := c.Request(ctx, &Msg{Subject: "svc.nobody", Data: []byte("x")}); !errors.Is(err, ErrNoResponders) {
		t.Errorf("request to no one: %v, want ErrNoResponders", err)
	}

	short, cancel2 := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel2()
	_, err := c.Request(short, &Msg{Subject: "svc.silent", Data: []byte("x")})
	if !errors.Is(err, ErrNoReply) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("request without reply: %v, want ErrNoReply and DeadlineExceeded", err)
	}
	if m := next(t, silent); string(m.Data) != "x" {
		t.Errorf("the silent responder got %q, want x", m.Data)
	}
}

// TestAuth connects with user and password, and with a token, and wants a
// clear ErrAuthorization without the secret for wrong or missing ones.
func TestAuth(t *testing.T) {
	userSrv := natstest.Start(t, natstest.Options{NoJetStream: true, User: "alice", Password: "pa55word"})
	tokenSrv := natstest.Start(t, natstest.Options{NoJetStream: true, Token: "t0ken-secret"})
	userURL := func(cred string) string { return "nats://" + cred + "@127.0.0.1:" + itoa(userSrv.Port()) }
	tokenURL := func(cred string) string { return "nats://" + cred + "@127.0.0.1:" + itoa(tokenSrv.Port()) }
	good := []string{userSrv.AuthURL(), tokenSrv.AuthURL()}
	for _, u := range good {
		c := connect(t, []string{u}, Options{})
		flush(t, c)
		if st := c.Status(); strings.Contains(st.URL, "pa55word") || strings.Contains(st.URL, "t0ken") {
			t.Errorf("Status().URL = %q holds a secret", st.URL)
		}
	}
	bad := []struct{ name, url, secret string }{
		{"wrong password", userURL("alice:wrong-pa55"), "wrong-pa55"},
		{"wrong user", userURL("mallory:pa55word"), "pa55word"},
		{"no credentials", userSrv.URL(), ""},
		{"wrong token", tokenURL("bad-t0ken"), "bad-t0ken"},
		{"user instead of token", tokenURL("u:t0ken-secret"), "t0ken-secret"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			c, err := Connect(ctx, []string{tt.url}, Options{})
			if err == nil {
				c.Close()
				t.Fatalf("Connect(%s) succeeded", tt.name)
			}
			msg := err.Error()
			if !errors.Is(err, ErrAuthorization) || strings.Contains(msg, "\n") {
				t.Errorf("Connect error %q, want one line wrapping ErrAuthorization", msg)
			}
			if tt.secret != "" && strings.Contains(msg, tt.secret) {
				t.Errorf("Connect error %q holds the secret %q", msg, tt.secret)
			}
		})
	}
}

// TestConnectUnreachable tries every URL and reports each on one line.
func TestConnectUnreachable(t *testing.T) {
	s := natstest.Start(t, natstest.Options{NoJetStream: true})
	s.Kill()
	urls := []string{"nats://u:secret1@127.0.0.1:" + itoa(s.Port()), "nats://127.0.0.1:1"}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	_, err := Connect(ctx, urls, Options{})
	if err == nil {
		t.Fatal("Connect to stopped servers succeeded")
	}
	msg := err.Error()
	if strings.Contains(msg, "secret1") || strings.Contains(msg, "\n") ||
		!strings.Contains(msg, "nats://xxxxx@127.0.0.1:"+itoa(s.Port())) || !strings.Contains(msg, "nats://127.0.0.1:1") {
		t.Errorf("Connect error %q, want one line naming both redacted URLs", msg)
	}
}

// TestMaxPayloadAndBadSubjects refuses, before anything is sent, a
// message over the server's max_payload and subjects or headers that
// would break the protocol, and the connection stays usable.
func TestMaxPayloadAndBadSubjects(t *testing.T) {
	s := natstest.Start(t, natstest.Options{NoJetStream: true, MaxPayload: 1024})
	c := connect(t, []string{s.URL()}, Options{})
	if got := c.MaxPayload(); got != 1024 {
		t.Errorf("MaxPayload() = %d, want 1024", got)
	}
	sub, _ := c.Subscribe("mp")
	flush(t, c)
	if err := c.Publish("mp", make([]byte, 1025)); !errors.Is(err, ErrMaxPayload) {
		t.Errorf("Publish of 1025 bytes: %v, want ErrMaxPayload", err)
	}
	if err := c.PublishMsg(&Msg{Subject: "mp", Header: Header{"A": {"b"}}, Data: make([]byte, 1020)}); !errors.Is(err, ErrMaxPayload) {
		t.Errorf("PublishMsg with header, 1020 bytes of data: %v, want ErrMaxPayload", err)
	}
	bad := []*Msg{
		{Subject: ""}, {Subject: "a b"}, {Subject: "a\r\nPUB x 1"}, {Subject: "a\tb"},
		{Subject: "a..b"}, {Subject: ".a"}, {Subject: "a."},
		{Subject: "ok", Reply: "r r"},
	}
	for _, m := range bad {
		if err := c.PublishMsg(m); !errors.Is(err, ErrBadSubject) {
			t.Errorf("PublishMsg(%q, reply %q): %v, want ErrBadSubject", m.Subject, m.Reply, err)
		}
	}
	if _, err := c.Subscribe("x y"); !errors.Is(err, ErrBadSubject) {
		t.Errorf("Subscribe(\"x y\"): %v, want ErrBadSubject", err)
	}
	if err := c.PublishMsg(&Msg{Subject: "mp", Header: Header{"A": {"1\r\nB: 2"}}}); err == nil {
		t.Error("PublishMsg with CRLF in a header value succeeded")
	}
	if err := c.Publish("mp", make([]byte, 1024)); err != nil {
		t.Fatalf("Publish of 1024 bytes: %v", err)
	}
	if m := next(t, sub); len(m.Data) != 1024 {
		t.Errorf("received %d bytes, want 1024 (and nothing refused before it)", len(m.Data))
	}
}

// TestTLS connects over TLS: with a tls:// URL, and with a nats:// URL to
// a server that requires TLS (the client upgrades after INFO); a server
// certificate the client does not trust and a tls:// URL to a server
// without TLS are one-line errors.
func TestTLS(t *testing.T) {
	s := natstest.Start(t, natstest.Options{NoJetStream: true, TLS: true, User: "u", Password: "tls-secret"})
	withCreds := strings.Replace(s.TLSURL(), "tls://", "tls://u:tls-secret@", 1)
	for _, u := range []string{withCreds, s.AuthURL()} {
		c := connect(t, []string{u}, Options{TLSConfig: s.TLSConfig()})
		sub, _ := c.Subscribe("tls.x")
		flush(t, c)
		if err := c.Publish("tls.x", []byte("secret payload")); err != nil {
			t.Fatal(err)
		}
		if m := next(t, sub); string(m.Data) != "secret payload" {
			t.Errorf("over TLS (%s) received %q", c.Status().URL, m.Data)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	_, err := Connect(ctx, []string{withCreds}, Options{}) // the system roots do not know the test authority
	if err == nil || !strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "tls-secret") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Connect trusting the system roots: %v, want one line about the certificate, without the secret", err)
	}
	plain := natstest.Start(t, natstest.Options{NoJetStream: true})
	_, err = Connect(ctx, []string{plain.TLSURL()}, Options{TLSConfig: s.TLSConfig()})
	if err == nil || !strings.Contains(err.Error(), "does not offer TLS") {
		t.Errorf("Connect with tls:// to a server without TLS: %v", err)
	}
}
