package server

import (
	"runtime/debug"

	"github.com/gatehouse-gw/gatehouse/internal/config"
)

// EnvGoMemLimit and EnvGOGC are the Go runtime's own settings. When the
// operator sets either, the runtime already applies it and memory_limit
// leaves the collector alone.
const (
	EnvGoMemLimit = "GOMEMLIMIT"
	EnvGOGC       = "GOGC"
)

// ApplyMemoryLimit sets the Go runtime's soft memory limit to cfg.MemoryLimit
// unless it is off or the environment sets GOMEMLIMIT or GOGC (the operator
// tuned the collector: theirs wins). It returns the limit it set (0: none) and
// a function that restores the previous one. For `gatehouse serve` only: the
// limit is process-wide, and a process that embeds servers (tests) keeps its
// own.
func ApplyMemoryLimit(cfg config.Config, getenv func(string) string) (int64, func()) {
	return applyMemoryLimit(cfg, getenv, debug.SetMemoryLimit)
}

func applyMemoryLimit(cfg config.Config, getenv func(string) string, set func(int64) int64) (int64, func()) {
	if getenv(EnvGoMemLimit) != "" || getenv(EnvGOGC) != "" {
		return 0, func() {}
	}
	n, err := config.ParseMemoryLimit(cfg.MemoryLimit)
	if err != nil || n == 0 { // Validate has rejected a bad value already
		return 0, func() {}
	}
	prev := set(n)
	return n, func() { set(prev) }
}
