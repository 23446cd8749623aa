package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
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
	ledgertest.WaitRunning(t, l)
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

// stuckOnceStore holds the first append (whatever its context says: a store
// that does not honour cancellation) until released; the others pass.
type stuckOnceStore struct {
	*sqlstore.DB
	first            atomic.Bool
	entered, release chan struct{}
}

func (s *stuckOnceStore) LedgerAppend(ctx context.Context, inst string, es []ledger.Entry, f func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	if s.first.CompareAndSwap(false, true) {
		close(s.entered)
		<-s.release
	}
	return s.DB.LedgerAppend(ctx, inst, es, f)
}

// TestStuckCommitHoldsNoOtherPastTheTimeout is the attack "a stuck store
// commit blocks every later one through the commit turn": while one commit
// hangs in the store (holding the turn, ignoring its deadline), a start and
// an end appended alone fail with ErrUnavailable at their commit timeout
// instead of waiting for it; a sequencer started and stopped meanwhile
// fails its start the same way and stops (no deadlock with the held turn);
// Ready says a commit is stuck all along;
// once the store lets go, the turn is free again.
func TestStuckCommitHoldsNoOtherPastTheTimeout(t *testing.T) {
	_, db, skey := newLog(t)
	st := &stuckOnceStore{DB: db, entered: make(chan struct{}), release: make(chan struct{})}
	l, err := ledger.New(st, "gw.1", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l.CommitTimeout = 200 * time.Millisecond
	ctx := context.Background()
	stuck := make(chan error, 1)
	go func() {
		_, err := l.Append(ctx, rec(ledger.KindCallEnd, "stuck"))
		stuck <- err
	}()
	<-st.entered
	if _, err := l.Append(ctx, rec(ledger.KindCallStart, "start_1")); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("a start behind the stuck commit: %v, want ErrUnavailable", err)
	}
	if err := l.Enqueue(ctx, rec(ledger.KindCallEnd, "end_1")); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("an end behind the stuck commit: %v, want ErrUnavailable", err)
	}
	// The commits that gave up waiting for their turn do not hide the one
	// stuck in the store from the readiness check (stuck past a second).
	time.Sleep(1100 * time.Millisecond)
	if err := l.Ready(); err == nil {
		t.Fatal("Ready with a commit stuck in the store for over a second")
	}
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { l.Run(runCtx); close(stopped) }()
	ledgertest.WaitRunning(t, l)
	if _, err := l.Append(ctx, rec(ledger.KindCallStart, "start_2")); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("a start through the sequencer behind the stuck commit: %v, want ErrUnavailable", err)
	}
	stop()
	<-stopped // the sequencer stops while the turn is still held
	close(st.release)
	<-stuck // answered (its deadline passed in the store: it failed or committed)
	if _, err := l.Append(ctx, rec(ledger.KindCallEnd, "after")); err != nil {
		t.Fatalf("the turn was not given back: %v", err)
	}
}

// shortStore answers one index fewer than it was given entries, and no error.
type shortStore struct{ *sqlstore.DB }

func (s shortStore) LedgerAppend(ctx context.Context, inst string, es []ledger.Entry, f func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	idx, err := s.DB.LedgerAppend(ctx, inst, es, f)
	if err != nil {
		return idx, err
	}
	return idx[:len(idx)-1], nil
}

// TestStoreAnsweringTooFewIndexesFailsClosed: a Store that answers fewer
// indexes than entries, with no error, fails the batch (the caller gets
// ErrUnavailable) instead of crashing the sequencer on an index out of range.
func TestStoreAnsweringTooFewIndexesFailsClosed(t *testing.T) {
	_, db, skey := newLog(t)
	l, err := ledger.New(shortStore{db}, "gw.1", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ledgertest.Run(t, l)
	_, err = l.Append(context.Background(), rec(ledger.KindCallStart, "short_1"))
	if !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("Append on a store answering too few indexes: %v, want ErrUnavailable", err)
	}
}
