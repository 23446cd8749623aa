package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// lagOutageLog is a running Log with LagWait over a SQLite store that can be
// taken down.
func lagOutageLog(t *testing.T, wait time.Duration) (*ledger.Log, *ledgertest.DownStore, *sqlstore.DB) {
	return ledgertest.DownLog(t, func(l *ledger.Log) { l.LagWait = wait })
}

// TestLagWaitOutageDuringTheWait: the store goes down while a lagging end
// waits for a start. The start that ends the wait must fail closed (no 200
// without a durable start), the end must not be final (its hold stays
// reserved: it only refuses more) and waits for the store, Ready says so;
// once the store is back the end is written, the log holds the end before
// nothing of the failed start, and it verifies.
func TestLagWaitOutageDuringTheWait(t *testing.T) {
	ctx := context.Background()
	l, st, db := lagOutageLog(t, time.Hour)
	if _, err := l.Append(ctx, rec(ledger.KindCallStart, "req_a")); err != nil {
		t.Fatal(err)
	}
	final := enqueueEnd(t, l, "req_a")
	time.Sleep(10 * time.Millisecond) // the sequencer holds the end, waiting
	st.Down.Store(true)
	if _, err := l.Append(ctx, rec(ledger.KindCallStart, "req_b")); err == nil {
		t.Fatal("a start appended while the store is down succeeded")
	}
	select {
	case err := <-final:
		t.Fatalf("the end record was final (%v) while the store was down: its hold would be released", err)
	default:
	}
	waitDeferred(t, l, 1)
	if l.Ready() == nil {
		t.Fatal("Ready while an end record waits for the store")
	}
	st.Down.Store(false)
	waitFinal(t, final, "end record after the outage")
	waitDeferred(t, l, 0)
	if err := l.Ready(); err != nil {
		t.Fatalf("not Ready after the store returned: %v", err)
	}
	var got []string
	for _, r := range logged(t, db) {
		got = append(got, r.Kind+":"+r.RequestID)
	}
	if want := fmt.Sprint([]string{ledger.KindCallStart + ":req_a", ledger.KindCallEnd + ":req_a"}); fmt.Sprint(got) != want {
		t.Fatalf("log %v, want %v", got, want)
	}
	verified(t, l, db)
}

// TestLagWaitHoldsReleaseOnlyAfterCommit: a lagging end's Done (which
// releases the call's in-memory hold) is never called while the end waits
// in a batch: the delay only keeps the hold reserved longer, so a budget
// can only refuse more, never overspend.
func TestLagWaitHoldsReleaseOnlyAfterCommit(t *testing.T) {
	l, bc, stop := lagWaitLog(t, time.Hour)
	final := enqueueEnd(t, l, "req_hold")
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-final:
		t.Fatalf("Done(%v) before the end record was committed (batches %v)", err, bc.batches())
	default:
	}
	if got := bc.batches(); len(got) != 0 {
		t.Fatalf("batches %v while the end waited", got)
	}
	stop()
	waitFinal(t, final, "end record at stop")
}

// TestLagWaitMaxBatchEdges: MaxBatch-1 lagging ends and a start fill one
// batch exactly; one more end than that pushes the start to the next batch.
// Either way every end is written before the start that followed it, and
// no batch is larger than MaxBatch.
func TestLagWaitMaxBatchEdges(t *testing.T) {
	for _, ends := range []int{ledger.MaxBatch - 1, ledger.MaxBatch} {
		t.Run(fmt.Sprint(ends), func(t *testing.T) {
			ctx := context.Background()
			l, bc, _ := lagWaitLog(t, time.Hour)
			var finals []<-chan error
			for i := range ends {
				finals = append(finals, enqueueEnd(t, l, fmt.Sprintf("req_edge_%04d", i)))
			}
			if _, err := l.Append(ctx, rec(ledger.KindCallStart, "req_edge_next")); err != nil {
				t.Fatal(err)
			}
			for _, f := range finals {
				waitFinal(t, f, "end record")
			}
			total := 0
			for _, s := range bc.batches() {
				if s > ledger.MaxBatch {
					t.Fatalf("batch of %d > MaxBatch", s)
				}
				total += s
			}
			if total != ends+1 {
				t.Fatalf("batches %v, want %d records", bc.batches(), ends+1)
			}
			next, err := bc.LedgerFind(ctx, "req_edge_next")
			if err != nil || len(next) != 1 {
				t.Fatalf("start: %v %v", next, err)
			}
			for i := range ends {
				idx, err := bc.LedgerFind(ctx, fmt.Sprintf("req_edge_%04d", i))
				if err != nil || len(idx) != 1 || idx[0] > next[0] {
					t.Fatalf("end %d at %v, the later start at %v", i, idx, next)
				}
			}
		})
	}
}

// TestSummariesBoundedOverDistinctCodes: a flood of refusals of one key with
// distinct error codes (the gateway's codes are a few dozen; this assumes
// the worst) and minutes still leaves at most 2*MaxSummaries+1 records
// waiting, every call counted, and the log verifies after the store returns.
func TestSummariesBoundedOverDistinctCodes(t *testing.T) {
	ctx := context.Background()
	l, st, db := outageLog(t, 0)
	st.Down.Store(true)
	const n = 2*ledger.MaxSummaries + 300
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Minute)
		if err := l.Enqueue(ctx, refusal(fmt.Sprintf("c%d", i), "key_one", fmt.Sprintf("code_%d", i), at)); err != nil {
			t.Fatal(err)
		}
	}
	waitAggregated(t, l, n)
	if d := l.Deferred(); d > 2*ledger.MaxSummaries+1 {
		t.Fatalf("%d records wait for the store, bound %d", d, 2*ledger.MaxSummaries+1)
	}
	st.Down.Store(false)
	waitDeferred(t, l, 0)
	verified(t, l, db)
	var calls int64
	for _, r := range logged(t, db) {
		calls += r.Count
	}
	if calls != n {
		t.Fatalf("%d calls counted, want %d", calls, n)
	}
}
