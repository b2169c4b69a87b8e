//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package journal

import "os"

// canLock is false: there is no flock(2) here, so Open logs a warning and
// goes on without the lock.
const canLock = false

// tryLock is never called where canLock is false.
func tryLock(*os.File) (bool, error) { return false, errNoLock }
