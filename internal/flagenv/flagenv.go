// Package flagenv lets environment variables set a command's flags: each
// flag has a variable (its name in upper case, with a prefix), which sets
// the flag when the command line does not, and which the flag's usage
// names. Some flags may be left to the command line alone, and a flag may
// have an old name that still works.
package flagenv

import (
	"flag"
	"fmt"
	"slices"
	"strings"
)

// Config says how a flag set reads the environment.
type Config struct {
	// Prefix starts every variable's name ("CHAT_").
	Prefix string
	// CmdLineOnly lists the flags that no variable sets.
	CmdLineOnly []string
	// Aliases maps the old name of a flag to its new name; both set the
	// same value. Either given on the command line wins over both
	// variables, and the new name's variable wins over the old one's.
	Aliases map[string]string
}

// Name returns the environment variable of the flag named flagName:
// Prefix, then the name in upper case with "_" for "-".
func (c Config) Name(flagName string) string {
	return c.Prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse adds each flag's variable to its usage, parses args (without the
// command's name) into fs, refuses arguments that are not flags, and then
// sets every flag the command line did not give from its variable, if
// getenv returns one that is not empty.
func (c Config) Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(c.CmdLineOnly, f.Name) {
			f.Usage += " (env " + c.Name(f.Name) + ")"
		}
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for old, name := range c.Aliases {
		if given[old] || given[name] {
			given[old], given[name] = true, true
		} else if getenv(c.Name(name)) != "" {
			given[old] = true
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(c.Name(f.Name))
		if v == "" || given[f.Name] || slices.Contains(c.CmdLineOnly, f.Name) || err != nil {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q: %w", c.Name(f.Name), v, e)
		}
	})
	return err
}
