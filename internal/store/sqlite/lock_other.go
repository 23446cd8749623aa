//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sqlite

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("unreachable")

// flock is a no-op where flock(2) does not exist: the data directory is not
// locked there (docs/operations.md says so).
func flock(*os.File) error { return nil }
