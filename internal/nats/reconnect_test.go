package nats

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"chat/internal/natstest"
)

// TestReconnect kills the server under a connection: the request that was
// waiting fails with ErrNoReply (connection lost), the status says
// disconnected and why, publishing fails at once with ErrNotConnected,
// and once the server is back the connection returns by itself with its
// subscriptions made again.
func TestReconnect(t *testing.T) {
	s := natstest.Start(t, natstest.Options{NoJetStream: true})
	c := connect(t, []string{s.URL()}, Options{ReconnectWait: 20 * time.Millisecond})
	sub, _ := c.Subscribe("r.x")
	silent, _ := c.Subscribe("svc.silent")
	flush(t, c)

	reqErr := make(chan error, 1)
	go func() {
		_, err := c.Request(context.Background(), &Msg{Subject: "svc.silent", Data: []byte("q")})
		reqErr <- err
	}()
	next(t, silent) // the request is out and waiting for its reply

	s.Kill()
	select {
	case err := <-reqErr:
		if !errors.Is(err, ErrNoReply) || !errors.Is(err, ErrConnectionLost) {
			t.Errorf("waiting request: %v, want ErrNoReply and ErrConnectionLost", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the waiting request did not fail when the server died")
	}
	st := waitStatus(t, c, "disconnected", func(st Status) bool { return !st.Connected })
	if st.Err == nil || !strings.Contains(st.Err.Error(), s.URL()) {
		t.Errorf("Status().Err = %v, want the reason naming %s", st.Err, s.URL())
	}
	start := time.Now()
	if err := c.Publish("r.x", []byte("lost")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish while disconnected: %v, want ErrNotConnected", err)
	}
	if _, err := c.Request(context.Background(), &Msg{Subject: "svc.silent"}); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Request while disconnected: %v, want ErrNotConnected", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("failing while disconnected took %v, want at once", d)
	}

	s.Restart()
	st = waitStatus(t, c, "connected", func(st Status) bool { return st.Connected })
	if st.Reconnects != 1 || st.Err != nil {
		t.Errorf("Status() after reconnect = %+v, want 1 reconnect and no error", st)
	}
	flush(t, c) // the replayed SUBs are processed
	other := connect(t, []string{s.URL()}, Options{})
	if err := other.Publish("r.x", []byte("after")); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); string(m.Data) != "after" {
		t.Errorf("after reconnect received %q, want after", m.Data)
	}
}

// TestFailover connects to the first server of a cluster, kills it, and
// wants the connection on the next URL of the list with its subscription
// working there.
func TestFailover(t *testing.T) {
	servers := natstest.Cluster(t, 3, natstest.Options{NoJetStream: true})
	c := connect(t, natstest.URLs(servers), Options{ReconnectWait: 20 * time.Millisecond})
	if got := c.Status().URL; got != servers[0].URL() {
		t.Fatalf("connected to %s, want the first URL %s", got, servers[0].URL())
	}
	sub, _ := c.Subscribe("f.x")
	flush(t, c)

	servers[0].Kill()
	st := waitStatus(t, c, "connected again", func(st Status) bool { return st.Connected && st.Reconnects == 1 })
	if st.URL != servers[1].URL() {
		t.Errorf("reconnected to %s, want the next URL %s", st.URL, servers[1].URL())
	}
	flush(t, c)

	// The subscription's interest reaches the third server over the route
	// a moment later: publish until it arrives, within waitTimeout.
	pub := connect(t, []string{servers[2].URL()}, Options{})
	deadline := time.Now().Add(waitTimeout)
	for {
		if err := pub.Publish("f.x", []byte("over the route")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		m, err := sub.Next(ctx)
		cancel()
		if err == nil {
			if string(m.Data) != "over the route" {
				t.Errorf("received %q", m.Data)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message through the failed-over connection after %v", waitTimeout)
		}
	}
}

// TestCloseEndsEverything closes a connection with a request waiting and
// a reader blocked in Next: both return, later calls fail with ErrClosed.
func TestCloseEndsEverything(t *testing.T) {
	s := natstest.Start(t, natstest.Options{NoJetStream: true})
	c := connect(t, []string{s.URL()}, Options{})
	sub, _ := c.Subscribe("svc.silent")
	flush(t, c)
	reqErr := make(chan error, 1)
	go func() {
		_, err := c.Request(context.Background(), &Msg{Subject: "svc.silent"})
		reqErr <- err
	}()
	next(t, sub)
	nextErr := make(chan error, 1)
	go func() {
		_, err := sub.Next(context.Background())
		nextErr <- err
	}()
	changed := c.StatusChanged()
	c.Close()
	for name, ch := range map[string]chan error{"Request": reqErr, "Next": nextErr} {
		select {
		case err := <-ch:
			if err == nil {
				t.Errorf("%s returned no error after Close", name)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%s still blocked after Close", name)
		}
	}
	select {
	case <-changed:
	default:
		t.Error("StatusChanged not closed by Close")
	}
	if st := c.Status(); !st.Closed || st.Connected {
		t.Errorf("Status() after Close = %+v", st)
	}
	if err := c.Publish("x", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	if _, err := c.Subscribe("x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
}

// TestCredentialsNotInStatus loses a connection made with a user and
// password: neither the loss, nor the failed attempts to reconnect, nor the
// new connection show the password in the status.
func TestCredentialsNotInStatus(t *testing.T) {
	const password = "s3cret-pw"
	s := natstest.Start(t, natstest.Options{NoJetStream: true, User: "alice", Password: password})
	c := connect(t, []string{s.AuthURL()}, Options{ReconnectWait: 20 * time.Millisecond})
	check := func(when string, st Status) {
		t.Helper()
		text := st.URL
		if st.Err != nil {
			text += " " + st.Err.Error()
		}
		if strings.Contains(text, password) || strings.Contains(text, "alice") {
			t.Errorf("%s: status %q shows the credentials", when, text)
		}
	}
	check("connected", c.Status())
	s.Kill()
	check("lost", waitStatus(t, c, "disconnected", func(st Status) bool { return !st.Connected }))
	deadline := time.Now().Add(waitTimeout)
	for { // the attempts' errors replace the loss's without a status change: poll
		st := c.Status()
		if st.Err != nil && strings.HasPrefix(st.Err.Error(), "reconnect to ") {
			check("reconnecting", st)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect attempt in the status after %v: %+v", waitTimeout, st)
		}
		time.Sleep(10 * time.Millisecond) // the pause of a bounded poll
	}
	s.Restart()
	check("reconnected", waitStatus(t, c, "connected", func(st Status) bool { return st.Connected }))
}
