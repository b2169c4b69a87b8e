package crosscheck

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	jsgo "github.com/nats-io/nats.go/jetstream"

	"chat/internal/jetstream"
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

// clients starts a server and connects both clients to it: ours (a
// jetstream.JS) and the official one (a nats.go connection and its
// JetStream).
func clients(t *testing.T) (*jetstream.JS, *natsgo.Conn, jsgo.JetStream) {
	t.Helper()
	s := natstest.Start(t, natstest.Options{})
	ours, err := jetstream.Connect(ctx(t), []string{s.URL()}, nats.Options{Name: "ours"})
	if err != nil {
		t.Fatalf("our Connect: %v", err)
	}
	t.Cleanup(func() { ours.Close() })
	nc, err := natsgo.Connect(s.URL(), natsgo.Name("nats.go"))
	if err != nil {
		t.Fatalf("nats.go Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jsgo.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return ours, nc, js
}

// TestStreamConfigReadByNatsGo makes streams with our client and reads
// their configuration with nats.go: every field is what we asked for (the
// room's kind of stream, and one with delete markers), and the creation
// time, the room's epoch, is the same. A configuration the server would
// change is refused instead.
func TestStreamConfigReadByNatsGo(t *testing.T) {
	ours, _, js := clients(t)
	room := jetstream.StreamConfig{
		Name: "CHAT", Subjects: []string{"chat.CHAT.msg", "chat.CHAT.del"}, Retention: jetstream.LimitsPolicy,
		Storage: jetstream.FileStorage, Replicas: 1, MaxMsgs: 500, MaxMsgsPerSubject: 400,
		MaxAge: 24 * time.Hour, Duplicates: 2 * time.Minute, Discard: jetstream.DiscardOld,
		AllowMsgTTL: true, AllowDirect: true, DenyDelete: true, DenyPurge: true,
	}
	markers := jetstream.StreamConfig{
		Name: "MARKERS", Subjects: []string{"m.>"}, Retention: jetstream.LimitsPolicy,
		Storage: jetstream.MemoryStorage, Replicas: 1,
		MaxAge: time.Minute, Duplicates: 30 * time.Second, Discard: jetstream.DiscardNew,
		MaxMsgsPerSubject: 1, AllowMsgTTL: true, SubjectDeleteMarkerTTL: 5 * time.Second,
		AllowRollup: true,
	}
	for _, cfg := range []jetstream.StreamConfig{room, markers} {
		info, err := ours.CreateStream(ctx(t), cfg)
		if err != nil {
			t.Fatalf("CreateStream(%s): %v", cfg.Name, err)
		}
		s, err := js.Stream(ctx(t), cfg.Name)
		if err != nil {
			t.Fatal(err)
		}
		got := s.CachedInfo()
		if g, w := fromNatsGo(got.Config), cfg; !reflect.DeepEqual(g, w) {
			t.Errorf("nats.go reads the configuration of %s\n%+v\nwant\n%+v", cfg.Name, g, w)
		}
		if !got.Created.Equal(info.Created) {
			t.Errorf("nats.go reads %s created %v, ours %v", cfg.Name, got.Created, info.Created)
		}
	}
	bad := markers
	bad.Name, bad.Subjects, bad.AllowRollup, bad.DenyPurge = "BAD", []string{"bad"}, false, true
	var apiErr *jetstream.APIError
	start := time.Now()
	if _, err := ours.CreateStream(ctx(t), bad); !errors.As(err, &apiErr) {
		t.Errorf("CreateStream with delete markers but no roll-ups: %v, want the server's refusal", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %v: a permanent error was retried", d)
	}
}

// fromNatsGo converts the fields of a nats.go stream configuration that
// ours has, with the server's -1 for "no limit" read as our 0.
func fromNatsGo(c jsgo.StreamConfig) jetstream.StreamConfig {
	limit := func(n int64) int64 {
		if n == -1 {
			return 0
		}
		return n
	}
	storage := map[jsgo.StorageType]string{jsgo.FileStorage: jetstream.FileStorage, jsgo.MemoryStorage: jetstream.MemoryStorage}
	discard := map[jsgo.DiscardPolicy]string{jsgo.DiscardOld: jetstream.DiscardOld, jsgo.DiscardNew: jetstream.DiscardNew}
	retention := ""
	if c.Retention == jsgo.LimitsPolicy {
		retention = jetstream.LimitsPolicy
	}
	out := jetstream.StreamConfig{
		Name: c.Name, Subjects: c.Subjects, Retention: retention, Storage: storage[c.Storage],
		Replicas: c.Replicas, MaxMsgs: limit(c.MaxMsgs), MaxBytes: limit(c.MaxBytes),
		MaxMsgsPerSubject: limit(c.MaxMsgsPerSubject), MaxAge: c.MaxAge, Duplicates: c.Duplicates,
		Discard: discard[c.Discard], AllowMsgTTL: c.AllowMsgTTL, SubjectDeleteMarkerTTL: c.SubjectDeleteMarkerTTL,
		AllowDirect: c.AllowDirect, AllowRollup: c.AllowRollup, DenyDelete: c.DenyDelete, DenyPurge: c.DenyPurge,
	}
	return out
}

// TestOurPublishesReadByNatsGo publishes with our client (ids, headers, a
// duplicate, a payload with CRLF, an empty one) and reads the stream with
// nats.go's ordered consumer and its message get.
func TestOurPublishesReadByNatsGo(t *testing.T) {
	ours, _, js := clients(t)
	if _, err := ours.CreateStream(ctx(t), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	sent := []*nats.Msg{
		{Subject: "s.a", Header: nats.Header{jetstream.MsgIDHeader: {"id-1"}, "Chat-Key": {"k1"}}, Data: []byte("first")},
		{Subject: "s.b", Header: nats.Header{jetstream.MsgIDHeader: {"id-2"}, "Multi": {"x", "y"}}, Data: []byte("a\r\nb")},
		{Subject: "s.a", Data: nil},
		{Subject: "s.c", Header: nats.Header{jetstream.MsgIDHeader: {"id-3"}}, Data: bytes.Repeat([]byte("z"), 3000)},
	}
	var seqs []uint64
	for _, m := range sent {
		ack, err := ours.PublishMsg(ctx(t), m)
		if err != nil || ack.Duplicate {
			t.Fatalf("PublishMsg(%s) = %+v, %v", m.Subject, ack, err)
		}
		seqs = append(seqs, ack.Seq)
	}
	if ack, err := ours.PublishMsg(ctx(t), sent[0]); err != nil || !ack.Duplicate || ack.Seq != seqs[0] {
		t.Errorf("PublishMsg of id-1 again = %+v, %v; want a duplicate of %d", ack, err, seqs[0])
	}

	cons, err := js.OrderedConsumer(ctx(t), "S", jsgo.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx(t), "S")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range sent {
		m, err := cons.Next(jsgo.FetchMaxWait(waitTimeout))
		if err != nil {
			t.Fatalf("nats.go Next %d: %v", i, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject() != want.Subject || !bytes.Equal(m.Data(), want.Data) || meta.Sequence.Stream != seqs[i] ||
			!sameHeader(m.Headers(), want.Header) {
			t.Errorf("nats.go consumer read %d: %s %q %v seq %d; want %s %q %v seq %d",
				i, m.Subject(), m.Data(), m.Headers(), meta.Sequence.Stream, want.Subject, want.Data, want.Header, seqs[i])
		}
		raw, err := s.GetMsg(ctx(t), seqs[i])
		if err != nil || raw.Subject != want.Subject || !bytes.Equal(raw.Data, want.Data) || !sameHeader(raw.Header, want.Header) {
			t.Errorf("nats.go GetMsg(%d) = %+v, %v", seqs[i], raw, err)
		}
	}
	info, err := s.Info(ctx(t))
	if err != nil || info.State.Msgs != uint64(len(sent)) {
		t.Errorf("nats.go reads %+v, %v; want %d messages (the duplicate not stored)", info.State, err, len(sent))
	}
}

// sameHeader compares a nats.go header with ours, nil and empty alike.
func sameHeader(got natsgo.Header, want nats.Header) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			return false
		}
	}
	return true
}

// TestNatsGoPublishesReadByUs publishes with nats.go and reads with our
// ordered consumer (from the start, and from a start sequence) and our
// message get: subjects, headers, data and sequences are the same.
func TestNatsGoPublishesReadByUs(t *testing.T) {
	ours, _, js := clients(t)
	if _, err := js.CreateStream(ctx(t), jsgo.StreamConfig{Name: "G", Subjects: []string{"g.>"}}); err != nil {
		t.Fatal(err)
	}
	type sentMsg struct {
		m   *natsgo.Msg
		seq uint64
	}
	var sent []sentMsg
	for i, m := range []*natsgo.Msg{
		{Subject: "g.a", Header: natsgo.Header{"Nats-Msg-Id": {"n1"}, "Multi": {"1", "2"}}, Data: []byte("one")},
		{Subject: "g.b", Data: []byte("two\r\nlines")},
		{Subject: "g.a", Header: natsgo.Header{"Nats-Msg-Id": {"n3"}}, Data: nil},
		{Subject: "g.c", Data: []byte("four")},
	} {
		ack, err := js.PublishMsg(ctx(t), m)
		if err != nil {
			t.Fatalf("nats.go PublishMsg %d: %v", i, err)
		}
		sent = append(sent, sentMsg{m, ack.Sequence})
	}
	if ack, err := js.PublishMsg(ctx(t), sent[0].m); err != nil || !ack.Duplicate {
		t.Errorf("nats.go publish of n1 again = %+v, %v; want a duplicate", ack, err)
	}

	for _, start := range []uint64{1, 3} {
		c, err := ours.OrderedConsumer(ctx(t), "G", jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequence, StartSeq: start})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range sent[start-1:] {
			m, err := c.Next(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != want.m.Subject || m.Seq != want.seq || !bytes.Equal(m.Data, want.m.Data) || !sameHeader(want.m.Header, m.Header) {
				t.Errorf("our consumer (from %d) read %+v, want %s seq %d %q %v", start, m, want.m.Subject, want.seq, want.m.Data, want.m.Header)
			}
		}
		select {
		case <-c.CaughtUp():
		default:
			t.Errorf("our consumer from %d not caught up after the last message", start)
		}
		c.Stop()
	}
	for _, want := range sent {
		m, err := ours.GetMsg(ctx(t), "G", want.seq)
		if err != nil || m.Subject != want.m.Subject || !bytes.Equal(m.Data, want.m.Data) || !sameHeader(want.m.Header, m.Header) {
			t.Errorf("our GetMsg(%d) = %+v, %v", want.seq, m, err)
		}
	}
}

// TestCoreInterop checks core NATS both ways: headers and payloads
// published by one client arrive the same at the other, each answers the
// other's requests, and both see no responders alike.
func TestCoreInterop(t *testing.T) {
	ours, nc, _ := clients(t)
	oc := ours.Conn()
	oursSub, err := oc.Subscribe("core.to.ours")
	if err != nil {
		t.Fatal(err)
	}
	if err := oc.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	in := &natsgo.Msg{Subject: "core.to.ours", Reply: "some.reply", Header: natsgo.Header{"A": {"1", "2"}, "b-lower": {"v"}}, Data: []byte("x\r\ny")}
	if err := nc.PublishMsg(in); err != nil {
		t.Fatal(err)
	}
	got, err := oursSub.Next(ctx(t))
	if err != nil || got.Subject != in.Subject || got.Reply != in.Reply || !bytes.Equal(got.Data, in.Data) || !sameHeader(in.Header, got.Header) {
		t.Errorf("ours received %+v, %v; want %+v", got, err, in)
	}

	goSub, err := nc.SubscribeSync("core.to.go")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	out := &nats.Msg{Subject: "core.to.go", Header: nats.Header{"Key": {"v1", "v2"}}, Data: []byte("from ours")}
	if err := oc.PublishMsg(out); err != nil {
		t.Fatal(err)
	}
	m, err := goSub.NextMsg(waitTimeout)
	if err != nil || m.Subject != out.Subject || !bytes.Equal(m.Data, out.Data) || !sameHeader(m.Header, out.Header) {
		t.Errorf("nats.go received %+v, %v; want %+v", m, err, out)
	}

	if _, err := nc.Subscribe("svc.go", func(m *natsgo.Msg) { _ = m.Respond(append([]byte("go:"), m.Data...)) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := oc.Request(ctx(t), &nats.Msg{Subject: "svc.go", Data: []byte("hi")})
	if err != nil || string(r.Data) != "go:hi" {
		t.Errorf("our request to nats.go = %+v, %v", r, err)
	}
	svc, err := oc.Subscribe("svc.ours")
	if err != nil {
		t.Fatal(err)
	}
	if err := oc.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	go func() {
		m, err := svc.Next(context.Background())
		if err == nil {
			_ = oc.Publish(m.Reply, append([]byte("ours:"), m.Data...))
		}
	}()
	gr, err := nc.Request("svc.ours", []byte("hey"), waitTimeout)
	if err != nil || string(gr.Data) != "ours:hey" {
		t.Errorf("nats.go request to ours = %+v, %v", gr, err)
	}
	if _, err := nc.Request("svc.none", nil, waitTimeout); !errors.Is(err, natsgo.ErrNoResponders) {
		t.Errorf("nats.go request to no one: %v", err)
	}
	if _, err := oc.Request(ctx(t), &nats.Msg{Subject: "svc.none"}); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("our request to no one: %v", err)
	}
}
