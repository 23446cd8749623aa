package server

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/config"
)

// EnvGoMemLimit and EnvGOGC are the Go runtime's own settings. When the
// operator sets either, the runtime already applies it and memory_limit
// leaves the collector alone.
const (
	EnvGoMemLimit = "GOMEMLIMIT"
	EnvGOGC       = "GOGC"
)

// MemoryLimit is the soft memory limit `gatehouse serve` gives the Go
// runtime (memory_limit; docs/operations.md, "Memory"). It is process-wide,
// so only serve applies it: a process that embeds servers (tests) keeps its
// own.
//
// A soft limit below what the live heap needs makes the collector run
// without pause (Go caps it at about half the CPU): Run watches the live heap
// and lifts the limit, once and with a warning, when the live heap passes
// half of it, so that a deployment whose heap outgrows the limit keeps Go's usual
// pacing (GOGC=100) instead of being starved of CPU by the collector.
type MemoryLimit struct {
	limit    int64
	prev     int64
	set      func(int64) int64
	live     func() uint64
	limiter  func() uint64 // the GC cycle in which the collector's CPU limiter last engaged (0: never)
	limited  uint64        // limiter() at Apply
	log      *slog.Logger
	Interval time.Duration // how often Run reads the live heap (default 5 s)
}

// NewMemoryLimit returns the limit cfg asks for, or nil when memory_limit is
// off or the environment sets GOMEMLIMIT or GOGC (the operator tuned the
// collector: theirs wins, and a memory_limit set all the same is logged as
// not applied, once). memory_limit is read once, here, when serve starts: a
// change takes a restart (the running gateway reloads only the stored
// configuration, never the file or the environment).
func NewMemoryLimit(cfg config.Config, getenv func(string) string, log *slog.Logger) *MemoryLimit {
	n, err := config.ParseMemoryLimit(cfg.MemoryLimit)
	if err != nil || n == 0 { // Validate has rejected a bad value already
		return nil
	}
	if gml, gogc := getenv(EnvGoMemLimit), getenv(EnvGOGC); gml != "" || gogc != "" {
		log.Info("memory_limit is not applied: the environment sets the Go runtime's own GOMEMLIMIT or GOGC, which win (docs/operations.md, Memory)",
			"memory_limit", cfg.MemoryLimit, EnvGoMemLimit, gml, EnvGOGC, gogc)
		return nil
	}
	return &MemoryLimit{limit: n, set: debug.SetMemoryLimit, live: liveHeap, limiter: gcLimiterCycle, log: log, Interval: 5 * time.Second}
}

// Apply sets the runtime's limit and returns it.
func (m *MemoryLimit) Apply() int64 {
	m.prev = m.set(m.limit)
	if m.limiter != nil {
		m.limited = m.limiter()
	}
	return m.limit
}

// Restore puts back the limit Apply replaced.
func (m *MemoryLimit) Restore() { m.set(m.prev) }

// Run lifts the limit when the live heap passes half of it, then returns; it
// also returns when ctx ends.
func (m *MemoryLimit) Run(ctx context.Context) {
	t := time.NewTicker(m.Interval)
	defer t.Stop()
	for {
		if m.check() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check lifts the limit if the live heap needs it, or if the collector's CPU
// limiter engaged since Apply (the collector hit its CPU cap: the live heap
// alone does not count stacks and runtime metadata, which the limit does), and
// reports whether it did.
func (m *MemoryLimit) check() bool {
	live := m.live()
	capped := m.limiter != nil && m.limiter() != m.limited
	if live <= uint64(m.limit)/2 && !capped {
		return false
	}
	m.set(math.MaxInt64)
	m.log.Warn("memory_limit is below twice the live heap: lifted until restart, so that the collector does not run without pause; raise memory_limit or set it off (docs/operations.md, Memory)",
		"memory_limit_bytes", m.limit, "live_heap_bytes", live, "gc_cpu_limited", capped)
	return true
}

// liveHeap is the heap the last collection found live (0 before the first).
func liveHeap() uint64 { return readUint64Metric("/gc/heap/live:bytes") }

// gcLimiterCycle is the GC cycle in which the collector's CPU limiter last
// engaged (0 if never): it engages when the collector would take more than
// about half the CPU, which a soft limit too small for the heap causes.
func gcLimiterCycle() uint64 { return readUint64Metric("/gc/limiter/last-enabled:gc-cycle") }

// readUint64Metric reads one runtime metric of kind uint64 (0 if absent).
func readUint64Metric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
