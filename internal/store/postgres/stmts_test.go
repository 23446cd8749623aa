package postgres_test

import (
	"context"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// TestHotPathWithoutStatementCacheMakesNoNamedStatements: with the statement
// cache off (PgBouncer in transaction mode, where a named prepared statement
// lives on a server connection the next transaction may not get), the hot
// path must not create named prepared statements of its own. One pooled
// connection, so that pg_prepared_statements sees the session that ran them.
func TestHotPathWithoutStatementCacheMakesNoNamedStatements(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cache int
		named bool
	}{{"cache off", -1, false}, {"cache on", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			db, err := postgres.OpenWith(ctx, pgtest.DSN(t), postgres.Options{MaxOpenConns: 1, StatementCache: tc.cache})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			now := time.Now()
			c := budget.Charge{BudgetID: "bud_1", PeriodStart: 1, Limit: 1_000_000, Hard: true}
			if err := db.Reserve(ctx, budget.Reservation{ID: "res_1", Instance: "i", Amount: 100, Charges: []budget.Charge{c}, CreatedAt: now}); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Settle(ctx, "res_1", 40); err != nil {
				t.Fatal(err)
			}
			if err := db.InsertUsageBatch(ctx, []usage.Record{{ID: "req_1", Time: now}, {ID: "req_2", Time: now}}); err != nil {
				t.Fatal(err)
			}
			if _, err := db.LedgerAppend(ctx, "i", []ledger.Entry{{Data: []byte("x"), RequestID: "req_1", Opens: true}},
				func(start int64, kept []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
					hs, err := tlog.StoredHashes(start, kept[0].Data, r)
					return [][]tlog.Hash{hs}, err
				}); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM pg_prepared_statements`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if (n > 0) != tc.named {
				t.Fatalf("%d named prepared statements in the session; want some: %v", n, tc.named)
			}
		})
	}
}
