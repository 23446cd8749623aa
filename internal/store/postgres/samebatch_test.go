package postgres_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
)

// TestGivenUpStartAndItsEndShareABatch: the sequencer really puts a
// call's start and its end in one batch. The caller gives up on the start
// (its client went away) while the sequencer lingers for more entries with
// the start already in the batch; the call's end, which settles the start's
// hold, joins the same batch. On PostgreSQL (the two-round-trip batch) the
// settlement must find the hold: nothing went upstream, so nothing is
// charged and nothing stays reserved. Before the fix the reservation was
// written after the settlement looked for it, and stayed for the sweep to
// charge in full.
func TestGivenUpStartAndItsEndShareABatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db, err := postgres.OpenWith(ctx, pgtest.DSN(t), postgres.Options{MaxOpenConns: 2, MinOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	skey, _ := ledger.GenerateKey("samebatch.example/log")
	lg, err := ledger.New(db, "gw", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// A batch waits, as long as it takes, until it holds two entries (two
	// calls in progress). The sequencer asks Calls only once the start is in
	// its batch: that is when the caller gives up, not after a sleep.
	lingering := make(chan struct{})
	var once sync.Once
	lg.Linger = time.Hour
	lg.Calls = func() int { once.Do(func() { close(lingering) }); return 2 }
	// Until Run runs, Append commits on its own, without a batch to linger
	// in (a loaded machine may start Run late): ledgertest.Run waits for it.
	stop := ledgertest.Run(t, lg)
	defer stop() // before the store closes

	hard := budget.Charge{BudgetID: "bud_hard", PeriodStart: 1, Limit: 10_000, Hard: true}
	rec := func(kind string) ledger.Entry {
		return ledger.Record{Kind: kind, Time: time.Now(), RequestID: "req_1"}.Entry()
	}
	start := rec(ledger.KindCallStart)
	start.Opens = true
	start.Hold = &ledger.Hold{Reservation: budget.Reservation{ID: "req_1", Instance: "gw", Amount: 1_000, Charges: []budget.Charge{hard}, CreatedAt: time.Now()}}
	startCtx, giveUp := context.WithCancel(ctx)
	startErr := make(chan error, 1)
	go func() {
		_, err := lg.Append(startCtx, start)
		startErr <- err
	}()
	select {
	case <-lingering: // the start is in the batch, which lingers
	case err := <-startErr:
		t.Fatalf("the start was answered (%v) before its batch lingered", err)
	}
	giveUp()
	if err := <-startErr; err == nil {
		t.Fatal("the start committed before its caller gave up: no shared batch to test")
	}
	end := rec(ledger.KindCallEnd)
	end.Closes = true
	end.Settle = &ledger.Settlement{ID: "req_1", Actual: 0}
	if _, err := lg.Append(ctx, end); err != nil && !errors.Is(err, ledger.ErrDeferred) {
		t.Fatal(err)
	}
	found, err := db.LedgerFind(ctx, "req_1")
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || found[1] != found[0]+1 {
		t.Fatalf("records of the call at %v: want the start and the end, in one batch", found)
	}
	if !end.Settle.Settled {
		t.Error("the end did not settle the hold of its own batch")
	}
	sp, err := db.Spend(ctx, []budget.Charge{hard})
	if err != nil {
		t.Fatal(err)
	}
	if sp[0].Reserved != 0 || sp[0].Spent != 0 {
		t.Errorf("after a call that never went upstream: %+v; want nothing reserved or spent", sp[0])
	}
	if owned, err := db.Owned(ctx, "gw", time.Now().Add(time.Hour)); err != nil || len(owned) != 0 {
		t.Errorf("reservations left %v (%v): the sweep would charge them in full", owned, err)
	}
}
