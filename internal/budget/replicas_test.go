package budget_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// TestTwoReplicasOnPostgresAdmitAgainstStaleMemory: two gateways on one
// PostgreSQL, each admitting in memory against counters the other makes
// stale at every batch (it spends, and it releases what its calls did not
// use). Sampled while the flood runs, the hard row never holds more than
// its limit; afterwards nothing is reserved, the money spent is exactly
// what the started calls were charged, each call that held money has one
// end record, and neither replica's memory keeps pending money or a live
// hold.
func TestTwoReplicasOnPostgresAdmitAgainstStaleMemory(t *testing.T) {
	dsn := pgtest.DSN(t)
	const amount, actual, limit = 1_000, 300, 30 * 1_000
	b := budget.Budget{ID: "bud_two", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Lifetime, LimitMicros: limit, Hard: true}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	skey, err := ledger.GenerateKey("test/two")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	runCtx, stop := context.WithCancel(ctx)
	var runs sync.WaitGroup
	type replica struct {
		bl *budget.Ledger
		l  *ledger.Log
	}
	var reps []replica
	var db0 *sqlstore.DB
	for i := range 2 {
		db, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 3})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if i == 0 {
			db0 = db
		}
		inst := fmt.Sprint("gw_two.", i)
		log := slog.New(slog.DiscardHandler)
		l, err := ledger.New(db, inst, skey, log)
		if err != nil {
			t.Fatal(err)
		}
		l.Interval = time.Hour
		bl := budget.NewLedger(db, inst, func() []budget.Budget { return []budget.Budget{b} }, nil, log)
		runs.Go(func() { l.Run(runCtx) })
		reps = append(reps, replica{bl, l})
	}
	for _, r := range reps {
		ledgertest.WaitRunning(t, r.l)
	}
	charge := []budget.Charge{{BudgetID: b.ID, PeriodStart: 0}}
	sampling, sampled := make(chan struct{}), make(chan error, 1)
	go func() {
		var over error
		for {
			select {
			case <-sampling:
				sampled <- over
				return
			default:
			}
			sp, err := db0.Spend(ctx, charge)
			if err == nil && over == nil && sp[0].Spent+sp[0].Reserved > limit {
				over = fmt.Errorf("spent %d + reserved %d over the limit %d", sp[0].Spent, sp[0].Reserved, limit)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var held, started atomic.Int64
	var wg sync.WaitGroup
	for w := range 20 { // 20 callers, 15 calls each, one after another
		r := reps[w%2]
		wg.Go(func() {
			for i := range 15 {
				h, ok := callHold(ctx, r.bl, r.l, fmt.Sprintf("two_%02d_%02d", w, i), amount, actual)
				if h != nil {
					held.Add(1)
				}
				if ok {
					started.Add(1)
				}
			}
		})
	}
	wg.Wait()
	stop()
	runs.Wait()
	close(sampling)
	if err := <-sampled; err != nil {
		t.Fatal(err)
	}
	sp, err := db0.Spend(ctx, charge)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("300 calls, %d held, %d started, counters %+v", held.Load(), started.Load(), sp[0])
	if sp[0].Reserved != 0 || sp[0].Spent != started.Load()*actual || sp[0].Spent > limit {
		t.Fatalf("counters %+v; want nothing reserved, spent %d ≤ %d", sp[0], started.Load()*actual, limit)
	}
	var closed int64
	if err := db0.SQL().QueryRow(`SELECT COUNT(*) FROM ledger_closed`).Scan(&closed); err != nil {
		t.Fatal(err)
	}
	if closed != held.Load() {
		t.Fatalf("%d end records for %d calls that held money", closed, held.Load())
	}
	for i, r := range reps {
		if pending, live := r.bl.Pending(); pending != 0 || live != 0 {
			t.Fatalf("replica %d: %d pending, %d live", i, pending, live)
		}
	}
}
