package auth

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chat/internal/limit"
)

// TestThrottleWindow checks the window: max wrong keys block an address
// (and only it) until the window that began with the first one ends.
func TestThrottleWindow(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	th := NewThrottle(3, time.Minute)
	for i := range 3 {
		tk, wait := th.Take("a", now.Add(time.Duration(i)*time.Second))
		if tk == nil {
			t.Fatalf("blocked (wait %v) after %d failures", wait, i)
		}
		tk.Fail()
		tk.Refund() // settled already: changes nothing
	}
	if tk, wait := th.Take("a", now.Add(10*time.Second)); tk != nil || wait != 50*time.Second {
		t.Errorf("after 3 failures: ticket %v, wait %v; want none, 50s", tk != nil, wait)
	}
	if wait, blocked := th.Record("a", now.Add(10*time.Second), true); !blocked || wait != 50*time.Second {
		t.Errorf("a right Bearer key after 3 failures: blocked %v, wait %v; want true, 50s", blocked, wait)
	}
	if tk, _ := th.Take("b", now); tk == nil {
		t.Error("another address is blocked")
	}
	tk, _ := th.Take("a", now.Add(time.Minute))
	if tk == nil {
		t.Fatal("still blocked once the window ended")
	}
	tk.Fail()
	for i := range 2 {
		if _, blocked := th.Record("a", now.Add(time.Minute), false); blocked {
			t.Errorf("blocked after %d failures in a new window", i+1)
		}
	}
	if _, blocked := th.Record("a", now.Add(time.Minute), true); !blocked {
		t.Error("not blocked after 3 failures in the new window")
	}
}

// TestThrottleTakeCountsAtOnce checks that a try counts from the moment it
// is taken: tries waiting for their keys block the address as wrong keys
// would, a refund gives a try back, and a try refunded after its window
// ended is not given to the next window.
func TestThrottleTakeCountsAtOnce(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	th := NewThrottle(5, time.Minute)
	var held []*Ticket
	for range 5 {
		tk, _ := th.Take("a", now)
		if tk == nil {
			t.Fatal("blocked before 5 tries")
		}
		held = append(held, tk)
	}
	if tk, _ := th.Take("a", now); tk != nil {
		t.Fatal("a sixth try while five wait for their keys")
	}
	held[0].Refund()
	held[0].Refund() // once only
	held[1].Refund()
	for i := range 2 {
		if tk, _ := th.Take("a", now); tk == nil {
			t.Fatalf("try %d after two refunds: blocked", i+1)
		}
	}
	if tk, _ := th.Take("a", now); tk != nil {
		t.Error("a third try after two refunds")
	}
	// The window ends; a try of the old window is refunded in the new one.
	later := now.Add(time.Minute)
	tk, _ := th.Take("a", later)
	if tk == nil {
		t.Fatal("blocked in a new window")
	}
	tk.Fail()
	held[2].Refund()
	for i := range 4 {
		tk, _ := th.Take("a", later)
		if tk == nil {
			t.Fatalf("new window, try %d: blocked", i+2)
		}
		tk.Fail()
	}
	if tk, _ := th.Take("a", later); tk != nil {
		t.Error("an old window's refund gave the new window a sixth try")
	}
	// A refund of every try forgets the address.
	th2 := NewThrottle(5, time.Minute)
	tk2, _ := th2.Take("c", now)
	tk2.Refund()
	if n := len(th2.seen); n != 0 {
		t.Errorf("%d windows remembered after every try was refunded, want 0", n)
	}
}

// atOnce runs f in n goroutines released together and returns how many
// of them returned true.
func atOnce(n int, f func() bool) int {
	var ok atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			if f() {
				ok.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(ok.Load())
}

// TestThrottleConcurrentTries checks that tries taken at once from one
// address (logins whose bodies come later, Bearer keys) never exceed the
// limit, whatever their interleaving.
func TestThrottleConcurrentTries(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, kind := range []string{"take", "record"} {
		th := NewThrottle(5, time.Minute)
		n := atOnce(200, func() bool {
			if kind == "take" {
				tk, _ := th.Take("a", now)
				return tk != nil
			}
			_, blocked := th.Record("a", now, false)
			return !blocked
		})
		if n != 5 {
			t.Errorf("%s: %d of 200 concurrent tries allowed, want 5", kind, n)
		}
	}
}

// TestThrottleIPv6Scopes checks that the throttle groups IPv6 addresses as
// the rate limits do: a /64 gets 5 tries, its /56 20 and its /48 80, so
// spreading over /64s does not multiply the tries of one network.
func TestThrottleIPv6Scopes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	th := NewThrottle(5, time.Minute)
	tries := func(hosts []string) int {
		n := 0
		for _, h := range hosts {
			for {
				tk, _ := th.Take(limit.Key(h), now)
				if tk == nil {
					break
				}
				tk.Fail()
				n++
			}
		}
		return n
	}
	var one56 []string
	for i := range 40 {
		one56 = append(one56, fmt.Sprintf("2001:db8:0:%x::1", i))
	}
	if n := tries(one56); n != 20 {
		t.Errorf("40 /64s of one /56: %d tries, want 20", n)
	}
	var one48 []string
	for i := 1; i < 40; i++ {
		one48 = append(one48, fmt.Sprintf("2001:db8:0:%x00::1", i))
	}
	if n := tries(one48); n != 60 {
		t.Errorf("39 more /56s of that /48: %d tries, want 60 (80 for the /48)", n)
	}
	if n := tries([]string{"2001:db8:1::1", "192.0.2.1"}); n != 10 {
		t.Errorf("another /48 and an IPv4 address: %d tries, want 5 each", n)
	}
	// A Bearer key from a blocked /56 is refused even from a fresh /64.
	if _, blocked := th.Record(limit.Key("2001:db8:0:3f::9"), now, true); !blocked {
		t.Error("a fresh /64 of a blocked /56 may try a key")
	}
}

// TestThrottleBounded checks that the throttle's memory is bounded.
func TestThrottleBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	th := NewThrottle(1, time.Minute)
	for i := range maxThrottled + 10 {
		th.Record(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), now, false)
	}
	if n := len(th.seen); n > maxThrottled {
		t.Errorf("throttle remembers %d addresses, bound %d", n, maxThrottled)
	}
}

// TestGateAuthorizeConcurrent checks that wrong Bearer keys sent at once
// from one address are looked at no more than the limit allows, and that
// a right key among them does not count.
func TestGateAuthorizeConcurrent(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	g := &Gate{Keys: Keys{Room: "room"}, Failures: NewThrottle(5, time.Minute)}
	req := func(key string) *http.Request {
		r, _ := http.NewRequest("GET", "http://x/stream", nil)
		r.Header.Set("Authorization", "Bearer "+key)
		return r
	}
	for range 3 {
		if role, _ := g.Authorize(req("room"), "a", now); role != Member {
			t.Fatalf("right key: %v", role)
		}
	}
	// Long keys take a while to hash, which would let tries pass the
	// check while others are still being compared if the check and the
	// count were two steps.
	wrong := strings.Repeat("w", 256<<10)
	n := atOnce(200, func() bool {
		_, wait := g.Authorize(req(wrong), "a", now)
		return wait == 0
	})
	if n != 5 {
		t.Errorf("%d of 200 wrong Bearer keys sent at once were looked at, want 5", n)
	}
	if role, wait := g.Authorize(req("room"), "a", now); role != None || wait != time.Minute {
		t.Errorf("right key once blocked: %v, wait %v; want none, 1m", role, wait)
	}
}
