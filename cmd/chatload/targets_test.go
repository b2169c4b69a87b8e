package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestParseTargets checks -url and -post-url lists: each URL resolved to
// where it dials and its paths, loopback only unless allowed, one scheme.
func TestParseTargets(t *testing.T) {
	ts, host, err := parseTargets("http://127.0.0.1:7001, http://localhost:7002/chat/", false)
	if err != nil || len(ts) != 2 || host != "" {
		t.Fatalf("parseTargets = %v, %q, %v", ts, host, err)
	}
	if ts[0].dialAddr != "127.0.0.1:7001" || ts[1].dialAddr != "127.0.0.1:7002" || ts[1].streamPath != "/chat/stream" ||
		ts[1].postURL != "http://127.0.0.1:7002/chat/post" || ts[0].statsURL != "http://127.0.0.1:7001/stats" {
		t.Errorf("targets = %+v, %+v", *ts[0], *ts[1])
	}
	for _, tt := range []struct{ list, want string }{
		{"", "no URL"},
		{"http://10.0.0.1:80", "not a loopback"},
		{"http://127.0.0.1:1,https://127.0.0.1:2", "mix http and https"},
		{"ftp://127.0.0.1", "scheme"},
	} {
		if _, _, err := parseTargets(tt.list, false); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseTargets(%q) = %v, want an error saying %q", tt.list, err, tt.want)
		}
	}
	if _, _, err := parseTargets("http://10.0.0.1:80", true); err != nil {
		t.Errorf("a remote URL with -allow-remote: %v", err)
	}
}

// TestStreamMovesToNextTarget checks that a stream whose server cannot be
// reached tries the next URL of the list, as when a node of a room dies.
func TestStreamMovesToNextTarget(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("id: 1-0\n\n"))
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close() // nobody listens there now
	r := &loadRun{cfg: config{url: gone + "," + srv.URL}}
	if err := r.setTarget(); err != nil {
		t.Fatal(err)
	}
	s := &subscriber{r: r}
	s.parser = newSSEParser(s.onEvent)
	if _, err := s.connect(); err == nil || s.target != 1 {
		t.Fatalf("connect to a closed port: %v, now on target %d; want an error and target 1", err, s.target)
	}
	if _, err := s.connect(); err != nil || s.target != 1 {
		t.Fatalf("connect to the next URL: %v (target %d)", err, s.target)
	}
	s.closeConn()
}
