package limit

import (
	"fmt"
	"testing"
)

// TestTally checks the per-address cap: an IPv4 address alone, an IPv6 /64
// also against its /56 (4 times the cap) and /48 (16 times), no cap at 0,
// and counts that go back to nothing.
func TestTally(t *testing.T) {
	tests := []struct {
		name string
		max  int
		keys []string // added in order
		full string   // asked after
		want bool
	}{
		{"under the cap", 2, []string{"192.0.2.1"}, "192.0.2.1", false},
		{"at the cap", 2, []string{"192.0.2.1", "192.0.2.1"}, "192.0.2.1", true},
		{"another address", 2, []string{"192.0.2.1", "192.0.2.1"}, "192.0.2.2", false},
		{"no cap", 0, []string{"192.0.2.1", "192.0.2.1", "192.0.2.1"}, "192.0.2.1", false},
		{"/64 at the cap", 1, []string{"2001:db8:0:1::/64"}, "2001:db8:0:1::/64", true},
		{"/56 at 4 times the cap", 1, []string{"2001:db8:0:1::/64", "2001:db8:0:2::/64", "2001:db8:0:3::/64", "2001:db8:0:4::/64"}, "2001:db8:0:5::/64", true},
		{"/56 under it", 1, []string{"2001:db8:0:1::/64", "2001:db8:0:2::/64", "2001:db8:0:3::/64"}, "2001:db8:0:5::/64", false},
		{"another /56", 1, []string{"2001:db8:0:1::/64", "2001:db8:0:2::/64", "2001:db8:0:3::/64", "2001:db8:0:4::/64"}, "2001:db8:0:100::/64", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := NewTally(tt.max)
			for _, k := range tt.keys {
				tl.Add(k)
			}
			if got := tl.Full(tt.full); got != tt.want {
				t.Errorf("Full(%s) after %v = %v, want %v", tt.full, tt.keys, got, tt.want)
			}
			for _, k := range tt.keys {
				tl.Remove(k)
			}
			if tl.Len() != 0 || tl.Full(tt.full) {
				t.Errorf("after removing everything: %d keys, full %v; want none", tl.Len(), tl.Full(tt.full))
			}
		})
	}
}

// TestTallyClear checks that Clear forgets every count.
func TestTallyClear(t *testing.T) {
	tl := NewTally(1)
	for i := range 3 {
		tl.Add(fmt.Sprint("192.0.2.", i))
	}
	tl.Clear()
	if tl.Len() != 0 || tl.Full("192.0.2.0") {
		t.Errorf("after Clear: %d keys, full %v", tl.Len(), tl.Full("192.0.2.0"))
	}
}
