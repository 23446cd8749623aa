package audit_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// reviewFixture: team_a with the service account prn_a (key_a) and two
// admins; one open campaign over the team.
func reviewFixture(t *testing.T, db *sqlstore.DB, scope vkey.Scope) (*audit.Engine, *recLedger, audit.Item) {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	_, key := seed(t, db, clk.Now())
	for _, p := range []org.Principal{
		{ID: "prn_lead", Name: "lead", Kind: org.KindUser, Teams: []string{"team_a"}, Roles: []string{"admin"}, CreatedAt: clk.Now(), Version: 1},
		{ID: "prn_lead2", Name: "lead2", Kind: org.KindUser, Teams: []string{"team_a"}, Roles: []string{"admin"}, CreatedAt: clk.Now(), Version: 1},
	} {
		if err := db.CreatePrincipal(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if len(scope.Models)+len(scope.Endpoints) > 0 {
		if _, err := db.NarrowKey(ctx, key.ID, store.AnyVersion, scope, nil); err != nil {
			t.Fatal(err)
		}
	}
	led := &recLedger{}
	e := audit.New(audit.Deps{Store: db, Ledger: led, Alerts: &recAlerts{}, Now: clk.Now})
	_, items, err := e.StartReview(ctx, "team:a", "", "", "prn_lead", 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Kind == "key" {
			return e, led, it
		}
	}
	t.Fatal("no key item")
	return nil, nil, audit.Item{}
}

// TestReviewReduceNeverWidens: "reduce" is a reviewer's way to narrow a key;
// a reduction naming models or endpoints the key could not reach before is
// refused and the key stays as it was.
func TestReviewReduceNeverWidens(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		scope vkey.Scope
		red   audit.Reduction
		ok    bool
		want  vkey.Scope
	}{
		"other model":              {vkey.Scope{Models: []string{"gpt-4o-mini"}}, audit.Reduction{Models: []string{"gpt-4o"}}, false, vkey.Scope{}},
		"a model added":            {vkey.Scope{Models: []string{"gpt-4o-mini"}}, audit.Reduction{Models: []string{"gpt-4o-mini", "o3"}}, false, vkey.Scope{}},
		"star":                     {vkey.Scope{Models: []string{"gpt-4o-mini"}}, audit.Reduction{Models: []string{"*"}}, false, vkey.Scope{}},
		"glob wider than one char": {vkey.Scope{Models: []string{"gpt-?"}}, audit.Reduction{Models: []string{"gpt-*"}}, false, vkey.Scope{}},
		"other endpoint":           {vkey.Scope{Endpoints: []string{"embeddings"}}, audit.Reduction{Endpoints: []string{"chat"}}, false, vkey.Scope{}},
		"narrower glob":            {vkey.Scope{Models: []string{"gpt-*"}}, audit.Reduction{Models: []string{"gpt-4o*"}}, true, vkey.Scope{Models: []string{"gpt-4o*"}}},
		"one of the models":        {vkey.Scope{Models: []string{"a", "b"}, Endpoints: []string{"chat", "embeddings"}}, audit.Reduction{Models: []string{"b"}, Endpoints: []string{"chat"}}, true, vkey.Scope{Models: []string{"b"}, Endpoints: []string{"chat"}}},
		"unrestricted key":         {vkey.Scope{}, audit.Reduction{Models: []string{"gpt-4o"}}, true, vkey.Scope{Models: []string{"gpt-4o"}}},
	} {
		t.Run(name, func(t *testing.T) {
			db := openStore(t)
			e, led, it := reviewFixture(t, db, tc.scope)
			before, _ := db.Key(ctx, it.Subject)
			_, err := e.Decide(ctx, it.ID, "reduce", "narrow it", "prn_lead", true, &tc.red)
			after, _ := db.Key(ctx, it.Subject)
			if !tc.ok {
				if !errors.Is(err, audit.ErrBadDecision) || !strings.Contains(err.Error(), "widen") {
					t.Fatalf("reduce %+v of %+v: %v", tc.red, tc.scope, err)
				}
				if !slices.Equal(after.Scope.Models, before.Scope.Models) || !slices.Equal(after.Scope.Endpoints, before.Scope.Endpoints) {
					t.Fatalf("a refused reduction changed the key: %+v", after.Scope)
				}
				if got, _ := db.ReviewItem(ctx, it.ID); got.Decision != "" || len(led.actions(it.ID)) != 0 {
					t.Fatalf("a refused reduction decided the item: %+v, ledger %v", got, led.actions(it.ID))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(after.Scope.Models, tc.want.Models) || !slices.Equal(after.Scope.Endpoints, tc.want.Endpoints) {
				t.Fatalf("reduced scope %+v, want %+v", after.Scope, tc.want)
			}
		})
	}
}

// TestReviewConcurrentDecisions: reviewers deciding one item at once (keep
// against revoke, on two replicas sharing a store): exactly one decision wins,
// only its effect happens, and the ledger holds exactly that one.
func TestReviewConcurrentDecisions(t *testing.T) { backends(t, testReviewConcurrentDecisions) }

func testReviewConcurrentDecisions(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	e, led, it := reviewFixture(t, db, vkey.Scope{})
	e2 := audit.New(audit.Deps{Store: db, Ledger: led, Alerts: &recAlerts{}, Now: func() time.Time { return time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC) }})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []string
	for i := range 8 {
		wg.Go(func() {
			eng, decision, by := e, "keep", "prn_lead"
			if i%2 == 1 {
				eng, decision, by = e2, "revoke", "prn_lead2"
			}
			got, err := eng.Decide(ctx, it.ID, decision, "race", by, true, nil)
			switch {
			case err == nil:
				mu.Lock()
				won = append(won, got.Decision)
				mu.Unlock()
			case !errors.Is(err, audit.ErrDecided):
				t.Errorf("%s: %v", decision, err)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 {
		t.Fatalf("%d decisions won: %v", len(won), won)
	}
	final, _ := db.ReviewItem(ctx, it.ID)
	k, _ := db.Key(ctx, it.Subject)
	if final.Decision != won[0] || (k.RevokedAt != nil) != (won[0] == "revoke") {
		t.Fatalf("item decided %q, winner %q, key revoked %v", final.Decision, won[0], k.RevokedAt != nil)
	}
	if got := led.actions(it.ID); !slices.Equal(got, []string{"review." + won[0]}) {
		t.Fatalf("ledger of the item: %v", got)
	}
}
