package main

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Limits on posting and on the memory the limiter may use.
const (
	// defaultPostRate is how many posts per second one address may make.
	defaultPostRate = 5
	// defaultPostBurst is how many posts one address may make at once.
	defaultPostBurst = 20
	// defaultMaxStreams caps the streams the server holds.
	defaultMaxStreams = 50000
	// defaultMaxStreamsPerAddr caps the streams one address holds.
	defaultMaxStreamsPerAddr = 64
	// maxLimiterAddrs bounds the addresses the post limiter remembers. Past
	// it, idle entries are swept at once, and if that is not enough,
	// arbitrary entries are forgotten (those addresses start again with a
	// full bucket) down to limiterLowWater, so that the next sweep is
	// maxLimiterAddrs-limiterLowWater new addresses away: a flood of new
	// addresses costs one sweep per many posts, not one per post.
	maxLimiterAddrs = 100000
	// limiterLowWater is how many addresses a sweep at the bound leaves.
	limiterLowWater = maxLimiterAddrs * 3 / 4
	// ipv6LimitPrefix is the IPv6 prefix length that counts as one
	// address for limits: a single host usually holds a whole /64.
	ipv6LimitPrefix = 64
	// limiterSweep is how often the limiter forgets idle addresses.
	limiterSweep = time.Minute
)

// rateLimiter is a token bucket per client address: each address gets
// burst tokens, refilled at rate per second, and each post takes one.
// Addresses whose bucket has refilled completely are forgotten, so memory
// stays bounded by the addresses active in the last burst/rate seconds (and
// by maxLimiterAddrs).
type rateLimiter struct {
	rate  float64
	burst float64
	// mu guards the fields below.
	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

// bucket is one address's tokens as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

// newRateLimiter returns a limiter, or nil (no limit) if rate is not
// positive.
func newRateLimiter(rate float64, burst int) *rateLimiter {
	if rate <= 0 {
		return nil
	}
	return &rateLimiter{rate: rate, burst: float64(max(burst, 1)), buckets: make(map[string]*bucket)}
}

// allow takes a token for addr at now. If none is left it reports false and
// how long until one will be.
func (l *rateLimiter) allow(addr string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= limiterSweep || len(l.buckets) >= maxLimiterAddrs {
		l.sweep(now)
	}
	b, ok := l.buckets[addr]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[addr] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// sweep forgets addresses whose bucket is full again, and if the map is
// still at its bound, forgets arbitrary ones down to limiterLowWater.
func (l *rateLimiter) sweep(now time.Time) {
	l.lastSweep = now
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for addr, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, addr)
		}
	}
	if len(l.buckets) < maxLimiterAddrs {
		return
	}
	for addr := range l.buckets {
		if len(l.buckets) <= limiterLowWater {
			break
		}
		delete(l.buckets, addr)
	}
}

// size returns the number of addresses remembered.
func (l *rateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// parseTrustedProxies parses a comma-separated list of addresses and
// prefixes ("10.0.0.1,192.168.0.0/16").
func parseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
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

// limitKey returns what addr counts as for limits: an IPv4 address itself
// (also when written as an IPv4-mapped IPv6 address), and for IPv6 its /64
// prefix, so that one host cannot escape its limits by rotating through
// the addresses of its own network. A host that is not an IP address is
// returned as it is.
func limitKey(host string) string {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(ipv6LimitPrefix)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// clientAddrFunc returns the function that finds the address a request
// counts against for limits (see limitKey). Without trusted proxies it is
// the peer's address. When the peer is a trusted proxy, it is the
// right-most address in X-Forwarded-For that is not itself a trusted
// proxy, so a client cannot choose its own address by sending the header.
func clientAddrFunc(trusted []netip.Prefix) func(*http.Request) string {
	if len(trusted) == 0 {
		return func(r *http.Request) string { return limitKey(remoteHost(r)) }
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
		peer := remoteHost(r)
		a, err := netip.ParseAddr(peer)
		if err != nil || !isTrusted(a) {
			return limitKey(peer)
		}
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				return limitKey(peer)
			}
			if !isTrusted(h) {
				return limitKey(h.String())
			}
		}
		return limitKey(peer)
	}
}
