package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockFileName is the lock file inside the data directory.
const LockFileName = "gatehouse.lock"

// ErrLocked is what LockDir returns (wrapped in a *LockedError) when another
// process, or another store of this process, holds the data directory.
var ErrLocked = errors.New("data directory in use")

// LockedError names the directory and the process that holds it.
type LockedError struct {
	Dir string
	PID int // 0 when the holder's PID could not be read
}

func (e *LockedError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = "another process (pid " + strconv.Itoa(e.PID) + ")"
		if e.PID == os.Getpid() {
			holder = "this process (pid " + strconv.Itoa(e.PID) + ")"
		}
	}
	return fmt.Sprintf("the data directory %s is in use by %s: only one Gatehouse may open an embedded store", e.Dir, holder)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// DirLock is an exclusive lock on a data directory, held until Close or the
// end of the process (the kernel releases it when the process dies, kill -9
// included, so no stale lock survives a crash).
type DirLock struct {
	f *os.File
}

// LockDir takes the exclusive lock on dir (creating dir and its lock file if
// needed) without waiting: if another process holds it, or another open file
// of this process does, it returns a *LockedError naming the holder's PID,
// which the holder writes into the lock file.
//
// One process owning the file is what makes the store's answers exact: the
// in-memory admission of budgets and the ledger's sequence assume no other
// writer (docs/operations.md, "One gateway per data directory").
func LockDir(dir string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: lock %s: %w", dir, err)
	}
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: lock %s: %w", dir, err)
	}
	if err := flock(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, &LockedError{Dir: dir, PID: readPID(path)}
		}
		return nil, fmt.Errorf("sqlite: lock %s: %w", dir, err)
	}
	// The PID is a hint for the error above, not the lock: the flock is.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f}, nil
}

// Close releases the lock. The lock file stays: removing it would let a
// process that opened the old file and one that creates a new one both hold
// "the" lock.
func (l *DirLock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}

// readPID reads the holder's PID from the lock file, or 0.
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
