package server

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/config"
)

func TestApplyMemoryLimit(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	cfg := func(limit string) config.Config { c := config.Default(); c.MemoryLimit = limit; return c }
	for _, tc := range []struct {
		name string
		cfg  config.Config
		env  func(string) string
		want int64
	}{
		{"default", config.Default(), env(), 32 << 20},
		{"configured", cfg("256MiB"), env(), 256 << 20},
		{"off", cfg("off"), env(), 0},
		{"GOMEMLIMIT set", config.Default(), env(EnvGoMemLimit, "1GiB"), 0},
		{"GOGC set", config.Default(), env(EnvGOGC, "200"), 0},
		{"GOGC off", cfg("256MiB"), env(EnvGOGC, "off"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := int64(math.MaxInt64)
			calls := 0
			set := func(n int64) int64 { calls++; prev := cur; cur = n; return prev }
			got, restore := applyMemoryLimit(tc.cfg, tc.env, set)
			if got != tc.want {
				t.Fatalf("applied %d, want %d", got, tc.want)
			}
			if tc.want == 0 && calls != 0 {
				t.Fatalf("the runtime's limit was touched (%d calls) though it should be left alone", calls)
			}
			if tc.want != 0 && cur != tc.want {
				t.Fatalf("limit is %d, want %d", cur, tc.want)
			}
			restore()
			if cur != math.MaxInt64 {
				t.Fatalf("restore left the limit at %d", cur)
			}
		})
	}
}

// TestApplyMemoryLimitRuntime checks the real runtime setting moves and comes back.
func TestApplyMemoryLimitRuntime(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	n, restore := ApplyMemoryLimit(config.Default(), func(string) string { return "" })
	if got := debug.SetMemoryLimit(-1); n != 32<<20 || got != 32<<20 {
		restore()
		t.Fatalf("applied %d, runtime limit %d; want 32MiB", n, got)
	}
	restore()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("after restore the limit is %d, want %d", got, before)
	}
}
