package main

// Tests of the hub (ChatRoom) driven directly: clients join and receive in
// order, a slow client is cut without holding up the others, shutdown closes
// every queue, and the answers of the hub's questions are not lost.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
)

// TestHub drives the hub directly inside a synctest bubble: clients join,
// receive in order, a slow client is cut without holding up the others, and
// shutdown closes every queue.
func TestHub(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		stats := NewStats()
		room := NewChatRoom(RoomConfig{History: 100, Backlog: 10, ClientBuffer: 2}, stats)
		done := make(chan struct{})
		go func() {
			room.Run(ctx)
			close(done)
		}()

		fast, head, err := room.Join(ctx, "a", nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("id: %d-0\nretry: 1000\n\n", room.log.Epoch()); string(bytes.Join(head, nil)) != want {
			t.Errorf("head = %q, want %q", head, want)
		}
		slow, _, _ := room.Join(ctx, "b", nil)
		if n := room.Count(); n != 2 {
			t.Errorf("Count = %d, want 2", n)
		}
		// The fast client reads everything as it comes.
		var got []string
		readerDone := make(chan struct{})
		go func() {
			for f := range fast.frames() {
				for _, ev := range parseSSE(t, string(f.Data)) {
					got = append(got, ev.ID)
				}
			}
			close(readerDone)
		}()
		var want []string
		for i := range 5 {
			m, err := room.Post(ctx, "u", fmt.Sprint(i))
			if err != nil {
				t.Fatalf("Post: %v", err)
			}
			want = append(want, m.ID)
			synctest.Wait()
		}
		// slow never read: its queue of 2 filled, the third message cut
		// it off, and nobody waited for it.
		var slowGot int
		for f := range slow.frames() {
			slowGot += f.N
		}
		if slowGot != 2 {
			t.Errorf("slow client kept %d messages, want 2", slowGot)
		}
		if n := room.Count(); n != 1 {
			t.Errorf("Count after slow drop = %d, want 1", n)
		}
		s := stats.Snapshot()
		if s.SlowDisconnects != 1 || s.SlowDropped != 1 {
			t.Errorf("slow stats = %d disconnects, %d dropped; want 1, 1", s.SlowDisconnects, s.SlowDropped)
		}
		room.Leave(slow) // idempotent: already gone

		// Leave closes a queue; shutdown closes the rest.
		other, _, _ := room.Join(ctx, "c", nil)
		room.Leave(other)
		if _, ok := <-other.frames(); ok {
			t.Error("queue still open after Leave")
		}
		cancel()
		<-done
		<-readerDone
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("fast client got %v, want %v", got, want)
		}
		if _, err := room.Post(context.Background(), "u", "late"); !errors.Is(err, errRoomClosed) {
			t.Errorf("Post after shutdown = %v, want errRoomClosed", err)
		}
		if _, _, err := room.Join(context.Background(), "d", nil); !errors.Is(err, errRoomClosed) {
			t.Errorf("Join after shutdown = %v, want errRoomClosed", err)
		}
	})
}

// TestKickAnswerBeforeStop checks that a Kick the hub carried out just
// before it stopped reports the clients it cut, not errRoomClosed: the
// match function stops the room, so the hub answers and shuts down at
// once. The caller then sees the answer and the room's end both ready;
// without one path for answers (query.Ask) it dropped the answer now and
// then, which 10 000 rounds under the race detector show.
func TestKickAnswerBeforeStop(t *testing.T) {
	for i := range 10000 {
		ctx, cancel := context.WithCancel(context.Background())
		room := NewChatRoom(RoomConfig{History: 10}, NewStats())
		done := make(chan struct{})
		go func() {
			room.Run(ctx)
			close(done)
		}()
		c, _, err := room.Join(context.Background(), "a", nil)
		if err != nil {
			t.Fatal(err)
		}
		n, err := room.Kick(context.Background(), func(string) bool { cancel(); return true })
		<-done
		room.Leave(c)
		if err != nil || n != 1 {
			t.Fatalf("round %d: Kick answered just before the stop = %d, %v; want 1, nil", i, n, err)
		}
	}
}

// TestJoinAsUndoneWhenCallerGoes checks JoinAs's own rule: a caller whose
// ctx ends after the hub has added its client, before the answer, has the
// client removed again, so that no client is left that nobody reads. The
// hub counts a new client under the statistics' lock after adding it, so
// holding that lock holds the hub between the two.
func TestJoinAsUndoneWhenCallerGoes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stats := NewStats()
	room := NewChatRoom(RoomConfig{}, stats)
	go room.Run(ctx)
	stats.mu.Lock()
	jctx, jcancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, _, err := room.JoinAs(jctx, "a", "ann", nil)
		res <- err
	}()
	waitFor(t, "the hub to add the client", func() bool { return room.Count() == 1 })
	jcancel()
	stats.mu.Unlock()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("JoinAs with its ctx ended = %v, want context.Canceled", err)
	}
	if n := room.Count(); n != 0 {
		t.Errorf("Count = %d after the caller went, want 0", n)
	}
	b, err := room.Presence(ctx)
	if err != nil || strings.Contains(string(b), "ann") {
		t.Errorf("roster after the caller went: %s, %v; want no ann", b, err)
	}
}
