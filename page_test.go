package main

import (
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// pageRefs returns the files the page names (href and src under web/) and
// the files each of its modules imports, as paths from the top of
// pageFiles ("web/app.css"), and, apart, the modules it preloads.
func pageRefs(t *testing.T) (refs, preloads []string) {
	t.Helper()
	page, err := pageFiles.ReadFile("index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`<(?:link|script)\b[^>]*\s(?:href|src)="(web/[^"]+)"[^>]*>`).FindAllSubmatch(page, -1) {
		refs = append(refs, string(m[1]))
		if strings.Contains(string(m[0]), `rel="modulepreload"`) {
			preloads = append(preloads, string(m[1]))
		}
	}
	imports := regexp.MustCompile(`(?m)^import\b[^'"]*['"](\./[^'"]+)['"];`)
	err = fs.WalkDir(pageFiles, "web", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(name) != ".js" {
			return err
		}
		src, err := pageFiles.ReadFile(name)
		if err != nil {
			return err
		}
		for _, m := range imports.FindAllSubmatch(src, -1) {
			refs = append(refs, path.Join(path.Dir(name), string(m[1])))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(refs)
	return slices.Compact(refs), preloads
}

// TestPageFilesServed fetches every file the page and its modules name,
// over the network as a browser does: each is served with its type, the
// page's policy and a strong ETag, and a reload that sends the ETag back
// gets 304 with no body. Every file under web/ is named by someone (none
// is left over), and every module is preloaded (the browser fetches them
// all at once instead of one level of imports at a time).
func TestPageFilesServed(t *testing.T) {
	ts := startServer(t)
	refs, preloads := pageRefs(t)
	var files, modules []string
	_ = fs.WalkDir(pageFiles, "web", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, name)
			if path.Ext(name) == ".js" {
				modules = append(modules, name)
			}
		}
		return err
	})
	slices.Sort(preloads)
	if !slices.Equal(refs, files) {
		t.Errorf("the page and its modules name %q; web/ holds %q", refs, files)
	}
	if !slices.Equal(preloads, modules) {
		t.Errorf("the page preloads %q; the modules are %q", preloads, modules)
	}
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
	etags := map[string]string{}
	for _, name := range append([]string{""}, refs...) {
		url := ts.URL + "/" + name
		want, err := pageFiles.ReadFile(name)
		wantType := types[path.Ext(name)]
		if name == "" {
			want, err = pageFiles.ReadFile("index.html")
			wantType = "text/html; charset=utf-8"
		}
		if err != nil {
			t.Fatal(err)
		}
		r := mustSend(t, http.DefaultClient, "GET", url, "", "", nil)
		etag := r.header.Get("ETag")
		if r.status != 200 || string(r.body) != string(want) || r.header.Get("Content-Type") != wantType {
			t.Errorf("GET %s: %d, %s, %d bytes; want 200, %s and the file", url, r.status, r.header.Get("Content-Type"), len(r.body), wantType)
		}
		if !regexp.MustCompile(`^"[0-9a-f]{32}"$`).MatchString(etag) || etags[etag] != "" {
			t.Errorf("GET %s: ETag %q, want a strong tag of its own (%q has it)", url, etag, etags[etag])
		}
		etags[etag] = name
		if r.header.Get("Cache-Control") != "no-cache" || r.header.Get("Content-Security-Policy") != pageCSP {
			t.Errorf("GET %s: Cache-Control %q, CSP %q", url, r.header.Get("Cache-Control"), r.header.Get("Content-Security-Policy"))
		}
		for _, method := range []string{"GET", "HEAD"} {
			again := mustSend(t, http.DefaultClient, method, url, "", "", map[string]string{"If-None-Match": etag})
			if again.status != http.StatusNotModified || len(again.body) != 0 || again.header.Get("ETag") != etag {
				t.Errorf("%s %s with If-None-Match %s: %d, %d bytes, ETag %q; want 304, none, the same ETag",
					method, url, etag, again.status, len(again.body), again.header.Get("ETag"))
			}
		}
	}
}

// TestPageFilesRefused: what is not a file of the page gets a JSON error,
// wrong methods included, and no path climbs out of web/ to the page's
// neighbours (the Go sources are not embedded, and index.html is served
// only at "/").
func TestPageFilesRefused(t *testing.T) {
	ts := startServer(t)
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/web/nope.js", 404},
		{"HEAD", "/web/nope.js", 404},
		{"GET", "/web/", 404},
		{"GET", "/web/index.html", 404},
		{"GET", "/index.html", 404},
		{"POST", "/web/app.css", 405},
		{"DELETE", "/web/main.js", 405},
	} {
		r := mustSend(t, http.DefaultClient, tt.method, ts.URL+tt.path, "", "", nil)
		if r.status != tt.want || (tt.method != "HEAD" && r.errorText() == "") {
			t.Errorf("%s %s: %d %q, want %d with a JSON error", tt.method, tt.path, r.status, r.body, tt.want)
		}
		if tt.want == 405 && r.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, r.header.Get("Allow"), "GET, HEAD")
		}
	}
	addr := ts.addr()
	for _, target := range []string{"/web/%2e%2e/handlers.go", "/web/..%2fhandlers.go", "/web/%2e%2e/index.html", "/web/../go.mod"} {
		status, body := rawRequest(t, addr, target)
		if status == 200 || strings.Contains(body, "package main") || strings.Contains(body, "<!doctype") || strings.Contains(body, "module chat") {
			t.Errorf("GET %s: %d %.80q: served a file outside web/", target, status, body)
		}
	}
}

// rawRequest sends one GET with the request target exactly as given (no
// client cleans it) and returns the status and the body.
func rawRequest(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	r := rawExchange(t, addr, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	return r.status, string(r.body)
}
