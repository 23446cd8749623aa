package budget_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
)

// Admission in memory against changes made while a flood is in flight: an
// administrator lowering a limit, a period rolling over at midnight UTC, a
// budget added or removed. The store stays the judge of every hard limit.

func newSeqRig(t *testing.T, bs ...budget.Budget) *seqRig {
	t.Helper()
	for i := range bs {
		if err := bs[i].Validate(); err != nil {
			t.Fatal(err)
		}
	}
	return openSeqRig(t, "test/midflood", nil, nil, bs...)
}

func (r *seqRig) spend(t *testing.T, id string, period int64) budget.Spend {
	t.Helper()
	sp, err := r.db.Spend(context.Background(), []budget.Charge{{BudgetID: id, PeriodStart: period}})
	if err != nil {
		t.Fatal(err)
	}
	return sp[0]
}

// TestLimitLoweredMidFloodRefusesEveryLaterCall: an administrator lowers a
// hard limit below what is already spent while calls are being admitted and
// batched. Calls admitted before the change may still commit (they were
// admitted under the old limit, as a Reserve in flight would have been);
// every call admitted after it is refused, by memory or by the store, even
// when it shares a batch with older holds that still fit the old limit.
func TestLimitLoweredMidFloodRefusesEveryLaterCall(t *testing.T) {
	const amount, actual = 1_000, 1_000
	b := budget.Budget{ID: "bud_low", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Lifetime, LimitMicros: 200 * amount, Hard: true}
	r := newSeqRig(t, b)
	var lowered atomic.Bool
	var late, lateStarted, done atomic.Int64
	var wg sync.WaitGroup
	wave := func(from, to int) {
		for i := from; i < to; i++ {
			wg.Go(func() {
				defer done.Add(1)
				after := lowered.Load() // set after the new budgets: Admit sees them
				_, started := callHold(context.Background(), r.bl, r.l, fmt.Sprintf("low_%03d", i), amount, actual)
				if after {
					late.Add(1)
					if started {
						lateStarted.Add(1)
					}
				}
			})
		}
	}
	wave(0, 80)
	for done.Load() < 30 { // more than the new limit is spent; the rest are in flight
		time.Sleep(time.Millisecond)
	}
	low := b
	low.LimitMicros = 10 * amount
	r.budgets.Store(&[]budget.Budget{low})
	lowered.Store(true)
	wave(80, 160)
	wg.Wait()
	if late.Load() == 0 {
		t.Fatal("no call was admitted after the change: the test did not test it")
	}
	if lateStarted.Load() != 0 {
		t.Fatalf("%d of %d calls admitted after the limit was lowered started", lateStarted.Load(), late.Load())
	}
	if sp := r.spend(t, b.ID, 0); sp.Reserved != 0 || sp.Spent > b.LimitMicros {
		t.Fatalf("counters %+v over the old limit %d", sp, b.LimitMicros)
	}
}

// TestPeriodRollsMidFlood: a daily hard budget's period rolls over at
// midnight UTC while calls are in flight. Each call is held and settled in
// the period it was admitted in; neither day passes its limit; the money
// spent in each day is exactly what that day's started calls were charged,
// and nothing stays reserved or pending.
func TestPeriodRollsMidFlood(t *testing.T) {
	const amount, actual, limit = 1_000, 600, 30 * 1_000
	b := budget.Budget{ID: "bud_day", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Day, TimeZone: "UTC", LimitMicros: limit, Hard: true}
	r := newSeqRig(t, b)
	day1 := time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC)
	var offset atomic.Int64
	r.bl.SetNow(func() time.Time { return day1.Add(time.Duration(offset.Load())) })
	var mu sync.Mutex
	spentIn := map[int64]int64{}
	var done atomic.Int64
	var wg sync.WaitGroup
	wave := func(from, to int) {
		for i := from; i < to; i++ {
			wg.Go(func() {
				defer done.Add(1)
				h, started := callHold(context.Background(), r.bl, r.l, fmt.Sprintf("day_%03d", i), amount, actual)
				if started {
					mu.Lock()
					spentIn[h.Reservation().Charges[0].PeriodStart] += actual
					mu.Unlock()
				}
			})
		}
	}
	wave(0, 100)
	for done.Load() < 40 { // midnight strikes with the first wave's last calls in flight
		time.Sleep(time.Millisecond)
	}
	offset.Store(int64(2 * time.Second)) // 00:00:01 the next day
	wave(100, 200)
	wg.Wait()
	d1, _ := b.Window(day1)
	d2, _ := b.Window(day1.Add(2 * time.Second))
	if d1.Equal(d2) {
		t.Fatal("the clock did not cross midnight")
	}
	if len(spentIn) != 2 {
		t.Fatalf("calls started in %d periods, want 2: %v", len(spentIn), spentIn)
	}
	for _, p := range []int64{d1.UnixMicro(), d2.UnixMicro()} {
		sp := r.spend(t, b.ID, p)
		if sp.Reserved != 0 || sp.Spent != spentIn[p] || sp.Spent > limit {
			t.Errorf("period %v: %+v, want spent %d ≤ %d, nothing reserved", time.UnixMicro(p).UTC(), sp, spentIn[p], limit)
		}
	}
	if pending, live := r.bl.Pending(); pending != 0 || live != 0 {
		t.Fatalf("memory: %d pending, %d live", pending, live)
	}
}

// TestBudgetAddedAndRemovedMidFlood: a hard team budget appears while calls
// are in flight (memory has never seen its row) and the key's budget is
// removed. Calls admitted after the team budget appeared are held against
// it and never take it past its limit; the removed budget's holds settle
// like any other; nothing stays reserved or pending.
func TestBudgetAddedAndRemovedMidFlood(t *testing.T) {
	const amount, actual = 1_000, 1_000
	key := budget.Budget{ID: "bud_gone", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Lifetime, LimitMicros: 1 << 40, Hard: true}
	org := budget.Budget{ID: "bud_new", Scope: budget.ScopeOrg, Period: budget.Lifetime, LimitMicros: 25 * amount, Hard: true}
	if err := org.Validate(); err != nil {
		t.Fatal(err)
	}
	r := newSeqRig(t, key)
	var orgStarted, done atomic.Int64
	var wg sync.WaitGroup
	wave := func(from, to int) {
		for i := from; i < to; i++ {
			wg.Go(func() {
				defer done.Add(1)
				h, started := callHold(context.Background(), r.bl, r.l, fmt.Sprintf("add_%03d", i), amount, actual)
				if started {
					for _, c := range h.Reservation().Charges {
						if c.BudgetID == org.ID {
							orgStarted.Add(1)
						}
					}
				}
			})
		}
	}
	waitDone := func(n int64) {
		for done.Load() < n {
			time.Sleep(time.Millisecond)
		}
	}
	wave(0, 60)
	waitDone(30)
	r.budgets.Store(&[]budget.Budget{key, org})
	wave(60, 130)
	waitDone(90)
	r.budgets.Store(&[]budget.Budget{org})
	wave(130, 200)
	wg.Wait()
	sp := r.spend(t, org.ID, 0)
	if sp.Reserved != 0 || sp.Spent != orgStarted.Load()*actual || sp.Spent > org.LimitMicros {
		t.Fatalf("new budget %+v: %d calls started under it, limit %d", sp, orgStarted.Load(), org.LimitMicros)
	}
	if orgStarted.Load() != 25 {
		t.Fatalf("%d calls started under the new budget, want exactly its 25", orgStarted.Load())
	}
	if sp := r.spend(t, key.ID, 0); sp.Reserved != 0 {
		t.Fatalf("removed budget %+v still holds money", sp)
	}
	if pending, live := r.bl.Pending(); pending != 0 || live != 0 {
		t.Fatalf("memory: %d pending, %d live", pending, live)
	}
}
