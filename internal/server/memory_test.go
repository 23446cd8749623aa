package server

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/config"
)

func env(kv ...string) func(string) string {
	return func(k string) string {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == k {
				return kv[i+1]
			}
		}
		return ""
	}
}

// fakeLimit swaps the runtime for a variable and a fixed live heap.
func fakeLimit(m *MemoryLimit, live uint64) *int64 {
	cur := int64(math.MaxInt64)
	m.set = func(n int64) int64 { prev := cur; cur = n; return prev }
	m.live = func() uint64 { return live }
	return &cur
}

func TestMemoryLimitOnlyWhenUnset(t *testing.T) {
	cfg := func(limit string) config.Config { c := config.Default(); c.MemoryLimit = limit; return c }
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name string
		cfg  config.Config
		env  func(string) string
		want int64 // 0: left alone
	}{
		{"default (off)", config.Default(), env(), 0},
		{"24MiB", cfg("24MiB"), env(), 24 << 20},
		{"configured", cfg("256MiB"), env(), 256 << 20},
		{"off", cfg("off"), env(), 0},
		{"GOMEMLIMIT set", cfg("24MiB"), env(EnvGoMemLimit, "1GiB"), 0},
		{"GOGC set", cfg("24MiB"), env(EnvGOGC, "200"), 0},
		{"GOGC off", cfg("256MiB"), env(EnvGOGC, "off"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemoryLimit(tc.cfg, tc.env, log)
			if tc.want == 0 {
				if m != nil {
					t.Fatalf("a limit of %d would be applied; want the runtime left alone", m.limit)
				}
				return
			}
			if m == nil {
				t.Fatal("no limit")
			}
			cur := fakeLimit(m, 1<<20)
			if got := m.Apply(); got != tc.want || *cur != tc.want {
				t.Fatalf("applied %d (runtime %d), want %d", got, *cur, tc.want)
			}
			m.Restore()
			if *cur != math.MaxInt64 {
				t.Fatalf("restore left the limit at %d", *cur)
			}
		})
	}
}

// TestMemoryLimitDroppedForTheEnvironmentIsLogged: a memory_limit that
// GOMEMLIMIT or GOGC overrules is not dropped silently: one line says so,
// naming both; with memory_limit off there is nothing to say.
func TestMemoryLimitDroppedForTheEnvironmentIsLogged(t *testing.T) {
	cfg := config.Default()
	cfg.MemoryLimit = "48MiB"
	for _, tc := range []struct {
		name string
		cfg  config.Config
		env  func(string) string
		want string // "": no line
	}{
		{"GOMEMLIMIT", cfg, env(EnvGoMemLimit, "1GiB"), "GOMEMLIMIT=1GiB"},
		{"GOGC", cfg, env(EnvGOGC, "200"), "GOGC=200"},
		{"memory_limit off", config.Default(), env(EnvGoMemLimit, "1GiB"), ""},
		{"nothing in the environment", cfg, env(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			m := NewMemoryLimit(tc.cfg, tc.env, slog.New(slog.NewTextHandler(&logs, nil)))
			if tc.want != "" && m != nil {
				t.Fatal("memory_limit applied over the environment's setting")
			}
			lines := strings.Count(logs.String(), "\n")
			if tc.want == "" {
				if lines != 0 {
					t.Fatalf("logged %q; want nothing", logs.String())
				}
				return
			}
			if lines != 1 || !strings.Contains(logs.String(), "memory_limit is not applied") ||
				!strings.Contains(logs.String(), "memory_limit=48MiB") || !strings.Contains(logs.String(), tc.want) {
				t.Fatalf("logged %q; want one line naming memory_limit=48MiB and %s", logs.String(), tc.want)
			}
		})
	}
}

// TestMemoryLimitLifted: a live heap past half the limit lifts it (the
// collector would otherwise run without pause); one below leaves it.
func TestMemoryLimitLifted(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c := config.Default()
	c.MemoryLimit = "24MiB"
	m := NewMemoryLimit(c, env(), log)
	cur := fakeLimit(m, 11<<20)
	m.Apply()
	if m.check() || *cur != 24<<20 {
		t.Fatalf("11 MiB live of 24 MiB: limit now %d", *cur)
	}
	m.live = func() uint64 { return 13 << 20 }
	m.Interval = time.Millisecond
	done := make(chan struct{})
	go func() { m.Run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not lift the limit")
	}
	if *cur != math.MaxInt64 {
		t.Fatalf("13 MiB live of 24 MiB: limit %d, want lifted", *cur)
	}
	if !strings.Contains(logs.String(), "memory_limit is below twice the live heap") {
		t.Fatalf("no warning: %q", logs.String())
	}
	m.Restore() // back to what Apply found
	if *cur != math.MaxInt64 {
		t.Fatalf("restore: %d", *cur)
	}
}

// TestMemoryLimitRuntime checks the real runtime setting moves and comes back.
func TestMemoryLimitRuntime(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	cfg := config.Default()
	cfg.MemoryLimit = "24MiB"
	m := NewMemoryLimit(cfg, env(), slog.New(slog.DiscardHandler))
	n := m.Apply()
	got := debug.SetMemoryLimit(-1)
	m.Restore()
	if n != 24<<20 || got != 24<<20 {
		t.Fatalf("applied %d, runtime limit %d; want 24MiB", n, got)
	}
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("after restore the limit is %d, want %d", got, before)
	}
	runtime.GC() // the live heap is known after a collection
	if liveHeap() == 0 {
		t.Fatal("/gc/heap/live:bytes reads 0")
	}
}

// TestMemoryLimitLiftedWhenTheCollectorIsCapped: a live heap under half the
// limit does not prove the collector is fine (the limit also counts stacks
// and runtime metadata): when the runtime's GC CPU limiter engages after
// Apply (the collector ran into its CPU cap, the death spiral), the limit is
// lifted too. A limiter that engaged before Apply does not count.
func TestMemoryLimitLiftedWhenTheCollectorIsCapped(t *testing.T) {
	c := config.Default()
	c.MemoryLimit = "24MiB"
	m := NewMemoryLimit(c, env(), slog.New(slog.DiscardHandler))
	cur := fakeLimit(m, 8<<20)
	cycle := uint64(7) // engaged before serve started
	m.limiter = func() uint64 { return cycle }
	m.Apply()
	if m.check() || *cur != 24<<20 {
		t.Fatalf("8 MiB live, limiter as at Apply: limit now %d", *cur)
	}
	cycle = 42
	if !m.check() || *cur != math.MaxInt64 {
		t.Fatalf("8 MiB live, GC CPU limiter engaged: limit %d, want lifted", *cur)
	}
}

// TestGCLimiterCycleReads: the runtime metric the lift reads exists.
func TestGCLimiterCycleReads(t *testing.T) {
	s := []metrics.Sample{{Name: "/gc/limiter/last-enabled:gc-cycle"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Fatalf("/gc/limiter/last-enabled:gc-cycle: kind %v", s[0].Value.Kind())
	}
	_ = gcLimiterCycle()
}
