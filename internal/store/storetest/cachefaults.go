package storetest

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
)

// CheckLog recomputes every stored hash of the log from its entries and
// compares: a batch written at a wrong index, with hashes of a wrong size,
// or with a gap, fails it. The log must hold want records.
func CheckLog(t *testing.T, ctx context.Context, s ledger.Store, want int64) {
	t.Helper()
	size, err := s.LedgerSize(ctx)
	if err != nil || size != want {
		t.Fatalf("log size %d (%v), want %d", size, err, want)
	}
	data, err := s.LedgerEntries(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	var mine []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = mine[x]
		}
		return out, nil
	})
	for n, d := range data {
		hs, err := tlog.StoredHashes(int64(n), d, reader)
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, hs...)
	}
	idx := make([]int64, len(mine))
	for i := range idx {
		idx[i] = int64(i)
	}
	stored, err := s.LedgerHashes(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range mine {
		if stored[i] != mine[i] {
			t.Fatalf("stored hash %d differs from the one its entries give", i)
		}
	}
}

// errInjected is the fault faultyAppends injects.
var errInjected = errors.New("injected fault")

// faultyAppends fails a log's commits in the two ways a commit can end
// after its hashes were computed: every third rolls back (the callback
// fails after computing them, on every try the store makes), every fifth
// commits and reports an error (the outcome is unknown to the log). After
// a fault, meddle (if set) appends a record at once, so that the index the
// failed batch computed hashes for holds another record.
type faultyAppends struct {
	ledger.Store
	meddle func()
	mu     sync.Mutex
	n      int
}

func (f *faultyAppends) LedgerAppend(ctx context.Context, instance string, entries []ledger.Entry, hashes func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	if n%3 == 0 {
		idx, err := f.Store.LedgerAppend(ctx, instance, entries, func(size int64, kept []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
			if _, err := hashes(size, kept, r); err != nil {
				return nil, err
			}
			return nil, errInjected
		})
		if err != nil && f.meddle != nil { // else it kept nothing and called no hashes
			f.meddle()
		}
		return idx, err
	}
	idx, err := f.Store.LedgerAppend(ctx, instance, entries, hashes)
	if err == nil && n%5 == 0 {
		if f.meddle != nil {
			f.meddle()
		}
		return nil, errInjected
	}
	return idx, err
}

// HashCacheFaults describes a run of HashCacheUnderFaults: what differs
// between backends (one file or two replicas, how a commit can run out of
// time) and the load.
type HashCacheFaults struct {
	// Stores are what the two logs append to: one store twice (two logs on
	// one file) or two stores on one schema (two replicas). Log 1's
	// commits fail as faultyAppends makes them.
	Stores [2]ledger.Store
	// CommitTimeout is each log's ledger.Log.CommitTimeout (zero: the
	// default).
	CommitTimeout [2]time.Duration
	// Meddle: after each injected fault, a third writer appends a record
	// to Stores[0] at once, taking the index the failed batch computed
	// hashes for.
	Meddle bool
	// Verify: on stopping, log 1 signs a checkpoint, which must verify
	// offline (read from Stores[1]) and over the tiles log 1 serves.
	Verify bool
	// Workers per log, Calls per worker, and the hard budget's Limit.
	Workers, Calls int
	Limit          int64
}

// HashCacheUnderFaults: the ledger's right-edge hash cache under every way
// a batch can end, on two logs appending at once, each with its sequencer
// (Run, group commit, the batch wait) and its own cache, which misses what
// the other wrote: starts with holds at a hard budget's edge (some
// refused, which refuses a guess), ends sent by both logs (the second one
// dropped: a guess refused and a retry that may keep nothing), plain
// records, and callers whose commit fails (as injected on log 1, and by
// running out of time where c.CommitTimeout says). Every stored hash must
// be the one the records give, and what each log exported must be records
// of the log, once each; at least one record must go unexported (a commit
// of unknown outcome happened). It returns the log's size.
func HashCacheUnderFaults(t *testing.T, ctx context.Context, c HashCacheFaults) int64 {
	t.Helper()
	skey, _ := ledger.GenerateKey("redcache.example/log")
	var logs [2]*ledger.Log
	var mu sync.Mutex
	exported := map[string]int{}
	rec := func(id, action string) []byte {
		return ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: id, Action: action}.Marshal()
	}
	faulty := &faultyAppends{Store: c.Stores[1]}
	if c.Meddle {
		var meddles atomic.Int64
		// Straight to the store, not through log 0: a commit of log 0 may
		// run out of time (c.CommitTimeout), and a meddle that fails leaves
		// the index to the failed batch's retry, whose hashes are the same.
		faulty.meddle = func() {
			id := fmt.Sprint("req_meddle_", meddles.Add(1))
			if _, err := c.Stores[0].LedgerAppend(ctx, "meddler", []ledger.Entry{{Data: rec(id, "meddle"), RequestID: id}}, NewHasher().Hashes); err != nil {
				t.Error(err)
			}
		}
	}
	stores := [2]ledger.Store{c.Stores[0], faulty}
	for i := range logs {
		var err error
		if logs[i], err = ledger.New(stores[i], fmt.Sprintf("gw%d", i), skey, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
		logs[i].Sink = func(data []byte) {
			mu.Lock()
			exported[string(data)]++
			mu.Unlock()
		}
		logs[i].Linger = 2 * time.Millisecond
		logs[i].Calls = func() int { return c.Workers }
		if c.CommitTimeout[i] > 0 {
			logs[i].CommitTimeout = c.CommitTimeout[i]
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	var runs sync.WaitGroup
	for _, l := range logs {
		runs.Add(1)
		go func() { defer runs.Done(); l.Run(runCtx) }()
	}
	hard := []budget.Charge{{BudgetID: "bud_cache", PeriodStart: 1, Limit: c.Limit, Hard: true}}
	var wg sync.WaitGroup
	for r := range logs {
		for w := range c.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(r), uint64(w)))
				for n := range c.Calls {
					id := fmt.Sprintf("req_%d_%d_%d", r, w, n)
					if rng.IntN(4) == 0 { // a plain record
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
						continue // refused, or failed closed (possibly written: recovery's case)
					case err != nil:
						t.Error(err)
						return
					}
					// Both logs close it, one lagging (Enqueue), one waiting.
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
		t.FailNow()
	}
	size, err := c.Stores[0].LedgerSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	CheckLog(t, ctx, c.Stores[0], size)
	if c.Verify {
		// Run signed a checkpoint of it on stopping; it verifies offline and
		// over the tiles a transparency-log client reads, from either log.
		if err := logs[1].SignCheckpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if rep, _, err := ledger.Verify(ctx, ledger.StoreSource{Store: c.Stores[1]}, logs[0].Key(), nil, nil); err != nil || rep.Size != size {
			t.Fatalf("offline verify: %d records, %v; want %d", rep.Size, err, size)
		}
		srv := httptest.NewServer(logs[1].Handler())
		defer srv.Close()
		if rep, _, err := ledger.Verify(ctx, ledger.HTTPSource{Base: srv.URL + "/log"}, logs[0].Key(), nil, nil); err != nil || rep.Size != size {
			t.Fatalf("verify over HTTP: %d records, %v; want %d", rep.Size, err, size)
		}
	}
	data, err := c.Stores[0].LedgerEntries(ctx, 0, size)
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
	t.Logf("log of %d records, %d exported", size, len(exported))
	if int64(len(exported)) == size {
		t.Fatal("every record was exported: no commit of unknown outcome happened")
	}
	return size
}
