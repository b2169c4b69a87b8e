//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package journal

import (
	"errors"
	"os"
	"syscall"
)

// canLock is true: flock(2) is there.
const canLock = true

// tryLock takes an exclusive flock(2) on f without waiting. It reports false
// when another open file (in this process or another) holds it. The kernel
// drops the lock when f is closed or the process dies, so a kill -9 never
// leaves a stale lock.
func tryLock(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var lockErr error
	if err := rc.Control(func(fd uintptr) {
		for {
			lockErr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
			if !errors.Is(lockErr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		return false, err
	}
	if errors.Is(lockErr, syscall.EWOULDBLOCK) {
		return false, nil
	}
	if lockErr != nil {
		return false, &os.PathError{Op: "flock", Path: f.Name(), Err: lockErr}
	}
	return true, nil
}
