package config

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultMemoryLimit is memory_limit's default: the Go runtime's soft memory
// limit for `gatehouse serve` when GOMEMLIMIT is not set (docs/operations.md,
// "Memory"). It bounds the runtime's own memory (heap, stacks, its metadata),
// not the executable's mapped pages nor SQLite's page cache. It is off: a
// 24 MiB limit saved about 8 MB of peak RSS under load but cost 25–80 % more
// CPU per request in the collector (benchmarks.md, "Memory (issue #12)").
const DefaultMemoryLimit = "off"

// minMemoryLimit is the smallest memory_limit accepted: below it the heap of
// an idle gateway alone would keep the collector running without pause.
const minMemoryLimit = 16 << 20

// ParseMemoryLimit parses memory_limit: a size with GOMEMLIMIT's suffixes
// (B, KiB, MiB, GiB, TiB) or "off". It returns 0 for "off".
func ParseMemoryLimit(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "off") {
		return 0, nil
	}
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("memory_limit %q: want a size such as 64MiB or 1GiB, or off", s)
	}
	if n*mult < minMemoryLimit {
		return 0, fmt.Errorf("memory_limit %q: below 16MiB; use off for no limit", s)
	}
	return n * mult, nil
}

// validateMemoryLimit checks memory_limit; empty takes the default.
func (c *Config) validateMemoryLimit() error {
	if c.MemoryLimit == "" {
		c.MemoryLimit = DefaultMemoryLimit
	}
	_, err := ParseMemoryLimit(c.MemoryLimit)
	return err
}
