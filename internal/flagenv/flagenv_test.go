package flagenv

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// values are the flags of the test's flag set.
type values struct {
	addr   string
	n      int
	wait   time.Duration
	repair string
}

// parse parses args with env as the environment.
func parse(args []string, env map[string]string) (values, *flag.FlagSet, error) {
	var v values
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&v.addr, "addr", ":1", "address")
	fs.IntVar(&v.n, "max-n", 3, "n")
	fs.DurationVar(&v.wait, "batch-wait", time.Second, "wait")
	fs.DurationVar(&v.wait, "coalesce", time.Second, "old name of -batch-wait")
	fs.StringVar(&v.repair, "repair", "", "repair")
	c := Config{Prefix: "T_", CmdLineOnly: []string{"repair"}, Aliases: map[string]string{"coalesce": "batch-wait"}}
	err := c.Parse(fs, args, func(k string) string { return env[k] })
	return v, fs, err
}

// TestParse checks the precedence of flags, variables and aliases.
func TestParse(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want values
		err  string
	}{
		{"defaults", nil, nil, values{":1", 3, time.Second, ""}, ""},
		{"variable", nil, map[string]string{"T_ADDR": ":2", "T_MAX_N": "7"}, values{":2", 7, time.Second, ""}, ""},
		{"flag wins", []string{"-addr", ":3"}, map[string]string{"T_ADDR": ":2"}, values{":3", 3, time.Second, ""}, ""},
		{"empty variable", nil, map[string]string{"T_ADDR": ""}, values{":1", 3, time.Second, ""}, ""},
		{"command line only", nil, map[string]string{"T_REPAIR": "x"}, values{":1", 3, time.Second, ""}, ""},
		{"old name's variable", nil, map[string]string{"T_COALESCE": "5s"}, values{":1", 3, 5 * time.Second, ""}, ""},
		{"new name's variable wins", nil, map[string]string{"T_COALESCE": "5s", "T_BATCH_WAIT": "6s"}, values{":1", 3, 6 * time.Second, ""}, ""},
		{"old flag wins over both variables", []string{"-coalesce", "2s"}, map[string]string{"T_COALESCE": "5s", "T_BATCH_WAIT": "6s"}, values{":1", 3, 2 * time.Second, ""}, ""},
		{"new flag wins over both variables", []string{"-batch-wait", "2s"}, map[string]string{"T_COALESCE": "5s", "T_BATCH_WAIT": "6s"}, values{":1", 3, 2 * time.Second, ""}, ""},
		{"bad variable", nil, map[string]string{"T_MAX_N": "many"}, values{}, `T_MAX_N="many": `},
		{"bad flag", []string{"-max-n", "many"}, nil, values{}, "invalid value"},
		{"argument", []string{"-addr", ":3", "extra"}, nil, values{}, "unexpected arguments: extra"},
	} {
		got, _, err := parse(tt.args, tt.env)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("%s: %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

// TestUsage checks that each flag's usage names its variable, except the
// command-line-only ones.
func TestUsage(t *testing.T) {
	_, fs, err := parse(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"addr": "address (env T_ADDR)", "max-n": "n (env T_MAX_N)", "repair": "repair"} {
		if got := fs.Lookup(name).Usage; got != want {
			t.Errorf("usage of -%s = %q, want %q", name, got, want)
		}
	}
}
