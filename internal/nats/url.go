package nats

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// defaultPort is the NATS client port a URL without a port means.
const defaultPort = "4222"

// server is one entry of the URL list: where to dial and what to send.
// Its credentials appear only in the CONNECT line, never in a string that
// could end up in an error or a log line: use redacted for that.
type server struct {
	// addr is host:port.
	addr string
	// host is the name TLS verifies.
	host string
	// tls is set for a tls:// URL.
	tls bool
	// user and pass, or token, are the URL's credentials.
	user, pass, token string
	// redacted is the URL with its credentials replaced by "xxxxx".
	redacted string
}

// parseURLs parses a list of nats:// or tls:// URLs. Its errors name the
// URL by its position and redacted text, never with the credentials in it.
func parseURLs(urls []string) ([]*server, error) {
	if len(urls) == 0 {
		return nil, errors.New("nats: no server URL given")
	}
	servers := make([]*server, 0, len(urls))
	for i, raw := range urls {
		s, err := parseURL(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("nats: malformed URL %d %q: %w", i+1, redactRaw(raw), err)
		}
		servers = append(servers, s)
	}
	return servers, nil
}

// parseURL parses one URL; its error does not repeat the URL.
func parseURL(raw string) (*server, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error's text holds the whole URL, and its inner error may
		// quote part of the userinfo (an escape such as "%zz"): only an
		// error about the port, which comes after the userinfo, is kept.
		var uerr *url.Error
		if errors.As(err, &uerr) && (!strings.Contains(raw, "@") || strings.Contains(uerr.Err.Error(), "invalid port")) {
			return nil, uerr.Err
		}
		return nil, errors.New("cannot parse (in a user, password or token, escape reserved characters such as @ : / % as %XX)")
	}
	s := &server{}
	switch u.Scheme {
	case "nats":
	case "tls":
		s.tls = true
	default:
		return nil, fmt.Errorf("scheme %q is not nats:// or tls://", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, errors.New("no host")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("a server URL has no path, query or fragment")
	}
	s.host = u.Hostname()
	port := u.Port()
	if port == "" {
		port = defaultPort
	}
	if s.host == "" {
		return nil, errors.New("no host")
	}
	s.addr = net.JoinHostPort(s.host, port)
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			s.user, s.pass = u.User.Username(), p
		} else {
			s.token = u.User.Username()
		}
		if s.user == "" && s.token == "" {
			return nil, errors.New("empty user or token")
		}
	}
	s.redacted = u.Scheme + "://"
	if u.User != nil {
		s.redacted += "xxxxx@"
	}
	s.redacted += s.addr
	return s, nil
}

// redactRaw hides the userinfo of a URL that may not even parse: anything
// between the scheme's "//" (or the start) and the last "@" is replaced.
func redactRaw(raw string) string {
	at := strings.LastIndexByte(raw, '@')
	if at < 0 {
		return raw
	}
	start := 0
	if i := strings.Index(raw, "//"); i >= 0 && i < at {
		start = i + 2
	}
	return raw[:start] + "xxxxx" + raw[at:]
}
