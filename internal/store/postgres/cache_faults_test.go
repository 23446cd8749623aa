package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// TestHashCacheAcrossReplicasAndFaults: the ledger's right-edge hash cache
// under every way a batch can end, on two replicas appending at once to one
// schema, each with its sequencer (Run, group commit, the batch wait): starts
// with holds at a hard budget's edge (some refused, which refuses a guess),
// ends sent by both replicas (the second one dropped: a guess refused and a
// retry that may keep nothing), plain records, and callers whose commit
// runs out of time mid-flight on one replica (a CommitTimeout of a few
// milliseconds: failed commits, and commits whose outcome the log never
// learns). Every stored hash must be the one the records give, and what
// each replica exported must be records of the log, once each.
func TestHashCacheAcrossReplicasAndFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dsn := pgtest.DSN(t)
	skey, _ := ledger.GenerateKey("redcache.example/log")
	const replicas, workers, calls = 2, 4, 60
	dbs := make([]*sqlstore.DB, replicas)
	logs := make([]*ledger.Log, replicas)
	var mu sync.Mutex
	exported := map[string]int{}
	for i := range dbs {
		db, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 2, MinOpenConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
		if logs[i], err = ledger.New(db, fmt.Sprintf("gw%d", i), skey, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
		logs[i].Sink = func(data []byte) {
			mu.Lock()
			exported[string(data)]++
			mu.Unlock()
		}
		logs[i].Linger = 2 * time.Millisecond
		logs[i].Calls = func() int { return workers }
	}
	// Replica 1's commits run out of time now and then, mid-transaction.
	logs[1].CommitTimeout = 4 * time.Millisecond
	runCtx, stop := context.WithCancel(ctx)
	var runs sync.WaitGroup
	for _, l := range logs {
		runs.Add(1)
		go func() { defer runs.Done(); l.Run(runCtx) }()
	}
	hard := []budget.Charge{{BudgetID: "bud_cache", PeriodStart: 1, Limit: 2000, Hard: true}}
	rec := func(id, action string) []byte {
		return ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: id, Action: action}.Marshal()
	}
	var wg sync.WaitGroup
	for r := range replicas {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(r), uint64(w)))
				for c := range calls {
					id := fmt.Sprintf("req_%d_%d_%d", r, w, c)
					switch rng.IntN(4) {
					case 0: // a plain record
						_, err := logs[r].Append(ctx, ledger.Entry{Data: rec(id, "admin"), RequestID: id})
						if err != nil && !errors.Is(err, ledger.ErrUnavailable) {
							t.Error(err)
						}
						continue
					}
					_, err := logs[r].Append(ctx, ledger.Entry{Data: rec(id, "start"), RequestID: id, Opens: true,
						Hold: &ledger.Hold{Reservation: budget.Reservation{ID: id, Instance: "gw", Amount: int64(5 + rng.IntN(20)), Charges: hard, CreatedAt: time.Now()}}})
					var ierr *budget.InsufficientError
					switch {
					case errors.As(err, &ierr), errors.Is(err, ledger.ErrUnavailable):
						continue // refused, or failed closed (possibly written: recovery's case)
					case err != nil:
						t.Error(err)
						return
					}
					// Both replicas close it, one lagging (Enqueue), one waiting.
					o := rng.IntN(replicas)
					if err := logs[o].Enqueue(ctx, ledger.Entry{Data: rec(id, fmt.Sprint("end by ", o)), RequestID: id, Closes: true}); err != nil && !errors.Is(err, ledger.ErrUnavailable) {
						t.Error(err)
					}
					_, err = logs[1-o].Append(ctx, ledger.Entry{Data: rec(id, fmt.Sprint("end by ", 1-o)), RequestID: id, Closes: true})
					if err != nil && !errors.Is(err, ledger.ErrAlreadyClosed) && !errors.Is(err, ledger.ErrUnavailable) {
						t.Error(err)
					}
				}
			}()
		}
	}
	wg.Wait()
	stop()
	runs.Wait()
	if t.Failed() {
		return
	}
	size, err := dbs[0].LedgerSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkLog(t, ctx, dbs[0], size)
	data, err := dbs[0].LedgerEntries(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	inLog := map[string]int{}
	for _, d := range data {
		inLog[string(d)]++
	}
	mu.Lock()
	defer mu.Unlock()
	for d, n := range exported {
		if n != 1 || inLog[d] != 1 {
			t.Fatalf("exported %d times, %d times in the log: %s", n, inLog[d], d)
		}
	}
	var guessed int64
	for _, db := range dbs {
		guessed += db.GuessedBatches()
	}
	t.Logf("log of %d records, %d exported, %d batches guessed", size, len(exported), guessed)
	if int64(len(exported)) == size {
		t.Log("no commit of unknown outcome happened (every record was exported)")
	}
}
