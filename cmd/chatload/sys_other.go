//go:build !unix

package main

import "time"

// raiseFileLimit is a no-op where RLIMIT_NOFILE does not exist.
func raiseFileLimit() (uint64, error) { return 0, nil }

// selfUsage is unknown on this platform.
func selfUsage() (cpu time.Duration, maxRSS int64) { return 0, 0 }

// machineBusy is unknown on this platform.
func machineBusy() time.Duration { return 0 }
