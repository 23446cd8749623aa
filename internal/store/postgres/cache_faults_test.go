package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// faultyAppends fails a replica's commits in the two ways a commit can end
// after its hashes were computed: every third rolls back (the callback
// fails after computing them, on the guessed try and on the retry), every
// fifth commits and reports an error (the outcome is unknown to the log).
// After a fault, meddle has the other replica append at once, so that the
// index the failed batch computed hashes for holds another record.
type faultyAppends struct {
	*sqlstore.DB
	meddle func()
	mu     sync.Mutex
	n      int
}

var errInjected = errors.New("injected fault")

func (f *faultyAppends) LedgerAppend(ctx context.Context, instance string, entries []ledger.Entry, hashes func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	if n%3 == 0 {
		idx, err := f.DB.LedgerAppend(ctx, instance, entries, func(size int64, kept []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
			if _, err := hashes(size, kept, r); err != nil {
				return nil, err
			}
			return nil, errInjected
		})
		if err != nil { // else it kept nothing and called no hashes
			f.meddle()
		}
		return idx, err
	}
	idx, err := f.DB.LedgerAppend(ctx, instance, entries, hashes)
	if err == nil && n%5 == 0 {
		f.meddle()
		return nil, errInjected
	}
	return idx, err
}

// TestHashCacheAcrossReplicasAndFaults: the ledger's right-edge hash cache
// under every way a batch can end, on two replicas appending at once to one
// schema, each with its sequencer (Run, group commit, the batch wait): starts
// with holds at a hard budget's edge (some refused, which refuses a guess),
// ends sent by both replicas (the second one dropped: a guess refused and a
// retry that may keep nothing), plain records, and callers whose commit
// fails: on one replica by running out of time mid-flight (a CommitTimeout
// of a few milliseconds), on the other as injected (faultyAppends). Every stored hash must be the one the records give, and what
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
	rec := func(id, action string) []byte {
		return ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: id, Action: action}.Marshal()
	}
	var meddles atomic.Int64
	meddle := func() { // replica 0 appends a record of its own at once
		id := fmt.Sprint("req_meddle_", meddles.Add(1))
		if _, err := logs[0].Append(ctx, ledger.Entry{Data: rec(id, "meddle"), RequestID: id}); err != nil && !errors.Is(err, ledger.ErrUnavailable) {
			t.Error(err)
		}
	}
	for i := range dbs {
		db, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 2, MinOpenConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
		var st ledger.Store = db
		if i == 1 {
			st = &faultyAppends{DB: db, meddle: meddle}
		}
		if logs[i], err = ledger.New(st, fmt.Sprintf("gw%d", i), skey, slog.New(slog.DiscardHandler)); err != nil {
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
	// Replica 0's commits run out of time now and then, mid-transaction;
	// replica 1's fail as faultyAppends makes them.
	logs[0].CommitTimeout = 4 * time.Millisecond
	runCtx, stop := context.WithCancel(ctx)
	var runs sync.WaitGroup
	for _, l := range logs {
		runs.Add(1)
		go func() { defer runs.Done(); l.Run(runCtx) }()
	}
	hard := []budget.Charge{{BudgetID: "bud_cache", PeriodStart: 1, Limit: 2000, Hard: true}}
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
	// Run signed a checkpoint of it on stopping; it verifies offline and
	// over the tiles a transparency-log client reads, from either replica.
	if err := logs[1].SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, _, err := ledger.Verify(ctx, ledger.StoreSource{Store: dbs[1]}, logs[0].Key(), nil, nil); err != nil || rep.Size != size {
		t.Fatalf("offline verify: %d records, %v; want %d", rep.Size, err, size)
	}
	srv := httptest.NewServer(logs[1].Handler())
	defer srv.Close()
	if rep, _, err := ledger.Verify(ctx, ledger.HTTPSource{Base: srv.URL + "/log"}, logs[0].Key(), nil, nil); err != nil || rep.Size != size {
		t.Fatalf("verify over HTTP: %d records, %v; want %d", rep.Size, err, size)
	}
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
		t.Fatal("every record was exported: no commit of unknown outcome happened")
	}
}
