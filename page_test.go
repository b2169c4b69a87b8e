package main

// Tests of the page: index.html and its files under web/, served with their
// types, the page's policy (CSP and the other security headers) and strong
// ETags; nothing else is served from there.

import (
	"bytes"
	"io"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestPageAndHeaders(t *testing.T) {
	ts := startServer(t)
	resp, err := http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	page, err := pageFiles.ReadFile("index.html")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !bytes.Equal(body, page) {
		t.Fatalf("GET / = %d with %d bytes, want 200 and the page", resp.StatusCode, len(body))
	}
	// The page's script and style are files of this server: the policy
	// allows those and nothing inline.
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self';", "style-src 'self';", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, bad := range []string{"sha256-", "unsafe-inline", "nonce-"} {
		if strings.Contains(csp, bad) {
			t.Errorf("CSP %q allows inline code (%q)", csp, bad)
		}
	}
	// No inline script or style is left: each <script> loads a file and
	// holds nothing, and there is no <style> element or style attribute.
	for _, tag := range regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllSubmatch(body, -1) {
		if !regexp.MustCompile(`\ssrc="[^"]+"`).Match(tag[1]) || len(bytes.TrimSpace(tag[2])) != 0 {
			t.Errorf("inline script in the page: %.80q", tag[0])
		}
	}
	if m := regexp.MustCompile(`(?i)<style|\sstyle\s*=`).Find(body); m != nil {
		t.Errorf("inline style in the page: %q", m)
	}
	for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Content-Type": "text/html; charset=utf-8"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("GET / %s = %q, want %q", k, got, want)
		}
	}
}

// TestPageSecurityHeaders extends TestPageAndHeaders: the page's CSP is
// exactly the contract's (its script and style from this server, nothing
// inline, nothing from elsewhere), the page has nothing the policy would
// block, HEAD gets the same headers, and every kind of response carries
// nosniff.
func TestPageSecurityHeaders(t *testing.T) {
	ts := startServer(t)
	page, err := pageFiles.ReadFile("index.html")
	if err != nil {
		t.Fatal(err)
	}
	// The page itself: module scripts loaded from this server and empty;
	// no <style>, no inline style or event-handler attributes; nothing
	// loaded from elsewhere.
	scripts := regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllSubmatch(page, -1)
	if len(scripts) == 0 {
		t.Fatal("index.html loads no script")
	}
	for _, s := range scripts {
		if !regexp.MustCompile(`^ type="module" src="web/[a-z]+\.js"$`).Match(s[1]) || len(s[2]) != 0 {
			t.Errorf("index.html has a script that is not an empty module from web/: %.80q", s[0])
		}
	}
	if n := len(regexp.MustCompile(`(?i)<script`).FindAllIndex(page, -1)); n != len(scripts) {
		t.Errorf("index.html has %d <script tags, %d of them well formed", n, len(scripts))
	}
	if m := regexp.MustCompile(`(?i)<[^>]*\s(style|on[a-z]+)\s*=|<style`).Find(page); m != nil {
		t.Errorf("index.html has an inline style or handler the CSP blocks: %.80q", m)
	}
	if m := regexp.MustCompile(`(?i)\s(src|href|action)\s*=\s*["']?(https?:|//)`).Find(page); m != nil {
		t.Errorf("index.html loads from elsewhere: %.80q", m)
	}
	const wantCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
	for _, method := range []string{"GET", "HEAD"} {
		r := mustSend(t, http.DefaultClient, method, ts.URL+"/", "", "", nil)
		if r.status != 200 {
			t.Fatalf("%s /: status %d", method, r.status)
		}
		if got := r.header.Get("Content-Security-Policy"); got != wantCSP {
			t.Errorf("%s / CSP:\n got %s\nwant %s", method, got, wantCSP)
		}
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
			if got := r.header.Get(k); got != want {
				t.Errorf("%s / %s = %q, want %q", method, k, got, want)
			}
		}
	}
	// JSON answers and the stream are not sniffed into HTML either.
	for _, path := range []string{"/stats", "/nope", "/healthz"} {
		if r := mustSend(t, http.DefaultClient, "GET", ts.URL+path, "", "", nil); r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s without X-Content-Type-Options: nosniff", path)
		}
	}
	if r := mustSend(t, http.DefaultClient, "POST", ts.URL+"/post", "text/html", "<b>", nil); r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("POST /post error without X-Content-Type-Options: nosniff")
	}
	if s := subscribe(t, ts.URL, ""); s.resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET /stream without X-Content-Type-Options: nosniff")
	}
}

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
