// Package static serves a fixed set of files (the web page and its script
// and style, embedded in the binary) from memory. Each file's media type
// and strong ETag are worked out once, when the set is loaded; a browser
// that revalidates a file it holds (If-None-Match) gets 304 Not Modified
// and no body, so a reload costs a few hundred bytes per file.
package static

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"

	"chat/internal/httpx"
)

// cacheControl lets a browser keep every file but makes it ask, with the
// file's ETag, before each use: a changed file is seen on the next load,
// and an unchanged one costs a 304.
const cacheControl = "no-cache"

// etagBytes is how many bytes of a file's SHA-256 its ETag carries: 128
// bits, far beyond any chance of two versions of a file colliding.
const etagBytes = 16

// mediaTypes are the media types of the file extensions a set may hold.
// A file with any other extension is refused when the set is loaded, so
// that no file is ever served with a type a browser would have to guess.
var mediaTypes = map[string]string{
	".css":   "text/css; charset=utf-8",
	".html":  "text/html; charset=utf-8",
	".ico":   "image/x-icon",
	".js":    "text/javascript; charset=utf-8",
	".json":  "application/json",
	".png":   "image/png",
	".svg":   "image/svg+xml",
	".txt":   "text/plain; charset=utf-8",
	".woff2": "font/woff2",
}

// file is one file of a Set, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string // quoted, strong
	length      string // len(body) in decimal
}

// Set is an immutable set of files held in memory. Its handlers are safe
// for concurrent use.
type Set struct {
	files  map[string]*file
	header http.Header
}

// Load reads every regular file of fsys into a Set. Every answer of the
// set's handlers that serves a file (200 or 304) carries header besides
// the file's own Content-Type, ETag and Cache-Control. Load fails on a
// file whose extension has no media type, and on anything in fsys that is
// neither a directory nor a regular file.
func Load(fsys fs.FS, header http.Header) (*Set, error) {
	s := &Set{files: map[string]*file{}, header: header.Clone()}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", name)
		}
		ctype, ok := mediaTypes[path.Ext(name)]
		if !ok {
			return fmt.Errorf("%s: no media type for %q files", name, path.Ext(name))
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		s.files[name] = &file{
			body:        body,
			contentType: ctype,
			etag:        `"` + hex.EncodeToString(sum[:etagBytes]) + `"`,
			length:      strconv.Itoa(len(body)),
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load static files: %w", err)
	}
	return s, nil
}

// MustLoad is Load for files embedded in the binary, which cannot be
// missing or unreadable at run time: it panics if Load fails.
func MustLoad(fsys fs.FS, header http.Header) *Set {
	s, err := Load(fsys, header)
	if err != nil {
		panic(err)
	}
	return s
}

// File returns a handler that serves the named file whatever the
// request's path (for example the page at "/"). It panics if the set has
// no such file: the name is fixed in the code that builds the routes.
func (s *Set) File(name string) http.Handler {
	f, ok := s.files[name]
	if !ok {
		panic("static: no file " + name)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, f)
	})
}

// Dir returns a handler that serves the file a request's path names
// under prefix, which must begin and end with a slash: with prefix
// "/web/", GET /web/app.css serves the file "web/app.css". Any path that
// names no file of the set under prefix, a directory included (no
// listing), answers 404 with a JSON error; so does one that is not a
// clean path, such as one with a ".." element (no way out of the set).
func (s *Set) Dir(prefix string) http.Handler {
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") {
		panic("static: Dir prefix " + prefix + " must begin and end with a slash")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The set's names are clean paths (fs.ValidPath), so a path with
		// an empty, "." or ".." element names none of them.
		f, ok := s.files[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok || !strings.HasPrefix(r.URL.Path, prefix) {
			httpx.WriteError(w, http.StatusNotFound, "no such file: "+httpx.Truncate(r.URL.Path, 100))
			return
		}
		s.serve(w, r, f)
	})
}

// serve answers a GET or HEAD of f: 304 without a body when the request's
// If-None-Match matches f's ETag, the file otherwise. Other methods get a
// JSON 405.
func (s *Set) serve(w http.ResponseWriter, r *http.Request, f *file) {
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		httpx.WriteError(w, http.StatusMethodNotAllowed, "method "+httpx.Truncate(r.Method, 20)+" not allowed; use GET, HEAD")
		return
	}
	for k, v := range s.header {
		h[k] = append([]string(nil), v...)
	}
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", cacheControl)
	if noneMatch(r.Header.Values("If-None-Match"), f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Length", f.length)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(f.body)
	}
}

// noneMatch reports whether the If-None-Match field lines match etag
// (RFC 9110, section 13.1.2): "*" matches, and so does any listed entity
// tag whose opaque tag equals etag's, weak ("W/") or not, since
// If-None-Match compares weakly. Parsing stops at the first malformed
// entity tag; what it has not matched by then does not match, so a
// malformed field costs a full answer, never a wrong 304.
func noneMatch(lines []string, etag string) bool {
	for _, v := range lines {
		for {
			v = strings.TrimLeft(v, " \t,")
			if v == "" {
				break
			}
			if v[0] == '*' {
				rest := strings.TrimLeft(v[1:], " \t")
				return rest == "" || rest[0] == ','
			}
			v = strings.TrimPrefix(v, "W/")
			if v == "" || v[0] != '"' {
				return false
			}
			end := strings.IndexByte(v[1:], '"')
			if end < 0 {
				return false
			}
			if v[:end+2] == etag {
				return true
			}
			v = v[end+2:]
		}
	}
	return false
}
