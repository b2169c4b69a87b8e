package nats

import (
	"strconv"
	"strings"
	"testing"
)

// TestParseURLs checks what each URL form yields and that the redacted
// form, the one errors and logs use, holds no credential.
func TestParseURLs(t *testing.T) {
	tests := []struct {
		in                string
		addr, redacted    string
		user, pass, token string
		tls               bool
	}{
		{in: "nats://127.0.0.1:4222", addr: "127.0.0.1:4222", redacted: "nats://127.0.0.1:4222"},
		{in: "nats://localhost", addr: "localhost:4222", redacted: "nats://localhost:4222"},
		{in: " nats://h:1 ", addr: "h:1", redacted: "nats://h:1"},
		{in: "tls://h:4443", addr: "h:4443", redacted: "tls://h:4443", tls: true},
		{in: "nats://[::1]:4222", addr: "[::1]:4222", redacted: "nats://[::1]:4222"},
		{in: "nats://alice:s3cr%40t@h:1", addr: "h:1", redacted: "nats://xxxxx@h:1", user: "alice", pass: "s3cr@t"},
		{in: "nats://alice:@h:1", addr: "h:1", redacted: "nats://xxxxx@h:1", user: "alice"},
		{in: "nats://t0ken@h:1/", addr: "h:1", redacted: "nats://xxxxx@h:1", token: "t0ken"},
	}
	for _, tt := range tests {
		s, err := parseURLs([]string{tt.in})
		if err != nil {
			t.Errorf("parseURLs(%q): %v", tt.in, err)
			continue
		}
		got := s[0]
		if got.addr != tt.addr || got.redacted != tt.redacted || got.user != tt.user ||
			got.pass != tt.pass || got.token != tt.token || got.tls != tt.tls {
			t.Errorf("parseURLs(%q) = %+v, want %+v", tt.in, *got, tt)
		}
	}
}

// TestParseURLsMalformed wants a one-line error naming the bad URL's
// position, with no credential in it, for every malformed URL.
func TestParseURLsMalformed(t *testing.T) {
	const secret = "hunter2"
	tests := []struct{ name, in, want string }{
		{"no scheme", "localhost:4222", "is not nats:// or tls://"},
		{"http scheme", "http://h:1", "is not nats:// or tls://"},
		{"bad port", "nats://u:" + secret + "@h:port", "invalid port"},
		{"space in password", "nats://u:" + secret + " x@h:1", "cannot parse"},
		{"control character", "nats://u:" + secret + "\x7f@h:1", "cannot parse"},
		{"control character without userinfo", "nats://h\x7f:1", "invalid control character"},
		{"no host", "nats://u:" + secret + "@:4222", "no host"},
		{"path", "nats://u:" + secret + "@h:1/path", "no path"},
		{"query", "nats://h:1?x=1", "no path"},
		{"empty user", "nats://:" + secret + "@h:1", "empty user"},
		{"opaque", "nats:" + secret + "@h", "no host"},
		{"percent escape", "nats://u:" + secret + "%zz@h:1", "cannot parse"},
		{"percent escape of the secret", "nats://u:%zz@h:1", "cannot parse"},
		{"empty", "", "is not nats://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseURLs([]string{"nats://ok:1", tt.in})
			if err == nil {
				t.Fatalf("parseURLs(%q): no error", tt.in)
			}
			msg := err.Error()
			_, userinfo, _ := strings.Cut(tt.in, "://u:")
			userinfo, _, _ = strings.Cut(userinfo, "@")
			if strings.Contains(msg, secret) || (userinfo != "" && strings.Contains(msg, userinfo)) || strings.Contains(msg, "\n") {
				t.Errorf("parseURLs(%q) error %q holds the secret or a newline", tt.in, msg)
			}
			if !strings.Contains(msg, "URL 2") || !strings.Contains(msg, tt.want) {
				t.Errorf("parseURLs(%q) error %q, want it to name URL 2 and say %q", tt.in, msg, tt.want)
			}
		})
	}
	if _, err := parseURLs(nil); err == nil {
		t.Error("parseURLs(nil): no error")
	}
}

// TestRedactRaw hides everything up to the last @ of a URL that may not
// parse.
func TestRedactRaw(t *testing.T) {
	for in, want := range map[string]string{
		"nats://u:p@h:1":       "nats://xxxxx@h:1",
		"nats://u:p@x@h:1":     "nats://xxxxx@h:1",
		"u:p@h":                "xxxxx@h",
		"nats://h:1":           "nats://h:1",
		"nats:u:p@h":           "xxxxx@h",
		"nats://u:p%zz@h:port": "nats://xxxxx@h:port",
	} {
		if got := redactRaw(in); got != want {
			t.Errorf("redactRaw(%q) = %q, want %q", in, got, want)
		}
	}
}

// itoa formats a port for the URLs of the tests.
func itoa(n int) string { return strconv.Itoa(n) }
