package ledger_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// heldStore holds every batch until released.
type heldStore struct {
	*sqlstore.DB
	release chan struct{}
}

func (h *heldStore) LedgerAppend(ctx context.Context, inst string, es []ledger.Entry, f func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	<-h.release
	return h.DB.LedgerAppend(ctx, inst, es, f)
}

// TestStopWhileAppendsWaitForAFullQueue: the sequencer is stopped while its
// queue is full (a slow store under a flood) and more end records wait to
// get into it. A waiting Append must not keep the stopping sequencer from
// taking over (holding the log's run lock for its whole wait): every end
// record is drained or written alone, none fails.
func TestStopWhileAppendsWaitForAFullQueue(t *testing.T) {
	_, db, skey := newLog(t)
	st := &heldStore{DB: db, release: make(chan struct{})}
	l, err := ledger.New(st, "gw.1", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l.CommitTimeout = 10 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { l.Run(ctx); close(stopped) }()
	waitRunning(t, l)
	const n = 4*ledger.MaxBatch + 1 + 64 // one committing, a full queue, 64 waiting
	var failed atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := l.Append(context.Background(), rec(ledger.KindCallEnd, fmt.Sprintf("full_%04d", i))); err != nil {
				failed.Add(1)
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // let the queue fill
	cancel()
	time.Sleep(100 * time.Millisecond) // the sequencer stops while Appends wait
	close(st.release)
	wg.Wait()
	<-stopped
	if failed.Load() != 0 {
		t.Fatalf("%d of %d end records failed", failed.Load(), n)
	}
	if got := count(t, db, `SELECT COUNT(*) FROM ledger_closed`); got != n {
		t.Fatalf("%d end records written, want %d", got, n)
	}
}

// countingStore records how many appends run at once.
type countingStore struct {
	*sqlstore.DB
	now, most atomic.Int64
}

func (c *countingStore) LedgerAppend(ctx context.Context, inst string, es []ledger.Entry, f func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
	}
	time.Sleep(time.Millisecond) // long enough for overlaps to show
	return c.DB.LedgerAppend(ctx, inst, es, f)
}

// TestCommitsAloneTakeTurns: with no sequencer (before Run, or after it
// stopped), concurrent appends commit one at a time rather than contend for
// the store's write lock (SQLite's busy handler is not fair: under load some
// waited past its timeout and failed), and every one is written.
func TestCommitsAloneTakeTurns(t *testing.T) {
	_, db, skey := newLog(t)
	st := &countingStore{DB: db}
	l, err := ledger.New(st, "gw.1", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	var failed atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := l.Append(context.Background(), rec(ledger.KindCallEnd, fmt.Sprintf("alone_%03d", i))); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d appends failed", failed.Load(), n)
	}
	if m := st.most.Load(); m != 1 {
		t.Fatalf("%d appends ran at once, want 1", m)
	}
	if got := count(t, db, `SELECT COUNT(*) FROM ledger_closed`); got != n {
		t.Fatalf("%d records written, want %d", got, n)
	}
}
