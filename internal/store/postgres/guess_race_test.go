package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/store/storetest"
)

// TestGuessedBatchesThreeReplicasHardBudget: the budget proof on the guessed
// path. Three replicas (stores on one schema, each its own ledger) hold
// against one hard budget at its edge and close every admitted request
// from every replica at once (each request's end sent three times). The
// counter never passes the limit and holds exactly what was admitted, each
// request has one end, the log has no gap and verifies, and the guessed
// path committed batches (else this proves nothing about it).
func TestGuessedBatchesThreeReplicasHardBudget(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dsn := pgtest.DSN(t)
	skey, _ := ledger.GenerateKey("redpg.example/log")
	const replicas, calls, limit = 3, 40, 700
	dbs := make([]*sqlstore.DB, replicas)
	logs := make([]*ledger.Log, replicas)
	for i := range dbs {
		db, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 1, MinOpenConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
		if logs[i], err = ledger.New(db, fmt.Sprintf("gw%d", i), skey, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
	}
	hard := []budget.Charge{{BudgetID: "bud_edge", PeriodStart: 1, Limit: limit, Hard: true}}
	rec := func(id, action string) []byte {
		return ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: id, Action: action}.Marshal()
	}
	var admitted, admittedAmount, ends atomic.Int64
	var wg sync.WaitGroup
	for r := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range calls {
				id := fmt.Sprintf("req_%d_%d", r, c)
				amount := int64(5 + (r*7+c*3)%13)
				_, err := logs[r].Append(ctx, ledger.Entry{Data: rec(id, "start"), RequestID: id, Opens: true,
					Hold: &ledger.Hold{Reservation: budget.Reservation{ID: id, Instance: "gw", Amount: amount, Charges: hard, CreatedAt: time.Now()}}})
				var ierr *budget.InsufficientError
				switch {
				case errors.As(err, &ierr):
					continue
				case err != nil:
					t.Error(err)
					return
				}
				admitted.Add(1)
				admittedAmount.Add(amount)
				// Every replica closes it (a request closed three times, at once).
				var ew sync.WaitGroup
				for e := range replicas {
					ew.Add(1)
					go func() {
						defer ew.Done()
						_, err := logs[e].Append(ctx, ledger.Entry{Data: rec(id, fmt.Sprintf("end by %d", e)), RequestID: id, Closes: true})
						switch {
						case err == nil:
							ends.Add(1)
						case !errors.Is(err, ledger.ErrAlreadyClosed):
							t.Error(err)
						}
					}()
				}
				ew.Wait()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	sp, err := dbs[0].Spend(ctx, hard)
	if err != nil {
		t.Fatal(err)
	}
	if sp[0].Reserved > limit || sp[0].Reserved != admittedAmount.Load() {
		t.Fatalf("OVERSHOOT or lost hold: reserved %d of %d, admitted %d", sp[0].Reserved, limit, admittedAmount.Load())
	}
	if ends.Load() != admitted.Load() {
		t.Fatalf("%d ends written for %d requests: want one each", ends.Load(), admitted.Load())
	}
	if limit-sp[0].Reserved > 17 {
		t.Fatalf("reserved %d of %d: the budget was not driven to its edge", sp[0].Reserved, limit)
	}
	storetest.CheckLog(t, ctx, dbs[0], 2*admitted.Load())
	var guessed int64
	for _, db := range dbs {
		guessed += db.GuessedBatches()
	}
	t.Logf("%d admitted (%d micros of %d), %d batches committed on guesses", admitted.Load(), sp[0].Reserved, limit, guessed)
	if guessed == 0 {
		t.Fatal("no batch took the guessed path")
	}
}
