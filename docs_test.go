package main

// The documentation check: every relative link of README.md and docs/*.md
// must lead to a file that exists and, for a link with a #fragment into a
// Markdown file, to a heading of that file, named as GitHub names it.

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// docLink is one link found in a Markdown file.
type docLink struct {
	// line is the 1-based line the link is on.
	line int
	// target is the link's destination as written.
	target string
}

var (
	// headingRE matches an ATX heading and captures its text.
	headingRE = regexp.MustCompile(`^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$`)
	// fenceRE matches the line that opens or closes a fenced code block.
	fenceRE = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})")
	// inlineLinkRE matches an inline link or image, [text](dest "title"),
	// and captures its destination.
	inlineLinkRE = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
)

// stripCodeSpans returns line with each code span replaced by a word, so
// that brackets inside code are not taken for links. A span opens with a
// run of backticks and closes at the next run of the same length; a run
// that is never closed is literal text.
func stripCodeSpans(line string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(line, '`')
		if i < 0 {
			b.WriteString(line)
			return b.String()
		}
		n := i
		for n < len(line) && line[n] == '`' {
			n++
		}
		run := line[i:n]
		end := -1
		for j := n; j < len(line); {
			k := strings.IndexByte(line[j:], '`')
			if k < 0 {
				break
			}
			k += j
			m := k
			for m < len(line) && line[m] == '`' {
				m++
			}
			if m-k == len(run) {
				end = m
				break
			}
			j = m
		}
		if end < 0 {
			b.WriteString(line[:n])
			line = line[n:]
			continue
		}
		b.WriteString(line[:i])
		b.WriteString("code")
		line = line[end:]
	}
}

// proseLine is a line of a Markdown text outside fenced code blocks.
type proseLine struct {
	// n is the 1-based number of the line.
	n    int
	text string
}

// proseLines returns the lines of a Markdown text that are outside fenced
// code blocks. A fence closes with a run of the same character at least as
// long as the one that opened it, alone on its line.
func proseLines(text string) []proseLine {
	var lines []proseLine
	fence := ""
	for i, line := range strings.Split(text, "\n") {
		if m := fenceRE.FindStringSubmatch(line); m != nil {
			switch {
			case fence == "":
				fence = m[1]
			case strings.HasPrefix(m[1], fence) && strings.TrimSpace(line) == m[1]:
				fence = ""
			}
			continue
		}
		if fence == "" {
			lines = append(lines, proseLine{n: i + 1, text: line})
		}
	}
	return lines
}

// markdownLinks returns the inline links and images of a Markdown text,
// outside fenced code blocks and code spans.
func markdownLinks(text string) []docLink {
	var links []docLink
	for _, line := range proseLines(text) {
		for _, m := range inlineLinkRE.FindAllStringSubmatch(stripCodeSpans(line.text), -1) {
			links = append(links, docLink{line: line.n, target: m[1]})
		}
	}
	return links
}

// headingText returns the text a heading renders as: code spans keep their
// content without the backticks, links keep their text.
func headingText(md string) string {
	md = inlineLinkTextRE.ReplaceAllString(md, "$1")
	return strings.ReplaceAll(md, "`", "")
}

// inlineLinkTextRE matches an inline link and captures its text.
var inlineLinkTextRE = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)

// githubSlug returns the anchor GitHub gives a heading with this rendered
// text: lower case, with each space turned into a hyphen and every other
// character dropped unless it is a letter, a mark, a decimal or letter
// number, a connector such as _, the hyphen-minus, or alphabetic.
func githubSlug(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-', unicode.In(r, unicode.L, unicode.M, unicode.Nd, unicode.Nl, unicode.Pc, unicode.Other_Alphabetic):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// markdownAnchors returns the anchors of the headings of a Markdown text
// (outside fenced code blocks), numbering repeats as GitHub does: the second
// "Notes" is notes-1, unless that is taken too.
func markdownAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	// repeats counts, per slug, the headings that had it.
	repeats := map[string]int{}
	for _, line := range proseLines(text) {
		m := headingRE.FindStringSubmatch(line.text)
		if m == nil {
			continue
		}
		base := githubSlug(headingText(m[1]))
		slug := base
		for anchors[slug] {
			repeats[base]++
			slug = fmt.Sprintf("%s-%d", base, repeats[base])
		}
		anchors[slug] = true
	}
	return anchors
}

// checkDocLinks checks the relative links of the Markdown files named
// (paths relative to root) and returns one problem per broken link.
// Links with a scheme (https:, mailto:) are not followed.
func checkDocLinks(root string, files []string) ([]string, error) {
	var problems []string
	anchorsOf := map[string]map[string]bool{}
	anchors := func(path string) (map[string]bool, error) {
		if a, ok := anchorsOf[path]; ok {
			return a, nil
		}
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			return nil, err
		}
		anchorsOf[path] = markdownAnchors(string(b))
		return anchorsOf[path], nil
	}
	for _, file := range files {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		for _, l := range markdownLinks(string(b)) {
			u, err := url.Parse(l.target)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s:%d: link %q does not parse: %v", file, l.line, l.target, err))
				continue
			}
			if u.Scheme != "" || u.Host != "" {
				continue
			}
			target := file
			if u.Path != "" {
				target = filepath.ToSlash(filepath.Join(filepath.Dir(file), u.Path))
				if strings.HasPrefix(target, "../") {
					problems = append(problems, fmt.Sprintf("%s:%d: link %q leaves the repository", file, l.line, l.target))
					continue
				}
				if _, err := os.Stat(filepath.Join(root, target)); err != nil {
					problems = append(problems, fmt.Sprintf("%s:%d: link %q: no file %s", file, l.line, l.target, target))
					continue
				}
			}
			if u.Fragment == "" || !strings.HasSuffix(target, ".md") {
				continue
			}
			a, err := anchors(target)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", target, err)
			}
			if !a[u.Fragment] {
				problems = append(problems, fmt.Sprintf("%s:%d: link %q: %s has no heading #%s", file, l.line, l.target, target, u.Fragment))
			}
		}
	}
	return problems, nil
}

// TestDocLinks checks that every relative link of README.md and docs/*.md
// leads to a file that exists, and every #fragment to a heading.
func TestDocLinks(t *testing.T) {
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{"README.md"}, files...)
	if len(files) < 2 {
		t.Fatalf("found only %v; the documentation lives in README.md and docs/*.md", files)
	}
	problems, err := checkDocLinks(".", files)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestGitHubSlug checks the anchors made of headings against the ones
// GitHub gives them.
func TestGitHubSlug(t *testing.T) {
	tests := []struct {
		heading, want string
	}{
		{"Quick start", "quick-start"},
		{"`POST /post`", "post-post"},
		{"`GET /`", "get-"},
		{"`GET /metrics`, `GET /healthz`", "get-metrics-get-healthz"},
		{"`DELETE /messages/{id}`", "delete-messagesid"},
		{"Sending exactly once: `Idempotency-Key`", "sending-exactly-once-idempotency-key"},
		{"Slow clients: no silent loss", "slow-clients-no-silent-loss"},
		{"HTTPS and HTTP/2", "https-and-http2"},
		{"The load tool's stream parser", "the-load-tools-stream-parser"},
		{"Producer–consumer (fan-out)", "producerconsumer-fan-out"},
		{"snake_case and CAPS", "snake_case-and-caps"},
		{"Café 2 élan", "café-2-élan"},
		{"[a link](x.md) here", "a-link-here"},
		{"two  spaces", "two--spaces"},
		{"x² ≥ y, © 2026 — “quoted” ½", "x--y--2026--quoted-"},
		{"Ⓐ circled", "ⓐ-circled"},
	}
	for _, tt := range tests {
		if got := githubSlug(headingText(tt.heading)); got != tt.want {
			t.Errorf("githubSlug(headingText(%q)) = %q, want %q", tt.heading, got, tt.want)
		}
	}
}

// TestMarkdownAnchors checks which headings a text has: fenced code holds
// none, repeats are numbered past the anchors already taken, closing hashes
// are not part of the text.
func TestMarkdownAnchors(t *testing.T) {
	text := "# Title\n\n## Notes\n\ntext\n\n## Notes ##\n\n```console\n# HELP chat_clients Streams.\n```\n\n~~~\n## Not a heading\n~~~\n#no-space\n   ### Indented three\n    #### Code, indented four\n## Notes-3\n## Notes\n## Notes\n"
	got := markdownAnchors(text)
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"indented-three", "notes", "notes-1", "notes-2", "notes-3", "notes-4", "title"}
	if !slices.Equal(keys, want) {
		t.Errorf("markdownAnchors = %v, want %v", keys, want)
	}
}

// TestMarkdownLinks checks which links a text has: none inside fenced code
// or code spans, images and links with titles included.
func TestMarkdownLinks(t *testing.T) {
	text := "See [api](docs/api.md#get-stream) and ![shot](docs/screenshot.png).\n" +
		"`[not](a-link.md)` but [`POST /post`](docs/api.md#post-post \"the post\")\n" +
		"```\n[in fence](nope.md)\n```\n" +
		"<https://example.com> and [ext](https://example.com/x) and [top](#top)\n"
	var got []string
	for _, l := range markdownLinks(text) {
		got = append(got, fmt.Sprintf("%d:%s", l.line, l.target))
	}
	want := []string{"1:docs/api.md#get-stream", "1:docs/screenshot.png", "2:docs/api.md#post-post", "6:https://example.com/x", "6:#top"}
	if !slices.Equal(got, want) {
		t.Errorf("markdownLinks = %q, want %q", got, want)
	}
}

// TestCheckDocLinksReportsBroken runs the check on a small tree with good
// and broken links and checks that it reports exactly the broken ones.
func TestCheckDocLinksReportsBroken(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"README.md": "# Top\n\n## Usage\n\n[ok](docs/a.md#part-one) [ok](#usage) [ok](docs/pic.png)\n" +
			"[gone](docs/missing.md) [bad anchor](docs/a.md#part-three) [self](#nowhere)\n" +
			"[out](../secret.md) `[code](docs/missing.md)` [web](https://example.com/#x)\n",
		"docs/a.md":    "# A\n\n## Part one\n\n## Part two\n\n[back](../README.md#top) [dir](../docs) [bad](../README.md#a)\n",
		"docs/pic.png": "png",
	}
	for name, body := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := checkDocLinks(root, []string{"README.md", "docs/a.md"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`README.md:6: link "docs/missing.md": no file docs/missing.md`,
		`README.md:6: link "docs/a.md#part-three": docs/a.md has no heading #part-three`,
		`README.md:6: link "#nowhere": README.md has no heading #nowhere`,
		`README.md:7: link "../secret.md" leaves the repository`,
		`docs/a.md:7: link "../README.md#a": README.md has no heading #a`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("checkDocLinks reported:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
