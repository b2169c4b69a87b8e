package jetstream

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"chat/internal/nats"
	"chat/internal/natstest"
)

// waitTimeout bounds every wait of these tests; a passing run needs a
// small part of it, but the machine may be slow and busy.
const waitTimeout = 30 * time.Second

// ctx returns a context that ends after waitTimeout or with the test.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return c
}

// connectJS connects to urls and closes the connection when the test ends.
func connectJS(t *testing.T, urls ...string) *JS {
	t.Helper()
	js, err := Connect(ctx(t), urls, nats.Options{ReconnectWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("Connect(%v): %v", urls, err)
	}
	t.Cleanup(func() { js.Close() })
	return js
}

// startJS starts a server and connects to it.
func startJS(t *testing.T) (*natstest.Server, *JS) {
	t.Helper()
	s := natstest.Start(t, natstest.Options{})
	return s, connectJS(t, s.URL())
}

// TestConnectWithoutJetStream fails with a one-line ErrNoJetStream
// against a server without JetStream, and with the credentials redacted.
func TestConnectWithoutJetStream(t *testing.T) {
	s := natstest.Start(t, natstest.Options{NoJetStream: true, User: "u", Password: "pw-secret"})
	_, err := Connect(ctx(t), []string{s.AuthURL()}, nats.Options{})
	if !errors.Is(err, ErrNoJetStream) {
		t.Fatalf("Connect to a server without JetStream: %v, want ErrNoJetStream", err)
	}
	if msg := err.Error(); strings.Contains(msg, "pw-secret") || strings.Contains(msg, "\n") || !strings.Contains(msg, "xxxxx@") {
		t.Errorf("error %q: want one line naming the redacted URL", msg)
	}
}

// TestStreamCreateInfoUpdate makes a stream with every field the room
// uses, reads it back, makes it again (same configuration: the same
// stream), meets the conflict error for another configuration, has a
// configuration the server would adjust refused at once, updates a stream
// and meets the not-found error.
func TestStreamCreateInfoUpdate(t *testing.T) {
	_, js := startJS(t)
	cfg := StreamConfig{
		Name: "CHAT", Subjects: []string{"chat.CHAT.>"}, Storage: FileStorage, Replicas: 1,
		MaxMsgs: 1000, MaxMsgsPerSubject: 900, MaxAge: time.Hour, Duplicates: time.Minute,
		AllowMsgTTL: true, AllowDirect: true, DenyDelete: true, DenyPurge: true,
	}
	info, err := js.CreateStream(ctx(t), cfg)
	if err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	want := cfg.withDefaults()
	want.MaxBytes = -1 // the server's "no limit"
	if !sameConfig(info.Config, want) {
		t.Errorf("created config %+v, want %+v", info.Config, want)
	}
	if time.Since(info.Created) > time.Minute || info.Created.IsZero() {
		t.Errorf("Created = %v, want about now", info.Created)
	}
	again, err := js.CreateStream(ctx(t), cfg)
	if err != nil || !again.Created.Equal(info.Created) {
		t.Errorf("CreateStream again: %v, created %v; want the same stream (%v)", err, again.Created, info.Created)
	}
	other := cfg
	other.MaxMsgs = 5
	if _, err := js.CreateStream(ctx(t), other); !errors.Is(err, ErrStreamNameInUse) {
		t.Errorf("CreateStream with another configuration: %v, want ErrStreamNameInUse", err)
	}
	got, err := js.StreamInfo(ctx(t), "CHAT")
	if err != nil || !got.Created.Equal(info.Created) || got.Config.MaxMsgs != 1000 {
		t.Errorf("StreamInfo = %+v, %v", got, err)
	}
	updated, err := js.UpdateStream(ctx(t), other)
	if err != nil || updated.Config.MaxMsgs != 5 {
		t.Errorf("UpdateStream: %+v, %v; want max_msgs 5", updated, err)
	}
	if _, err := js.StreamInfo(ctx(t), "NOPE"); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("StreamInfo of a missing stream: %v, want ErrStreamNotFound", err)
	}
	bad := StreamConfig{Name: "BAD", Subjects: []string{"bad"}, SubjectDeleteMarkerTTL: time.Second, AllowMsgTTL: true}
	start := time.Now()
	var apiErr *APIError
	if _, err := js.CreateStream(ctx(t), bad); !errors.As(err, &apiErr) || errors.Is(err, ErrStreamNameInUse) {
		t.Errorf("CreateStream with delete markers but no roll-ups: %v, want the server's refusal", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %v: a permanent error was retried", d)
	}
	if _, err := js.StreamInfo(ctx(t), "BAD"); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("StreamInfo(BAD) after the refusal: %v, want ErrStreamNotFound (not made with other settings)", err)
	}
	short := StreamConfig{Name: "SHORT", Subjects: []string{"short"}, MaxAge: time.Minute}
	if _, err := js.CreateStream(ctx(t), short); !errors.As(err, &apiErr) {
		t.Errorf("CreateStream with a max age under the default duplicate window: %v, want a refusal", err)
	}
	short.Duplicates = time.Minute
	if _, err := js.CreateStream(ctx(t), short); err != nil {
		t.Errorf("CreateStream with max age and duplicate window of a minute: %v", err)
	}
	if _, err := js.CreateStream(ctx(t), StreamConfig{Name: "A.B"}); err == nil {
		t.Error("CreateStream with a dot in the name succeeded")
	}
	if err := js.DeleteStream(ctx(t), "CHAT"); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	if _, err := js.StreamInfo(ctx(t), "CHAT"); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("StreamInfo after DeleteStream: %v, want ErrStreamNotFound", err)
	}
}

// sameConfig compares the stream configuration fields this package has.
func sameConfig(a, b StreamConfig) bool {
	return a.Name == b.Name && strings.Join(a.Subjects, ",") == strings.Join(b.Subjects, ",") &&
		a.Retention == b.Retention && a.Storage == b.Storage && a.Replicas == b.Replicas &&
		a.MaxMsgs == b.MaxMsgs && a.MaxBytes == b.MaxBytes && a.MaxMsgsPerSubject == b.MaxMsgsPerSubject &&
		a.MaxAge == b.MaxAge && a.Duplicates == b.Duplicates && a.Discard == b.Discard &&
		a.AllowMsgTTL == b.AllowMsgTTL && a.SubjectDeleteMarkerTTL == b.SubjectDeleteMarkerTTL &&
		a.AllowDirect == b.AllowDirect && a.AllowRollup == b.AllowRollup &&
		a.DenyDelete == b.DenyDelete && a.DenyPurge == b.DenyPurge
}

// TestPublishAndGet publishes with acknowledgement: sequences, duplicate
// detection by Nats-Msg-Id, the expected-last-subject-sequence check, a
// subject no stream takes; then reads messages back by sequence and as the
// last of a subject, headers and all.
func TestPublishAndGet(t *testing.T) {
	_, js := startJS(t)
	if _, err := js.CreateStream(ctx(t), StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx(t), "s.a", []byte("one"))
	if err != nil || ack.Stream != "S" || ack.Seq != 1 || ack.Duplicate {
		t.Fatalf("Publish = %+v, %v; want S seq 1", ack, err)
	}
	withID := func(id, data string) *nats.Msg {
		return &nats.Msg{Subject: "s.b", Header: nats.Header{MsgIDHeader: {id}, "X-Key": {"v1", "v2"}}, Data: []byte(data)}
	}
	ack, err = js.PublishMsg(ctx(t), withID("k1", "two"))
	if err != nil || ack.Seq != 2 || ack.Duplicate {
		t.Fatalf("PublishMsg with an id = %+v, %v; want seq 2", ack, err)
	}
	ack, err = js.PublishMsg(ctx(t), withID("k1", "two again"))
	if err != nil || ack.Seq != 2 || !ack.Duplicate {
		t.Errorf("PublishMsg with the same id = %+v, %v; want a duplicate of seq 2", ack, err)
	}
	expect := &nats.Msg{Subject: "s.b", Header: nats.Header{ExpectedLastSubjSeqHeader: {"1"}}}
	if _, err := js.PublishMsg(ctx(t), expect); !errors.Is(err, ErrWrongLastSequence) {
		t.Errorf("PublishMsg expecting the wrong last sequence: %v, want ErrWrongLastSequence", err)
	}
	if _, err := js.Publish(ctx(t), "nostream.x", nil); !errors.Is(err, ErrNoStream) || !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("Publish where no stream listens: %v, want ErrNoStream", err)
	}

	m, err := js.GetMsg(ctx(t), "S", 2)
	if err != nil || m.Subject != "s.b" || m.Seq != 2 || string(m.Data) != "two" ||
		m.Header.Get(MsgIDHeader) != "k1" || len(m.Header.Values("X-Key")) != 2 || time.Since(m.Time) > time.Minute {
		t.Errorf("GetMsg(2) = %+v, %v", m, err)
	}
	last, err := js.GetLastMsg(ctx(t), "S", "s.a")
	if err != nil || last.Seq != 1 || !bytes.Equal(last.Data, []byte("one")) || last.Header != nil {
		t.Errorf("GetLastMsg(s.a) = %+v, %v", last, err)
	}
	if _, err := js.GetMsg(ctx(t), "S", 99); !errors.Is(err, ErrMsgNotFound) {
		t.Errorf("GetMsg(99): %v, want ErrMsgNotFound", err)
	}
	if _, err := js.GetLastMsg(ctx(t), "S", "s.none"); !errors.Is(err, ErrMsgNotFound) {
		t.Errorf("GetLastMsg(s.none): %v, want ErrMsgNotFound", err)
	}
}

// TestPublishTTL stores a message with a Nats-TTL header on a stream that
// allows it and sees it expire; a stream that does not allow it refuses.
func TestPublishTTL(t *testing.T) {
	_, js := startJS(t)
	if _, err := js.CreateStream(ctx(t), StreamConfig{Name: "T", Subjects: []string{"t.>"}, AllowMsgTTL: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx(t), StreamConfig{Name: "N", Subjects: []string{"n.>"}}); err != nil {
		t.Fatal(err)
	}
	ttl := nats.Header{TTLHeader: {FormatTTL(time.Second)}}
	if _, err := js.PublishMsg(ctx(t), &nats.Msg{Subject: "t.x", Header: ttl}); err != nil {
		t.Fatalf("PublishMsg with a TTL: %v", err)
	}
	var apiErr *APIError
	if _, err := js.PublishMsg(ctx(t), &nats.Msg{Subject: "n.x", Header: ttl}); !errors.As(err, &apiErr) {
		t.Errorf("PublishMsg with a TTL to a stream without AllowMsgTTL: %v, want an API error", err)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		_, err := js.GetMsg(ctx(t), "T", 1)
		if errors.Is(err, ErrMsgNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the message with a TTL of 1s is still there after %v (%v)", waitTimeout, err)
		}
		time.Sleep(50 * time.Millisecond) // the pause of a bounded poll
	}
}

// TestFormatTTL rounds up to whole seconds, at least one.
func TestFormatTTL(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "1s", time.Millisecond: "1s", time.Second: "1s", 1500 * time.Millisecond: "2s", time.Hour: "3600s",
	} {
		if got := FormatTTL(d); got != want {
			t.Errorf("FormatTTL(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestReadRetriedAcrossRestart starts reading a stored message while the
// server is down: the read is retried until the server is back, and
// answers.
func TestReadRetriedAcrossRestart(t *testing.T) {
	s, js := startJS(t)
	if _, err := js.CreateStream(ctx(t), StreamConfig{Name: "G", Subjects: []string{"g"}}); err != nil {
		t.Fatal(err)
	}
	publishN(t, js, "g", 1, 1)
	s.Kill()
	for js.Conn().Status().Connected {
		<-js.Conn().StatusChanged()
	}
	type result struct {
		m   *StoredMsg
		err error
	}
	done := make(chan result, 1)
	rctx := ctx(t)
	go func() { // its first attempts find the connection down
		m, err := js.GetMsg(rctx, "G", 1)
		done <- result{m, err}
	}()
	s.Restart()
	r := <-done
	if r.err != nil || string(r.m.Data) != "1" {
		t.Errorf("GetMsg across a restart = %+v, %v; want message 1", r.m, r.err)
	}
}
