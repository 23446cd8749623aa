package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/storetest"
)

// TestHashCacheTwoLogsOneFile: storetest.HashCacheUnderFaults with two logs
// (two sequencers, each with its own hash cache) appending at once to one
// SQLite file; one log's commits fail after their hashes were computed or
// succeed unheard of. Each log's cache misses what the other wrote.
func TestHashCacheTwoLogsOneFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	db, err := Open(ctx, filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	storetest.HashCacheUnderFaults(t, ctx, storetest.HashCacheFaults{
		Stores:  [2]ledger.Store{db, db},
		Workers: 3, Calls: 50, Limit: 1500,
	})
}
