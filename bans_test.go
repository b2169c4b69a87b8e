package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"chat/internal/ban"
)

// TestBanMappedAddress checks that an IPv4-mapped address bans the IPv4
// address it maps (a client from it gets 403), and that a ban of one
// second is taken.
func TestBanMappedAddress(t *testing.T) {
	ts := startServer(t, "-admin-key", "boss")
	r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/bans", "application/json", `{"addr":"::ffff:127.0.0.2/128","for":"1h"}`, admin())
	if r.status != http.StatusCreated || !strings.Contains(string(r.body), `"addr":"127.0.0.2"`) {
		t.Fatalf("ban on ::ffff:127.0.0.2/128: %d %s, want 201 for 127.0.0.2", r.status, r.body)
	}
	if r := postMsg(t, clientFrom(t, "127.0.0.2"), ts.URL, "u", "hi", nil); r.status != http.StatusForbidden {
		t.Errorf("post from the banned IPv4 address: %d, want 403", r.status)
	}
	if r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/bans", "application/json", `{"addr":"127.0.0.3","for":"1s"}`, admin()); r.status != http.StatusCreated {
		t.Errorf("a one-second ban: %d %s, want 201", r.status, r.body)
	}
}

// TestBansFileRefusedAtStart checks that the server does not start with a
// bans file it cannot use (unreadable, or with more bans than it keeps),
// and that its error names the file and how to move it aside.
func TestBansFileRefusedAtStart(t *testing.T) {
	over := make([]string, ban.MaxBans+1)
	for i := range over {
		over[i] = fmt.Sprintf(`{"addr":"10.%d.%d.%d","until":null}`, i>>16, (i>>8)&255, i&255)
	}
	for _, tt := range []struct {
		name  string
		setup func(path string) error
	}{
		{"unreadable", func(path string) error { return os.Mkdir(path, 0o700) }},
		{"over the cap", func(path string) error {
			return os.WriteFile(path, []byte("["+strings.Join(over, ",")+"]"), 0o600)
		}},
	} {
		data := filepath.Join(t.TempDir(), "chat.jsonl")
		bans := data + ".bans"
		if err := tt.setup(bans); err != nil {
			t.Fatal(err)
		}
		_, err := runRefused(t, "-data", data, "-admin-key", "boss")
		if err == nil || !strings.Contains(err.Error(), "mv "+bans+" "+bans+".bad") {
			t.Errorf("%s: run = %v, want an error saying how to move %s aside", tt.name, err, bans)
		}
	}
}
