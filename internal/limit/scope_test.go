package limit

import (
	"reflect"
	"testing"
)

// TestScopes checks the keys a client counts against: IPv4 addresses and
// anything that is not an IPv6 /64 alone, a /64 with its /56 and /48.
func TestScopes(t *testing.T) {
	tests := []struct {
		key  string
		want []Scope
	}{
		{"192.0.2.1", []Scope{{"192.0.2.1", 1}}},
		{"not-an-ip", []Scope{{"not-an-ip", 1}}},
		{Key("2001:db8:aa:bbcc:1::1"), []Scope{{"2001:db8:aa:bbcc::/64", 1}, {"2001:db8:aa:bb00::/56", 4}, {"2001:db8:aa::/48", 16}}},
		{"10.0.0.0/8", []Scope{{"10.0.0.0/8", 1}}},
	}
	for _, tt := range tests {
		if got := Scopes(tt.key); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Scopes(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}
