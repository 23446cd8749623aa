package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/store/storetest"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// TestLedgerBatchRoundTrips holds a ledger batch to at most two round trips
// to the server, BEGIN and COMMIT included, whatever it carries: plain records,
// start entries with holds on three budgets, end entries with settlements
// and usage rows. Each statement was a round trip of its own before (11, 23
// and 21 for these batches), and a batch holds the log's lock for all of
// them (docs/benchmarks.md). Counted on the socket (PoolHealth.RoundTrips).
// With pgx's statement cache on, each of the two pipelines takes one more
// round trip when it has statements new to the connection, to prepare them
// (so 4 for a new shape, 2 once the shapes are known); and
// database/sql pings a connection that was idle for over a second before
// handing it out (pgx's ResetSession), one more round trip that a loaded
// machine can put before any batch. Plain and start batches take one once
// the store knows the log's size (guess_test.go holds that).
func TestLedgerBatchRoundTrips(t *testing.T) {
	t.Run("cache off", func(t *testing.T) { testLedgerBatchRoundTrips(t, -1, 2) })
	t.Run("cache on", func(t *testing.T) { testLedgerBatchRoundTrips(t, 0, 4) })
}

func testLedgerBatchRoundTrips(t *testing.T, cache int, most int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db, trips := countedStore(t, ctx, cache)
	now := time.Now()
	charges := []budget.Charge{
		{BudgetID: "bud_key", PeriodStart: 1, Limit: 1 << 40, Hard: true},
		{BudgetID: "bud_team", PeriodStart: 1, Limit: 1 << 40, Hard: true},
		{BudgetID: "bud_org", PeriodStart: 1, Limit: 1 << 40, Hard: false},
	}
	hashes := committing(storetest.NewHasher()) // what the ledger's own cache does: no read of stored hashes
	const n = 37                                // chunks of 32, 4 and 1 rows
	batch := func(round int, kind string) []ledger.Entry {
		var es []ledger.Entry
		for i := range n {
			id := fmt.Sprintf("req_%d_%d", round, i)
			switch kind {
			case "plain":
				es = append(es, ledger.Entry{Data: []byte("record " + id), RequestID: id})
			case "starts":
				es = append(es, ledger.Entry{Data: []byte("start " + id), RequestID: id, Opens: true,
					Hold: &ledger.Hold{Reservation: budget.Reservation{ID: id, Instance: "gw.1", Amount: 100, Charges: charges, CreatedAt: now}}})
			case "ends":
				es = append(es, ledger.Entry{Data: []byte("end " + id), RequestID: id, Closes: true,
					Settle: &ledger.Settlement{ID: id, Actual: 40},
					Usage:  &usage.Record{ID: id, Time: now, KeyID: "key_1", Model: "m", CostMicros: 40}})
			}
		}
		return es
	}
	if _, err := db.LedgerAppend(ctx, "gw.1", []ledger.Entry{{Data: []byte("first"), RequestID: "req_first"}}, hashes); err != nil {
		t.Fatal(err) // the connection's first use, not counted
	}
	for _, kind := range []string{"plain", "starts", "ends"} {
		for round := range 2 {
			es := batch(round, kind)
			before := trips.RoundTrips()
			idx, err := db.LedgerAppend(ctx, "gw.1", es, hashes)
			if err != nil {
				t.Fatal(err)
			}
			for i, x := range idx {
				if x < 0 {
					t.Fatalf("%s: entry %d dropped", kind, i)
				}
			}
			got := trips.RoundTrips() - before
			t.Logf("%s, round %d: %d round trips", kind, round, got)
			if got > most+1 {
				t.Errorf("a batch of %d %s took %d round trips, want at most %d", n, kind, got, most)
			}
		}
	}
	sp, err := db.Spend(ctx, charges)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sp {
		if s.Spent != 2*n*40 || s.Reserved != 0 {
			t.Fatalf("%s: spent %d reserved %d, want %d and 0", s.BudgetID, s.Spent, s.Reserved, 2*n*40)
		}
	}
	rows, err := db.ListUsage(ctx, usage.Query{})
	if err != nil || len(rows) != 2*n {
		t.Fatalf("%d usage rows (%v), want %d", len(rows), err, 2*n)
	}
}

// TestBreakerSpendOneRoundTrip: a call with the spend-velocity breaker on
// adds its cost to the shared window and reads the window back (breaker.
// Shared) in one round trip, not two. Five calls after one that prepares
// the statements; one more round trip allowed for database/sql's ping.
func TestBreakerSpendOneRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db, trips := countedStore(t, ctx, 0)
	if _, err := db.AddBreakerSpend(ctx, "key_1", 100, 5, 10); err != nil {
		t.Fatal(err)
	}
	before := trips.RoundTrips()
	var sums []int64
	var err error
	for i := range 5 {
		if sums, err = db.AddBreakerSpend(ctx, "key_1", 100+int64(i%2), 5, 10); err != nil {
			t.Fatal(err)
		}
	}
	got := trips.RoundTrips() - before
	t.Logf("5 breaker spends: %d round trips", got)
	if got > 5+1 {
		t.Errorf("5 breaker spends took %d round trips, want 5", got)
	}
	// The last call ends the window at bucket 100, which has the first call's
	// 5 and the 5 of calls 0, 2 and 4; bucket 101 is past it.
	if want := []int64{0, 0, 0, 0, 0, 0, 0, 0, 0, 20}; fmt.Sprint(sums) != fmt.Sprint(want) {
		t.Errorf("window %v, want %v", sums, want)
	}
}

// countedStore opens a store of one connection on a fresh schema, with the
// statement cache given (postgres.Options.StatementCache), whose round trips
// to the server the returned PoolHealth counts; closed when t ends.
func countedStore(t *testing.T, ctx context.Context, cache int) (*sqlstore.DB, *postgres.PoolHealth) {
	t.Helper()
	trips := new(postgres.PoolHealth)
	db, err := postgres.OpenWith(ctx, pgtest.DSN(t), postgres.Options{MaxOpenConns: 1, MinOpenConns: 1, StatementCache: cache, Health: trips})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, trips
}
