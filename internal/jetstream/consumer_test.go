package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"chat/internal/nats"
	"chat/internal/natstest"
)

// publishN publishes n messages "<first>"… to subject, each acknowledged.
func publishN(t *testing.T, js *JS, subject string, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		if _, err := js.Publish(ctx(t), subject, []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
}

// nextMsg returns the consumer's next message within waitTimeout.
func nextMsg(t *testing.T, c *Consumer) *Msg {
	t.Helper()
	m, err := c.Next(ctx(t))
	if err != nil {
		t.Fatalf("Next after seq %d: %v", c.LastSeq(), err)
	}
	return m
}

// expectSeqs reads the consumer and wants exactly the sequences from..to,
// each message's data being its sequence.
func expectSeqs(t *testing.T, c *Consumer, from, to uint64) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		m := nextMsg(t, c)
		if m.Seq != seq || string(m.Data) != strconv.FormatUint(seq, 10) {
			t.Fatalf("delivered seq %d data %q, want seq %d", m.Seq, m.Data, seq)
		}
	}
}

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestOrderedConsumer reads from a start sequence, in order, with times,
// headers and pending counts; says when it has caught up; goes on with
// live messages; filters subjects; and an empty stream is caught up at
// once.
func TestOrderedConsumer(t *testing.T) {
	_, js := startJS(t)
	if _, err := js.CreateStream(ctx(t), StreamConfig{Name: "C", Subjects: []string{"c.>"}}); err != nil {
		t.Fatal(err)
	}
	empty, err := js.OrderedConsumer(ctx(t), "C", ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Stop()
	if !isClosed(empty.CaughtUp()) {
		t.Error("a consumer of an empty stream is not caught up")
	}
	publishN(t, js, "c.msg", 1, 10)
	if _, err := js.PublishMsg(ctx(t), &nats.Msg{Subject: "c.other", Header: nats.Header{"K": {"v"}}, Data: []byte("11")}); err != nil {
		t.Fatal(err)
	}
	c, err := js.OrderedConsumer(ctx(t), "C", ConsumerConfig{DeliverPolicy: DeliverByStartSequence, StartSeq: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	for seq := uint64(4); seq <= 11; seq++ {
		if isClosed(c.CaughtUp()) {
			t.Fatalf("caught up before seq %d", seq)
		}
		m := nextMsg(t, c)
		if m.Seq != seq || m.Pending != 11-seq || time.Since(m.Time) > time.Minute {
			t.Fatalf("delivered %+v, want seq %d with %d pending", m, seq, 11-seq)
		}
		if seq == 11 && (m.Subject != "c.other" || m.Header.Get("K") != "v") {
			t.Errorf("last message %+v, want subject c.other with header K", m)
		}
	}
	if !isClosed(c.CaughtUp()) {
		t.Error("not caught up after the last message")
	}
	publishN(t, js, "c.msg", 12, 2)
	expectSeqs(t, c, 12, 13)

	filtered, err := js.OrderedConsumer(ctx(t), "C", ConsumerConfig{FilterSubjects: []string{"c.other"}})
	if err != nil {
		t.Fatal(err)
	}
	defer filtered.Stop()
	if m := nextMsg(t, filtered); m.Seq != 11 || m.Pending != 0 {
		t.Errorf("filtered consumer delivered %+v, want seq 11 only", m)
	}
	if c.Resets() != 0 || filtered.Resets() != 0 {
		t.Errorf("Resets() = %d, %d; want 0", c.Resets(), filtered.Resets())
	}
	if _, err := js.OrderedConsumer(ctx(t), "MISSING", ConsumerConfig{}); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("OrderedConsumer of a missing stream: %v, want ErrStreamNotFound", err)
	}
	c.Stop()
	if _, err := c.Next(ctx(t)); !errors.Is(err, ErrConsumerStopped) {
		t.Errorf("Next after Stop: %v, want ErrConsumerStopped", err)
	}
}

// TestOrderedConsumerFlowControl publishes a burst far larger than the
// server sends before it wants a flow control answer, reads it slowly at
// first, and wants every message in order without the consumer being
// made again.
func TestOrderedConsumerFlowControl(t *testing.T) {
	_, js := startJS(t)
	if _, err := js.CreateStream(ctx(t), StreamConfig{Name: "B", Subjects: []string{"b"}, Storage: MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	const n, size = 3000, 4096 // 12 MB; the server asks for flow control every 1 MB or so
	payload := make([]byte, size)
	for i := 1; i <= n; i++ {
		copy(payload, strconv.Itoa(i)+"|")
		if err := js.Conn().PublishMsg(&nats.Msg{Subject: "b", Data: append([]byte(nil), payload...)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := js.Conn().Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	waitStreamSeq(t, js, "B", n)
	c, err := js.OrderedConsumer(ctx(t), "B", ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	for seq := uint64(1); seq <= n; seq++ {
		m := nextMsg(t, c)
		if want := strconv.FormatUint(seq, 10) + "|"; m.Seq != seq || string(m.Data[:len(want)]) != want {
			t.Fatalf("delivered seq %d (%q…), want %d", m.Seq, m.Data[:8], seq)
		}
	}
	if r := c.Resets(); r != 0 {
		t.Errorf("Resets() = %d after the burst, want 0", r)
	}
}

// waitStreamSeq waits until the stream's last sequence is seq.
func waitStreamSeq(t *testing.T, js *JS, stream string, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		info, err := js.StreamInfo(ctx(t), stream)
		if err == nil && info.State.LastSeq == seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s not at seq %d after %v: %+v, %v", stream, seq, waitTimeout, info, err)
		}
		time.Sleep(20 * time.Millisecond) // the pause of a bounded poll
	}
}

// TestOrderedConsumerServerRestart reads part of a stream, restarts the
// server (the consumer, in memory, is gone), and wants the rest with no
// gap and no duplicate, the consumer made again by itself. Its heartbeat
// is longer than the test, so only the reconnect can set it going again.
func TestOrderedConsumerServerRestart(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(fmt.Sprintf("kill=%v", kill), func(t *testing.T) {
			s, js := startJS(t)
			if _, err := js.CreateStream(ctx(t), StreamConfig{Name: "R", Subjects: []string{"r"}}); err != nil {
				t.Fatal(err)
			}
			publishN(t, js, "r", 1, 50)
			c, err := js.OrderedConsumer(ctx(t), "R", ConsumerConfig{Heartbeat: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Stop()
			expectSeqs(t, c, 1, 20)
			if kill {
				s.Kill()
			} else {
				s.Stop()
			}
			s.Restart()
			waitConnected(t, js)
			publishN(t, js, "r", 51, 50)
			expectSeqs(t, c, 21, 100)
			if c.Resets() == 0 {
				t.Error("Resets() = 0 after a server restart")
			}
		})
	}
}

// waitConnected waits until js's connection is up.
func waitConnected(t *testing.T, js *JS) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		changed := js.Conn().StatusChanged()
		if js.Conn().Status().Connected {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("not connected after %v: %+v", waitTimeout, js.Conn().Status())
		}
	}
}

// TestOrderedConsumerClusterKill publishes without pause to a stream with
// three replicas while the server the consumer is connected to is killed
// with SIGKILL: the consumer moves to another server and delivers every
// stored message once, in order, and every acknowledged one among them.
func TestOrderedConsumerClusterKill(t *testing.T) {
	servers := natstest.Cluster(t, 3, natstest.Options{})
	urls := natstest.URLs(servers)
	js := connectJS(t, urls...)
	pubJS := connectJS(t, urls[2], urls[1])
	if _, err := js.CreateStream(ctx(t), StreamConfig{Name: "K", Subjects: []string{"k"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	c, err := js.OrderedConsumer(ctx(t), "K", ConsumerConfig{Heartbeat: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	// The publisher retries each message with its Nats-Msg-Id until it is
	// acknowledged, so every message ends up stored exactly once.
	const total = 400
	var acked sync.Map
	pubDone := make(chan error, 1)
	go func() { pubDone <- publishWithRetry(pubJS, total, &acked) }()

	got := 0
	var last uint64
	for got < total {
		if got == 100 {
			servers[0].Kill()
		}
		m, err := c.Next(ctx(t))
		if err != nil {
			t.Fatalf("Next after %d messages: %v", got, err)
		}
		if m.Seq != last+1 {
			t.Fatalf("delivered seq %d after %d: a gap or a duplicate", m.Seq, last)
		}
		last = m.Seq
		got++
	}
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for seq := uint64(1); seq <= total; seq++ {
		m, err := js.GetMsg(ctx(t), "K", seq)
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", seq, err)
		}
		seen[string(m.Data)] = true
	}
	acked.Range(func(k, _ any) bool {
		if !seen[k.(string)] {
			t.Errorf("acknowledged message %s not in the stream's first %d", k, total)
		}
		return true
	})
	if c.Resets() == 0 {
		t.Error("Resets() = 0, yet the consumer's server was killed")
	}
}

// publishWithRetry publishes messages 1..n, each with its own Nats-Msg-Id,
// retrying a message until it is acknowledged, and records the
// acknowledged ones.
func publishWithRetry(js *JS, n int, acked *sync.Map) error {
	deadline := time.Now().Add(2 * waitTimeout)
	for i := 1; i <= n; i++ {
		data := strconv.Itoa(i)
		for {
			if time.Now().After(deadline) {
				return fmt.Errorf("message %d not acknowledged in time", i)
			}
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			ack, err := js.PublishMsg(rctx, &nats.Msg{Subject: "k", Header: nats.Header{MsgIDHeader: {data}}, Data: []byte(data)})
			cancel()
			if err == nil {
				acked.Store(data, ack.Seq)
				break
			}
			if errors.Is(err, nats.ErrNotConnected) {
				<-js.Conn().StatusChanged()
			}
		}
	}
	return nil
}

// TestOrderedConsumerMissedHeartbeats deletes the consumer on the server
// behind the client's back: no message and no heartbeat comes any more,
// and after three missed heartbeats the consumer makes itself again and
// delivers what follows, with no gap.
func TestOrderedConsumerMissedHeartbeats(t *testing.T) {
	_, js := startJS(t)
	if _, err := js.CreateStream(ctx(t), StreamConfig{Name: "H", Subjects: []string{"h"}}); err != nil {
		t.Fatal(err)
	}
	publishN(t, js, "h", 1, 5)
	c, err := js.OrderedConsumer(ctx(t), "H", ConsumerConfig{Heartbeat: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	expectSeqs(t, c, 1, 5)
	c.mu.Lock()
	name := c.name
	c.mu.Unlock()
	var resp apiResponse
	if err := js.request(ctx(t), "CONSUMER.DELETE.H."+name, nil, &resp); err != nil {
		t.Fatalf("delete the consumer: %v", err)
	}
	publishN(t, js, "h", 6, 5)
	expectSeqs(t, c, 6, 10)
	if c.Resets() != 1 {
		t.Errorf("Resets() = %d, want 1", c.Resets())
	}
}

// ackReply builds a 9-token delivery reply subject.
func ackReply(consumer string, sseq, cseq, pending uint64) string {
	return fmt.Sprintf("$JS.ACK.S.%s.1.%d.%d.1700000000000000000.%d", consumer, sseq, cseq, pending)
}

// TestConsumerHandle feeds deliveries straight to the consumer's handler
// and checks what it hands out and when it decides to make itself again:
// a consumer sequence out of order, a heartbeat naming a delivery not
// received, a status such as 409; and what it ignores: another consumer's
// deliveries, a stream sequence already delivered.
func TestConsumerHandle(t *testing.T) {
	type step struct {
		m         *nats.Msg
		deliver   uint64 // the stream sequence handed out, 0 for none
		reset     bool
		caughtUp  bool
		resetWith uint64 // when not 0, reset the state with this last sequence first
	}
	hb := func(last string) *nats.Msg {
		return &nats.Msg{Status: 100, Description: "Idle Heartbeat", Header: nats.Header{"Nats-Last-Consumer": {last}}}
	}
	del := func(consumer string, sseq, cseq, pending uint64) *nats.Msg {
		return &nats.Msg{Subject: "s", Reply: ackReply(consumer, sseq, cseq, pending)}
	}
	steps := []step{
		{m: del("oc", 10, 1, 3), deliver: 10},
		{m: del("oc", 11, 2, 2), deliver: 11},
		{m: hb("2")},
		{m: del("other", 12, 3, 1)}, // another consumer's: ignored
		{m: &nats.Msg{Subject: "s", Reply: "_INBOX.x"}},
		{m: del("oc", 12, 3, 1), deliver: 12},
		{m: del("oc", 14, 5, 0), reset: true},                 // consumer sequence 4 is missing
		{resetWith: 12, m: del("oc", 12, 1, 0)},               // already delivered: dropped
		{m: del("oc", 13, 2, 0), deliver: 13, caughtUp: true}, // pending 0: caught up
		{m: hb("3"), reset: true},                             // the server delivered 3, we got 2
		{resetWith: 13, m: &nats.Msg{Status: 409, Description: "Consumer Deleted"}, reset: true},
		{resetWith: 13, m: &nats.Msg{Subject: "s", Reply: "$JS.ACK._.acc.S.oc.1.14.1.1700000000000000000.0.tok"}, deliver: 14},
	}
	c := &Consumer{js: &JS{}, name: "oc", caughtUp: make(chan struct{})}
	for i, st := range steps {
		if st.resetWith != 0 {
			c.lastSeq, c.lastCSeq, c.needReset = st.resetWith, 0, false
		}
		out := c.handle(st.m)
		var got uint64
		if out != nil {
			got = out.Seq
		}
		if got != st.deliver || c.needReset != st.reset {
			t.Fatalf("step %d: delivered %d, reset %v; want %d, %v", i, got, c.needReset, st.deliver, st.reset)
		}
		if st.caughtUp != isClosed(c.caughtUp) && st.caughtUp {
			t.Errorf("step %d: not caught up", i)
		}
	}
}

// TestParseAckReply parses the 9-token and the 11- and 12-token forms of a
// delivery's reply subject, and refuses others.
func TestParseAckReply(t *testing.T) {
	want := deliveryMeta{stream: "S", consumer: "C", delivered: 1, streamSeq: 7, consumerSeq: 3, time: time.Unix(0, 1700000000000000005), pending: 9}
	for _, in := range []string{
		"$JS.ACK.S.C.1.7.3.1700000000000000005.9",
		"$JS.ACK._.ACCHASH.S.C.1.7.3.1700000000000000005.9",
		"$JS.ACK.dom.ACCHASH.S.C.1.7.3.1700000000000000005.9.rand",
	} {
		got, err := parseAckReply(in)
		if err != nil || got != want {
			t.Errorf("parseAckReply(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "_INBOX.abc", "$JS.ACK.S.C.1.7.3.5", "$JS.ACK.S.C.1.7.3.5.9.x",
		"$JS.ACK.S.C.1.x.3.5.9", "$JS.ACK.S.C.1.-7.3.5.9", "$JS.ACK.S.C.1.0.3.5.9",
		"$JS.ACK.S..1.7.3.5.9", "$JS.NAK.S.C.1.7.3.5.9", "$JS.ACK.S.C.1.99999999999999999999.3.5.9",
		"$JS.ACK.a.b.S.C.1.7.3.5.9.t.u.v",
	} {
		if got, err := parseAckReply(in); err == nil {
			t.Errorf("parseAckReply(%q) = %+v, want an error", in, got)
		}
	}
}
