package limit

import (
	"net/http/httptest"
	"testing"
)

// TestForwardedForForms checks the forms an X-Forwarded-For entry takes in
// the wild: with a port, in brackets (with or without a port), with spaces,
// and empty elements (skipped). Each must count as the client it names, not
// as the proxy, or every client behind the proxy would share one bucket.
func TestForwardedForForms(t *testing.T) {
	trusted, err := ParseTrustedProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		xff  []string
		want string
	}{
		{"IPv4 with a port", []string{"198.51.100.7:5555"}, "198.51.100.7"},
		{"IPv6 in brackets", []string{"[2001:db8::1]"}, "2001:db8::/64"},
		{"IPv6 in brackets with a port", []string{"[2001:db8::1]:443"}, "2001:db8::/64"},
		{"trailing empty element", []string{"1.2.3.4, "}, "1.2.3.4"},
		{"empty elements between", []string{"6.6.6.6,,1.2.3.4,,"}, "1.2.3.4"},
		{"empty header line", []string{"1.2.3.4", ""}, "1.2.3.4"},
		{"tabs and spaces", []string{" \t198.51.100.7\t "}, "198.51.100.7"},
		{"trusted hop with a port skipped", []string{"198.51.100.7, 10.0.0.9:8080"}, "198.51.100.7"},
		{"bracketed IPv4-mapped", []string{"[::ffff:198.51.100.7]:80"}, "198.51.100.7"},
		{"only empty elements", []string{" , ,"}, "10.0.0.1"},
		{"garbage still counts as the proxy", []string{"unknown"}, "10.0.0.1"},
		{"bracketed garbage", []string{"[198.51.100.7"}, "10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/stream", nil)
			r.RemoteAddr = "10.0.0.1:4000"
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientAddr(trusted)(r); got != tt.want {
				t.Errorf("X-Forwarded-For %q from a trusted proxy: got %q, want %q", tt.xff, got, tt.want)
			}
		})
	}
}

// TestTrustedProxyMappedPrefix checks that a trusted prefix written in the
// IPv4-mapped IPv6 form (::ffff:10.0.0.0/104) covers the IPv4 addresses it
// maps (10.0.0.0/8), whichever way the peer's address is written.
func TestTrustedProxyMappedPrefix(t *testing.T) {
	tests := []struct {
		trusted, peer, want string
	}{
		{"::ffff:10.0.0.0/104", "10.1.2.3:4000", "198.51.100.7"},
		{"::ffff:10.0.0.0/104", "[::ffff:10.1.2.3]:4000", "198.51.100.7"},
		{"::ffff:10.0.0.0/104", "11.0.0.1:4000", "11.0.0.1"},
		{"::ffff:10.1.2.3/128", "10.1.2.3:4000", "198.51.100.7"},
		{"::ffff:192.0.2.0/120", "192.0.2.1:4000", "198.51.100.7"},
		{"::ffff:10.1.2.3", "10.1.2.3:4000", "198.51.100.7"},
	}
	for _, tt := range tests {
		trusted, err := ParseTrustedProxies(tt.trusted)
		if err != nil {
			t.Fatalf("ParseTrustedProxies(%q): %v", tt.trusted, err)
		}
		r := httptest.NewRequest("GET", "/stream", nil)
		r.RemoteAddr = tt.peer
		r.Header.Set("X-Forwarded-For", "198.51.100.7")
		if got := ClientAddr(trusted)(r); got != tt.want {
			t.Errorf("trusted %q, peer %s: got %q, want %q", tt.trusted, tt.peer, got, tt.want)
		}
	}
}
