package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// TestFloorServesTheLoad runs a small load against the raw floor in this
// process and checks that the tool counts it clean: the floor speaks the
// chat server's protocol closely enough to be measured the same way.
func TestFloorServesTheLoad(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serveFloor(ctx, "127.0.0.1:0", pw) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveFloor: %v", err)
		}
	}()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(pr).ReadString('\n')
		line <- s
	}()
	var addr string
	select {
	case s := <-line:
		addr = strings.TrimPrefix(strings.TrimSpace(s), "floor listening on ")
	case <-time.After(10 * time.Second):
		t.Fatal("floor did not report its address within 10s")
	}
	var out, errb bytes.Buffer
	code, err := run(ctx, []string{"chatload", "-url", "http://" + addr, "-subs", "5", "-rate", "40", "-duration", "500ms", "-settle", "5s", "-json", "-strict"}, &out, &errb)
	if err != nil || code != 0 {
		t.Fatalf("run against the floor = %d, %v\n%s\n%s", code, err, out.String(), errb.String())
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out.String())
	}
	if !rep.Clean || rep.Delivered != 5*rep.PostsOK || rep.PostsOK == 0 || rep.ServerEnd == nil || rep.ServerDeliveries != rep.Delivered {
		t.Errorf("floor run: clean %v, delivered %d of %d posts × 5, server counted %d", rep.Clean, rep.Delivered, rep.PostsOK, rep.ServerDeliveries)
	}
	if rep.ServerWrites != rep.ServerDeliveries || rep.ServerPerWrite != 1 {
		t.Errorf("floor run: %d writes for %d deliveries (%v a write), want one each", rep.ServerWrites, rep.ServerDeliveries, rep.ServerPerWrite)
	}
}
