// Package ban keeps the list of banned client addresses and prefixes, each
// with its expiry, and saves it to a file so that bans outlive restarts. An
// address is matched the way the rate limits key it: an IPv4 address by
// itself, an IPv6 address by its /64, so a ban never targets less than one
// limit key. List starts no goroutines; expired bans are dropped when the
// list is read or changed.
package ban

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Limits of the ban list.
const (
	// MaxBans bounds how many bans the list holds at once.
	MaxBans = 10000
	// ipv6Prefix is the longest IPv6 prefix a ban takes: the per-address
	// key of the rate limits is an IPv6 address's /64.
	ipv6Prefix = 64
	// MinDuration is the shortest ban with an end: shorter ones would end
	// before they could be seen.
	MinDuration = time.Second
)

// reserved is ::/64, the IPv6 block of the unspecified and loopback
// addresses and of the IPv4-mapped and IPv4-compatible forms: no client
// has an address of its own there, so a ban widened to it would miss its
// target (and ban ::1).
var reserved = netip.MustParsePrefix("::/64")

// Errors of List.
var (
	// ErrFull means the list already holds MaxBans bans.
	ErrFull = errors.New("ban list full")
	// ErrUnavailable means a list shared by several servers cannot be
	// reached: the change may not be stored, and making it again is safe.
	ErrUnavailable = errors.New("shared ban list unavailable")
)

// Ban is one banned prefix.
type Ban struct {
	// Prefix is what is banned, masked: an IPv4 prefix, or an IPv6 prefix
	// of at most 64 bits.
	Prefix netip.Prefix
	// Until is when the ban ends; the zero time means never.
	Until time.Time
}

// String returns the ban's target as Parse reads it: an IPv4 address
// without "/32", otherwise a prefix.
func (b Ban) String() string { return Format(b.Prefix) }

// Format returns p as an address when it covers a single IPv4 address,
// otherwise as a prefix.
func Format(p netip.Prefix) string {
	if p.Addr().Is4() && p.Bits() == 32 {
		return p.Addr().String()
	}
	return p.String()
}

// Parse reads an address or prefix ("203.0.113.7", "10.0.0.0/8",
// "2001:db8::1", "2001:db8::/48") and returns the prefix a ban on it
// covers: masked, IPv4-mapped IPv6 turned into IPv4, zones dropped, and
// IPv6 widened to at most /64. It refuses a prefix length outside the
// family's range, an IPv4-mapped prefix shorter than /96 (it would reach
// beyond IPv4), and any other address or prefix longer than /64 inside
// ::/64 but the loopback ::1 (an IPv4-compatible "::10.9.9.18", say),
// which would be widened to ::/64 and ban none of the addresses meant.
func Parse(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap().WithZone("")
		p = netip.PrefixFrom(a, a.BitLen())
	} else {
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or prefix (IPv4 up to /32, IPv6 up to /128)", truncate(s, 60))
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		} else if a.Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped prefix shorter than /96, which reaches beyond IPv4; write the IPv4 address or prefix (%s) instead", truncate(s, 60), a.Unmap())
		}
	}
	if a := p.Addr(); a.Is6() && p.Bits() > ipv6Prefix && reserved.Contains(a) && a != netip.IPv6Loopback() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-compatible or reserved IPv6 address, which no client uses (a ban would cover ::/64); write an IPv4 address as a.b.c.d", truncate(s, 60))
	}
	if p.Addr().Is6() && p.Bits() > ipv6Prefix {
		p = netip.PrefixFrom(p.Addr(), ipv6Prefix)
	}
	return p.Masked(), nil
}

// ParseDuration reads how long a ban lasts ("30m", "24h"): at least
// MinDuration.
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < MinDuration {
		return 0, fmt.Errorf("%q is not a duration of at least %v, such as \"30m\" or \"24h\"", truncate(s, 40), MinDuration)
	}
	return d, nil
}

// Key returns the address or prefix a rate-limit key names (an IPv4
// address, or an IPv6 /64), and false when it is not an IP key.
func Key(key string) (netip.Prefix, bool) {
	if a, err := netip.ParseAddr(key); err == nil {
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(key)
	return p, err == nil
}

// covers reports whether ban b covers everything in p.
func covers(b, p netip.Prefix) bool {
	return b.Bits() <= p.Bits() && b.Contains(p.Addr())
}

// List is the set of bans. Its methods are safe for concurrent use.
type List struct {
	// path is where the list is saved ("" keeps it in memory only).
	path string
	// mu guards bans, and orders the saves of the file.
	mu   sync.Mutex
	bans []Ban
}

// New returns an empty list kept in memory only.
func New() *List { return &List{} }

// Open returns the list saved at path, or an empty one if the file does
// not exist yet. Every change is saved to path (written to path+".tmp",
// synced and renamed over path). Bans that have expired are dropped, and a
// later entry for a prefix replaces an earlier one (so lifting it works). A file that cannot be
// read or parsed, or that holds more than MaxBans bans in force (the server
// never writes one), is refused with an error that says how to move it
// aside: starting without the bans it holds would lift them unannounced.
func Open(path string, now time.Time) (*List, error) {
	l := &List{path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, unusable(path, err)
	}
	var saved []saved
	if err := json.Unmarshal(data, &saved); err != nil {
		return nil, unusable(path, err)
	}
	at := make(map[netip.Prefix]int) // where each prefix is in l.bans
	for i, s := range saved {
		p, err := Parse(s.Addr)
		if err != nil {
			return nil, unusable(path, fmt.Errorf("entry %d: %w", i+1, err))
		}
		b := Ban{Prefix: p}
		if s.Until != nil {
			b.Until = *s.Until
		}
		if !b.Until.IsZero() && !b.Until.After(now) {
			continue
		}
		if j, ok := at[p]; ok {
			l.bans[j] = b
			continue
		}
		at[p] = len(l.bans)
		l.bans = append(l.bans, b)
	}
	if len(l.bans) > MaxBans {
		return nil, unusable(path, fmt.Errorf("%d bans in force, more than the %d the server keeps", len(l.bans), MaxBans))
	}
	return l, nil
}

// unusable returns the error for a ban list file that the server will not
// start with.
func unusable(path string, err error) error {
	return fmt.Errorf("ban list %s cannot be used; fix it, or move it aside to start without its bans (mv %s %s.bad): %w", path, path, path, err)
}

// saved is one ban as the file holds it.
type saved struct {
	Addr  string     `json:"addr"`
	Until *time.Time `json:"until"`
}

// Add bans p until the given time (zero: for ever), replacing any ban on
// the same prefix, and saves the list. It returns the ban as stored.
func (l *List) Add(p netip.Prefix, until time.Time, now time.Time) (Ban, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(now)
	b := Ban{Prefix: p.Masked(), Until: until}
	i := slices.IndexFunc(l.bans, func(x Ban) bool { return x.Prefix == b.Prefix })
	old := slices.Clone(l.bans)
	if i >= 0 {
		l.bans[i] = b
	} else {
		if len(l.bans) >= MaxBans {
			return Ban{}, ErrFull
		}
		l.bans = append(l.bans, b)
	}
	if err := l.save(); err != nil {
		l.bans = old
		return Ban{}, err
	}
	return b, nil
}

// Remove lifts the ban on exactly p and saves the list. It reports whether
// there was one.
func (l *List) Remove(p netip.Prefix, now time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(now)
	i := slices.IndexFunc(l.bans, func(x Ban) bool { return x.Prefix == p.Masked() })
	if i < 0 {
		return false, nil
	}
	old := slices.Clone(l.bans)
	l.bans = slices.Delete(l.bans, i, i+1)
	if err := l.save(); err != nil {
		l.bans = old
		return false, err
	}
	return true, nil
}

// Banned returns the ban that covers the rate-limit key (an IPv4 address,
// or an IPv6 /64) at now, and whether there is one.
func (l *List) Banned(key string, now time.Time) (Ban, bool) {
	p, ok := Key(key)
	if !ok {
		return Ban{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.bans {
		if covers(b.Prefix, p) && (b.Until.IsZero() || now.Before(b.Until)) {
			return b, true
		}
	}
	return Ban{}, false
}

// Covers reports whether ban b covers the rate-limit key.
func Covers(b Ban, key string) bool {
	p, ok := Key(key)
	return ok && covers(b.Prefix, p)
}

// All returns the bans in force at now, in the order they were made.
func (l *List) All(now time.Time) []Ban {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(now)
	return slices.Clone(l.bans)
}

// prune drops expired bans from memory (the file is rewritten at the next
// change; an expired ban in it is dropped when it is read).
func (l *List) prune(now time.Time) {
	l.bans = slices.DeleteFunc(l.bans, func(b Ban) bool {
		return !b.Until.IsZero() && !now.Before(b.Until)
	})
}

// save writes the list to its file, if it has one, durably.
func (l *List) save() error {
	if l.path == "" {
		return nil
	}
	out := make([]saved, 0, len(l.bans))
	for _, b := range l.bans {
		s := saved{Addr: b.String()}
		if !b.Until.IsZero() {
			u := b.Until.UTC()
			s.Until = &u
		}
		out = append(out, s)
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("save ban list: %w", err)
	}
	data = append(data, '\n')
	tmp := l.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save ban list: %w", err)
	}
	err = f.Chmod(0o600) // a stale temporary file keeps its own mode
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, l.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save ban list %s: %w", l.path, err)
	}
	if d, err := os.Open(filepath.Dir(l.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// truncate shortens s to at most n bytes for error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
