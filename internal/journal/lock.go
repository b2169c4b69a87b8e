package journal

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrLocked is what Open's error wraps when another journal holds the lock
// on the same path, in this process or another one.
var ErrLocked = errors.New("journal in use by another server")

// errNoLock is what lockFile returns where the platform has no advisory lock
// the journal can use.
var errNoLock = errors.New("this platform has no advisory file lock the journal can use")

// LockPath returns the name of the lock file of the journal at path: the
// journal's name with ".lock" added. The lock file stays after the server
// exits; only the kernel's lock on it, which dies with the process, matters.
func LockPath(path string) string { return path + ".lock" }

// lockError is the error of an Open that found the journal locked.
type lockError struct {
	// path is the journal's name and lockPath its lock file's.
	path, lockPath string
	// pid is the process id the holder wrote into the lock file, or 0 if
	// it could not be read.
	pid int
}

// Error names the journal, the lock file and, when it is known, the
// holder's process id.
func (e *lockError) Error() string {
	var holder string
	switch {
	case e.pid == os.Getpid():
		holder = fmt.Sprintf("this process (pid %d) already has it open", e.pid)
	case e.pid > 0:
		holder = fmt.Sprintf("pid %d holds %s", e.pid, e.lockPath)
	default:
		holder = "a process whose pid is not known holds " + e.lockPath
	}
	return fmt.Sprintf("journal %s is in use by another server: %s", e.path, holder)
}

// Unwrap returns ErrLocked.
func (e *lockError) Unwrap() error { return ErrLocked }

// lock takes the exclusive lock on the journal at path and writes this
// process's id into the lock file. It returns the open lock file, which holds
// the lock until it is closed (or the process ends, however it ends). Where
// the platform cannot lock, it returns errNoLock and no file.
func lock(path string) (*os.File, error) {
	if !canLock {
		return nil, errNoLock
	}
	lp := LockPath(path)
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	locked, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if !locked {
		pid := readPID(f)
		f.Close()
		return nil, &lockError{path: path, lockPath: lp, pid: pid}
	}
	// The holder's pid is only for the error message of the next server
	// that tries, so it is not synced.
	err = restrict(f, nil)
	if err == nil {
		err = f.Truncate(0)
	}
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open journal: %w", err)
	}
	return f, nil
}

// readPID returns the process id written in the lock file f, or 0.
func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
