package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"chat/internal/fanout"
	"chat/internal/stream"
)

// batchWait is the bound the batching tests give the hub.
const batchWait = 50 * time.Millisecond

// post posts content and fails the test on an error.
func post(t *testing.T, ctx context.Context, room *ChatRoom, content string) {
	t.Helper()
	if _, err := room.Post(ctx, "u", content); err != nil {
		t.Fatalf("Post(%q): %v", content, err)
	}
}

// join joins the room from addr and fails the test on an error.
func join(t *testing.T, ctx context.Context, room *ChatRoom, addr string) *client {
	t.Helper()
	c, _, err := room.Join(ctx, addr, nil)
	if err != nil {
		t.Fatalf("Join(%q): %v", addr, err)
	}
	return c
}

// contents returns the contents of the chat messages in f, in order.
func contents(t *testing.T, f *fanout.Frame) []string {
	t.Helper()
	var out []string
	for _, ev := range parseSSE(t, string(f.Data)) {
		out = append(out, jsonField(t, ev.Data, "content"))
	}
	return out
}

// jsonField returns the string member name of the JSON object data.
func jsonField(t *testing.T, data []byte, name string) string {
	t.Helper()
	key := `"` + name + `":"`
	_, rest, ok := strings.Cut(string(data), key)
	v, _, ok2 := strings.Cut(rest, `"`)
	if !ok || !ok2 {
		t.Fatalf("no %s in %s", name, data)
	}
	return v
}

// queued reports whether a frame is waiting in c's queue once every
// goroutine of the bubble is blocked.
func queued(c *client) bool {
	synctest.Wait()
	return len(c.frames()) > 0
}

// TestBatchingRule checks the hub's batching rule with one client whose
// frames the test releases by hand, as a stream writer does once it has
// written them: an idle room sends each message at once; messages posted
// while a frame is still being written wait and leave together the moment
// it has been; and they never wait longer than BatchWait after that frame
// left.
func TestBatchingRule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, room := startRoom(t, RoomConfig{History: 100, BatchWait: batchWait})
		c := join(t, ctx, room, "a")

		// Idle: a message leaves at once, alone.
		start := time.Now()
		post(t, ctx, room, "m1")
		if !queued(c) {
			t.Fatal("idle room: m1 not sent at once")
		}
		f1 := <-c.frames()
		if got := contents(t, f1); fmt.Sprint(got) != "[m1]" || time.Since(start) != 0 {
			t.Errorf("idle room: frame %v after %v, want [m1] at once", got, time.Since(start))
		}

		// Busy: f1 is not released (still being written), so m2..m4
		// collect; they leave as one frame the moment f1 is released
		// (the room is not saturated: its frames have held one message).
		time.Sleep(10 * time.Millisecond)
		for _, m := range []string{"m2", "m3", "m4"} {
			post(t, ctx, room, m)
		}
		if queued(c) {
			t.Fatal("busy room: a batch left while the frame before it was still being written")
		}
		f1.Release()
		if !queued(c) {
			t.Fatal("busy room: the batch did not leave once the frame before it was written")
		}
		f2 := <-c.frames()
		if got := contents(t, f2); fmt.Sprint(got) != "[m2 m3 m4]" || time.Since(start) != 10*time.Millisecond {
			t.Errorf("busy room: frame %v after %v, want [m2 m3 m4] after 10ms", got, time.Since(start))
		}

		// Bounded: f2 is never released; m5, posted 20ms after f2 left,
		// leaves BatchWait after f2 did, that is 30ms later.
		time.Sleep(20 * time.Millisecond)
		post(t, ctx, room, "m5")
		posted := time.Now()
		f3 := <-c.frames()
		if got := contents(t, f3); fmt.Sprint(got) != "[m5]" || time.Since(posted) != batchWait-20*time.Millisecond {
			t.Errorf("bounded wait: frame %v after %v, want [m5] after %v", got, time.Since(posted), batchWait-20*time.Millisecond)
		}

		// A quiet room with a writer that never finishes (f2, f3 are
		// still held): a message posted more than BatchWait after the
		// last frame left goes at once.
		time.Sleep(time.Second)
		post(t, ctx, room, "m6")
		if !queued(c) {
			t.Error("quiet room with a stuck writer: m6 waited")
		}
		f4 := <-c.frames()
		f2.Release()
		f3.Release()
		f4.Release()

		// A frame written the moment it left costs nothing to wait for:
		// the next message, posted at that same instant, goes at once.
		post(t, ctx, room, "m7")
		if !queued(c) {
			t.Error("a message after a frame written at once waited")
		}
		(<-c.frames()).Release()
	})
}

// TestBatchingSaturatedHold checks the hold of a saturated room: once its
// frames carry saturatedFrame messages or more on average, the next batch
// leaves not when the frame before it is written but as long again after
// (batchHold), and never later than BatchWait after that frame left; a room
// whose frames fall back to one message each stops holding.
func TestBatchingSaturatedHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, room := startRoom(t, RoomConfig{History: 100, BatchWait: batchWait})
		c := join(t, ctx, room, "a")
		// cycle posts k messages while the frame in flight, f, is being
		// written, releases f after writing takes, and returns the next
		// frame with how long after f's release it left.
		cycle := func(f *fanout.Frame, k int, writing time.Duration) (*fanout.Frame, time.Duration) {
			t.Helper()
			for i := range k {
				post(t, ctx, room, fmt.Sprint("m", i))
			}
			time.Sleep(writing)
			if queued(c) {
				t.Fatal("a batch left while the frame before it was still being written")
			}
			f.Release()
			released := time.Now()
			next := <-c.frames()
			if got := contents(t, next); len(got) != k {
				t.Fatalf("frame of %d messages, want %d", len(got), k)
			}
			return next, time.Since(released)
		}
		post(t, ctx, room, "first")
		f := <-c.frames()
		// Frames of four messages make the room saturated after a few;
		// until then each batch leaves the moment the frame before it is
		// written. Then a frame written 10ms after it left holds the
		// next batch 10ms more.
		var after time.Duration
		n := 0
		for after == 0 {
			if n++; n > 10 {
				t.Fatal("ten frames of four messages did not make the room hold a batch")
			}
			f, after = cycle(f, 4, 10*time.Millisecond)
		}
		if n < 3 {
			t.Errorf("the room held a batch after %d frames of four; one or two large frames must not make it saturated", n)
		}
		if after != 10*time.Millisecond {
			t.Errorf("saturated room: batch left %v after the frame before it was written, want 10ms", after)
		}
		// The hold never goes past BatchWait after the frame left: a
		// frame written 40ms after it left holds the next one 10ms more.
		f, after = cycle(f, 4, 40*time.Millisecond)
		if after != batchWait-40*time.Millisecond {
			t.Errorf("saturated room, slow frame: batch left %v after the frame before it was written, want %v", after, batchWait-40*time.Millisecond)
		}
		// Frames of one message bring the average down, and the room
		// stops holding.
		for range 10 {
			f, after = cycle(f, 1, 10*time.Millisecond)
		}
		if after != 0 {
			t.Errorf("room back to one message a frame: batch left %v after the frame before it was written, want at once", after)
		}
		f.Release()
	})
}

// TestBatchingBehind checks that a room whose writers are behind does not
// hold batches: once a frame has taken longer than BatchWait to be written,
// the writers batch from their own queues, and a batch leaves at once even
// while a frame is in flight; once a frame is written within BatchWait
// again, batches wait for the frame in flight as before.
func TestBatchingBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, room := startRoom(t, RoomConfig{History: 100, BatchWait: batchWait})
		c := join(t, ctx, room, "a")
		post(t, ctx, room, "m1")
		f1 := <-c.frames()
		time.Sleep(2 * batchWait) // f1 takes twice the bound to be written
		f1.Release()
		post(t, ctx, room, "m2")
		f2 := <-c.frames() // the room is idle: at once
		post(t, ctx, room, "m3")
		if !queued(c) {
			t.Fatal("writers behind: m3 waited for the frame in flight")
		}
		f3 := <-c.frames()
		// The writer catches up quickly: f2 and f3 are written within the
		// bound, and the room batches again.
		f2.Release()
		f3.Release()
		post(t, ctx, room, "m4")
		f4 := <-c.frames()
		post(t, ctx, room, "m5")
		if queued(c) {
			t.Error("writers caught up: m5 left while m4's frame was being written")
		}
		f4.Release()
		(<-c.frames()).Release()
	})
}

// TestBatchingOff checks that BatchWait zero sends every message at once,
// however busy the room.
func TestBatchingOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, room := startRoom(t, RoomConfig{History: 100})
		c := join(t, ctx, room, "a")
		for i := range 3 {
			post(t, ctx, room, fmt.Sprint(i))
			if !queued(c) {
				t.Fatalf("message %d waited with batching off", i)
			}
		}
		if n := len(c.frames()); n != 3 {
			t.Errorf("%d frames queued, want 3", n)
		}
	})
}

// TestBatchingStragglers checks that a few slow writers do not hold the
// room: with 128 clients two may lag (one in stragglerShare), and the next
// batch leaves as soon as the other 126 have written; a third lagging
// writer makes the batch wait.
func TestBatchingStragglers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, room := startRoom(t, RoomConfig{History: 100, BatchWait: batchWait})
		clients := make([]*client, 128)
		for i := range clients {
			clients[i] = join(t, ctx, room, fmt.Sprint(i))
		}
		// receive takes the next frame of every client and releases it,
		// except for the first lag clients, whose frames it returns.
		receive := func(lag int) []*fanout.Frame {
			var held []*fanout.Frame
			for i, c := range clients {
				f := <-c.frames()
				if i < lag {
					held = append(held, f)
				} else {
					f.Release()
				}
			}
			return held
		}
		post(t, ctx, room, "a")
		held := receive(2)
		post(t, ctx, room, "b")
		if !queued(clients[127]) {
			t.Error("two stragglers of 128 held the batch back")
		}
		held = append(held, receive(3)...)
		post(t, ctx, room, "c")
		if queued(clients[127]) {
			t.Error("three lagging writers of 128 did not hold the batch")
		}
		for _, f := range held[2:] {
			f.Release()
		}
		if !queued(clients[127]) {
			t.Error("the batch did not leave once all but the stragglers had written")
		}
		receive(0)
	})
}

// TestBatchingLeaveReleases checks that a client that leaves with frames
// still queued does not hold the room's batching: Leave releases them.
func TestBatchingLeaveReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, room := startRoom(t, RoomConfig{History: 100, BatchWait: batchWait})
		a := join(t, ctx, room, "a")
		b := join(t, ctx, room, "b")
		post(t, ctx, room, "m1")
		(<-a.frames()).Release()
		room.Leave(b) // m1 is still in b's queue
		post(t, ctx, room, "m2")
		if !queued(a) {
			t.Error("a client that left held the batch back")
		}
		(<-a.frames()).Release()
	})
}

// TestBatchingStreamWriter checks the rule end to end through a real stream
// writer on an in-memory connection: while the reader does not read, the
// writer is stuck in its first write, and the messages posted meanwhile
// reach the reader together, in one write, as soon as it reads again.
func TestBatchingStreamWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, room := startRoom(t, RoomConfig{History: 100, BatchWait: time.Hour})
		c, head, err := room.Join(ctx, "a", nil)
		if err != nil {
			t.Fatal(err)
		}
		srv, peer := net.Pipe()
		defer peer.Close()
		sc := streamConfig(room, room.stats, time.Minute, time.Hour, nil, nil)
		writerDone := make(chan struct{})
		go func() {
			sc.ServeConn(srv, c, stream.Head{Bufs: head, Events: c.headEvents})
			close(writerDone)
		}()
		// readWrite returns what one write of the writer carried.
		buf := make([]byte, 64<<10)
		readWrite := func() string {
			n, err := peer.Read(buf)
			if err != nil && err != io.EOF {
				t.Fatalf("read: %v", err)
			}
			return string(buf[:n])
		}
		readWrite() // the head
		post(t, ctx, room, "m1")
		synctest.Wait() // the writer is blocked writing m1: nobody reads
		for _, m := range []string{"m2", "m3"} {
			post(t, ctx, room, m)
		}
		if queued(c) {
			t.Fatal("batch left while the writer was still writing m1")
		}
		first := readWrite()
		second := readWrite()
		var got []string
		for _, w := range []string{first, second} {
			var ids []string
			for _, ev := range parseSSE(t, w) {
				ids = append(ids, jsonField(t, ev.Data, "content"))
			}
			got = append(got, strings.Join(ids, "+"))
		}
		if fmt.Sprint(got) != "[m1 m2+m3]" {
			t.Errorf("writes carried %v, want [m1 m2+m3]", got)
		}
		synctest.Wait() // the writer has returned from its write
		if st := room.stats.Snapshot(); st.Deliveries != 3 || st.StreamWrites != 2 {
			t.Errorf("deliveries = %d in %d writes, want 3 in 2", st.Deliveries, st.StreamWrites)
		}
		peer.Close()
		post(t, ctx, room, "m4") // fails the write: the writer ends
		<-writerDone
		if n := room.Count(); n != 0 {
			t.Errorf("Count = %d after the writer ended, want 0", n)
		}
	})
}

// TestHubTicksEveryInterval checks that the stream writers' heartbeat and
// peer probe come from the hub's tick, once an interval, in a quiet room
// and in a busy one alike: a write to a closed peer usually succeeds, so
// a busy room must still tick for its writers to find closed tabs.
func TestHubTicksEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const every = 2 * time.Second
		ctx, room := startRoom(t, RoomConfig{History: 100, Tick: every})
		c := join(t, ctx, room, "a")
		time.Sleep(every)
		if !queued(c) {
			t.Fatal("quiet room: no tick after one interval")
		}
		if f := <-c.frames(); !f.Tick {
			t.Fatalf("quiet room: got a frame of %d messages, want the tick", f.N)
		}
		// Busy: a message just before each tick, and the tick all the same.
		for i := range 3 {
			time.Sleep(every - time.Second/2)
			post(t, ctx, room, "m")
			time.Sleep(time.Second / 2)
			synctest.Wait()
			var ticks, messages int
			for len(c.frames()) > 0 {
				f := <-c.frames()
				if f.Tick {
					ticks++
				}
				messages += f.N
				f.Release()
			}
			if ticks != 1 || messages != 1 {
				t.Fatalf("busy room, interval %d: %d ticks and %d messages queued, want 1 and 1", i, ticks, messages)
			}
		}
	})
}
