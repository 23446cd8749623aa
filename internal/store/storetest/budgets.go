package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

func testBudgets(t *testing.T, b Backend) {
	ctx := context.Background()
	bg := budget.Budget{ID: "bud_1", Scope: budget.ScopeKey, ScopeID: "key_a", Period: budget.Day, TimeZone: "UTC", LimitMicros: 1000, Hard: true,
		Thresholds: []int{50, 100}, CreatedAt: now}
	must(t, b.CreateBudget(ctx, bg))
	got, err := b.Budget(ctx, "bud_1")
	must(t, err)
	if got.LimitMicros != 1000 || !got.Hard || got.Version != 1 || len(got.Thresholds) != 2 {
		t.Fatalf("Budget = %+v", got)
	}
	got.LimitMicros = 2000
	up, err := b.UpdateBudget(ctx, got, 1)
	must(t, err)
	if up.LimitMicros != 2000 || up.Version != 2 {
		t.Fatalf("UpdateBudget = %+v", up)
	}
	_, err = b.UpdateBudget(ctx, got, 1)
	wantErr(t, err, store.ErrConflict)
	list, _ := b.ListBudgets(ctx)
	if len(list) != 1 {
		t.Fatalf("ListBudgets = %+v", list)
	}

	c := budget.Charge{BudgetID: "bud_1", PeriodStart: 42, Limit: 1000, Hard: true}
	soft := budget.Charge{BudgetID: "bud_soft", PeriodStart: 42, Limit: 10, Hard: false}
	must(t, b.Reserve(ctx, budget.Reservation{ID: "req_1", Instance: "i1", Amount: 600, Charges: []budget.Charge{c, soft}, CreatedAt: now}))
	err = b.Reserve(ctx, budget.Reservation{ID: "req_2", Instance: "i1", Amount: 500, Charges: []budget.Charge{soft, c}, CreatedAt: now})
	var ie *budget.InsufficientError
	if !errors.As(err, &ie) || ie.BudgetID != "bud_1" || ie.Remaining != 400 {
		t.Fatalf("over-reserve: %v", err)
	}
	sp, _ := b.Spend(ctx, []budget.Charge{c, soft})
	if sp[0].Reserved != 600 || sp[1].Reserved != 600 {
		t.Fatalf("a refused reservation left money reserved: %+v", sp)
	}
	settled, err := b.Settle(ctx, "req_1", 250)
	must(t, err)
	if len(settled) != 2 || settled[0].Spent != 250 || settled[0].Reserved != 0 {
		t.Fatalf("Settle = %+v", settled)
	}
	again, err := b.Settle(ctx, "req_1", 999)
	must(t, err)
	if len(again) != 0 {
		t.Fatalf("second settle changed counters: %+v", again)
	}
	must(t, b.Reserve(ctx, budget.Reservation{ID: "req_3", Instance: "i1", Amount: 750, Charges: []budget.Charge{c}, CreatedAt: now}))

	// Abandoned reservations: an instance with no fresh heartbeat. The
	// cutoff is in the clock the heartbeats recorded (the store's own on
	// PostgreSQL): between i1's heartbeat and i2's.
	t1 := beat(t, b, "i1", now, time.Time{})
	beat(t, b, "i2", now.Add(time.Minute), t1)
	must(t, b.Reserve(ctx, budget.Reservation{ID: "req_4", Instance: "i2", Amount: 0, Charges: []budget.Charge{c}, CreatedAt: now}))
	ids, err := b.Abandoned(ctx, "i3", t1.Add(time.Microsecond))
	must(t, err)
	if len(ids) != 1 || ids[0] != "req_3" {
		t.Fatalf("Abandoned = %v, want [req_3]", ids)
	}
	if ids, _ := b.Abandoned(ctx, "i1", t1.Add(-30*time.Second)); len(ids) != 0 {
		t.Fatalf("an instance's own reservations reported abandoned: %v", ids)
	}

	fired, err := b.MarkAlert(ctx, "bud_1", 42, 50)
	must(t, err)
	again2, _ := b.MarkAlert(ctx, "bud_1", 42, 50)
	if !fired || again2 {
		t.Fatalf("MarkAlert: first %v, second %v", fired, again2)
	}
	must(t, b.DeleteBudget(ctx, "bud_1", 0))
	wantErr(t, b.DeleteBudget(ctx, "bud_1", 0), store.ErrNotFound)
}

// testBudgetRace: many concurrent reservations against one hard budget; the
// money reserved never passes the limit and exactly the right number pass.
func testBudgetRace(t *testing.T, b Backend) {
	ctx := context.Background()
	const limit, amount, workers = 10_000, 700, 64
	c := budget.Charge{BudgetID: "bud_race", PeriodStart: 1, Limit: limit, Hard: true}
	org := budget.Charge{BudgetID: "bud_org", PeriodStart: 1, Limit: 1 << 40, Hard: true}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			err := b.Reserve(ctx, budget.Reservation{ID: fmt.Sprint("race_", i), Instance: "i", Amount: amount,
				Charges: []budget.Charge{org, c}, CreatedAt: now})
			var ie *budget.InsufficientError
			switch {
			case err == nil:
				admitted.Add(1)
			case !errors.As(err, &ie):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got, want := admitted.Load(), int64(limit/amount); got != want {
		t.Fatalf("%d reservations admitted, want %d", got, want)
	}
	sp, _ := b.Spend(ctx, []budget.Charge{c})
	if sp[0].Reserved != admitted.Load()*amount || sp[0].Reserved > limit {
		t.Fatalf("reserved %d for %d admitted", sp[0].Reserved, admitted.Load())
	}
}

func testLimits(t *testing.T, b Backend) {
	ctx := context.Background()
	l, err := b.SetLimit(ctx, ratelimit.Limit{ID: "lim_1", Scope: ratelimit.ScopeKey, ScopeID: "key_a", RPM: 60, CreatedAt: now})
	must(t, err)
	l2, err := b.SetLimit(ctx, ratelimit.Limit{ID: "lim_2", Scope: ratelimit.ScopeKey, ScopeID: "key_a", TPM: 1000, CreatedAt: now})
	must(t, err)
	if l2.ID != l.ID || l2.Version != 2 {
		t.Fatalf("second SetLimit on a scope = %+v, want the same row replaced", l2)
	}
	list, err := b.ListLimits(ctx)
	must(t, err)
	if len(list) != 1 || list[0].RPM != 0 || list[0].TPM != 1000 {
		t.Fatalf("ListLimits = %+v", list)
	}
	must(t, b.DeleteLimit(ctx, l.ID))
	wantErr(t, b.DeleteLimit(ctx, l.ID), store.ErrNotFound)
}

func testPolicies(t *testing.T, b Backend) {
	ctx := context.Background()
	_, err := b.PolicyVersion(ctx, 0)
	wantErr(t, err, store.ErrNotFound)
	v1, err := b.SavePolicies(ctx, map[string]string{"a.cedar": "permit (principal, action, resource);"}, "key_1", "first")
	must(t, err)
	v2, err := b.SavePolicies(ctx, map[string]string{"b.cedar": "forbid (principal, action, resource);"}, "key_2", "second")
	must(t, err)
	if v1.Version != 1 || v2.Version != 2 {
		t.Fatalf("versions %d, %d", v1.Version, v2.Version)
	}
	cur, err := b.PolicyVersion(ctx, 0)
	must(t, err)
	if cur.Version != 2 || cur.Files["b.cedar"] == "" || cur.CreatedBy != "key_2" {
		t.Fatalf("current = %+v", cur)
	}
	old, err := b.PolicyVersion(ctx, 1)
	must(t, err)
	if old.Files["a.cedar"] == "" || old.Note != "first" {
		t.Fatalf("version 1 = %+v", old)
	}
	h, err := b.PolicyHistory(ctx)
	must(t, err)
	if len(h) != 2 || h[0].Version != 2 || h[0].Files != nil {
		t.Fatalf("history = %+v", h)
	}
}

// beat writes instance's heartbeat at (the store may record its own clock
// instead) until the time recorded is after after, and returns it.
func beat(t *testing.T, b Backend, instance string, at, after time.Time) time.Time {
	t.Helper()
	for range 1000 {
		got, err := b.Heartbeat(context.Background(), instance, at)
		must(t, err)
		if got.After(after) {
			return got
		}
	}
	t.Fatalf("heartbeat of %s: the store's clock did not pass %v", instance, after)
	return time.Time{}
}
