package audit_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// interleaved is the store with a hook that runs once, between the engine's
// read of a key and its narrowing write: another writer landing in that gap.
type interleaved struct {
	*sqlstore.DB
	once sync.Once
	gap  func()
}

func (s *interleaved) NarrowKey(ctx context.Context, id string, version int64, scope vkey.Scope, expires *time.Time) (vkey.Key, error) {
	s.once.Do(s.gap)
	return s.DB.NarrowKey(ctx, id, version, scope, expires)
}

// secondItem opens a second campaign over the same team and returns its item
// for the key: two reviewers deciding on one key from two campaigns.
func secondItem(t *testing.T, e *audit.Engine, keyID string) audit.Item {
	t.Helper()
	_, items, err := e.StartReview(context.Background(), "team:a", "", "", "prn_lead2", 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Kind == "key" && it.Subject == keyID {
			return it
		}
	}
	t.Fatal("no key item in the second campaign")
	return audit.Item{}
}

func engineOver(s audit.Store) *audit.Engine {
	return audit.New(audit.Deps{Store: s, Ledger: &recLedger{}, Alerts: &recAlerts{}, Now: func() time.Time { return time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC) }})
}

// TestNarrowRacesNarrow: reviewer A reduces a key's models while reviewer B
// (another campaign, another replica) reduces its endpoints and lands between
// A's read and A's write. Both reductions hold: A's write, computed from the
// key before B, must not put B's endpoints back.
func TestNarrowRacesNarrow(t *testing.T) { backends(t, testNarrowRacesNarrow) }

func testNarrowRacesNarrow(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	wide := vkey.Scope{Models: []string{"a", "b"}, Endpoints: []string{"chat", "embeddings"}}
	_, _, itA := reviewFixture(t, db, wide)
	itB := secondItem(t, engineOver(db), itA.Subject)
	s := &interleaved{DB: db}
	s.gap = func() {
		if _, err := engineOver(db).Decide(ctx, itB.ID, "reduce", "endpoints", "prn_lead2", true, &audit.Reduction{Endpoints: []string{"chat"}}); err != nil {
			t.Errorf("reviewer B: %v", err)
		}
	}
	if _, err := engineOver(s).Decide(ctx, itA.ID, "reduce", "models", "prn_lead", true, &audit.Reduction{Models: []string{"a"}}); err != nil {
		t.Fatalf("reviewer A: %v", err)
	}
	k, _ := db.Key(ctx, itA.Subject)
	if !slices.Equal(k.Scope.Models, []string{"a"}) || !slices.Equal(k.Scope.Endpoints, []string{"chat"}) {
		t.Fatalf("after both reductions the key's scope is %+v, want models [a] and endpoints [chat]", k.Scope)
	}
}

// TestNarrowRacesRevoke: a revocation lands between a reduction's read and
// its write. Both hold (revoked and narrowed), and each write moved the
// version, so an admin's If-Match taken before either fails.
func TestNarrowRacesRevoke(t *testing.T) { backends(t, testNarrowRacesRevoke) }

func testNarrowRacesRevoke(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	_, _, it := reviewFixture(t, db, vkey.Scope{Models: []string{"a", "b"}})
	before, _ := db.Key(ctx, it.Subject)
	revokedAt := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s := &interleaved{DB: db}
	s.gap = func() {
		if _, err := db.RevokeKey(ctx, it.Subject, revokedAt, store.AnyVersion); err != nil {
			t.Errorf("revoke: %v", err)
		}
	}
	if _, err := engineOver(s).Decide(ctx, it.ID, "reduce", "models", "prn_lead", true, &audit.Reduction{Models: []string{"b"}}); err != nil {
		t.Fatalf("reduce: %v", err)
	}
	k, _ := db.Key(ctx, it.Subject)
	if k.RevokedAt == nil || !slices.Equal(k.Scope.Models, []string{"b"}) || k.Version != before.Version+2 {
		t.Fatalf("key after a reduce racing a revoke: revoked %v, scope %+v, version %d (was %d)", k.RevokedAt, k.Scope, k.Version, before.Version)
	}
	if _, err := db.RevokeKey(ctx, it.Subject, revokedAt, before.Version); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("an If-Match from before both writes: %v", err)
	}
}

// TestNarrowKeyIsConditional: the store's write itself refuses a stale
// version, so two writers that read one version cannot both write.
func TestNarrowKeyIsConditional(t *testing.T) { backends(t, testNarrowKeyIsConditional) }

func testNarrowKeyIsConditional(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	_, k := seed(t, db, time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	k, _ = db.Key(ctx, k.ID)
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range 8 {
		wg.Go(func() {
			_, err := db.NarrowKey(ctx, k.ID, k.Version, vkey.Scope{Models: []string{string(rune('a' + i))}}, nil)
			switch {
			case err == nil:
				mu.Lock()
				won++
				mu.Unlock()
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("narrow %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d narrows of one version succeeded, want 1", won)
	}
	if _, err := db.NarrowKey(ctx, "key_nope", 1, vkey.Scope{}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown key: %v", err)
	}
}

// TestConcurrentReductionsAllHold: reviewers of two campaigns on two engines
// reduce one key at once; whatever the interleaving, the key ends with both
// reductions applied.
func TestConcurrentReductionsAllHold(t *testing.T) { backends(t, testConcurrentReductionsAllHold) }

func testConcurrentReductionsAllHold(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	_, _, itA := reviewFixture(t, db, vkey.Scope{Models: []string{"a", "b"}, Endpoints: []string{"chat", "embeddings"}})
	itB := secondItem(t, engineOver(db), itA.Subject)
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := engineOver(db).Decide(ctx, itA.ID, "reduce", "models", "prn_lead", true, &audit.Reduction{Models: []string{"a"}}); err != nil {
			t.Errorf("A: %v", err)
		}
	})
	wg.Go(func() {
		if _, err := engineOver(db).Decide(ctx, itB.ID, "reduce", "endpoints", "prn_lead2", true, &audit.Reduction{Endpoints: []string{"chat"}}); err != nil {
			t.Errorf("B: %v", err)
		}
	})
	wg.Wait()
	k, _ := db.Key(ctx, itA.Subject)
	if !slices.Equal(k.Scope.Models, []string{"a"}) || !slices.Equal(k.Scope.Endpoints, []string{"chat"}) {
		t.Fatalf("after concurrent reductions the scope is %+v", k.Scope)
	}
}
