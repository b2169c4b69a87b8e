package clusterstate

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"chat/internal/auth"
)

// TestSecretsAgree starts eight nodes at once on a new room: each asks for
// the session and the identity secrets, and all get the same two, made
// once, neither reported as a rotation; the two differ.
func TestSecretsAgree(t *testing.T) {
	srv := startServer(t)
	keys := auth.Keys{Room: "room-key", Admin: "admin-key"}
	const n = 8
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = newNode(t, srv.URL())
	}
	sessions, identities := make([][]byte, n), make([][]byte, n)
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Go(func() {
			s, err := OpenSecrets(ctx(t), nd.cfg)
			if err != nil {
				t.Errorf("node %d: %v", i, err)
				return
			}
			var rotated bool
			if sessions[i], rotated, err = s.Session(ctx(t), keys); err != nil || rotated {
				t.Errorf("node %d: Session: rotated %v, %v", i, rotated, err)
			}
			if identities[i], err = s.Identity(ctx(t)); err != nil {
				t.Errorf("node %d: Identity: %v", i, err)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if len(sessions[i]) != auth.SecretSize || !bytes.Equal(sessions[i], sessions[0]) || !bytes.Equal(identities[i], identities[0]) {
			t.Fatalf("node %d: session secret %x, identity %x; node 0: %x, %x", i, sessions[i], identities[i], sessions[0], identities[0])
		}
	}
	if bytes.Equal(sessions[0], identities[0]) {
		t.Error("the session and identity secrets are the same")
	}
}

// TestSessionSecretRotates changes the room's keys between starts: the
// same keys keep the secret; other keys replace it (rotated), and going
// back to the first keys replaces it again rather than reviving the first
// secret. Four nodes starting at once with new keys agree on one new
// secret. The identity secret never changes.
func TestSessionSecretRotates(t *testing.T) {
	srv := startServer(t)
	s, err := OpenSecrets(ctx(t), newNode(t, srv.URL()).cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := s.Identity(ctx(t))
	k1, k2 := auth.Keys{Room: "one"}, auth.Keys{Room: "two"}
	first, _, _ := s.Session(ctx(t), k1)
	steps := []struct {
		name        string
		keys        auth.Keys
		same        []byte // the secret it must be, if not nil
		wantRotated bool
	}{
		{"same keys", k1, first, false},
		{"another key", k2, nil, true},
		{"the first key again", k1, nil, true},
		{"no keys", auth.Keys{}, nil, true},
		{"no keys again", auth.Keys{}, nil, false},
	}
	seen := [][]byte{first}
	for _, st := range steps {
		got, rotated, err := s.Session(ctx(t), st.keys)
		switch {
		case err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case rotated != st.wantRotated:
			t.Errorf("%s: rotated %v, want %v", st.name, rotated, st.wantRotated)
		case st.same != nil && !bytes.Equal(got, st.same):
			t.Errorf("%s: secret changed", st.name)
		case st.wantRotated:
			for _, old := range seen {
				if bytes.Equal(got, old) {
					t.Errorf("%s: an earlier secret came back", st.name)
				}
			}
		}
		seen = append(seen, got)
	}

	k3 := auth.Keys{Room: "three", Admin: "boss"}
	got := make([][]byte, 4)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			other, err := OpenSecrets(ctx(t), newNode(t, srv.URL()).cfg)
			if err == nil {
				got[i], _, err = other.Session(ctx(t), k3)
			}
			if err != nil {
				t.Errorf("node %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	for i := range got {
		if !bytes.Equal(got[i], got[0]) {
			t.Fatalf("nodes starting at once with new keys: node %d has %x, node 0 %x", i, got[i], got[0])
		}
	}
	if again, _ := s.Identity(ctx(t)); !bytes.Equal(again, id) {
		t.Error("the identity secret changed with the keys")
	}
}

// TestSecretsRefuseBadValues puts values no node writes in the secrets
// bucket: each is refused with an error, never used as a secret.
func TestSecretsRefuseBadValues(t *testing.T) {
	srv := startServer(t)
	nd := newNode(t, srv.URL())
	s, err := OpenSecrets(ctx(t), nd.cfg)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := nd.cfg.JS.KV(ctx(t), Bucket(testStream, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ value, want string }{
		{`not json`, "invalid character"},
		{`{"secret":"c2hvcnQ="}`, "a secret of 5 bytes"},
		{`{"secret":"` + strings.Repeat("A", 44) + `","extra":1}`, `unknown field "extra"`},
	} {
		for _, key := range []string{sessionKey, identityKey} {
			if _, err := kv.Put(ctx(t), key, []byte(tt.value)); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := s.Session(ctx(t), auth.Keys{Room: "k"}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("session secret %s: %v, want an error with %q", tt.value, err, tt.want)
		}
		if _, err := s.Identity(ctx(t)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("identity secret %s: %v, want an error with %q", tt.value, err, tt.want)
		}
	}
}
