package httpx

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// message is a body with two string fields.
type message struct {
	Username string `json:"username"`
	Content  string `json:"content"`
}

// TestDecode checks media types, encodings and the strict decoding of JSON
// and form bodies, against hostile input.
func TestDecode(t *testing.T) {
	b := Body{Types: []string{JSON, Form}}
	tests := []struct {
		name, contentType, body string
		status                  int    // 0: accepted
		msg                     string // part of the error message
		want                    message
	}{
		{"json", "application/json", `{"username":"a","content":"b"}`, 0, "", message{"a", "b"}},
		{"json charset", "application/json; charset=UTF-8", `{"username":"a"}`, 0, "", message{Username: "a"}},
		{"json spaces around", "application/json", " \n{\"content\":\"x\"}\n ", 0, "", message{Content: "x"}},
		{"form", "application/x-www-form-urlencoded", "username=a%20b&content=%E2%9C%93", 0, "", message{"a b", "✓"}},
		{"form empty", "application/x-www-form-urlencoded", "", 0, "", message{}},
		{"no content type", "", `{}`, 415, "Content-Type must be application/json or application/x-www-form-urlencoded", message{}},
		{"text/plain", "text/plain", `hi`, 415, "Content-Type must be", message{}},
		{"malformed content type", "application/json; =x", `{}`, 415, "malformed Content-Type", message{}},
		{"latin1", "application/json; charset=latin1", `{}`, 415, "charset must be utf-8", message{}},
		{"json not UTF-8", "application/json", "{\"username\":\"\xff\"}", 400, "not valid UTF-8", message{}},
		{"json empty", "application/json", "", 400, "body is empty; send a JSON object", message{}},
		{"json blank", "application/json", " \r\n", 400, "body is empty", message{}},
		{"json upper-case key", "application/json", `{"USERNAME":"a"}`, 400, `unknown field "USERNAME"`, message{}},
		{"json unknown key", "application/json", `{"username":"a","id":"1-1"}`, 400, `unknown field "id"`, message{}},
		{"json repeated key", "application/json", `{"username":"a","username":"b"}`, 400, `field "username" given more than once`, message{}},
		{"json long unknown key", "application/json", `{"` + strings.Repeat("k", 100) + `":1}`, 400, `unknown field "` + strings.Repeat("k", 40) + `…"`, message{}},
		{"json wrong type", "application/json", `{"username":5}`, 400, "username must be a string", message{}},
		{"json array", "application/json", `["username"]`, 400, "body must be a JSON object", message{}},
		{"json string", "application/json", `"x"`, 400, "body must be a JSON object", message{}},
		{"json null", "application/json", `null`, 0, "", message{}},
		{"json two objects", "application/json", `{"username":"a"}{}`, 400, "single JSON object", message{}},
		{"json trailing garbage", "application/json", `{"username":"a"} x`, 400, "single JSON object", message{}},
		{"json truncated", "application/json", `{"username":`, 400, "malformed JSON", message{}},
		{"json syntax", "application/json", `{"username" "a"}`, 400, "malformed JSON at byte", message{}},
		{"form unknown field", "application/x-www-form-urlencoded", "username=a&x=1", 400, `unknown field "x"`, message{}},
		{"form case", "application/x-www-form-urlencoded", "Username=a", 400, `unknown field "Username"`, message{}},
		{"form repeated", "application/x-www-form-urlencoded", "username=a&username=b", 400, `field "username" given more than once`, message{}},
		{"form not UTF-8", "application/x-www-form-urlencoded", "username=%FF", 400, "not valid UTF-8", message{}},
		{"form malformed", "application/x-www-form-urlencoded", "username=%zz", 400, "malformed form body", message{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got message
			e := b.Decode(tt.contentType, []byte(tt.body), &got)
			switch {
			case tt.status == 0 && e != nil:
				t.Fatalf("Decode(%q, %q) = %d %q, want it accepted", tt.contentType, tt.body, e.Status, e.Msg)
			case tt.status == 0 && got != tt.want:
				t.Errorf("Decode(%q, %q) = %+v, want %+v", tt.contentType, tt.body, got, tt.want)
			case tt.status != 0 && e == nil:
				t.Fatalf("Decode(%q, %q) accepted %+v", tt.contentType, tt.body, got)
			case tt.status != 0 && (e.Status != tt.status || !strings.Contains(e.Msg, tt.msg)):
				t.Errorf("Decode(%q, %q) = %d %q, want %d with %q", tt.contentType, tt.body, e.Status, e.Msg, tt.status, tt.msg)
			}
		})
	}
}

// TestDecodeJSONOnly checks an endpoint that takes JSON alone, and the
// example an empty body is told to send.
func TestDecodeJSONOnly(t *testing.T) {
	b := Body{Types: []string{JSON}, Example: `{"key": "..."}`}
	var v struct {
		Key string `json:"key"`
	}
	if e := b.Decode("application/x-www-form-urlencoded", []byte("key=a"), &v); e == nil || e.Status != 415 || e.Msg != "Content-Type must be application/json" {
		t.Errorf("form to a JSON endpoint: %v", e)
	}
	if e := b.Decode("application/json", nil, &v); e == nil || e.Msg != `body is empty; send {"key": "..."}` {
		t.Errorf("empty body: %v", e)
	}
}

// TestDecodeFieldNames checks which names a struct's fields go by: the
// json tag, or the Go name without one; unexported and "-" fields take
// nothing.
func TestDecodeFieldNames(t *testing.T) {
	type fields struct {
		Tagged  string `json:"tagged,omitempty"`
		Plain   string
		Skipped string `json:"-"`
		hidden  string
		Number  int `json:"number"`
	}
	tests := []struct {
		body   string
		status int
	}{
		{`{"tagged":"a","Plain":"b","number":3}`, 0},
		{`{"Tagged":"a"}`, 400},
		{`{"plain":"a"}`, 400},
		{`{"Skipped":"a"}`, 400},
		{`{"-":"a"}`, 400},
		{`{"hidden":"a"}`, 400},
		{`{"number":"3"}`, 400},
	}
	for _, tt := range tests {
		var v fields
		e := DecodeJSON([]byte(tt.body), &v, "")
		if (e == nil) != (tt.status == 0) || e != nil && e.Status != tt.status {
			t.Errorf("DecodeJSON(%q) = %v, want status %d", tt.body, e, tt.status)
		}
	}
	var v fields
	if e := DecodeForm([]byte("tagged=a&Plain=b"), &v); e != nil || v.Tagged != "a" || v.Plain != "b" || v.hidden != "" {
		t.Errorf("DecodeForm = %+v, %v", v, e)
	}
	if e := DecodeForm([]byte("number=3"), &v); e == nil || e.Status != 400 {
		t.Errorf("a form into a number field: %v, want 400", e)
	}
}

// FuzzDecode checks that no body makes the decoder panic or accept
// something other than what it says.
func FuzzDecode(f *testing.F) {
	f.Add("application/json", []byte(`{"username":"a","content":"b"}`))
	f.Add("application/json", []byte(`{"username":"a","username":"b"}`))
	f.Add("application/x-www-form-urlencoded", []byte("username=a&content=%ff"))
	f.Add("text/plain", []byte("x"))
	b := Body{Types: []string{JSON, Form}}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		var m message
		e := b.Decode(contentType, body, &m)
		if e != nil {
			if e.Status != 400 && e.Status != 415 || e.Msg == "" {
				t.Fatalf("Decode(%q, %q) = %d %q", contentType, body, e.Status, e.Msg)
			}
			return
		}
		if !utf8.ValidString(m.Username) || !utf8.ValidString(m.Content) {
			t.Fatalf("Decode(%q, %q) accepted invalid UTF-8: %+v", contentType, body, m)
		}
	})
}
