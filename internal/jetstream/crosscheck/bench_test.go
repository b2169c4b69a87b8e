package crosscheck

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	jsgo "github.com/nats-io/nats.go/jetstream"

	"chat/internal/jetstream"
	"chat/internal/nats"
	"chat/internal/natstest"
)

// These benchmarks measure our client beside nats.go on one local server,
// with a post-sized payload:
//
//	cd internal/jetstream/crosscheck && go test -run '^$' -bench . -benchtime 2000x

// benchPayload is about the size of a chat post's record.
var benchPayload = make([]byte, 300)

// benchClients starts a server with a file stream B on subject b, and
// connects both clients.
func benchClients(b *testing.B) (*jetstream.JS, jsgo.JetStream) {
	b.Helper()
	s := natstest.Start(b, natstest.Options{})
	ctx := context.Background()
	ours, err := jetstream.Connect(ctx, []string{s.URL()}, nats.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ours.Close() })
	nc, err := natsgo.Connect(s.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jsgo.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ours.CreateStream(ctx, jetstream.StreamConfig{Name: "B", Subjects: []string{"b"}}); err != nil {
		b.Fatal(err)
	}
	return ours, js
}

// BenchmarkPublishAck publishes one message at a time with a Nats-Msg-Id
// and waits for its acknowledgement: the latency a post's 201 waits for.
func BenchmarkPublishAck(b *testing.B) {
	b.Run("ours", func(b *testing.B) {
		ours, _ := benchClients(b)
		ctx := context.Background()
		for i := 0; b.Loop(); i++ {
			m := &nats.Msg{Subject: "b", Header: nats.Header{jetstream.MsgIDHeader: {strconv.Itoa(i)}}, Data: benchPayload}
			if _, err := ours.PublishMsg(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("nats.go", func(b *testing.B) {
		_, js := benchClients(b)
		ctx := context.Background()
		for i := 0; b.Loop(); i++ {
			if _, err := js.Publish(ctx, "b", benchPayload, jsgo.WithMsgID(strconv.Itoa(i))); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPostToDelivery publishes one message at a time and waits until
// an ordered consumer of the same client delivers it: a post's way from
// publish to a node's hub. It reports the 50th and 99th percentiles.
func BenchmarkPostToDelivery(b *testing.B) {
	b.Run("ours", func(b *testing.B) {
		ours, _ := benchClients(b)
		ctx := context.Background()
		c, err := ours.OrderedConsumer(ctx, "B", jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverNew})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Stop()
		var lat []time.Duration
		for b.Loop() {
			start := time.Now()
			if _, err := ours.Publish(ctx, "b", benchPayload); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Next(ctx); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		reportPercentiles(b, lat)
	})
	b.Run("nats.go", func(b *testing.B) {
		_, js := benchClients(b)
		ctx := context.Background()
		c, err := js.OrderedConsumer(ctx, "B", jsgo.OrderedConsumerConfig{DeliverPolicy: jsgo.DeliverNewPolicy})
		if err != nil {
			b.Fatal(err)
		}
		it, err := c.Messages()
		if err != nil {
			b.Fatal(err)
		}
		defer it.Stop()
		var lat []time.Duration
		for b.Loop() {
			start := time.Now()
			if _, err := js.Publish(ctx, "b", benchPayload); err != nil {
				b.Fatal(err)
			}
			if _, err := it.Next(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		reportPercentiles(b, lat)
	})
}

// reportPercentiles reports the 50th and 99th percentiles of lat in µs.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkConsume reads a stream of b.N stored messages with an ordered
// consumer, as a node loads history: the time per message.
func BenchmarkConsume(b *testing.B) {
	fill := func(b *testing.B, ours *jetstream.JS) {
		b.Helper()
		ctx := context.Background()
		for range b.N {
			if err := ours.Conn().Publish("b", benchPayload); err != nil {
				b.Fatal(err)
			}
		}
		if err := ours.Conn().Flush(ctx); err != nil {
			b.Fatal(err)
		}
		for { // the stream stores the messages a moment after the flush
			info, err := ours.StreamInfo(ctx, "B")
			if err != nil {
				b.Fatal(err)
			}
			if info.State.LastSeq == uint64(b.N) {
				return
			}
			time.Sleep(time.Millisecond) // the pause of a poll bounded by the benchmark's timeout
		}
	}
	b.Run("ours", func(b *testing.B) {
		ours, _ := benchClients(b)
		fill(b, ours)
		ctx := context.Background()
		b.ResetTimer()
		c, err := ours.OrderedConsumer(ctx, "B", jetstream.ConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Stop()
		for range b.N {
			if _, err := c.Next(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("nats.go", func(b *testing.B) {
		ours, js := benchClients(b)
		fill(b, ours)
		ctx := context.Background()
		b.ResetTimer()
		c, err := js.OrderedConsumer(ctx, "B", jsgo.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		it, err := c.Messages()
		if err != nil {
			b.Fatal(err)
		}
		defer it.Stop()
		for range b.N {
			if _, err := it.Next(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
