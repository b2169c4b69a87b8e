package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"chat/internal/jetstream"
	"chat/internal/nats"
)

// Example shows the calls a chat node makes: connect, make (or find) its
// stream and take its creation time as the epoch, publish a post with its
// idempotency key and tell "not stored" from "fate unknown", and consume
// the stream from a sequence, loading history until caught up. It needs a
// server, so it is compiled but not run.
func Example() {
	ctx := context.Background()
	js, err := jetstream.Connect(ctx, []string{"nats://127.0.0.1:4222"}, nats.Options{Name: "chat node"})
	if err != nil {
		log.Fatal(err) // one line, credentials redacted
	}
	defer js.Close()

	info, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "CHAT", Subjects: []string{"chat.CHAT.msg"}, Replicas: 1,
		MaxMsgs: 1000, Duplicates: 2 * time.Minute, DenyDelete: true,
	})
	if errors.Is(err, jetstream.ErrStreamNameInUse) {
		info, err = js.StreamInfo(ctx, "CHAT") // compare info.Config with what the room needs
	}
	if err != nil {
		log.Fatal(err)
	}
	epoch := info.Created.UnixMilli()

	ack, err := js.PublishMsg(ctx, &nats.Msg{
		Subject: "chat.CHAT.msg",
		Header:  nats.Header{jetstream.MsgIDHeader: {"idempotency-key"}},
		Data:    []byte(`{"text":"hello"}`),
	})
	switch {
	case errors.Is(err, nats.ErrNoReply):
		fmt.Println("fate unknown: publish again with the same Nats-Msg-Id")
	case err != nil:
		fmt.Println("not stored, safe to retry:", err)
	default:
		fmt.Printf("stored as %d-%d (duplicate %v)\n", epoch, ack.Seq, ack.Duplicate)
	}

	c, err := js.OrderedConsumer(ctx, "CHAT", jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequence, StartSeq: 1,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Stop()
	for {
		m, err := c.Next(ctx) // in order, no gap, no duplicate, across reconnects
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d-%d %s\n", epoch, m.Seq, m.Data)
		select {
		case <-c.CaughtUp():
			fmt.Println("history loaded: serve") // and go on reading live messages
		default:
		}
		if st := js.Conn().Status(); !st.Connected {
			fmt.Println("NATS down:", st.Err) // for /healthz
		}
	}
}
