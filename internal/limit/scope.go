package limit

import "net/netip"

// ipv6Aggregates are the wider IPv6 prefixes a /64 also counts against,
// each with the multiple of the per-address limit it may use: a site
// usually gets a /48 and a home a /56, so one network cannot multiply its
// limits by spreading over the /64s it holds.
var ipv6Aggregates = []struct{ bits, factor int }{
	{56, 4},
	{48, 16},
}

// Scope is one key a client counts against, and the multiple of the
// per-address limit allowed there.
type Scope struct {
	// Key identifies the address or prefix.
	Key string
	// Factor multiplies the per-address limit for this key.
	Factor int
}

// Scopes returns every key that key (a result of Key) counts against:
// key itself with factor 1, and for an IPv6 /64 also its /56 (4 times the
// per-address limit) and its /48 (16 times).
func Scopes(key string) []Scope {
	p, err := netip.ParsePrefix(key)
	if err != nil || !p.Addr().Is6() || p.Bits() != ipv6Prefix {
		return []Scope{{Key: key, Factor: 1}}
	}
	out := make([]Scope, 0, 1+len(ipv6Aggregates))
	out = append(out, Scope{Key: key, Factor: 1})
	for _, a := range ipv6Aggregates {
		wide, _ := p.Addr().Prefix(a.bits)
		out = append(out, Scope{Key: wide.String(), Factor: a.factor})
	}
	return out
}
