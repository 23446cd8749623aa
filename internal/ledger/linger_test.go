package ledger_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// batchCounter records the size of every batch the sequencer commits.
type batchCounter struct {
	*sqlstore.DB
	mu    sync.Mutex
	sizes []int
}

func (b *batchCounter) LedgerAppend(ctx context.Context, inst string, es []ledger.Entry, h func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	b.mu.Lock()
	b.sizes = append(b.sizes, len(es))
	b.mu.Unlock()
	return b.DB.LedgerAppend(ctx, inst, es, h)
}

func (b *batchCounter) batches() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.sizes...)
}

func lingerLog(t *testing.T, calls func() int) (*ledger.Log, *batchCounter) {
	t.Helper()
	_, db, skey := newLog(t)
	bc := &batchCounter{DB: db}
	l, err := ledger.New(bc, "test", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// A linger far longer than any test: a batch that waits for it hangs
	// the test instead of passing by luck.
	l.Linger, l.Calls = time.Hour, calls
	ledgertest.Run(t, l)
	return l, bc
}

// appendAll appends n start records concurrently, the first one alone and
// the others once it is (very likely) waiting in the batch.
func appendAll(t *testing.T, l *ledger.Log, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := l.Append(context.Background(), rec(ledger.KindCallStart, fmt.Sprintf("req_linger_%d", i)))
			errs <- err
		}()
		if i == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestLingerCommitsWhenEveryCallInProgressHasAnEntry: with three calls in
// progress, the first entry waits for the other two and the batch commits as
// soon as it holds three, long before Linger.
func TestLingerCommitsWhenEveryCallInProgressHasAnEntry(t *testing.T) {
	l, bc := lingerLog(t, func() int { return 3 })
	appendAll(t, l, 3)
	if got := bc.batches(); len(got) != 1 || got[0] != 3 {
		t.Fatalf("batches %v, want one of 3", got)
	}
}

// TestLingerLoneCallerNeverWaits: one call in progress commits at once.
func TestLingerLoneCallerNeverWaits(t *testing.T) {
	l, bc := lingerLog(t, func() int { return 1 })
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(context.Background(), rec(ledger.KindCallStart, "req_lone"))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // Linger is an hour
		t.Fatal("a lone caller waited for the linger")
	}
	if got := bc.batches(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("batches %v, want one of 1", got)
	}
}

// TestLingerWithoutCallsHintCommitsAtOnce: a Log that is not told how many
// calls are in progress (no proxy) never lingers.
func TestLingerWithoutCallsHintCommitsAtOnce(t *testing.T) {
	l, bc := lingerLog(t, nil)
	done := make(chan struct{})
	go func() { appendAll(t, l, 2); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("a batch waited for the linger without a calls hint")
	}
	if got := bc.batches(); len(got) == 0 {
		t.Fatal("nothing committed")
	}
}

// TestLingerCallsDroppingEndsTheWait: calls that end while a batch waits
// (their count drops to what the batch holds) release it at the next entry.
func TestLingerCallsDroppingEndsTheWait(t *testing.T) {
	var mu sync.Mutex
	n := 5
	lingering := make(chan struct{}, 1)
	l, bc := lingerLog(t, func() int { // asked once the batch holds an entry
		select {
		case lingering <- struct{}{}:
		default:
		}
		mu.Lock()
		defer mu.Unlock()
		return n
	})
	done := make(chan error, 2)
	go func() {
		_, err := l.Append(context.Background(), rec(ledger.KindCallStart, "req_drop"))
		done <- err
	}()
	<-lingering // the first entry waits in the batch
	mu.Lock()
	n = 2
	mu.Unlock()
	go func() {
		_, err := l.Append(context.Background(), rec(ledger.KindCallStart, "req_drop_2"))
		done <- err
	}()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatal("the batch kept waiting after the calls in progress dropped")
		}
	}
	if got := bc.batches(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("batches %v, want one of 2", got)
	}
}

// TestLingerEndsWhenRunStops: a batch lingering for calls that never come
// is committed when Run's context ends (the one batch wait, gather, watches
// it as the lag wait always did), not an hour later.
func TestLingerEndsWhenRunStops(t *testing.T) {
	_, db, skey := newLog(t)
	bc := &batchCounter{DB: db}
	l, err := ledger.New(bc, "test", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lingering := make(chan struct{}, 1)
	l.Linger, l.Calls = time.Hour, func() int { // asked once the batch holds the entry
		select {
		case lingering <- struct{}{}:
		default:
		}
		return 5
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan struct{})
	go func() { l.Run(ctx); close(stopped) }()
	ledgertest.WaitRunning(t, l)
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(context.Background(), rec(ledger.KindCallStart, "req_linger_stop"))
		done <- err
	}()
	<-lingering
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // Linger is an hour
		t.Fatal("the lingering batch outlived Run's context")
	}
	<-stopped
	if got := bc.batches(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("batches %v, want one of 1", got)
	}
}
