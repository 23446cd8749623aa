package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// TestTransactionsTakeTurns: this process's write transactions take turns
// before they reach SQLite, so none meets its busy handler. With a busy
// timeout of 1 ms, 64 concurrent reservations at synchronous=FULL (each a
// write transaction with an fsync) all succeed; without the turns, most fail
// with SQLITE_BUSY (the busy handler is not fair and gives up).
func TestTransactionsTakeTurns(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.OpenWith(ctx, filepath.Join(t.TempDir(), "g.db"), sqlite.Options{BusyTimeout: time.Millisecond, WriteTurn: time.Minute, MaxOpenConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC()
	c := budget.Charge{BudgetID: "bud_turns", PeriodStart: 1, Limit: 1 << 40, Hard: true}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			if err := db.Reserve(ctx, budget.Reservation{ID: fmt.Sprint("turn_", i), Instance: "i", Amount: 1, Charges: []budget.Charge{c}, CreatedAt: now}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	n, first := 0, error(nil)
	for err := range errs {
		if first == nil {
			first = err
		}
		n++
	}
	if n > 0 {
		t.Fatalf("%d of 64 reservations failed, first: %v", n, first)
	}
}
