package own

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"chat/internal/limit"
	"chat/internal/roomlog"
)

// logRoom is a Room over a real log with a memory store, which commits
// every record as it is proposed; the tests call it from one goroutine.
type logRoom struct{ log *roomlog.Log }

// newLogRoom returns a room with an empty history.
func newLogRoom() *logRoom {
	return &logRoom{log: roomlog.New(roomlog.NewMemoryStore(7), roomlog.Config{History: 100})}
}

// Propose implements Room: the log commits p at once.
func (lr *logRoom) Propose(_ context.Context, p *roomlog.Proposal) (bool, error) {
	p.Reply = make(chan error, 1)
	lr.log.Propose(p)
	return true, <-p.Reply
}

// post posts content as author and returns the message's id.
func (lr *logRoom) post(t *testing.T, author, content string) string {
	t.Helper()
	p := &roomlog.Proposal{}
	p.Username, p.Content, p.Author = "u", content, author
	if _, err := lr.Propose(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p.ID
}

// testConfig returns the endpoints' configuration over room: the identity
// is the X-Who header, the admin key is "Bearer boss" (any other Bearer
// key is answered 401), and a request with an X-Test-Banned header comes
// from a banned address.
func testConfig(room Room) Config {
	return Config{
		Room:   room,
		Author: func(r *http.Request) string { return r.Header.Get("X-Who") },
		Moderator: func(w http.ResponseWriter, r *http.Request) (bool, bool) {
			switch r.Header.Get("Authorization") {
			case "":
				return false, false
			case "Bearer boss":
				return true, false
			}
			http.Error(w, "wrong key", http.StatusUnauthorized)
			return false, true
		},
		Banned:     func(r *http.Request) bool { return r.Header.Get("X-Test-Banned") != "" },
		AddrOf:     limit.PeerHost,
		MaxBody:    1 << 10,
		MaxContent: 20,
	}
}

// call sends method path with body (JSON unless contentType says
// otherwise) from who (the X-Who header, "" for none) with the extra
// header values, through a mux with both routes, and returns the answer.
func call(cfg Config, method, path, who, contentType, body string, header ...string) *httptest.ResponseRecorder {
	mux := http.NewServeMux()
	mux.Handle("PATCH /messages/{id}", HandleEdit(cfg))
	mux.Handle("DELETE /messages/{id}", HandleDelete(cfg))
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType == "" {
		contentType = "application/json"
	}
	req.Header.Set("Content-Type", contentType)
	if who != "" {
		req.Header.Set("X-Who", who)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	return rec
}

// TestEdit checks PATCH /messages/{id}: the author's edit answered with
// the message as edited, and every refusal with its status and message
// before anything is stored.
func TestEdit(t *testing.T) {
	room := newLogRoom()
	mine := room.post(t, "A", "helo")
	anon := room.post(t, "", "nobody's")
	cfg := testConfig(room)
	for _, tt := range []struct {
		name, id, who, contentType, body string
		header                           []string
		status                           int
		msg                              string
	}{
		{"malformed id", "x", "A", "", `{"content":"x"}`, nil, 400, "is not of the form"},
		{"without identity", mine, "", "", `{"content":"x"}`, nil, 403, notYoursEdit},
		{"by another", mine, "B", "", `{"content":"x"}`, nil, 403, notYoursEdit},
		{"of a message posted without identity", anon, "A", "", `{"content":"x"}`, nil, 403, notYoursEdit},
		{"by a moderator", mine, "", "", `{"content":"x"}`, []string{"Authorization", "Bearer boss"}, 403, notYoursEdit},
		{"unknown id", "7-99", "A", "", `{"content":"x"}`, nil, 404, "no such message: 7-99"},
		{"form", mine, "A", "application/x-www-form-urlencoded", `content=x`, nil, 415, "Content-Type must be application/json"},
		{"empty body", mine, "A", "", ``, nil, 400, `send {"content": "..."}`},
		{"not JSON", mine, "A", "", `content`, nil, 400, "JSON"},
		{"unknown field", mine, "A", "", `{"content":"x","username":"eve"}`, nil, 400, `unknown field "username"`},
		{"blank content", mine, "A", "", `{"content":"  "}`, nil, 400, "content is required"},
		{"long content", mine, "A", "", `{"content":"` + strings.Repeat("x", 21) + `"}`, nil, 400, "longer than 20"},
		{"invisible content", mine, "A", "", `{"content":"\u200b"}`, nil, 400, "visible"},
		{"from a banned address", mine, "A", "", `{"content":"x"}`, []string{"X-Test-Banned", "yes"}, 403, bannedMsg},
	} {
		rec := call(cfg, "PATCH", "/messages/"+tt.id, tt.who, tt.contentType, tt.body, tt.header...)
		var e struct{ Error string }
		if rec.Code != tt.status || json.Unmarshal(rec.Body.Bytes(), &e) != nil || !strings.Contains(e.Error, tt.msg) {
			t.Errorf("PATCH %s: %d %s, want %d with %q", tt.name, rec.Code, rec.Body, tt.status, tt.msg)
		}
	}
	page, _ := room.log.Page(roomlog.Query{Limit: 10})
	if len(page.Msgs) != 2 || strings.Contains(string(page.Msgs[0]), `"edited"`) {
		t.Fatalf("after refused edits, history holds %q", page.Msgs)
	}
	rec := call(cfg, "PATCH", "/messages/"+mine, "A", "application/json; charset=utf-8", `{"content":" hello\r\nthere "}`)
	var m roomlog.Message
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &m) != nil || m.ID != mine || m.Content != "hello\nthere" || m.Edited.IsZero() {
		t.Errorf("PATCH by the author: %d %s, want 200 with the edited message", rec.Code, rec.Body)
	}
}

// TestEditWindowAndRate checks, on a fake clock, that an edit after
// roomlog.EditWindow is refused with its own message, and that edits draw
// on the address's post rate.
func TestEditWindowAndRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		room := newLogRoom()
		id := room.post(t, "A", "v1")
		cfg := testConfig(room)
		cfg.Rate = limit.New(1, 2)
		for i, want := range []int{200, 200, 429} {
			if rec := call(cfg, "PATCH", "/messages/"+id, "A", "", `{"content":"v2"}`); rec.Code != want {
				t.Errorf("edit %d at once: %d %s, want %d", i, rec.Code, rec.Body, want)
			}
		}
		time.Sleep(roomlog.EditWindow)
		rec := call(cfg, "PATCH", "/messages/"+id, "A", "", `{"content":"v3"}`)
		if rec.Code != 403 || !strings.Contains(rec.Body.String(), tooLate) {
			t.Errorf("edit after the window: %d %s, want 403 %q", rec.Code, rec.Body, tooLate)
		}
	})
}

// TestDelete checks DELETE /messages/{id}: authors delete their own
// messages, moderators any; everyone else, and a banned author, is
// refused; wrong credentials are answered by the gate.
func TestDelete(t *testing.T) {
	room := newLogRoom()
	mine := room.post(t, "A", "mine")
	other := room.post(t, "B", "his")
	cfg := testConfig(room)
	for _, tt := range []struct {
		name   string
		id     string
		who    string
		header []string
		status int
		msg    string
	}{
		{"malformed id", "1-", "A", nil, 400, "is not of the form"},
		{"without identity", mine, "", nil, 403, notYoursDelete},
		{"by another", mine, "B", nil, 403, notYoursDelete},
		{"unknown id", "7-99", "A", nil, 404, "no such message"},
		{"with a wrong key", mine, "A", []string{"Authorization", "Bearer nope"}, 401, ""},
		{"by its banned author", mine, "A", []string{"X-Test-Banned", "yes"}, 403, bannedMsg},
		{"by its author", mine, "A", nil, 200, ""},
		{"again", mine, "A", nil, 404, "no such message"},
		{"by a banned moderator", other, "", []string{"Authorization", "Bearer boss", "X-Test-Banned", "yes"}, 200, ""},
	} {
		rec := call(cfg, "DELETE", "/messages/"+tt.id, tt.who, "", "", tt.header...)
		if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.msg) {
			t.Errorf("DELETE %s: %d %s, want %d with %q", tt.name, rec.Code, rec.Body, tt.status, tt.msg)
		}
		if tt.status == 200 {
			var d roomlog.Deletion
			if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil || d.Delete != tt.id || d.ID == "" {
				t.Errorf("DELETE %s answered %s, want the deletion of %s", tt.name, rec.Body, tt.id)
			}
		}
	}
}
