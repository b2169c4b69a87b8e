//go:build unix

package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and
// returns the resulting soft limit (0 if unknown).
func raiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return uint64(rl.Cur), nil
}

// selfUsage returns this process's user+system CPU time and peak RSS in bytes.
func selfUsage() (cpu time.Duration, maxRSS int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if runtime.GOOS == "darwin" {
		return cpu, int64(ru.Maxrss) // bytes there, KiB elsewhere
	}
	return cpu, int64(ru.Maxrss) * 1024
}

// machineBusy returns the CPU time all processors spent not idle since boot,
// from /proc/stat (Linux only; 0 elsewhere).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0
		}
		// Fields: user nice system idle iowait irq softirq steal guest guest_nice.
		// Idle and iowait are not busy; guest time is already in user.
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/stat (100 on every Linux ABI Go supports).
const clockTicks = 100

// readProc returns process pid's name, CPU time and resident memory now,
// from /proc/PID/stat (Linux only: an error elsewhere).
func readProc(pid int) (procStat, error) {
	p := procStat{PID: pid}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return p, fmt.Errorf("process %d: %w", pid, err)
	}
	name, utime, stime, pages, err := parseProcStat(b)
	if err != nil {
		return p, fmt.Errorf("process %d: %w", pid, err)
	}
	p.Name = name
	p.CPUSeconds = float64(utime+stime) / clockTicks
	p.RSSBytes = pages * int64(os.Getpagesize())
	return p, nil
}
