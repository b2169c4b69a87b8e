package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"chat/internal/clusterlog"
	"chat/internal/jetstream"
)

// noEnv is an empty environment.
func noEnv(string) string { return "" }

// envOf returns an environment holding vars.
func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// parse parses args after the command's name.
func parse(getenv func(string) string, args ...string) (Config, error) {
	return Parse(append([]string{"chat"}, args...), getenv, io.Discard)
}

// TestDefaults checks what a bare command line gives.
func TestDefaults(t *testing.T) {
	c, err := parse(noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Addr: ":6969", LogFormat: "text", LogLevel: "info",
		History: DefaultHistory, Backlog: DefaultBacklog, ClientBuffer: DefaultClientBuffer,
		MaxContent: DefaultMaxContent, MaxBody: DefaultMaxBody,
		MaxStreams: DefaultMaxStreams, MaxStreamsPerAddr: DefaultMaxStreamsPerAddr,
		MaxConnsPerAddr: DefaultMaxConnsPerAddr, MaxHeaderConns: DefaultMaxHeaderConnsPerAddr,
		PostBurst: DefaultPostBurst, TypingBurst: DefaultTypingBurst,
		PostRate: DefaultPostRate, TypingRate: DefaultTypingRate,
		PresenceInterval: DefaultPresenceInterval, PresenceNames: DefaultPresenceNames,
		Heartbeat: DefaultHeartbeat, StatsInterval: 5 * time.Second,
		WriteTimeout: DefaultWriteTimeout, BatchWait: DefaultBatchWait,
		SessionLifetime: 30 * 24 * time.Hour, NATSStream: "CHAT", NATSReplicas: 1,
		NameHold: 24 * time.Hour,
	}
	if c != want {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
}

// TestEnvironment checks the CHAT_* fallbacks: a variable sets its flag,
// the command line wins over it, the old name -coalesce and its variable
// set -batch-wait, and the repair flags have no variable.
func TestEnvironment(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want func(Config) bool
	}{
		{"variable", map[string]string{"CHAT_HISTORY": "7", "CHAT_TRUSTED_PROXIES": "10.0.0.0/8"}, nil,
			func(c Config) bool { return c.History == 7 && c.TrustedProxies == "10.0.0.0/8" }},
		{"flag wins", map[string]string{"CHAT_HISTORY": "7"}, []string{"-history", "9"},
			func(c Config) bool { return c.History == 9 }},
		{"old name", nil, []string{"-coalesce", "50ms"}, func(c Config) bool { return c.BatchWait == 50*time.Millisecond }},
		{"old name's variable", map[string]string{"CHAT_COALESCE": "40ms"}, nil,
			func(c Config) bool { return c.BatchWait == 40*time.Millisecond }},
		{"new name's variable wins", map[string]string{"CHAT_COALESCE": "40ms", "CHAT_BATCH_WAIT": "30ms"}, nil,
			func(c Config) bool { return c.BatchWait == 30*time.Millisecond }},
		{"no repair variable", map[string]string{"CHAT_REPAIR": "/x", "CHAT_REPAIR_WRITE": "true"}, nil,
			func(c Config) bool { return c.Repair == "" && !c.RepairWrite }},
		{"names", map[string]string{"CHAT_NAME_HOLD": "0s", "CHAT_IDENTITY_SECRET_FILE": "/etc/chat/identity"}, nil,
			func(c Config) bool { return c.NameHold == 0 && c.IdentitySecretFile == "/etc/chat/identity" }},
	} {
		c, err := parse(envOf(tt.env), tt.args...)
		if err != nil || !tt.want(c) {
			t.Errorf("%s: %+v, %v", tt.name, c, err)
		}
	}
}

// TestRefused checks that settings out of range, or that do not go
// together, are refused with a sentence that names the flag.
func TestRefused(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-history", "-1"}, "numeric flags must not be negative"},
		{[]string{"-client-buffer", "0"}, "-client-buffer and -max-content must be at least 1"},
		{[]string{"-max-body", "63"}, "-max-body at least 64"},
		{[]string{"-max-header-conns-per-addr", "-1"}, "numeric flags must not be negative"},
		{[]string{"-heartbeat", "-1s"}, "durations must not be negative"},
		{[]string{"-write-timeout", "0"}, "-write-timeout must be positive"},
		{[]string{"-name-hold", "-1h"}, "durations must not be negative"},
		{[]string{"-pprof"}, "use -pprof-addr 127.0.0.1:6060"},
		{[]string{"-data", "x", "-history", "0"}, "-data needs -history of at least 1"},
		{[]string{"-nats", "n", "-data", "x"}, "-nats and -data: give one"},
		{[]string{"-nats", "n", "-history", "0"}, "-nats needs -history of at least 1"},
		{[]string{"-nats-replicas", "6"}, "-nats-replicas 6: want 1 to 5"},
		{[]string{"-nats-stream", "a.b"}, `-nats-stream "a.b": want 1 to 32 letters`},
		{[]string{"-tls-key", "k"}, "-tls-cert and -tls-key go together"},
		{[]string{"-log-format", "xml"}, `-log-format "xml": want text or json`},
		{[]string{"-repair-write"}, "-repair-write goes with -repair PATH"},
		{[]string{"-session-lifetime", "59s"}, "sessions must last at least 1m0s"},
		{[]string{"stray"}, "stray"},
	} {
		if _, err := parse(noEnv, tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error saying %q", tt.args, err, tt.want)
		}
	}
}

// TestUsage checks -h: flag.ErrHelp, and every flag listed with its
// variable, but for the repair flags, which have none.
func TestUsage(t *testing.T) {
	var out bytes.Buffer
	if _, err := Parse([]string{"chat", "-h"}, noEnv, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	usage := out.String()
	_, fs := define("chat", io.Discard)
	fs.VisitAll(func(f *flag.Flag) {
		hasVar := strings.Contains(usage, "(env "+env.Name(f.Name)+")")
		if !strings.Contains(usage, "  -"+f.Name+" ") && !strings.Contains(usage, "  -"+f.Name+"\n") {
			t.Errorf("-h does not list -%s", f.Name)
		}
		if wantVar := !slices.Contains(env.CmdLineOnly, f.Name); hasVar != wantVar {
			t.Errorf("-h lists -%s with a variable: %v, want %v", f.Name, hasVar, wantVar)
		}
	})
}

// TestKeys checks the key flags: a key file's contents without the white
// space around them, and the errors (both forms given, a missing or empty
// file, the same key for both roles), none of which holds a key.
func TestKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	room, admin, empty := write("room", "  secret-room \n"), write("admin", "secret-room"), write("empty", "\n")
	c, err := parse(noEnv, "-room-key-file", room, "-admin-key", "secret-admin")
	if err != nil || c.RoomKey != "secret-room" || c.AdminKey != "secret-admin" {
		t.Errorf("keys %q and %q, %v; want secret-room and secret-admin", c.RoomKey, c.AdminKey, err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-room-key", "secret-x", "-room-key-file", room}, "-room-key and -room-key-file: give one of them"},
		{[]string{"-admin-key-file", filepath.Join(dir, "none")}, "-admin-key-file: open"},
		{[]string{"-room-key-file", empty}, "-room-key-file " + empty + " is empty"},
		{[]string{"-room-key-file", room, "-admin-key-file", admin}, "-admin-key must differ from -room-key"},
	} {
		_, err := parse(noEnv, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "secret-") {
			t.Errorf("%q: %v, want an error saying %q without a key", tt.args, err, tt.want)
		}
	}
}

// TestLogger checks the logger the log flags ask for.
func TestLogger(t *testing.T) {
	var out bytes.Buffer
	l, err := Config{LogFormat: "json", LogLevel: "warn"}.Logger(&out)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown")
	if s := out.String(); strings.Contains(s, "hidden") || !strings.HasPrefix(s, "{") || !strings.Contains(s, `"msg":"shown"`) {
		t.Errorf("json at warn wrote %q", s)
	}
	if _, err := (Config{LogLevel: "loud"}).Logger(io.Discard); err == nil || !strings.HasPrefix(err.Error(), "-log-level: ") {
		t.Errorf("-log-level loud: %v", err)
	}
}

// TestNATS checks -nats: its list of servers, and the flag an error of
// opening the stream names.
func TestNATS(t *testing.T) {
	c := Config{NATS: " nats://a:4222, ,nats://b:4222 ", NATSStream: "ROOM", NATSReplicas: 3, History: 10}
	if got := c.NATSURLs(); !slices.Equal(got, []string{"nats://a:4222", "nats://b:4222"}) {
		t.Errorf("NATSURLs = %q", got)
	}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&clusterlog.ConflictError{Field: "max_msgs", Have: "20"}, "-history 10: "},
		{&clusterlog.ConflictError{Field: "num_replicas"}, "-nats-replicas 3: "},
		{&clusterlog.ConflictError{Field: "subjects"}, "-nats-stream ROOM: "},
		{fmt.Errorf("create: %w", &jetstream.APIError{ErrCode: insufficientResources}), "-nats-replicas 3: "},
		{errors.New("no servers"), "-nats: no servers"},
	} {
		err := c.NATSError(tt.err)
		if !strings.HasPrefix(err.Error(), tt.want) || !errors.Is(err, tt.err) {
			t.Errorf("NATSError(%v) = %v, want it to start %q and wrap it", tt.err, err, tt.want)
		}
	}
}
