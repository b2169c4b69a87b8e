//go:build !unix

package main

import (
	"errors"
	"time"
)

// raiseFileLimit is a no-op where RLIMIT_NOFILE does not exist.
func raiseFileLimit() (uint64, error) { return 0, nil }

// selfUsage is unknown on this platform.
func selfUsage() (cpu time.Duration, maxRSS int64) { return 0, 0 }

// machineBusy is unknown on this platform.
func machineBusy() time.Duration { return 0 }

// readProc is unknown on this platform.
func readProc(pid int) (procStat, error) {
	return procStat{PID: pid}, errors.New("-pids needs /proc (Linux)")
}
