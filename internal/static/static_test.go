package static

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// testFiles is a small site: a page at the top and its assets under web/.
var testFiles = fstest.MapFS{
	"index.html":     {Data: []byte("<!doctype html><title>t</title>\n")},
	"web/app.css":    {Data: []byte("body { margin: 0 }\n")},
	"web/main.js":    {Data: []byte("import './util.js';\n")},
	"web/util.js":    {Data: []byte("export const x = 1;\n")},
	"web/sub/a.json": {Data: []byte(`{"a":1}`)},
}

// testHeader is what every served file carries besides its own headers.
var testHeader = http.Header{"Content-Security-Policy": {"default-src 'none'"}}

// newTestSet loads testFiles and returns it with a handler that routes as
// the server does: the page at "/", its assets under "/web/".
func newTestSet(t *testing.T) (*Set, http.Handler) {
	t.Helper()
	s, err := Load(testFiles, testHeader)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", s.File("index.html"))
	mux.Handle("GET /web/{file...}", s.Dir("/web/"))
	return s, mux
}

// etagOf is the ETag the package must give body: the first 16 bytes of
// its SHA-256, in hex, quoted.
func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// do sends a request to h with the given If-None-Match lines.
func do(h http.Handler, method, target string, inm ...string) *http.Response {
	r := httptest.NewRequest(method, target, nil)
	for _, v := range inm {
		r.Header.Add("If-None-Match", v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func TestLoadTypesAndETags(t *testing.T) {
	s, err := Load(testFiles, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range s.files {
		names = append(names, name)
	}
	slices.Sort(names)
	if want := []string{"index.html", "web/app.css", "web/main.js", "web/sub/a.json", "web/util.js"}; !slices.Equal(names, want) {
		t.Errorf("Names() = %q, want %q", names, want)
	}
	for _, tt := range []struct{ name, ctype string }{
		{"index.html", "text/html; charset=utf-8"},
		{"web/app.css", "text/css; charset=utf-8"},
		{"web/main.js", "text/javascript; charset=utf-8"},
		{"web/sub/a.json", "application/json"},
	} {
		f := s.files[tt.name]
		if f.contentType != tt.ctype {
			t.Errorf("%s: type %q, want %q", tt.name, f.contentType, tt.ctype)
		}
		if want := etagOf(testFiles[tt.name].Data); f.etag != want || f.length != strconv.Itoa(len(testFiles[tt.name].Data)) {
			t.Errorf("%s: ETag %s, length %s; want %s, %d", tt.name, f.etag, f.length, want, len(testFiles[tt.name].Data))
		}
	}
	if s.files["web/main.js"].etag == s.files["web/util.js"].etag {
		t.Error("two different files share an ETag")
	}
}

func TestLoadRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		fsys fs.FS
		want string
	}{
		{"unknown extension", fstest.MapFS{"web/app.exe": {Data: []byte("MZ")}}, `no media type for ".exe"`},
		{"no extension", fstest.MapFS{"web/README": {Data: []byte("hi")}}, `no media type for ""`},
		{"symlink", fstest.MapFS{"web/link.js": {Data: []byte("x"), Mode: fs.ModeSymlink}}, "not a regular file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Load(tt.fsys, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, %v; want an error containing %q", s, err, tt.want)
			}
		})
	}
}

func TestServeFile(t *testing.T) {
	_, h := newTestSet(t)
	for _, tt := range []struct{ target, name, ctype string }{
		{"/", "index.html", "text/html; charset=utf-8"},
		{"/web/app.css", "web/app.css", "text/css; charset=utf-8"},
		{"/web/main.js", "web/main.js", "text/javascript; charset=utf-8"},
		{"/web/sub/a.json", "web/sub/a.json", "application/json"},
	} {
		t.Run(tt.target, func(t *testing.T) {
			body := testFiles[tt.name].Data
			for _, method := range []string{"GET", "HEAD"} {
				res := do(h, method, tt.target)
				got, _ := io.ReadAll(res.Body)
				want := map[string]string{
					"Content-Type":            tt.ctype,
					"Content-Length":          strconv.Itoa(len(body)),
					"ETag":                    etagOf(body),
					"Cache-Control":           "no-cache",
					"Content-Security-Policy": "default-src 'none'",
				}
				if res.StatusCode != 200 {
					t.Fatalf("%s %s: status %d, want 200", method, tt.target, res.StatusCode)
				}
				for k, v := range want {
					if res.Header.Get(k) != v {
						t.Errorf("%s %s: %s = %q, want %q", method, tt.target, k, res.Header.Get(k), v)
					}
				}
				wantBody := string(body)
				if method == "HEAD" {
					wantBody = ""
				}
				if string(got) != wantBody {
					t.Errorf("%s %s: body %q, want %q", method, tt.target, got, wantBody)
				}
			}
		})
	}
}

func TestServeNotModified(t *testing.T) {
	_, h := newTestSet(t)
	tag := etagOf(testFiles["web/app.css"].Data)
	opaque := strings.Trim(tag, `"`)
	for _, tt := range []struct {
		name string
		inm  []string
		want int
	}{
		{"no validator", nil, 200},
		{"its ETag", []string{tag}, 304},
		{"its ETag, weak", []string{"W/" + tag}, 304},
		{"star", []string{"*"}, 304},
		{"star with spaces", []string{"  * "}, 304},
		{"in a list", []string{`"a", W/"b",` + tag}, 304},
		{"in a list without spaces", []string{`"a",` + tag + `,"c"`}, 304},
		{"on a second field line", []string{`"a"`, tag}, 304},
		{"another ETag", []string{`"0123456789abcdef0123456789abcdef"`}, 200},
		{"another file's ETag", []string{etagOf(testFiles["web/main.js"].Data)}, 200},
		{"unquoted", []string{opaque}, 200},
		{"unterminated", []string{`"` + opaque}, 200},
		{"after a malformed tag", []string{`bad, ` + tag}, 200},
		{"star glued to text", []string{"*x"}, 200},
		{"empty", []string{""}, 200},
		{"only commas", []string{" , ,"}, 200},
		{"lower-case weak prefix", []string{"w/" + tag}, 200},
		{"ETag with a prefix of its own", []string{`"x` + opaque + `"`}, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, method := range []string{"GET", "HEAD"} {
				res := do(h, method, "/web/app.css", tt.inm...)
				body, _ := io.ReadAll(res.Body)
				if res.StatusCode != tt.want {
					t.Fatalf("%s with If-None-Match %q: status %d, want %d", method, tt.inm, res.StatusCode, tt.want)
				}
				if res.Header.Get("ETag") != tag || res.Header.Get("Cache-Control") != "no-cache" ||
					res.Header.Get("Content-Security-Policy") != "default-src 'none'" {
					t.Errorf("%s: headers %v lack the ETag, Cache-Control or the set's header", method, res.Header)
				}
				if tt.want != 304 {
					continue
				}
				if len(body) != 0 || res.Header.Get("Content-Type") != "" || res.Header.Get("Content-Length") != "" {
					t.Errorf("%s: 304 with body %q, Content-Type %q, Content-Length %q; want none",
						method, body, res.Header.Get("Content-Type"), res.Header.Get("Content-Length"))
				}
			}
		})
	}
}

func TestServeUnknownPaths(t *testing.T) {
	_, h := newTestSet(t)
	for _, tt := range []struct{ name, method, target string }{
		{"unknown file", "GET", "/web/nope.js"},
		{"unknown file, HEAD", "HEAD", "/web/nope.js"},
		{"the directory itself", "GET", "/web/"},
		{"a subdirectory", "GET", "/web/sub"},
		{"a subdirectory with a slash", "GET", "/web/sub/"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkJSONError(t, do(h, tt.method, tt.target), 404)
		})
	}
}

// TestServeOtherMethods calls the handlers straight, as a router that
// routes every method to them would.
func TestServeOtherMethods(t *testing.T) {
	s, _ := newTestSet(t)
	for _, tt := range []struct {
		name, method, target string
		h                    http.Handler
	}{
		{"POST an asset", "POST", "/web/app.css", s.Dir("/web/")},
		{"DELETE the page", "DELETE", "/", s.File("index.html")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := do(tt.h, tt.method, tt.target)
			checkJSONError(t, res, 405)
			if res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q, want %q", res.Header.Get("Allow"), "GET, HEAD")
			}
		})
	}
}

// TestServeNoWayOut calls Dir's handler with paths that a router might
// pass through unchanged: none reaches a file outside the prefix, or a
// file of the set by an unclean path.
func TestServeNoWayOut(t *testing.T) {
	s, _ := newTestSet(t)
	h := s.Dir("/web/")
	for _, p := range []string{
		"/web/../index.html",
		"/web/sub/../app.css",
		"/web/./app.css",
		"/web//app.css",
		"/index.html",
		"/webapp.css",
		"/web/app.css/",
		`/web\app.css`,
		"/web/%2e%2e/index.html",
		"web/app.css",
		"",
	} {
		t.Run(p, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.URL.Path = p
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			checkJSONError(t, w.Result(), 404)
		})
	}
}

// TestOverLoopback fetches a file through a real server: a browser's
// reload (If-None-Match with the ETag it got) gets 304 and no body.
func TestOverLoopback(t *testing.T) {
	_, h := newTestSet(t)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)

	res, err := http.Get(ts.URL + "/web/main.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != string(testFiles["web/main.js"].Data) {
		t.Fatalf("GET /web/main.js: %d %q", res.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", ts.URL+"/web/main.js", nil)
	req.Header.Set("If-None-Match", res.Header.Get("ETag"))
	res2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res2.Body)
	res2.Body.Close()
	if res2.StatusCode != 304 || len(body) != 0 {
		t.Errorf("reload with If-None-Match %s: %d with %d bytes, want 304 and none", res.Header.Get("ETag"), res2.StatusCode, len(body))
	}
}

// checkJSONError fails unless res is status with a JSON {"error": ...} body.
func checkJSONError(t *testing.T, res *http.Response, status int) {
	t.Helper()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != status {
		t.Fatalf("status %d (%q), want %d", res.StatusCode, body, status)
	}
	var e struct {
		Error string `json:"error"`
	}
	if res.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || e.Error == "" {
		t.Errorf("body %q (%s), want a JSON error", body, res.Header.Get("Content-Type"))
	}
	if res.Header.Get("ETag") != "" || res.Header.Get("Content-Security-Policy") != "" {
		t.Errorf("error answer carries a file's headers: %v", res.Header)
	}
}

func TestFileAndDirPanicOnMisuse(t *testing.T) {
	s, _ := newTestSet(t)
	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"File of a missing name", func() { s.File("nope.html") }},
		{"Dir without the leading slash", func() { s.Dir("web/") }},
		{"Dir without the trailing slash", func() { s.Dir("/web") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", tt.name)
				}
			}()
			tt.f()
		})
	}
}
