package limit

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

// The server's default post rate and burst, which the tests drive.
const (
	postRate  = 5
	postBurst = 20
)

// TestNewWithoutRate checks that a rate of zero means no limiter at all.
func TestNewWithoutRate(t *testing.T) {
	if l := New(0, 20); l != nil {
		t.Errorf("New(0, 20) = %p, want nil (no limit)", l)
	}
}

// TestRateLimiterDefaults drives the token bucket with the default rate and
// burst on a synthetic clock: 20 at once, then one every 200 ms, and a long
// pause refills no more than the burst.
func TestRateLimiterDefaults(t *testing.T) {
	l := New(postRate, postBurst)
	t0 := time.Unix(1_000_000, 0)
	for i := range 20 {
		if ok, _ := l.Allow("a", t0); !ok {
			t.Fatalf("post %d of the burst refused", i)
		}
	}
	if ok, wait := l.Allow("a", t0); ok || wait != 200*time.Millisecond {
		t.Errorf("21st post = %v, wait %v; want refused, wait 200ms", ok, wait)
	}
	if ok, _ := l.Allow("b", t0); !ok {
		t.Error("another address refused")
	}
	if ok, _ := l.Allow("a", t0.Add(199*time.Millisecond)); ok {
		t.Error("post 199ms later allowed, want refused")
	}
	if ok, _ := l.Allow("a", t0.Add(200*time.Millisecond)); !ok {
		t.Error("post 200ms later refused, want allowed")
	}
	got := 0
	for {
		if ok, _ := l.Allow("a", t0.Add(time.Second)); !ok {
			break
		}
		got++
	}
	if got != 4 {
		t.Errorf("posts allowed 1s after the burst = %d, want 4 (5/s, one already taken)", got)
	}
	got = 0
	for {
		if ok, _ := l.Allow("a", t0.Add(time.Hour)); !ok {
			break
		}
		got++
	}
	if got != 20 {
		t.Errorf("posts allowed after an hour's pause = %d, want the burst, 20", got)
	}
}

// TestRateLimiterForgetsIdle checks that the limiter's memory is bounded by
// the addresses recently active: idle ones (whose bucket is full again) are
// forgotten at the next sweep, and active ones are kept with their state.
func TestRateLimiterForgetsIdle(t *testing.T) {
	l := New(postRate, postBurst)
	t0 := time.Unix(1_000_000, 0)
	const addrs = 20000
	for i := range addrs {
		l.Allow(fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255), t0.Add(time.Duration(i)*time.Microsecond))
	}
	if n := l.Len(); n != addrs {
		t.Fatalf("size after %d addresses = %d", addrs, n)
	}
	// "busy" empties its bucket shortly before the sweep is due.
	busyAt := t0.Add(SweepInterval - 100*time.Millisecond)
	for {
		if ok, _ := l.Allow("busy", busyAt); !ok {
			break
		}
	}
	l.Allow("new", t0.Add(SweepInterval))
	if n := l.Len(); n != 2 {
		t.Errorf("size after the sweep = %d, want 2 (busy and new)", n)
	}
	if ok, _ := l.Allow("busy", t0.Add(SweepInterval)); ok {
		t.Error("busy address allowed right after the sweep: its empty bucket was forgotten")
	}
}

// TestRateLimiterBounded checks that a flood of distinct addresses, all
// active at once, never makes the limiter hold more than MaxAddrs,
// and that making room is done in bulk: past the bound, a run of further
// new addresses costs one sweep of the map, not one per post (which would
// make every post scan 100 000 entries under the lock).
func TestRateLimiterBounded(t *testing.T) {
	l := New(postRate, postBurst)
	t0 := time.Unix(1_000_000, 0)
	addr := func(i int) string { return fmt.Sprintf("2001:db8:%x:%x::", i>>16, i&0xffff) }
	for i := range MaxAddrs {
		l.Allow(addr(i), t0)
	}
	if n := l.Len(); n != MaxAddrs {
		t.Fatalf("size = %d, want %d", n, MaxAddrs)
	}
	sweeps := 0
	last := l.lastSweepTime
	prev := last()
	const more = 1000
	for i := range more {
		l.Allow(addr(MaxAddrs+i), t0.Add(time.Duration(i+1)*time.Nanosecond))
		if s := last(); !s.Equal(prev) {
			sweeps++
			prev = s
		}
		if n := l.Len(); n > MaxAddrs {
			t.Fatalf("size = %d after %d more addresses, want at most %d", n, i+1, MaxAddrs)
		}
	}
	if sweeps != 1 {
		t.Errorf("%d new addresses past the bound made %d sweeps of the whole map, want 1", more, sweeps)
	}
	// The newest address is remembered: it is limited like any other.
	for range postBurst - 1 {
		l.Allow(addr(MaxAddrs+more-1), t0.Add(more*time.Nanosecond))
	}
	if ok, _ := l.Allow(addr(MaxAddrs+more-1), t0.Add(more*time.Nanosecond)); ok {
		t.Error("newest address not limited after its burst")
	}
}

// TestClientAddr checks the address a request counts against: the peer
// unless it is a trusted proxy, then the right-most X-Forwarded-For entry
// that is not a trusted proxy; IPv6 counts per /64.
func TestClientAddr(t *testing.T) {
	tests := []struct {
		name, trusted, peer string
		xff                 []string
		want                string
	}{
		{"no proxies: peer", "", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"no proxies: header ignored", "", "203.0.113.5:4000", []string{"198.51.100.7"}, "203.0.113.5"},
		{"no proxies: loopback header ignored", "", "127.0.0.1:4000", []string{"198.51.100.7"}, "127.0.0.1"},
		{"IPv6 counts per /64", "", "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:4000", nil, "2001:db8:1:2::/64"},
		{"same /64", "", "[2001:db8:1:2::1]:4000", nil, "2001:db8:1:2::/64"},
		{"other /64", "", "[2001:db8:1:3::1]:4000", nil, "2001:db8:1:3::/64"},
		{"IPv4-mapped", "", "[::ffff:192.0.2.1]:4000", nil, "192.0.2.1"},
		{"trusted proxy: client from header", "127.0.0.1", "127.0.0.1:4000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"trusted proxy: spoofed prefix ignored", "127.0.0.1", "127.0.0.1:4000", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7"},
		{"trusted proxy chain", "127.0.0.1, 10.0.0.0/8", "127.0.0.1:4000", []string{"6.6.6.6, 198.51.100.7, 10.1.2.3"}, "198.51.100.7"},
		{"header lines joined in order", "127.0.0.1,10.0.0.0/8", "127.0.0.1:4000", []string{"6.6.6.6", "198.51.100.7, 10.0.0.9"}, "198.51.100.7"},
		{"trusted proxy without header", "127.0.0.1", "127.0.0.1:4000", nil, "127.0.0.1"},
		{"trusted proxy, garbage header", "127.0.0.1", "127.0.0.1:4000", []string{"nonsense"}, "127.0.0.1"},
		{"trusted proxy, only proxies in header", "127.0.0.1,10.0.0.0/8", "127.0.0.1:4000", []string{"10.0.0.1"}, "127.0.0.1"},
		{"trusted proxy, IPv6 client", "127.0.0.1", "127.0.0.1:4000", []string{"2001:db8::1"}, "2001:db8::/64"},
		{"untrusted peer: header ignored", "10.0.0.0/8", "203.0.113.9:4000", []string{"198.51.100.7"}, "203.0.113.9"},
		{"trusted IPv6 proxy", "::1", "[::1]:4000", []string{"198.51.100.7"}, "198.51.100.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trusted, err := ParseTrustedProxies(tt.trusted)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/stream", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientAddr(trusted)(r); got != tt.want {
				t.Errorf("peer %s, X-Forwarded-For %q, trusted %q: got %q, want %q", tt.peer, tt.xff, tt.trusted, got, tt.want)
			}
		})
	}
	for _, bad := range []string{"proxy.example", "10.0.0.0/33", "10.0.0.1:80"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) accepted", bad)
		}
	}
}

// TestAllowIPv6Aggregates checks that the /64s of one /56 share four times
// one address's burst, and those of one /48 sixteen times, while another
// /48 keeps its own.
func TestAllowIPv6Aggregates(t *testing.T) {
	l := New(postRate, postBurst)
	t0 := time.Unix(1_000_000, 0)
	// Every /64 of 2001:db8:0:0::/56 in turn, one burst each until the /56
	// is spent.
	allowed := 0
	for i := range 256 {
		key := Key(fmt.Sprintf("2001:db8:0:%x::1", i))
		for {
			ok, wait := l.Allow(key, t0)
			if !ok {
				if wait <= 0 {
					t.Fatalf("refused with wait %v", wait)
				}
				break
			}
			allowed++
		}
	}
	if allowed != 4*postBurst {
		t.Errorf("one /56 made %d posts at once, want %d (4 bursts)", allowed, 4*postBurst)
	}
	// The other /56s of the same /48 together reach the /48's 16 bursts.
	for n := 1; n < 256; n++ {
		for i := range 256 {
			key := Key(fmt.Sprintf("2001:db8:0:%x::1", n<<8|i))
			for {
				if ok, _ := l.Allow(key, t0); !ok {
					break
				}
				allowed++
			}
		}
	}
	if allowed != 16*postBurst {
		t.Errorf("one /48 made %d posts at once, want %d (16 bursts)", allowed, 16*postBurst)
	}
	if ok, _ := l.Allow(Key("2001:db8:1::1"), t0); !ok {
		t.Error("an address in another /48 refused")
	}
	if ok, _ := l.Allow("192.0.2.1", t0); !ok {
		t.Error("an IPv4 address refused")
	}
}
