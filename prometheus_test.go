package main

// A strict parser of the Prometheus text exposition format (0.0.4), which
// the tests of GET /metrics read it with, and its own tests.

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// promLabel is one label of a sample.
type promLabel struct{ name, value string }

// promSample is one sample line of the text exposition format.
type promSample struct {
	// name is the sample's metric name (with _bucket, _sum or _count for
	// histograms and summaries).
	name   string
	labels []promLabel
	value  float64
	// line is the sample's line number, from 1.
	line int
}

// label returns the value of the named label and whether it is there.
func (s promSample) label(name string) (string, bool) {
	for _, l := range s.labels {
		if l.name == name {
			return l.value, true
		}
	}
	return "", false
}

// signature returns the sample's labels other than le and quantile, in a
// canonical form.
func (s promSample) signature() string {
	var parts []string
	for _, l := range s.labels {
		if l.name != "le" && l.name != "quantile" {
			parts = append(parts, l.name+"="+strconv.Quote(l.value))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// promFamily is a metric family: its HELP, its TYPE and its samples.
type promFamily struct {
	name, help, typ string
	hasHelp         bool
	samples         []promSample
}

// value returns the value of the family's sample with no labels named
// name, or NaN.
func (f *promFamily) value(name string) float64 {
	for _, s := range f.samples {
		if s.name == name && len(s.labels) == 0 {
			return s.value
		}
	}
	return math.NaN()
}

var (
	// promNameRE is a metric name.
	promNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	// promLabelNameRE is a label name.
	promLabelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	// promValueRE is a sample value: a Go float in decimal notation, or
	// one of the special values.
	promValueRE = regexp.MustCompile(`^([+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]Inf|NaN)$`)
	// promTimestampRE is a sample timestamp (ms since 1970).
	promTimestampRE = regexp.MustCompile(`^-?[0-9]+$`)
	// promTypes are the valid TYPE values.
	promTypes = map[string]bool{"counter": true, "gauge": true, "histogram": true, "summary": true, "untyped": true}
)

// parsePromText parses a Prometheus text exposition (format 0.0.4)
// strictly and checks the conventions a scraper and promlint rely on. It
// returns the families by name, or the first problem found, with its line.
//
// Checked: every line ends with "\n"; "# HELP name text" (text escapes only
// \\ and \n) and "# TYPE name type" appear at most once per family, before
// its first sample; every sample belongs to a family that has both; a
// family's samples are contiguous; metric and label names are valid, label
// names are not reserved ("__") or repeated, label values are quoted UTF-8
// with only \\, \" and \n escapes; values are floats (or +Inf, -Inf, NaN)
// and timestamps integers; no series (name and label set) repeats; counters
// end in _total, and nothing else does; counter values are not negative;
// histograms have, per label set, buckets with increasing le ending at
// +Inf, non-decreasing integer counts, one _sum and one _count equal to the
// +Inf bucket; summaries have quantile in [0, 1], one _sum and one _count.
func parsePromText(text string) (map[string]*promFamily, error) {
	if text == "" {
		return nil, errors.New("empty exposition")
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("last line does not end with a newline")
	}
	fams := map[string]*promFamily{}
	family := func(name string) *promFamily {
		f := fams[name]
		if f == nil {
			f = &promFamily{name: name}
			fams[name] = f
		}
		return f
	}
	series := map[string]int{}
	var current *promFamily // the family whose samples came last
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := i + 1
		fail := func(format string, args ...any) (map[string]*promFamily, error) {
			return nil, fmt.Errorf("line %d %q: %s", n, line, fmt.Sprintf(format, args...))
		}
		if !utf8.ValidString(line) {
			return fail("not UTF-8")
		}
		if strings.TrimLeft(line, " \t") == "" {
			continue // blank lines are ignored
		}
		if rest, ok := strings.CutPrefix(strings.TrimLeft(line, " \t"), "#"); ok {
			toks := strings.SplitN(strings.TrimLeft(rest, " \t"), " ", 3)
			if len(toks) < 2 || (toks[0] != "HELP" && toks[0] != "TYPE") {
				continue // an ordinary comment
			}
			kw, name, arg := toks[0], toks[1], ""
			if len(toks) == 3 {
				arg = toks[2]
			}
			if !promNameRE.MatchString(name) {
				return fail("bad metric name %q", name)
			}
			f := family(name)
			if len(f.samples) > 0 {
				return fail("%s after the family's samples", kw)
			}
			switch kw {
			case "HELP":
				if f.hasHelp {
					return fail("second HELP for %s", name)
				}
				if err := checkHelpEscapes(arg); err != nil {
					return fail("%v", err)
				}
				f.help, f.hasHelp = arg, true
			case "TYPE":
				if f.typ != "" {
					return fail("second TYPE for %s", name)
				}
				if !promTypes[arg] {
					return fail("bad type %q", arg)
				}
				f.typ = arg
			}
			continue
		}
		s, err := parsePromSample(line)
		if err != nil {
			return fail("%v", err)
		}
		s.line = n
		f := sampleFamily(fams, s.name)
		if f == nil {
			return fail("sample of %s has no TYPE before it", s.name)
		}
		if !f.hasHelp {
			return fail("family %s has no HELP before its samples", f.name)
		}
		if f != current && len(f.samples) > 0 {
			return fail("samples of %s are not together", f.name)
		}
		current = f
		key := s.name + "{" + s.signature() + "}"
		if le, ok := s.label("le"); ok {
			key += " le=" + le
		}
		if q, ok := s.label("quantile"); ok {
			key += " quantile=" + q
		}
		if prev, ok := series[key]; ok {
			return fail("duplicate series %s (first on line %d)", key, prev)
		}
		series[key] = n
		f.samples = append(f.samples, s)
	}
	for _, f := range fams {
		if err := checkPromFamily(f); err != nil {
			return nil, err
		}
	}
	return fams, nil
}

// checkHelpEscapes checks that a HELP text uses only the \\ and \n escapes.
func checkHelpEscapes(help string) error {
	for i := 0; i < len(help); i++ {
		if help[i] != '\\' {
			continue
		}
		if i+1 == len(help) || (help[i+1] != '\\' && help[i+1] != 'n') {
			return fmt.Errorf("bad escape in HELP at byte %d", i)
		}
		i++
	}
	return nil
}

// sampleFamily returns the family a sample named name belongs to, or nil.
func sampleFamily(fams map[string]*promFamily, name string) *promFamily {
	if f := fams[name]; f != nil && f.typ != "" && f.typ != "histogram" {
		return f // a histogram has no sample of its bare name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if f := fams[base]; f != nil && (f.typ == "histogram" || (f.typ == "summary" && suffix != "_bucket")) {
			return f
		}
	}
	return nil
}

// parsePromSample parses one sample line: name, optional {labels}, value and
// optional timestamp, separated by blanks.
func parsePromSample(line string) (promSample, error) {
	var s promSample
	i := 0
	for i < len(line) && (line[i] == '_' || line[i] == ':' || ('a' <= line[i] && line[i] <= 'z') ||
		('A' <= line[i] && line[i] <= 'Z') || (i > 0 && '0' <= line[i] && line[i] <= '9')) {
		i++
	}
	s.name = line[:i]
	if !promNameRE.MatchString(s.name) {
		return s, fmt.Errorf("bad metric name %q", s.name)
	}
	blanks := func() {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
	}
	if i < len(line) && line[i] == '{' {
		i++
		seen := map[string]bool{}
		for {
			blanks()
			if i < len(line) && line[i] == '}' {
				i++
				break
			}
			j := i
			for j < len(line) && line[j] != '=' && line[j] != ' ' && line[j] != '\t' {
				j++
			}
			name := line[i:j]
			if !promLabelNameRE.MatchString(name) || strings.HasPrefix(name, "__") {
				return s, fmt.Errorf("bad label name %q", name)
			}
			if seen[name] {
				return s, fmt.Errorf("label %s repeated", name)
			}
			seen[name] = true
			i = j
			blanks()
			if i >= len(line) || line[i] != '=' {
				return s, fmt.Errorf("no = after label %s", name)
			}
			i++
			blanks()
			if i >= len(line) || line[i] != '"' {
				return s, fmt.Errorf("value of label %s is not quoted", name)
			}
			i++
			var v strings.Builder
			for {
				if i >= len(line) {
					return s, fmt.Errorf("value of label %s is not closed", name)
				}
				c := line[i]
				i++
				if c == '"' {
					break
				}
				if c == '\\' {
					if i >= len(line) {
						return s, fmt.Errorf("value of label %s ends in a backslash", name)
					}
					switch line[i] {
					case '\\', '"':
						v.WriteByte(line[i])
					case 'n':
						v.WriteByte('\n')
					default:
						return s, fmt.Errorf("bad escape \\%c in label %s", line[i], name)
					}
					i++
					continue
				}
				v.WriteByte(c)
			}
			s.labels = append(s.labels, promLabel{name, v.String()})
			blanks()
			if i < len(line) && line[i] == ',' {
				i++
				continue
			}
			if i < len(line) && line[i] == '}' {
				i++
				break
			}
			return s, fmt.Errorf("expected , or } after label %s", name)
		}
	}
	if i >= len(line) || (line[i] != ' ' && line[i] != '\t') {
		return s, errors.New("no blank before the value")
	}
	fields := strings.Fields(line[i:])
	if len(fields) == 0 || len(fields) > 2 {
		return s, fmt.Errorf("want a value and an optional timestamp, got %q", line[i:])
	}
	if !promValueRE.MatchString(fields[0]) {
		return s, fmt.Errorf("bad value %q", fields[0])
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return s, fmt.Errorf("bad value %q: %v", fields[0], err)
	}
	s.value = v
	if len(fields) == 2 {
		if !promTimestampRE.MatchString(fields[1]) {
			return s, fmt.Errorf("bad timestamp %q", fields[1])
		}
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return s, fmt.Errorf("bad timestamp %q: %v", fields[1], err)
		}
	}
	return s, nil
}

// checkPromFamily checks one family against its type.
func checkPromFamily(f *promFamily) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("family %s: %s", f.name, fmt.Sprintf(format, args...))
	}
	if f.typ == "" {
		return fail("HELP without TYPE")
	}
	if !f.hasHelp {
		return fail("TYPE without HELP")
	}
	if len(f.samples) == 0 {
		return fail("no samples")
	}
	total := strings.HasSuffix(f.name, "_total")
	switch f.typ {
	case "counter":
		if !total {
			return fail("counter name does not end in _total")
		}
		for _, s := range f.samples {
			if s.value < 0 || math.IsNaN(s.value) {
				return fail("counter value %v on line %d", s.value, s.line)
			}
		}
	case "gauge", "untyped":
		if total {
			return fail("%s name ends in _total", f.typ)
		}
	case "histogram", "summary":
		if total {
			return fail("%s name ends in _total", f.typ)
		}
		return checkBuckets(f)
	}
	return nil
}

// checkBuckets checks the samples of a histogram or summary, per label set.
func checkBuckets(f *promFamily) error {
	type group struct {
		les, counts    []float64
		sum, count     []float64
		sawInf         bool
		firstLine, inf int
	}
	groups := map[string]*group{}
	var order []string
	for _, s := range f.samples {
		sig := s.signature()
		g := groups[sig]
		if g == nil {
			g = &group{firstLine: s.line}
			groups[sig] = g
			order = append(order, sig)
		}
		le, hasLE := s.label("le")
		q, hasQ := s.label("quantile")
		switch {
		case s.name == f.name+"_bucket":
			if !hasLE {
				return fmt.Errorf("line %d: bucket without le", s.line)
			}
			bound, err := strconv.ParseFloat(le, 64)
			if err != nil || !promValueRE.MatchString(le) || math.IsNaN(bound) {
				return fmt.Errorf("line %d: bad le %q", s.line, le)
			}
			if g.sawInf {
				return fmt.Errorf("line %d: bucket after le=\"+Inf\"", s.line)
			}
			if n := len(g.les); n > 0 && bound <= g.les[n-1] {
				return fmt.Errorf("line %d: le %q not above the previous bucket's", s.line, le)
			}
			if s.value < 0 || s.value != math.Trunc(s.value) {
				return fmt.Errorf("line %d: bucket count %v is not a whole number", s.line, s.value)
			}
			if n := len(g.counts); n > 0 && s.value < g.counts[n-1] {
				return fmt.Errorf("line %d: bucket count %v below the previous bucket's %v (buckets are cumulative)", s.line, s.value, g.counts[n-1])
			}
			g.les, g.counts = append(g.les, bound), append(g.counts, s.value)
			if math.IsInf(bound, 1) {
				g.sawInf, g.inf = true, len(g.counts)-1
			}
		case s.name == f.name && f.typ == "summary":
			v, err := strconv.ParseFloat(q, 64)
			if !hasQ || err != nil || v < 0 || v > 1 {
				return fmt.Errorf("line %d: summary sample needs a quantile in [0, 1]", s.line)
			}
		case s.name == f.name+"_sum":
			if hasLE || hasQ {
				return fmt.Errorf("line %d: _sum with le or quantile", s.line)
			}
			g.sum = append(g.sum, s.value)
		case s.name == f.name+"_count":
			if hasLE || hasQ {
				return fmt.Errorf("line %d: _count with le or quantile", s.line)
			}
			if s.value < 0 || s.value != math.Trunc(s.value) {
				return fmt.Errorf("line %d: _count %v is not a whole number", s.line, s.value)
			}
			g.count = append(g.count, s.value)
		default:
			return fmt.Errorf("line %d: sample %s does not belong to %s %s", s.line, s.name, f.typ, f.name)
		}
	}
	for _, sig := range order {
		g := groups[sig]
		if len(g.sum) != 1 || len(g.count) != 1 {
			return fmt.Errorf("%s {%s} (line %d): want one _sum and one _count, got %d and %d", f.name, sig, g.firstLine, len(g.sum), len(g.count))
		}
		if f.typ != "histogram" {
			continue
		}
		if !g.sawInf {
			return fmt.Errorf("%s {%s} (line %d): no le=\"+Inf\" bucket", f.name, sig, g.firstLine)
		}
		if g.count[0] != g.counts[g.inf] {
			return fmt.Errorf("%s {%s}: _count %v differs from the +Inf bucket %v", f.name, sig, g.count[0], g.counts[g.inf])
		}
	}
	return nil
}

// TestMetricsParser checks that the strict parser accepts a well-formed
// exposition and rejects each kind of mistake.
func TestMetricsParser(t *testing.T) {
	const good = `# HELP a_total A counter with "quotes" and a \\ and \n.
# TYPE a_total counter
a_total 3
# A plain comment.
# HELP g A gauge.
# TYPE g gauge
g{path="/x",code="200"} -1.5e-3 1700000000000
g{path="/y\"\\\n",code="200",} +Inf

# HELP h_seconds A histogram.
# TYPE h_seconds histogram
h_seconds_bucket{le="0.5"} 1
h_seconds_bucket{le="1"} 1
h_seconds_bucket{le="+Inf"} 2
h_seconds_sum 3.25
h_seconds_count 2
h_seconds_bucket{op="x",le="1"} 0
h_seconds_bucket{op="x",le="+Inf"} 0
h_seconds_sum{op="x"} 0
h_seconds_count{op="x"} 0
# HELP s A summary.
# TYPE s summary
s{quantile="0.5"} NaN
s_sum 0
s_count 0
`
	fams, err := parsePromText(good)
	if err != nil {
		t.Fatalf("good exposition: %v", err)
	}
	if len(fams) != 4 || fams["a_total"].value("a_total") != 3 || len(fams["h_seconds"].samples) != 9 {
		t.Errorf("good exposition parsed as %+v", fams)
	}
	if v, _ := fams["g"].samples[1].label("path"); v != "/y\"\\\n" {
		t.Errorf("escaped label value = %q", v)
	}

	const head = "# HELP c_total C.\n# TYPE c_total counter\n"
	const hist = "# HELP h H.\n# TYPE h histogram\n"
	bad := []struct{ name, text string }{
		{"empty", ""},
		{"no final newline", head + "c_total 1"},
		{"sample without TYPE", "x 1\n"},
		{"sample without HELP", "# TYPE c_total counter\nc_total 1\n"},
		{"HELP without TYPE", "# HELP g G.\n"},
		{"TYPE without samples", head},
		{"TYPE after sample", "# HELP c_total C.\nc_total 1\n# TYPE c_total counter\n"},
		{"HELP after sample", "# TYPE c_total counter\n# HELP c_total C.\nc_total 1\n# HELP c_total again\n"},
		{"second TYPE", head + "# TYPE c_total counter\nc_total 1\n"},
		{"bad type", "# HELP c_total C.\n# TYPE c_total count\nc_total 1\n"},
		{"bad HELP escape", "# HELP c_total C \\t.\n# TYPE c_total counter\nc_total 1\n"},
		{"counter without _total", "# HELP c C.\n# TYPE c counter\nc 1\n"},
		{"gauge with _total", "# HELP g_total G.\n# TYPE g_total gauge\ng_total 1\n"},
		{"negative counter", head + "c_total -1\n"},
		{"bad metric name", "# HELP 1c_total C.\n# TYPE 1c_total counter\n1c_total 1\n"},
		{"bad character in name", head + "c_total- 1\n"},
		{"bad label name", head + "c_total{a-b=\"x\"} 1\n"},
		{"reserved label name", head + "c_total{__name__=\"x\"} 1\n"},
		{"repeated label", head + "c_total{a=\"x\",a=\"y\"} 1\n"},
		{"unquoted label value", head + "c_total{a=x} 1\n"},
		{"unclosed label value", head + "c_total{a=\"x} 1\n"},
		{"bad label escape", head + "c_total{a=\"\\t\"} 1\n"},
		{"missing brace", head + "c_total{a=\"x\" 1\n"},
		{"no value", head + "c_total\n"},
		{"no blank before value", head + "c_total{a=\"x\"}1\n"},
		{"bad value", head + "c_total one\n"},
		{"hex value", head + "c_total 0x10\n"},
		{"Inf without sign", head + "c_total Inf\n"},
		{"bad timestamp", head + "c_total 1 1.5\n"},
		{"extra field", head + "c_total 1 2 3\n"},
		{"duplicate series", head + "c_total{a=\"x\"} 1\nc_total{a=\"x\"} 2\n"},
		{"duplicate series, labels reordered", head + "c_total{a=\"x\",b=\"y\"} 1\nc_total{b=\"y\",a=\"x\"} 2\n"},
		{"family not together", head + "c_total{a=\"x\"} 1\n# HELP g G.\n# TYPE g gauge\ng 1\nc_total{a=\"y\"} 1\n"},
		{"histogram without +Inf", hist + "h_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram le not increasing", hist + "h_bucket{le=\"1\"} 1\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram bucket after +Inf", hist + "h_bucket{le=\"+Inf\"} 1\nh_bucket{le=\"2\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram not cumulative", hist + "h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram count differs", hist + "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"},
		{"histogram without _sum", hist + "h_bucket{le=\"+Inf\"} 1\nh_count 1\n"},
		{"histogram without _count", hist + "h_bucket{le=\"+Inf\"} 1\nh_sum 1\n"},
		{"histogram bucket without le", hist + "h_bucket 1\nh_sum 1\nh_count 1\n"},
		{"histogram bad le", hist + "h_bucket{le=\"one\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram fractional count", hist + "h_bucket{le=\"+Inf\"} 1.5\nh_sum 1\nh_count 1.5\n"},
		{"histogram bare sample", hist + "h 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram _sum with le", hist + "h_bucket{le=\"+Inf\"} 1\nh_sum{le=\"1\"} 1\nh_count 1\n"},
		{"summary without quantile", "# HELP s S.\n# TYPE s summary\ns 1\ns_sum 1\ns_count 1\n"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parsePromText(tt.text); err == nil {
				t.Errorf("parsePromText(%q) accepted it", tt.text)
			}
		})
	}
}
