package token

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// storeBackends are the stores that can hold the shared replay set of
// replicas without Redis: PostgreSQL (what several replicas share) and
// SQLite (the same SQL).
func storeBackends(t *testing.T) map[string]func(t *testing.T) OnceStore {
	return map[string]func(t *testing.T) OnceStore{
		"sqlite": func(t *testing.T) OnceStore {
			db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
		"postgres": func(t *testing.T) OnceStore { return pgtest.Open(t) },
	}
}

// TestDPoPReplayToAnotherReplicaWithoutRedis: replicas sharing only the
// store (PostgreSQL, no Redis) refuse a proof replayed to the other replica,
// and when eight callers race one captured proof over two replicas exactly
// one is served.
func TestDPoPReplayToAnotherReplicaWithoutRedis(t *testing.T) {
	for name, open := range storeBackends(t) {
		t.Run(name, func(t *testing.T) {
			shared := open(t)
			clk := &clock{t: time.Now()}
			a, b := NewDPoP(), NewDPoP()
			for _, d := range []*DPoP{a, b} {
				d.SetClock(clk.now)
				d.Shared = shared
			}
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			u := "https://gw.example/v1/chat/completions"
			mk := func(jti string) string {
				return proof(t, priv, map[string]any{"jti": jti, "htm": "POST", "htu": u, "iat": clk.t.Unix(), "ath": AccessTokenHash("tok")}, "dpop+jwt")
			}
			p := mk("once-" + name)
			if _, err := a.Check(p, "POST", u, "tok"); err != nil {
				t.Fatalf("first use on replica A: %v", err)
			}
			if _, err := b.Check(p, "POST", u, "tok"); !errors.Is(err, ErrProof) {
				t.Fatalf("the same proof on replica B: %v, want refused as a replay", err)
			}
			for round := range 5 {
				q := mk(fmt.Sprintf("race-%s-%d", name, round))
				var served atomic.Int64
				var wg sync.WaitGroup
				for i := range 8 {
					d := []*DPoP{NewDPoP(), NewDPoP()}[i%2] // fresh local sets: only the store can refuse
					d.SetClock(clk.now)
					d.Shared = shared
					wg.Go(func() {
						if _, err := d.Check(q, "POST", u, "tok"); err == nil {
							served.Add(1)
						}
					})
				}
				wg.Wait()
				if n := served.Load(); n != 1 {
					t.Fatalf("round %d: one captured proof served %d times across replicas", round, n)
				}
			}
		})
	}
}

// TestDPoPStoreReplaySetForgetsDeadProofs: a key recorded with a ttl that has
// passed is taken over (the row is dead), so the set does not refuse forever.
func TestDPoPStoreReplaySetForgetsDeadProofs(t *testing.T) {
	for name, open := range storeBackends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			if ok, err := s.Once(ctx, "dpop:k:1", time.Millisecond); !ok || err != nil {
				t.Fatalf("first: %v %v", ok, err)
			}
			time.Sleep(5 * time.Millisecond) // the row's expiry passes (no duration is asserted)
			if ok, err := s.Once(ctx, "dpop:k:1", time.Minute); !ok || err != nil {
				t.Fatalf("after expiry: %v %v", ok, err)
			}
			if ok, err := s.Once(ctx, "dpop:k:1", time.Minute); ok || err != nil {
				t.Fatalf("alive: %v %v, want false", ok, err)
			}
		})
	}
}
