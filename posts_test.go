package main

// Tests of POST /post: what is accepted and how it is cleaned, every bad
// request refused with a status and a JSON error and nothing stored, the
// strict JSON keys, the rules for names and contents, cross-site posts, and
// bodies cut short.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"chat/internal/httpx"
	"chat/internal/roomlog"
)

func TestBadRequests(t *testing.T) {
	ts := startServer(t, "-max-content", "20", "-max-body", "256")
	long := strings.Repeat("a", 300)
	tests := []struct {
		name, method, path, contentType, body string
		header                                map[string]string
		status                                int
		errContains                           string
	}{
		{"malformed JSON", "POST", "/post", "application/json", `{"username":`, nil, 400, "malformed JSON"},
		{"not JSON", "POST", "/post", "application/json", `hello`, nil, 400, "malformed JSON"},
		{"JSON array", "POST", "/post", "application/json", `[]`, nil, 400, "JSON object"},
		{"wrong type", "POST", "/post", "application/json", `{"username":"a","content":5}`, nil, 400, "content must be a string"},
		{"unknown field", "POST", "/post", "application/json", `{"username":"a","content":"b","id":"1-1"}`, nil, 400, "unknown field"},
		{"two objects", "POST", "/post", "application/json", `{"username":"a","content":"b"}{}`, nil, 400, "single JSON object"},
		{"empty body", "POST", "/post", "application/json", ``, nil, 400, "body is empty"},
		{"missing username", "POST", "/post", "application/json", `{"content":"b"}`, nil, 400, "username is required"},
		{"blank username", "POST", "/post", "application/json", `{"username":" \t ","content":"b"}`, nil, 400, "username is required"},
		{"blank content", "POST", "/post", "application/json", `{"username":"a","content":"\n  "}`, nil, 400, "content is required"},
		{"null content", "POST", "/post", "application/json", `{"username":"a","content":null}`, nil, 400, "content is required"},
		{"long username", "POST", "/post", "application/json", `{"username":"` + strings.Repeat("é", 33) + `","content":"b"}`, nil, 400, "longer than 32"},
		{"long content", "POST", "/post", "application/json", `{"username":"a","content":"` + strings.Repeat("ü", 21) + `"}`, nil, 400, "longer than 20"},
		{"control char", "POST", "/post", "application/json", `{"username":"a","content":"bell\u0007"}`, nil, 400, "control characters"},
		{"escape char", "POST", "/post", "application/json", `{"username":"a","content":"\u001b[31mred"}`, nil, 400, "control characters"},
		{"control in name", "POST", "/post", "application/json", `{"username":"a\tb","content":"c"}`, nil, 400, "username must not contain"},
		{"invalid UTF-8", "POST", "/post", "application/json", "{\"username\":\"a\",\"content\":\"\xff\xfe\"}", nil, 400, "UTF-8"},
		{"invalid UTF-8 form", "POST", "/post", "application/x-www-form-urlencoded", "username=a&content=%ff", nil, 400, "UTF-8"},
		{"form unknown field", "POST", "/post", "application/x-www-form-urlencoded", "username=a&content=b&x=1", nil, 400, "unknown field"},
		{"form repeated field", "POST", "/post", "application/x-www-form-urlencoded", "username=a&content=b&content=c", nil, 400, "more than once"},
		{"malformed form", "POST", "/post", "application/x-www-form-urlencoded", "username=a&content=%zz", nil, 400, "malformed form"},
		{"body too large", "POST", "/post", "application/json", `{"username":"a","content":"` + long + `"}`, nil, 413, "larger than 256 bytes"},
		{"text/plain", "POST", "/post", "text/plain", `hi`, nil, 415, "Content-Type must be"},
		{"no content type", "POST", "/post", "", `{"username":"a","content":"b"}`, nil, 415, "Content-Type must be"},
		{"other charset", "POST", "/post", "application/json; charset=latin1", `{"username":"a","content":"b"}`, nil, 415, "charset"},
		{"GET /post", "GET", "/post", "", ``, nil, 405, "use POST"},
		{"POST /stream", "POST", "/stream", "", ``, nil, 405, "use GET"},
		{"DELETE /stats", "DELETE", "/stats", "", ``, nil, 405, "use GET"},
		{"POST /", "POST", "/", "", ``, nil, 405, "use GET"},
		{"unknown path", "GET", "/nope", "", ``, nil, 404, "no such endpoint"},
		{"bad Last-Event-ID", "GET", "/stream", "", ``, map[string]string{"Last-Event-ID": "abc"}, 400, "invalid Last-Event-ID"},
		{"negative Last-Event-ID", "GET", "/stream", "", ``, map[string]string{"Last-Event-ID": "-5"}, 400, "invalid Last-Event-ID"},
		{"huge Last-Event-ID", "GET", "/stream", "", ``, map[string]string{"Last-Event-ID": "1-" + strings.Repeat("9", 400)}, 400, "invalid Last-Event-ID"},
		{"bad lastEventId query", "GET", "/stream?lastEventId=1-x", "", ``, nil, 400, "invalid Last-Event-ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, ts.URL+tt.path, strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body errorBody
			derr := json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tt.status || derr != nil || !strings.Contains(body.Error, tt.errContains) {
				t.Errorf("%s %s %q: status %d, error %q (%v); want %d with %q", tt.method, tt.path, httpx.Truncate(tt.body, 60), resp.StatusCode, body.Error, derr, tt.status, tt.errContains)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if tt.status == 405 && resp.Header.Get("Allow") == "" {
				t.Errorf("405 without Allow header")
			}
		})
	}
	// Nothing rejected was stored or counted as posted.
	st := ts.stats(t)
	if st.MessagesPosted != 0 || st.HistorySize != 0 {
		t.Errorf("after bad requests: %d posted, history %d; want 0", st.MessagesPosted, st.HistorySize)
	}
	if st.PostsRejected < 20 {
		t.Errorf("posts_rejected = %d, want at least 20", st.PostsRejected)
	}
}

func TestGoodPosts(t *testing.T) {
	ts := startServer(t)
	tests := []struct {
		name, contentType, body string
		want                    postInput
	}{
		{"json", "application/json", `{"username":"alice","content":"hi"}`, postInput{"alice", "hi"}},
		{"json with charset", "application/json; charset=UTF-8", `{"username":"alice","content":"hi"}`, postInput{"alice", "hi"}},
		{"form", "application/x-www-form-urlencoded", "username=bob&content=hello+there", postInput{"bob", "hello there"}},
		{"trimmed", "application/json", `{"username":"  carol ","content":"\n  text\t \n"}`, postInput{"carol", "text"}},
		{"CRLF normalised", "application/json", `{"username":"d","content":"a\r\nb\rc"}`, postInput{"d", "a\nb\nc"}},
		{"tabs and emoji kept", "application/json", `{"username":"😀","content":"a\tb 👋🏽 שלום"}`, postInput{"😀", "a\tb 👋🏽 שלום"}},
		{"html kept as text", "application/json", `{"username":"<b>","content":"<script>alert(1)</script>"}`, postInput{"<b>", "<script>alert(1)</script>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(ts.URL+"/post", tt.contentType, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var m Message
			_ = json.NewDecoder(resp.Body).Decode(&m)
			if resp.StatusCode != http.StatusCreated || m.Username != tt.want.Username || m.Content != tt.want.Content {
				t.Errorf("POST %q: %d %+v, want 201 with %+v", tt.body, resp.StatusCode, m, tt.want)
			}
			if time.Since(m.Time) > time.Minute || m.Time.Nanosecond() == 0 && m.Time.IsZero() {
				t.Errorf("time %v not set by the server", m.Time)
			}
		})
	}
}

// TestStrictJSON checks the strict JSON decoder: keys must match a field
// name exactly and appear once, as in the form path; nothing is stored.
func TestStrictJSON(t *testing.T) {
	ts := startServer(t)
	tests := []struct {
		name, body, want string
	}{
		{"upper-case keys", `{"USERNAME":"alice","CoNtEnT":"x"}`, `unknown field "USERNAME"`},
		{"one key in another case", `{"username":"alice","Content":"x"}`, `unknown field "Content"`},
		{"repeated username", `{"username":"a","username":"b","content":"x"}`, `field "username" given more than once`},
		{"repeated content", `{"username":"a","content":"x","content":"y"}`, `field "content" given more than once`},
		{"repeated, other case", `{"username":"a","content":"x","CONTENT":"y"}`, `unknown field "CONTENT"`},
		{"unknown field", `{"username":"a","content":"x","id":"1-1"}`, `unknown field "id"`},
		{"wrong type still named", `{"username":"a","content":5}`, "content must be a string"},
		{"not an object", `["username"]`, "body must be a JSON object"},
		{"two objects", `{"username":"a","content":"x"}{}`, "single JSON object"},
	}
	before := ts.stats(t).MessagesPosted
	for _, tt := range tests {
		r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/post", "application/json", tt.body, nil)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(), tt.want) {
			t.Errorf("%s: POST %s: status %d, body %s; want 400 with %q", tt.name, tt.body, r.status, r.body, tt.want)
		}
	}
	if got := ts.stats(t).MessagesPosted; got != before {
		t.Errorf("messages_posted went from %d to %d; refused posts must not be stored", before, got)
	}
	// Exact keys, in any order, with nested values to skip, still pass.
	r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/post", "application/json", `{"content":"hi","username":"alice"}`, nil)
	if r.status != http.StatusCreated {
		t.Errorf("exact keys: status %d, body %s", r.status, r.body)
	}
}

// TestNameAndContentRules checks that names with bidirectional controls or
// zero-width characters, and messages with nothing visible, are refused
// with a clear 400 and never stored or sent, by JSON and by form.
func TestNameAndContentRules(t *testing.T) {
	ts := startServer(t)
	sub := subscribe(t, ts.URL, "")
	defer sub.close()
	tests := []struct {
		name, username, content, want string
	}{
		{"right-to-left override", "\u202eecila", "hi", "username must not contain bidirectional control characters (found U+202E)"},
		{"isolate", "bob\u2067", "hi", "U+2067"},
		{"right-to-left mark", "\u200fbob", "hi", "U+200F"},
		{"arabic letter mark", "bob\u061c", "hi", "U+061C"},
		{"zero-width space alone", "\u200b", "\u2800", "username must not contain zero-width characters (found U+200B)"},
		{"zero-width joiner", "ali\u200dce", "hi", "U+200D"},
		{"word joiner", "ali\u2060ce", "hi", "U+2060"},
		{"byte order mark", "\ufeffalice", "hi", "U+FEFF"},
		{"Hangul filler name", "\u3164", "hi", "username must contain at least one visible character"},
		{"braille blank content", "alice", "\u2800\u2800", "content must contain at least one visible character"},
		{"Hangul fillers content", "alice", "\u115f\u1160\u3164\uffa0", "content must contain at least one visible character"},
		{"format characters only", "alice", "\u200b\u200d\u2060\ufeff", "content must contain at least one visible character"},
		{"spaces and marks", "alice", "\u00a0\u3000\u0301", "content must contain at least one visible character"},
	}
	before := ts.stats(t).MessagesPosted
	for _, tt := range tests {
		r := postMsg(t, http.DefaultClient, ts.URL, tt.username, tt.content, nil)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(), tt.want) {
			t.Errorf("%s (JSON): status %d, body %s; want 400 with %q", tt.name, r.status, r.body, tt.want)
		}
		form := "username=" + urlEscape(tt.username) + "&content=" + urlEscape(tt.content)
		r = mustSend(t, http.DefaultClient, "POST", ts.URL+"/post", "application/x-www-form-urlencoded", form, nil)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(), tt.want) {
			t.Errorf("%s (form): status %d, body %s; want 400 with %q", tt.name, r.status, r.body, tt.want)
		}
	}
	if got := ts.stats(t).MessagesPosted; got != before {
		t.Errorf("messages_posted went from %d to %d; refused posts must not be stored", before, got)
	}
	// What people write still passes, bidi text in messages included.
	for _, m := range [][2]string{{"Zoë", "مرحبا \u202bبالعالم\u202c"}, {"王小明", "你好"}, {"dan 😀", "👍"}, {"eve", "a\u2800b"}} {
		if r := postMsg(t, http.DefaultClient, ts.URL, m[0], m[1], nil); r.status != http.StatusCreated {
			t.Errorf("post %+q: status %d, body %s", m, r.status, r.body)
		}
	}
	msgs, _ := sub.messages(t, 4)
	if msgs[0].Username != "Zoë" {
		t.Errorf("first message on the stream is %+v; a refused post was sent out", msgs[0])
	}
}

// urlEscape form-encodes s.
func urlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// TestCrossSitePost checks that browsers' cross-site POSTs (by fetch
// metadata or by Origin) are refused with a JSON 403 and store nothing,
// while curl-like and same-origin requests pass.
func TestCrossSitePost(t *testing.T) {
	ts := startServer(t)
	const jsonBody, formBody = `{"username":"x","content":"y"}`, "username=x&content=y"
	tests := []struct {
		name, contentType, body string
		header                  map[string]string
		want                    int
	}{
		{"curl-like", "application/json", jsonBody, nil, 201},
		{"curl-like form", "application/x-www-form-urlencoded", formBody, nil, 201},
		{"same-origin fetch", "application/json", jsonBody, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": ts.URL}, 201},
		{"same-origin metadata only", "application/json", jsonBody, map[string]string{"Sec-Fetch-Site": "same-origin"}, 201},
		{"old browser, same Origin", "application/json", jsonBody, map[string]string{"Origin": ts.URL}, 201},
		{"cross-site fetch", "application/json", jsonBody, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403},
		{"cross-site metadata only", "application/json", jsonBody, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"cross-site form", "application/x-www-form-urlencoded", formBody, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403},
		{"same-site is another origin", "application/json", jsonBody, map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://sub.127.0.0.1"}, 403},
		{"old browser, other Origin", "application/json", jsonBody, map[string]string{"Origin": "https://evil.example"}, 403},
		{"old browser, other port", "application/x-www-form-urlencoded", formBody, map[string]string{"Origin": "http://127.0.0.1:1"}, 403},
		{"old browser, null Origin", "application/x-www-form-urlencoded", formBody, map[string]string{"Origin": "null"}, 403},
	}
	var created, refused uint64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/post", tt.contentType, tt.body, tt.header)
			if r.status != tt.want {
				t.Fatalf("POST with %v: status %d %s, want %d", tt.header, r.status, r.body, tt.want)
			}
			if r.status == http.StatusCreated {
				created++
				return
			}
			refused++
			if r.errorText() == "" || r.header.Get("Content-Type") != "application/json" {
				t.Errorf("403 with Content-Type %q, body %s; want a JSON error", r.header.Get("Content-Type"), r.body)
			}
		})
	}
	st := ts.stats(t)
	if st.MessagesPosted != created {
		t.Errorf("messages_posted = %d, want %d: a refused post was stored", st.MessagesPosted, created)
	}
	t.Run("counted in posts_rejected", func(t *testing.T) {
		if st.PostsRejected != refused {
			t.Errorf("posts_rejected = %d after %d cross-site posts were refused, want %d", st.PostsRejected, refused, refused)
		}
	})
}

// TestAbortedBodyIsNot413 sends every endpoint that takes a body a request
// whose client stops after part of the body: each answers 400 (the body
// could not be read), not 413 (the body is not too large), and nothing is
// stored.
func TestAbortedBodyIsNot413(t *testing.T) {
	ts := startServer(t, "-admin-key", "boss")
	for _, path := range []string{"/bans", "/post", "/typing", "/login"} {
		conn, err := dialRaw(ts.addr(), "", "POST "+path+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer boss\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"addr\":")
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(waitTimeout))
		_ = conn.(*net.TCPConn).CloseWrite()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "could not read body") {
			t.Errorf("POST %s with an aborted body: %d %s, want 400", path, resp.StatusCode, body)
		}
	}
	if list := mustSend(t, http.DefaultClient, "GET", ts.URL+"/bans", "", "", admin()); strings.TrimSpace(string(list.body)) != `{"bans":[]}` {
		t.Errorf("bans after aborted requests: %s", list.body)
	}
	if hist := historyIDs(t, ts.URL, nil); len(hist) != 0 {
		t.Errorf("history after aborted posts: %v", hist)
	}
}

func FuzzParsePost(f *testing.F) {
	f.Add("application/json", []byte(`{"username":"a","content":"b"}`))
	f.Add("application/json", []byte(`{"username":"a","content":"b\u0000"}`))
	f.Add("application/json; charset=utf-8", []byte(`{"username":" ","content":"x"}`))
	f.Add("application/x-www-form-urlencoded", []byte("username=a&content=b"))
	f.Add("application/x-www-form-urlencoded", []byte("username=%ff&content=%0d%0a"))
	f.Add("text/plain", []byte("hi"))
	f.Add("application/json", []byte("{\"username\":\"a\",\"content\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		in, err := parsePost(contentType, body, 2000)
		if err != nil {
			if err.Status != 400 && err.Status != 415 || err.Msg == "" {
				t.Fatalf("parsePost(%q, %q): status %d message %q", contentType, body, err.Status, err.Msg)
			}
			return
		}
		// Whatever is accepted is clean and fits in one SSE data line.
		if in.Username == "" || in.Content == "" || strings.ContainsAny(in.Content, "\r\x00") {
			t.Fatalf("parsePost(%q, %q) accepted %+v", contentType, body, in)
		}
		ev := roomlog.AppendMessageEvent(nil, Message{ID: "1-1", Username: in.Username, Content: in.Content})
		if bytes.Count(ev, []byte("\n")) != 3 {
			t.Fatalf("encoded event %q is not one id line, one data line and a blank line", ev)
		}
	})
}
