package sqlite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// faultyAppends fails one log's commits in the two ways a commit can end
// after its hashes were computed: every third rolls back (the transaction
// fails after the callback), every fifth commits and reports an error (the
// outcome is unknown to the log).
type faultyAppends struct {
	*sqlstore.DB
	mu sync.Mutex
	n  int
}

var errInjected = errors.New("injected fault")

func (f *faultyAppends) LedgerAppend(ctx context.Context, instance string, entries []ledger.Entry, hashes func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	if n%3 == 0 {
		return f.DB.LedgerAppend(ctx, instance, entries, func(size int64, kept []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
			if _, err := hashes(size, kept, r); err != nil {
				return nil, err
			}
			return nil, errInjected
		})
	}
	idx, err := f.DB.LedgerAppend(ctx, instance, entries, hashes)
	if err == nil && n%5 == 0 {
		return nil, errInjected
	}
	return idx, err
}

// TestHashCacheTwoLogsOneFile: two logs (two sequencers, each with its own
// hash cache) append at once to one SQLite store: starts with holds at a
// hard budget's edge (some refused), ends sent by both logs (the second
// dropped), plain records, and on one log commits that fail after their
// hashes were computed or succeed unheard of (faultyAppends). Each log's
// cache misses what the other wrote; every stored hash must still be the
// one the records give, and every export a record of the log, once.
func TestHashCacheTwoLogsOneFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	db, err := Open(ctx, filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	skey, _ := ledger.GenerateKey("redcache.example/log")
	const workers, calls = 3, 50
	var logs [2]*ledger.Log
	var mu sync.Mutex
	exported := map[string]int{}
	stores := [2]ledger.Store{db, &faultyAppends{DB: db}}
	for i := range logs {
		if logs[i], err = ledger.New(stores[i], fmt.Sprintf("gw%d", i), skey, slog.New(slog.DiscardHandler)); err != nil {
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
	runCtx, stop := context.WithCancel(ctx)
	var runs sync.WaitGroup
	for _, l := range logs {
		runs.Add(1)
		go func() { defer runs.Done(); l.Run(runCtx) }()
	}
	hard := []budget.Charge{{BudgetID: "bud_cache", PeriodStart: 1, Limit: 1500, Hard: true}}
	rec := func(id, action string) []byte {
		return ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: id, Action: action}.Marshal()
	}
	var wg sync.WaitGroup
	for r := range logs {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(r), uint64(w)))
				for c := range calls {
					id := fmt.Sprintf("req_%d_%d_%d", r, w, c)
					if rng.IntN(4) == 0 {
						if _, err := logs[r].Append(ctx, ledger.Entry{Data: rec(id, "admin"), RequestID: id}); err != nil && !errors.Is(err, ledger.ErrUnavailable) {
							t.Error(err)
						}
						continue
					}
					_, err := logs[r].Append(ctx, ledger.Entry{Data: rec(id, "start"), RequestID: id, Opens: true,
						Hold: &ledger.Hold{Reservation: budget.Reservation{ID: id, Instance: "gw", Amount: int64(5 + rng.IntN(20)), Charges: hard, CreatedAt: time.Now()}}})
					var ierr *budget.InsufficientError
					switch {
					case errors.As(err, &ierr), errors.Is(err, ledger.ErrUnavailable):
						continue
					case err != nil:
						t.Error(err)
						return
					}
					o := rng.IntN(2)
					if err := logs[o].Enqueue(ctx, ledger.Entry{Data: rec(id, fmt.Sprint("end by ", o)), RequestID: id, Closes: true}); err != nil && !errors.Is(err, ledger.ErrUnavailable) {
						t.Error(err)
					}
					if _, err := logs[1-o].Append(ctx, ledger.Entry{Data: rec(id, fmt.Sprint("end by ", 1-o)), RequestID: id, Closes: true}); err != nil && !errors.Is(err, ledger.ErrAlreadyClosed) && !errors.Is(err, ledger.ErrUnavailable) {
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
	size, err := db.LedgerSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data, err := db.LedgerEntries(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	var want []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = want[x]
		}
		return out, nil
	})
	inLog := map[string]int{}
	for n, d := range data {
		hs, err := tlog.StoredHashes(int64(n), d, reader)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, hs...)
		inLog[string(d)]++
	}
	idx := make([]int64, len(want))
	for i := range idx {
		idx[i] = int64(i)
	}
	stored, err := db.LedgerHashes(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if stored[i] != want[i] {
			t.Fatalf("stored hash %d differs from the one its records give", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for d, n := range exported {
		if n != 1 || inLog[d] != 1 {
			t.Fatalf("exported %d times, %d times in the log: %s", n, inLog[d], d)
		}
	}
	t.Logf("log of %d records, %d exported", size, len(exported))
	if int64(len(exported)) == size {
		t.Fatal("every record was exported: no commit of unknown outcome happened")
	}
}
