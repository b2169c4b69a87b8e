package nameguard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"chat/internal/httpx"
	"chat/internal/identity"
	"chat/internal/limit"
	"chat/internal/names"
)

// cookieOf returns the identity cookie is would set for a new client.
func cookieOf(t *testing.T, is *identity.Issuer) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	is.Ensure(rec, httptest.NewRequest("GET", "/", nil))
	return rec.Result().Cookies()[0]
}

// TestOpenKeepsSecretAndHolds checks the files beside -data: the identity
// secret and the held names, both 0600, read back by the next Open, so
// that a cookie and a hold outlive a restart; a given secret file wins;
// without -data the secret is new each time.
func TestOpenKeepsSecretAndHolds(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "chat.jsonl")
	is, tab, err := Open(data, "", names.Options{Hold: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := cookieOf(t, is)
	id, _ := is.FromRequest(withCookie(c))
	if err := tab.Use("alice", id, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := tab.Close(time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"chat.jsonl.identity", "chat.jsonl.names"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want it, 0600", name, err, fi)
		}
	}
	is2, tab2, err := Open(data, "", names.Options{Hold: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := is2.FromRequest(withCookie(c)); !ok || got != id {
		t.Errorf("after reopening, the cookie carries %q, %v; want %q", got, ok, id)
	}
	if err := tab2.Check("ALICE", "someone else", time.Now()); err == nil {
		t.Error("after reopening, alice is free")
	}
	shared := filepath.Join(dir, "shared")
	a, _, err := Open("", shared, names.Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := Open("", shared, names.Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.FromRequest(withCookie(cookieOf(t, a))); !ok {
		t.Error("two issuers of one secret file do not accept each other's cookies")
	}
	c1, _, _ := Open("", "", names.Options{}, time.Now())
	c2, _, _ := Open("", "", names.Options{}, time.Now())
	if _, ok := c2.FromRequest(withCookie(cookieOf(t, c1))); ok {
		t.Error("two issuers without a secret file share a secret")
	}
}

// withCookie returns a request that carries c.
func withCookie(c *http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(c)
	return r
}

// TestAnswers checks the answer to each refusal: 409 with the name for a
// name held by another, 400 naming the character for a refused name, 429
// with Retry-After once a new name is over the post rate (a name held
// already draws nothing), 503 when the table is full of streamed names, and
// nothing for a stream without a name.
func TestAnswers(t *testing.T) {
	is, _, _ := Open("", "", names.Options{}, time.Now())
	g := New(Config{Issuer: is, Table: names.New(names.Options{Hold: time.Hour}), Rate: limit.New(0.001, 2), AddrOf: limit.PeerHost})
	req := httptest.NewRequest("GET", "/stream", nil)
	if e := g.Post("alice", "A"); e != nil {
		t.Fatal(e)
	}
	for _, tt := range []struct {
		name   string
		use    func(w http.ResponseWriter) *httpx.Error
		status int
		body   string
	}{
		{"held", func(http.ResponseWriter) *httpx.Error { return g.Post("Alice", "B") }, 409,
			`{"error":"the name \"Alice\" is in use by someone else; choose another","name":"Alice"}`},
		{"held, checked without identity", func(http.ResponseWriter) *httpx.Error { return g.Check("ALICE", "") }, 409, `"name":"ALICE"`},
		{"refused", func(http.ResponseWriter) *httpx.Error { return g.Post("bob\u00AD", "B") }, 400, "(found U+00AD): they let one name pass for another\",\"name\":\"bob\u00ad\""},
		{"new name, a post left", func(w http.ResponseWriter) *httpx.Error { return g.Typing(w, req, "b1", "B") }, 0, ""},
		{"held name: no post drawn", func(w http.ResponseWriter) *httpx.Error { return g.Typing(w, req, "B1", "B") }, 0, ""},
		{"new name, the last post", func(w http.ResponseWriter) *httpx.Error { _, e := g.Stream(w, req, "b2", "B"); return e }, 0, ""},
		{"new name, no post left", func(w http.ResponseWriter) *httpx.Error { _, e := g.Stream(w, req, "b3", "B"); return e }, 429, "too many new names; slow down"},
	} {
		rec := httptest.NewRecorder()
		e := tt.use(rec)
		if tt.status == 0 {
			if e != nil {
				t.Errorf("%s: %v, want none", tt.name, e)
			}
			continue
		}
		if e == nil {
			t.Errorf("%s: no refusal, want %d", tt.name, tt.status)
			continue
		}
		e.Write(rec)
		if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("%s: %d %s, want %d with %s", tt.name, rec.Code, rec.Body, tt.status, tt.body)
		}
		if tt.status == 429 && rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", tt.name)
		}
	}
	if s, e := g.Stream(httptest.NewRecorder(), req, "", "B"); s != nil || e != nil {
		t.Errorf("a stream without a name: %v, %v; want no hold and no refusal", s, e)
	}
	full := New(Config{Issuer: is, Table: names.New(names.Options{Hold: time.Hour, MaxHolds: 1})})
	if _, e := full.Stream(httptest.NewRecorder(), req, "c1", "C"); e != nil {
		t.Fatal(e)
	}
	if e := full.Post("d1", "D"); e == nil || e.Status != http.StatusServiceUnavailable {
		t.Errorf("a table full of streamed names: %v, want 503", e)
	}
	shared := names.New(names.Options{Hold: time.Hour})
	shared.Share(downStore{})
	rec := httptest.NewRecorder()
	if e := New(Config{Issuer: is, Table: shared}).Post("e1", "E"); e != nil {
		e.Write(rec)
	}
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "2" || !strings.Contains(rec.Body.String(), "cannot be reached") {
		t.Errorf("a shared store out of reach: %d %q %s, want 503 with Retry-After 2", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
}

// downStore is a names.Shared that cannot be reached.
type downStore struct{}

// Put implements names.Shared.
func (downStore) Put(string, names.Record, time.Duration) error { return names.ErrUnavailable }

// Release implements names.Shared.
func (downStore) Release(string) error { return names.ErrUnavailable }

// Free implements names.Shared.
func (downStore) Free(string) error { return names.ErrUnavailable }

// TestKeep checks, on a fake clock, that Keep saves the holds every
// saveEvery (a streamed hold as used then) and closes the file when its
// context ends, after which a new hold fails with a 500.
func TestKeep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "chat.jsonl")
		is, tab, err := Open(data, "", names.Options{Hold: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		g := New(Config{Issuer: is, Table: tab})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			g.Keep(ctx)
			close(done)
		}()
		if _, e := g.Stream(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), "erin", "E"); e != nil {
			t.Fatal(e)
		}
		time.Sleep(saveEvery)
		synctest.Wait()
		b, err := os.ReadFile(data + ".names")
		if want := `"last":` + strconv.FormatInt(time.Now().Unix(), 10); err != nil || !strings.Contains(string(b), want) {
			t.Errorf("names file %v after a save: %s, %v; want the streamed hold with %s", saveEvery, b, err, want)
		}
		cancel()
		<-done
		if e := g.Post("frank", "F"); e == nil || e.Status != http.StatusInternalServerError {
			t.Errorf("a new hold after Keep closed the file: %v, want 500", e)
		}
	})
}
