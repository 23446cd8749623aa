package bench

import (
	"context"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// budgetStores opens each backend with three budgets that apply to one key
// (key, team, organisation), as a busy deployment has.
func budgetStores(b *testing.B) map[string]*budget.Ledger {
	out := map[string]*budget.Ledger{}
	open := map[string]func() budget.Store{
		"sqlite": func() budget.Store {
			db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "gh.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return db
		},
		"postgres": func() budget.Store { return pgtest.Open(b) },
	}
	for name, o := range open {
		if name == "postgres" && !pgAvailable() {
			continue
		}
		st := o()
		var bs []budget.Budget
		for _, bd := range []budget.Budget{
			{ID: "b_key", Scope: budget.ScopeKey, ScopeID: "key_hot", Period: budget.Day, LimitMicros: 1 << 50, Hard: true},
			{ID: "b_team", Scope: budget.ScopeTeam, ScopeID: "team_1", Period: budget.Month, LimitMicros: 1 << 50, Hard: true},
			{ID: "b_org", Scope: budget.ScopeOrg, Period: budget.Month, LimitMicros: 1 << 50, Hard: false},
		} {
			bd.Validate()
			bd.CreatedAt = time.Now()
			if err := st.CreateBudget(context.Background(), bd); err != nil {
				b.Fatal(err)
			}
			bs = append(bs, bd)
		}
		out[name] = budget.NewLedger(st, "bench", func() []budget.Budget { return bs }, nil, slog.New(slog.DiscardHandler))
	}
	return out
}

func pgAvailable() bool { return pgtest.Available() }

// BenchmarkReserveSettle: one reservation and its settlement, the budget work
// of one call, sequential and with 50 concurrent callers on one hot key.
// Reports p50 and p99 latency of the pair under contention.
func BenchmarkReserveSettle(b *testing.B) {
	for name, l := range budgetStores(b) {
		call := budget.Call{KeyID: "key_hot", TeamID: "team_1", Model: "gpt-4o"}
		pair := func(ctx context.Context) {
			h, err := l.Reserve(ctx, vkey.NewID("req"), call, 4000)
			if err != nil {
				b.Fatal(err)
			}
			if err := h.Settle(ctx, 1500); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(name+"/sequential", func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				pair(ctx)
			}
		})
		// 50 concurrent calls on one key, each spending 20 ms upstream between
		// its reservation and its settlement, as real calls do (and longer).
		// Reports the p50 and p99 of reserve and of settle.
		b.Run(name+"/calls-50", func(b *testing.B) {
			ctx := context.Background()
			var mu sync.Mutex
			var res, set []time.Duration
			b.ReportAllocs()
			b.SetParallelism(25)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var r, s []time.Duration
				for pb.Next() {
					t0 := time.Now()
					h, err := l.Reserve(ctx, vkey.NewID("req"), call, 4000)
					if err != nil {
						b.Fatal(err)
					}
					r = append(r, time.Since(t0))
					time.Sleep(20 * time.Millisecond)
					t1 := time.Now()
					if err := h.Settle(ctx, 1500); err != nil {
						b.Fatal(err)
					}
					s = append(s, time.Since(t1))
				}
				mu.Lock()
				res, set = append(res, r...), append(set, s...)
				mu.Unlock()
			})
			b.StopTimer()
			for _, m := range []struct {
				name string
				d    []time.Duration
			}{{"reserve", res}, {"settle", set}} {
				sort.Slice(m.d, func(i, j int) bool { return m.d[i] < m.d[j] })
				if len(m.d) > 0 {
					b.ReportMetric(float64(m.d[len(m.d)/2].Microseconds()), m.name+"-p50-µs")
					b.ReportMetric(float64(m.d[len(m.d)*99/100].Microseconds()), m.name+"-p99-µs")
				}
			}
		})
		b.Run(name+"/hot-key-50", func(b *testing.B) {
			ctx := context.Background()
			var mu sync.Mutex
			var lat []time.Duration
			b.ReportAllocs()
			b.SetParallelism(25) // 25 × GOMAXPROCS(2) = 50 callers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					t := time.Now()
					pair(ctx)
					mine = append(mine, time.Since(t))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
