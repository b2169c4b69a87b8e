package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestHTTP2 serves over TLS and checks that streams and posts share one
// HTTP/2 connection: many streams open at once, where HTTP/1.1 browsers
// would stop at six.
func TestHTTP2(t *testing.T) {
	ts := startTLSServer(t)
	base := ts.URL
	client := http2Client(t, 0)

	const streams = 10
	subs := make([]*subscriber, streams)
	for i := range subs {
		subs[i] = subscribeOpts(t, base, streamOpts{client: client})
		if resp := subs[i].resp; resp.ProtoMajor != 2 {
			t.Fatalf("GET /stream over TLS: %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
		}
	}
	resp, err := client.Post(base+"/post", "application/json", strings.NewReader(`{"username":"h2","content":"over one connection"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST over HTTP/2: %d", resp.StatusCode)
	}
	for i, s := range subs {
		msgs, _ := s.messages(t, 1)
		if msgs[0].Content != "over one connection" {
			t.Errorf("stream %d got %+v", i, msgs[0])
		}
	}
}
