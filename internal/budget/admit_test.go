package budget_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// countingReads counts the counter reads admission makes.
type countingReads struct {
	*sqlstore.DB
	reads atomic.Int64
}

func (c *countingReads) Spend(ctx context.Context, keys []budget.Charge) ([]budget.Spend, error) {
	c.reads.Add(1)
	return c.DB.Spend(ctx, keys)
}

// TestAdmitAsksTheStoreBeforeRefusing: memory that another writer made
// stale (it released money) does not refuse a call the store can cover; a
// call the store cannot cover is refused, and a flood of such calls reads
// the store once per 50 ms, not once per call.
func TestAdmitAsksTheStoreBeforeRefusing(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := &countingReads{DB: db}
	b := budget.Budget{ID: "bud_adm", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Lifetime, LimitMicros: 10_000, Hard: true}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	l := budget.NewLedger(st, "gw.1", func() []budget.Budget { return []budget.Budget{b} }, nil, slog.New(slog.DiscardHandler))
	call := budget.Call{KeyID: "key_1", Model: "m"}
	start, _ := b.Window(time.Now())
	charge := budget.Charge{BudgetID: b.ID, PeriodStart: start.UnixMicro(), Limit: b.LimitMicros, Hard: true}

	// A hold admitted and made durable as the sequencer would.
	h, err := l.Admit(ctx, "req_1", call, 6_000)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Reserve(ctx, h.Reservation()); err != nil {
		t.Fatal(err)
	}
	sp, _ := db.Spend(ctx, []budget.Charge{charge})
	h.Started(sp, nil)
	// Another writer (a sweep, a replica) releases it behind memory's back.
	if _, err := db.Settle(ctx, "req_1", 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if _, err := l.Admit(ctx, "req_2", call, 6_000); err != nil {
		t.Fatalf("memory refused what the store covers: %v", err)
	}

	// Another writer holds 9,000: a call of 2,000 does not fit.
	if err := db.Reserve(ctx, budget.Reservation{ID: "other", Instance: "gw.2", Amount: 9_000, Charges: []budget.Charge{charge}, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// A gateway that starts now knows nothing in memory: it asks the store.
	l = budget.NewLedger(st, "gw.3", func() []budget.Budget { return []budget.Budget{b} }, nil, slog.New(slog.DiscardHandler))
	_, err = l.Admit(ctx, "req_3", call, 2_000)
	var ref *budget.Refusal
	if !errors.As(err, &ref) || ref.Remaining != 1_000 {
		t.Fatalf("Admit = %v, want a refusal with 1000 remaining", err)
	}
	before := st.reads.Load()
	for i := range 100 {
		if _, err := l.Admit(ctx, "flood", call, 2_000+int64(i)); !errors.As(err, &ref) {
			t.Fatalf("flood call %d admitted: %v", i, err)
		}
	}
	if n := st.reads.Load() - before; n > 10 {
		t.Fatalf("100 refused calls read the store %d times", n)
	}
}

// TestAbandonedHoldLeavesMemory: a call that fails before its start entry
// (a 400 after admission) does not leave its money pending in memory.
func TestAbandonedHoldLeavesMemory(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := &countingReads{DB: db}
	b := budget.Budget{ID: "bud_ab", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Lifetime, LimitMicros: 10_000, Hard: true}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	l := budget.NewLedger(st, "gw.1", func() []budget.Budget { return []budget.Budget{b} }, nil, slog.New(slog.DiscardHandler))
	call := budget.Call{KeyID: "key_1", Model: "m"}
	for i := range 5 {
		h, err := l.Admit(ctx, fmt.Sprint("req_", i), call, 6_000)
		if err != nil {
			t.Fatal(err)
		}
		h.Abandon()
		h.Abandon() // once only
	}
	if n := st.reads.Load(); n != 1 {
		t.Fatalf("%d store reads for 5 calls that each fit alone; want 1 (memory kept abandoned holds pending)", n)
	}
}
