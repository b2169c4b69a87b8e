package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"chat/internal/config"
	"chat/internal/sse"
)

// leaveBound is the promise: a closed tab leaves the roster, and the other
// streams are told, within this time of its connection closing, whatever
// the room is doing.
const leaveBound = 5 * time.Second

// leaveBlock is one block of a stream that the test reads, and when it
// arrived.
type leaveBlock struct {
	sse.Block
	at time.Time
}

// readBlocks reads the blocks of r in a goroutine until r ends.
func readBlocks(r *sse.Reader) <-chan leaveBlock {
	ch := make(chan leaveBlock, 256)
	go func() {
		defer close(ch)
		for {
			b, err := r.Next()
			if err != nil {
				return
			}
			ch <- leaveBlock{b, time.Now()}
		}
	}()
	return ch
}

// openNamed opens GET /stream?name=name ("" for an anonymous watcher)
// and returns it with its blocks. Closing it closes its connection, as a
// browser closing its tab does.
func openNamed(t *testing.T, base, name string) (*subscriber, <-chan leaveBlock) {
	t.Helper()
	var o streamOpts
	if name != "" {
		o.query = "?name=" + name
	}
	s := subscribeOpts(t, base, o)
	return s, readBlocks(s.sse)
}

// rosterHas reports whether the presence event or /presence body data
// lists name.
func rosterHas(t *testing.T, data []byte, name string) bool {
	var r rosterEvent
	if err := json.Unmarshal(data, &r); err != nil {
		t.Errorf("roster %q: %v", data, err)
	}
	return slices.Contains(r.names(), name)
}

// nextBlock returns the next block of blocks that matches match, failing the
// test if none comes by deadline.
func nextBlock(t *testing.T, blocks <-chan leaveBlock, deadline time.Time, what string, match func(leaveBlock) bool) leaveBlock {
	t.Helper()
	timeout := time.After(time.Until(deadline))
	for {
		select {
		case b, ok := <-blocks:
			if !ok {
				t.Fatalf("stream ended waiting for %s", what)
			}
			if match(b) {
				return b
			}
		case <-timeout:
			t.Fatalf("no %s by the deadline", what)
		}
	}
}

// TestClosedTabLeavesWithin5s closes a named stream's connection with the
// room in different phases (quiet for a few seconds; a message every
// second; a message every 4 s, the close just after one; just after the
// hub's tick, seen as a heartbeat) and checks that the name leaves GET
// /presence, and a watcher's presence event without it arrives, within
// leaveBound of the close, on a server with the default heartbeat and
// presence interval. A write to a closed peer usually succeeds, so a room
// that probed only quiet streams kept a closed tab until the second
// message after the close.
func TestClosedTabLeavesWithin5s(t *testing.T) {
	for _, tt := range []struct {
		name string
		// every is the interval of the messages posted (0: none).
		every time.Duration
		// waitFor tells when to close, from bob's blocks.
		waitFor string
	}{
		{"quiet", 0, "3s of quiet"},
		{"a message every second", time.Second, "a message"},
		{"a message every 4 s", 4 * time.Second, "a message"},
		{"just after a tick", 0, "a heartbeat"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, "-presence-interval", "1s")
			_, watcher := openNamed(t, ts.URL, "")
			openNamed(t, ts.URL, "alice")
			openNamed(t, ts.URL, "alice")
			bob, bobBlocks := openNamed(t, ts.URL, "bob")
			isPresence := func(want bool) func(leaveBlock) bool {
				return func(b leaveBlock) bool {
					return b.Type == "presence" && b.HasData && rosterHas(t, b.Data, "bob") == want
				}
			}
			nextBlock(t, watcher, time.Now().Add(waitTimeout), "bob in the watcher's roster", isPresence(true))
			if tt.every > 0 {
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() {
					tick := time.NewTicker(tt.every)
					defer tick.Stop()
					for {
						if r, err := postJSON(http.DefaultClient, ts.URL, "carol", "hello", nil); err != nil || r.status != http.StatusCreated {
							t.Errorf("post: %d, %v", r.status, err)
						}
						select {
						case <-tick.C:
						case <-stop:
							return
						}
					}
				})
				t.Cleanup(func() { close(stop); wg.Wait() })
			}
			switch tt.waitFor {
			case "a message":
				nextBlock(t, bobBlocks, time.Now().Add(waitTimeout), "a message", func(b leaveBlock) bool { return b.Type == "message" && b.HasData })
			case "a heartbeat":
				nextBlock(t, bobBlocks, time.Now().Add(2*config.DefaultHeartbeat), "a heartbeat", func(b leaveBlock) bool { return slices.Contains(b.Comments, "ping") })
			default:
				waitQuiet(t, bobBlocks, 3*time.Second)
			}
			if !rosterHas(t, presenceBody(t, ts.URL), "bob") {
				t.Fatal("bob is not on GET /presence before his connection closes")
			}
			bob.close()
			closed := time.Now()
			deadline := closed.Add(leaveBound)
			var wg sync.WaitGroup
			defer wg.Wait() // also when nextBlock fails the test
			wg.Go(func() {
				for time.Now().Before(deadline) {
					if !rosterHas(t, presenceBody(t, ts.URL), "bob") {
						t.Logf("bob left GET /presence %v after his connection closed", time.Since(closed))
						return
					}
					time.Sleep(20 * time.Millisecond) // a poll bounded by the deadline
				}
				t.Errorf("bob still on GET /presence %v after his connection closed", leaveBound)
			})
			ev := nextBlock(t, watcher, deadline, "presence event without bob", isPresence(false))
			t.Logf("the watcher's presence event without bob came %v after his connection closed", ev.at.Sub(closed))
		})
	}
}

// waitQuiet returns once blocks has been silent for quiet, failing the
// test if that takes longer than waitTimeout.
func waitQuiet(t *testing.T, blocks <-chan leaveBlock, quiet time.Duration) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case <-blocks:
		case <-time.After(quiet):
			return
		case <-deadline:
			t.Fatalf("the room was not quiet for %v within %v", quiet, waitTimeout)
		}
	}
}

// presenceBody returns the body of GET /presence, failing the test (from
// any goroutine: Errorf) and returning nil on an error.
func presenceBody(t *testing.T, base string) []byte {
	r, err := send(http.DefaultClient, "GET", base+"/presence", "", "", nil)
	if err != nil || r.status != http.StatusOK {
		t.Errorf("GET /presence: %d, %v", r.status, err)
		return nil
	}
	return r.body
}
