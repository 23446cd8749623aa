package sqlite

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// lockChild, when set to a directory, makes the test binary lock it, say so
// and wait for its stdin to close: another process holding the lock.
const lockChild = "GATEHOUSE_SQLITE_LOCK_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(lockChild); dir != "" {
		l, err := LockDir(dir)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		bufio.NewReader(os.Stdin).ReadString('\n') // until the parent lets go
		l.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func wantLocked(t *testing.T, err error, dir string, pid int) {
	t.Helper()
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock on %s: %v, want a LockedError", dir, err)
	}
	if le.Dir != dir || le.PID != pid {
		t.Fatalf("LockedError names %s pid %d, want %s pid %d", le.Dir, le.PID, dir, pid)
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, fmt.Sprint("pid ", pid)) {
		t.Fatalf("error %q does not name the directory and the pid", msg)
	}
}

// TestSecondLockInOneProcessFails: two stores of one process on one data
// directory are two writers as surely as two processes are.
func TestSecondLockInOneProcessFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDir(dir)
	wantLocked(t, err, dir, os.Getpid())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := LockDir(dir) // released: the next owner gets it
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l2.Close()
}

// TestLockHeldByAnotherProcessUntilItDies: a second process is refused with
// the holder's PID; once the holder is killed (-9, no clean-up), the lock
// is free at once: no stale lock survives a crash.
func TestLockHeldByAnotherProcessUntilItDies(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockChild+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("child: %q", line)
	}
	_, err = LockDir(dir)
	wantLocked(t, err, dir, cmd.Process.Pid)
	cmd.Process.Kill()
	cmd.Wait()
	l, err := LockDir(dir)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	l.Close()
}
