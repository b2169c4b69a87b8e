// Package limit decides how much one client may use the server: a token
// bucket per client address with bounded memory, the key an address counts
// as (an IPv4 address itself, an IPv6 address by its /64), and which address
// a request comes from when it arrives through trusted proxies.
package limit

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Bounds on the memory a Limiter may use.
const (
	// MaxAddrs bounds the addresses a Limiter remembers. Past it, idle
	// entries are swept at once, and if that is not enough, arbitrary
	// entries are forgotten (those addresses start again with a full
	// bucket) down to lowWater, so that the next sweep is
	// MaxAddrs-lowWater new addresses away: a flood of new addresses costs
	// one sweep per many requests, not one per request.
	MaxAddrs = 100000
	// lowWater is how many addresses a sweep at the bound leaves.
	lowWater = MaxAddrs * 3 / 4
	// SweepInterval is how often a Limiter forgets idle addresses.
	SweepInterval = time.Minute
	// ipv6Prefix is the IPv6 prefix length that counts as one address: a
	// single host usually holds a whole /64.
	ipv6Prefix = 64
)

// Limiter is a token bucket per key (a client address, see Key): each key
// gets burst tokens, refilled at rate per second, and each request takes
// one. Keys whose bucket has refilled completely are forgotten, so memory
// stays bounded by the keys active in the last burst/rate seconds (and by
// MaxAddrs). A Limiter is safe for concurrent use; it starts no goroutine.
type Limiter struct {
	rate  float64
	burst float64
	// mu guards the fields below.
	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

// bucket is one key's tokens as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter, or nil (no limit) if rate is not positive. A burst
// below 1 counts as 1.
func New(rate float64, burst int) *Limiter {
	if rate <= 0 {
		return nil
	}
	return &Limiter{rate: rate, burst: float64(max(burst, 1)), buckets: make(map[string]*bucket)}
}

// Allow takes a token for key at now (and, for an IPv6 /64, from its
// wider prefixes too; see Scopes). If none is left it reports false and
// how long until one will be.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= SweepInterval || len(l.buckets) >= MaxAddrs {
		l.sweep(now)
	}
	// An IPv6 /64 also draws on its /56 and /48 (see Scopes), whose
	// buckets hold and refill a multiple of one address's: a token is
	// taken from every scope or from none.
	scopes := Scopes(key)
	var wait time.Duration
	for _, sc := range scopes {
		burst, rate := l.burst*float64(sc.Factor), l.rate*float64(sc.Factor)
		b, ok := l.buckets[sc.Key]
		if !ok {
			b = &bucket{tokens: burst, last: now}
			l.buckets[sc.Key] = b
		}
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
		b.last = now
		if b.tokens < 1 {
			wait = max(wait, time.Duration((1-b.tokens)/rate*float64(time.Second)))
		}
	}
	if wait > 0 {
		return false, wait
	}
	for _, sc := range scopes {
		l.buckets[sc.Key].tokens--
	}
	return true, 0
}

// sweep forgets keys whose bucket is full again, and if the map is still at
// its bound, forgets arbitrary ones down to lowWater.
func (l *Limiter) sweep(now time.Time) {
	l.lastSweep = now
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for key, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, key)
		}
	}
	if len(l.buckets) < MaxAddrs {
		return
	}
	for key := range l.buckets {
		if len(l.buckets) <= lowWater {
			break
		}
		delete(l.buckets, key)
	}
}

// Len returns the number of keys remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// lastSweepTime returns when the limiter last swept its map (for tests).
func (l *Limiter) lastSweepTime() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastSweep
}

// ParseTrustedProxies parses a comma-separated list of addresses and
// prefixes ("10.0.0.1,192.168.0.0/16"). A prefix written in the IPv4-mapped
// IPv6 form with at least 96 bits ("::ffff:10.0.0.0/104") means the IPv4
// prefix it maps ("10.0.0.0/8"), since addresses are compared unmapped.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is not an address or prefix: %w", f, err)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// Key returns what host counts as for limits: an IPv4 address itself (also
// when written as an IPv4-mapped IPv6 address), and for IPv6 its /64
// prefix, so that one host cannot escape its limits by rotating through the
// addresses of its own network. A host that is not an IP address is
// returned as it is.
func Key(host string) string {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(ipv6Prefix)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// PeerHost returns the host part of the request's remote address.
func PeerHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ClientAddr returns the function that finds the key a request counts
// against for limits (see Key). Without trusted proxies it is the peer's
// address. When the peer is a trusted proxy, it is the right-most address in
// X-Forwarded-For that is not itself a trusted proxy, so a client cannot
// choose its own address by sending the header. Empty elements are skipped,
// and an entry may carry a port or brackets (see parseHop); an entry that is
// not an address at all makes the request count as the peer.
func ClientAddr(trusted []netip.Prefix) func(*http.Request) string {
	if len(trusted) == 0 {
		return func(r *http.Request) string { return Key(PeerHost(r)) }
	}
	isTrusted := func(a netip.Addr) bool {
		a = a.Unmap()
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return func(r *http.Request) string {
		peer := PeerHost(r)
		a, err := netip.ParseAddr(peer)
		if err != nil || !isTrusted(a) {
			return Key(peer)
		}
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop := strings.TrimSpace(hops[i])
			if hop == "" {
				continue
			}
			h, ok := parseHop(hop)
			if !ok {
				return Key(peer)
			}
			if !isTrusted(h) {
				return Key(h.String())
			}
		}
		return Key(peer)
	}
}

// parseHop parses one X-Forwarded-For entry: an address ("198.51.100.7",
// "2001:db8::1"), an address with a port ("198.51.100.7:5555",
// "[2001:db8::1]:443"), or an IPv6 address in brackets ("[2001:db8::1]"),
// as proxies write them.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a, true
		}
	}
	return netip.Addr{}, false
}
