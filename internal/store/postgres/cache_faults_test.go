package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/store/storetest"
)

// TestHashCacheAcrossReplicasAndFaults: storetest.HashCacheUnderFaults on
// two replicas appending at once to one schema. Replica 0's commits run out
// of time now and then, mid-transaction (a CommitTimeout of a few
// milliseconds); replica 1's fail as injected, and after each fault a
// record is appended at once through replica 0's store, so that the index
// the failed batch computed hashes for holds another record. The signed log verifies offline and
// over HTTP, from either replica.
func TestHashCacheAcrossReplicasAndFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dsn := pgtest.DSN(t)
	var dbs [2]*sqlstore.DB
	for i := range dbs {
		db, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 2, MinOpenConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	storetest.HashCacheUnderFaults(t, ctx, storetest.HashCacheFaults{
		Stores:        [2]ledger.Store{dbs[0], dbs[1]},
		CommitTimeout: [2]time.Duration{4 * time.Millisecond, 0},
		Meddle:        true,
		Verify:        true,
		Workers:       4, Calls: 60, Limit: 2000,
	})
	t.Logf("%d batches guessed", dbs[0].GuessedBatches()+dbs[1].GuessedBatches())
}
