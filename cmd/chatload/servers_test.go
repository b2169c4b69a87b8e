package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestParseProcStat reads /proc/PID/stat lines, hostile names included.
func TestParseProcStat(t *testing.T) {
	const rest = " S 1 2 3 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0 4242 123456789 2048 18446744073709551615"
	for _, tt := range []struct {
		name, line string
		want       string
		utime      int64
		stime      int64
		rss        int64
		bad        bool
	}{
		{name: "plain", line: "4242 (chat)" + rest, want: "chat", utime: 1234, stime: 567, rss: 2048},
		{name: "spaces and parentheses in the name", line: "7 (a) b (c d))" + rest, want: "a) b (c d)", utime: 1234, stime: 567, rss: 2048},
		{name: "empty name", line: "7 ()" + rest, want: "", utime: 1234, stime: 567, rss: 2048},
		{name: "no parentheses", line: "7 chat" + rest, bad: true},
		{name: "cut short", line: "7 (chat) S 1 2 3 0 -1 4194560 100 0 0 0 1234 567", bad: true},
		{name: "not a number", line: "7 (chat) S 1 2 3 0 -1 4194560 100 0 0 0 12x4 567 0 0 20 0 9 0 4242 1 2048", bad: true},
		{name: "negative", line: "7 (chat) S 1 2 3 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0 4242 1 -5", bad: true},
		{name: "empty", line: "", bad: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			name, utime, stime, rss, err := parseProcStat([]byte(tt.line))
			if tt.bad {
				if err == nil {
					t.Errorf("parseProcStat(%q) = %q %d %d %d, want an error", tt.line, name, utime, stime, rss)
				}
				return
			}
			if err != nil || name != tt.want || utime != tt.utime || stime != tt.stime || rss != tt.rss {
				t.Errorf("parseProcStat(%q) = %q %d %d %d %v, want %q %d %d %d", tt.line, name, utime, stime, rss, err, tt.want, tt.utime, tt.stime, tt.rss)
			}
		})
	}
}

// TestParsePIDs checks -pids.
func TestParsePIDs(t *testing.T) {
	if got, err := parsePIDs(" 12, 7,,3 "); err != nil || !slices.Equal(got, []int{12, 7, 3}) {
		t.Errorf("parsePIDs = %v, %v; want [12 7 3]", got, err)
	}
	if got, err := parsePIDs(""); err != nil || len(got) != 0 {
		t.Errorf("parsePIDs(\"\") = %v, %v; want none", got, err)
	}
	for _, bad := range []string{"x", "0", "-3", "1,2x"} {
		if _, err := parsePIDs(bad); err == nil {
			t.Errorf("parsePIDs(%q): no error", bad)
		}
	}
}

// TestReadProcCountsCPU reads this process: its CPU time grows by what it
// burns, as its own getrusage says.
func TestReadProcCountsCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	before, err := readProc(os.Getpid())
	if err != nil || before.Name == "" || before.RSSBytes < 1<<20 {
		t.Fatalf("readProc(self) = %+v, %v", before, err)
	}
	self0, _ := selfUsage()
	x := 1
	for {
		for range 1_000_000 {
			x = x*31 + 7
		}
		if self, _ := selfUsage(); self-self0 >= 300*time.Millisecond {
			break
		}
	}
	after, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := after.CPUSeconds - before.CPUSeconds; d < 0.2 || x == 0 {
		t.Errorf("readProc counted %.3f CPU-s while the process burned 0.3, want at least 0.2", d)
	}
}

// TestStatsSummedOverNodes checks that the server's figures are the sum
// of every node's /stats (a node that does not answer is left out), and
// that with -pids its CPU and memory are the processes'.
func TestStatsSummedOverNodes(t *testing.T) {
	node := func(body string, status int) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			io.WriteString(w, body)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a := node(`{"clients":500,"deliveries":1000,"stream_writes":900,"cpu_seconds":1.5,"rss_bytes":1000,"goroutines":510,"uptime_seconds":9}`, 200)
	b := node(`{"clients":499,"deliveries":998,"stream_writes":800,"cpu_seconds":2.5,"rss_bytes":3000,"goroutines":509,"uptime_seconds":7}`, 200)
	down := node(`{"error":"draining"}`, 503)
	r, err := newLoadRun(config{url: a.URL + "," + b.URL + "," + down.URL, jsonOnly: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st := r.fetchStats(context.Background(), http.DefaultClient)
	want := serverStats{Clients: 999, Deliveries: 1998, StreamWrites: 1700, CPUSeconds: 4, RSSBytes: 4000, Goroutines: 1019, UptimeSeconds: 9, Nodes: 2}
	if st == nil || !equalStats(*st, want) || st.cpu() != 4 || st.rss() != 4000 {
		t.Fatalf("fetchStats = %+v, want %+v", st, want)
	}

	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	self := os.Getpid()
	r, err = newLoadRun(config{url: a.URL, pids: "1," + strconv.Itoa(self), jsonOnly: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st = r.fetchStats(context.Background(), http.DefaultClient)
	if st == nil || len(st.Processes) != 2 || st.Processes[1].PID != self || st.Processes[1].RSSBytes <= 0 {
		t.Fatalf("fetchStats with -pids = %+v", st)
	}
	p0, p1 := st.Processes[0], st.Processes[1]
	if st.cpu() != p0.CPUSeconds+p1.CPUSeconds || st.rss() != p0.RSSBytes+p1.RSSBytes {
		t.Errorf("with -pids cpu %v and rss %v, want the processes' sums (%+v)", st.cpu(), st.rss(), st.Processes)
	}
	if _, err := newLoadRun(config{url: a.URL, pids: "999999999"}, io.Discard); err == nil {
		t.Error("-pids naming no process: no error")
	}
}

// equalStats compares two figures.
func equalStats(a, b serverStats) bool { return reflect.DeepEqual(a, b) }

// TestPerProcess checks each process's figures over the three samples: CPU
// over the connect and hold phases and over posting, and memory.
func TestPerProcess(t *testing.T) {
	sample := func(cpu1, cpu2 float64, rss1, rss2 int64) *serverStats {
		return &serverStats{Processes: []procStat{{PID: 1, Name: "chat", CPUSeconds: cpu1, RSSBytes: rss1}, {PID: 2, Name: "nats-server", CPUSeconds: cpu2, RSSBytes: rss2}}}
	}
	got := perProcess(sample(1, 10, 100, 1000), sample(3, 10.5, 900, 1100), sample(7.5, 12, 950, 1200))
	want := []processFigures{
		{PID: 1, Name: "chat", ConnectCPUSecs: 2, CPUSecs: 4.5, RSSBefore: 100, RSSStreams: 900, RSSEnd: 950},
		{PID: 2, Name: "nats-server", ConnectCPUSecs: 0.5, CPUSecs: 1.5, RSSBefore: 1000, RSSStreams: 1100, RSSEnd: 1200},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("perProcess = %+v, want %+v", got, want)
	}
	if got := perProcess(sample(1, 1, 1, 1), &serverStats{}, sample(1, 1, 1, 1)); got != nil {
		t.Errorf("perProcess with a sample missing its processes = %+v, want none", got)
	}
}
