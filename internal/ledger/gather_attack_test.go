package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// TestLingerFullBatchCommits: with more calls in progress than a batch can
// hold, a lingering batch commits as soon as it is full (MaxBatch), not
// after Linger (an hour), and no batch is larger: 2*MaxBatch concurrent
// starts make exactly two batches of MaxBatch, and each caller gets its own
// index.
func TestLingerFullBatchCommits(t *testing.T) {
	l, bc := lingerLog(t, func() int { return 3 * ledger.MaxBatch })
	const n = 2 * ledger.MaxBatch
	var wg sync.WaitGroup
	idx := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx[i], errs[i] = l.Append(context.Background(), rec(ledger.KindCallStart, fmt.Sprintf("req_full_%04d", i)))
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute): // Linger is an hour
		t.Fatalf("a full batch waited for the linger (batches %v)", bc.batches())
	}
	seen := map[int64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if seen[idx[i]] {
			t.Fatalf("index %d answered twice", idx[i])
		}
		seen[idx[i]] = true
	}
	if got := bc.batches(); len(got) != 2 || got[0] != ledger.MaxBatch || got[1] != ledger.MaxBatch {
		t.Fatalf("batches %v, want two of %d", got, ledger.MaxBatch)
	}
}
