package breaker_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/breaker"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// suspensions stands in for the keys table: the first suspension of a key wins.
type suspensions struct {
	mu     sync.Mutex
	by     map[string]string
	alerts []alert.Alert
}

func (s *suspensions) suspend(_ context.Context, id string, sp breaker.Suspension) (bool, breaker.Suspension, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by[id] != "" {
		return false, sp, nil
	}
	s.by[id] = sp.Reason
	return true, sp, nil
}

func (s *suspensions) Send(a alert.Alert) {
	s.mu.Lock()
	s.alerts = append(s.alerts, a)
	s.mu.Unlock()
}

func sharedBackends(t *testing.T) map[string]breaker.Shared {
	out := map[string]breaker.Shared{}
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	out["sqlite"] = db
	if pgtest.Available() {
		out["postgres"] = pgtest.Open(t)
	}
	if u := os.Getenv("GATEHOUSE_TEST_REDIS_URL"); u != "" {
		r, err := ratelimit.OpenRedis(context.Background(), u, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		out["redis"] = r.WithPrefix("gh-test-" + time.Now().Format("150405.000000") + ":")
	}
	return out
}

// TestSharedWindowAcrossReplicas: three replicas each see a third of a
// key's spend, each share under the ceiling, the sum over it: with shared
// windows the breaker trips, the key is suspended once and one alert fires.
func TestSharedWindowAcrossReplicas(t *testing.T) {
	for name, shared := range sharedBackends(t) {
		t.Run(name, func(t *testing.T) {
			sus := &suspensions{by: map[string]string{}}
			cfg := breaker.Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 250_000}
			var replicas []*breaker.Breaker
			for range 3 {
				b := breaker.New(cfg, sus.suspend, sus, slog.New(slog.DiscardHandler))
				b.Shared = shared
				replicas = append(replicas, b)
			}
			ctx := context.Background()
			key := "key_" + name
			// 3 × 100_000 = 300_000 > 250_000; each replica alone sees 100_000.
			tripped := 0
			var wg sync.WaitGroup
			var mu sync.Mutex
			for _, b := range replicas {
				wg.Go(func() {
					for range 4 {
						if b.Observe(ctx, key, 25_000) {
							mu.Lock()
							tripped++
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			if tripped != 0 || sus.by[key] != "" {
				t.Fatal("a replica tripped on its own share, under the ceiling")
			}
			// The flushes send each replica's share; the replica whose flush
			// brings the shared sum over the ceiling trips.
			for _, b := range replicas {
				wg.Go(func() { b.Flush(ctx) })
			}
			wg.Wait()
			if sus.by[key] == "" {
				t.Fatal("the shared window passed the ceiling and the key was not suspended")
			}
			if len(sus.alerts) != 1 {
				t.Fatalf("%d alerts; want one", len(sus.alerts))
			}
			// After a reinstatement the shared window starts empty.
			replicas[0].Reset(key)
			for _, b := range replicas {
				b.Rearm(key)
			}
			delete(sus.by, key)
			if replicas[1].Observe(ctx, key, 1000) {
				t.Fatal("tripped right after a reset")
			}
			replicas[1].Flush(ctx)
			if sus.by[key] != "" {
				t.Fatal("tripped on the first flush after a reset")
			}
		})
	}
}
