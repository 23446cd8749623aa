package ledger_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
)

// lagWaitLog is a running Log over a batch-counting SQLite store with
// LagWait set; stop stops its Run and waits for it.
func lagWaitLog(t *testing.T, wait time.Duration) (l *ledger.Log, bc *batchCounter, stop func()) {
	t.Helper()
	_, db, skey := newLog(t)
	bc = &batchCounter{DB: db}
	l, err := ledger.New(bc, "test", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l.LagWait = wait
	return l, bc, ledgertest.Run(t, l)
}

// enqueueEnd hands a lagging end record to l and returns a channel that
// receives its final error.
func enqueueEnd(t *testing.T, l *ledger.Log, id string) <-chan error {
	t.Helper()
	final := make(chan error, 1)
	e := rec(ledger.KindCallEnd, id)
	e.Done = func(err error) { final <- err }
	if err := l.Enqueue(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	return final
}

func waitFinal(t *testing.T, final <-chan error, what string) {
	t.Helper()
	select {
	case err := <-final:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("%s: never final", what)
	}
}

// TestLagWaitEndSharesTheNextStartsCommit is one connection's pattern: call
// N's end record lags (Enqueue) and call N+1's start arrives a little later.
// The end must not be committed alone (a commit and sync the start would
// wait behind): each start commits together with the end queued before it.
// With LagWait 0 (the sequencer before LagWait) every batch holds one
// record and this fails.
func TestLagWaitEndSharesTheNextStartsCommit(t *testing.T) {
	l, bc, _ := lagWaitLog(t, time.Hour) // a wait that ends only by a start: no luck involved
	ctx := context.Background()
	if _, err := l.Append(ctx, rec(ledger.KindCallStart, "req_alt_0")); err != nil {
		t.Fatal(err)
	}
	const calls = 5
	for i := range calls {
		final := enqueueEnd(t, l, fmt.Sprintf("req_alt_%d", i))
		time.Sleep(10 * time.Millisecond) // the sequencer took the end: it would commit it alone
		if _, err := l.Append(ctx, rec(ledger.KindCallStart, fmt.Sprintf("req_alt_%d", i+1))); err != nil {
			t.Fatal(err)
		}
		waitFinal(t, final, "end record")
	}
	got := bc.batches()
	want := []int{1, 2, 2, 2, 2, 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batches %v, want %v (each end with the next start)", got, want)
	}
	// Order in the log: each end before the start that followed it.
	for i := range calls {
		end, err := bc.LedgerFind(ctx, fmt.Sprintf("req_alt_%d", i))
		if err != nil || len(end) != 2 {
			t.Fatalf("call %d: records %v, %v", i, end, err)
		}
		next, err := bc.LedgerFind(ctx, fmt.Sprintf("req_alt_%d", i+1))
		if err != nil || len(next) == 0 || next[0] < end[1] {
			t.Fatalf("call %d's end at %v, call %d's start at %v: out of order", i, end, i+1, next)
		}
	}
}

// TestLagWaitIsBounded: a lagging end record with nothing arriving after it
// is committed once LagWait has passed, alone.
func TestLagWaitIsBounded(t *testing.T) {
	l, bc, _ := lagWaitLog(t, 30*time.Millisecond)
	start := time.Now()
	waitFinal(t, enqueueEnd(t, l, "req_bounded"), "end record")
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("committed after %v, before LagWait (30ms): the batch did not wait", d)
	}
	if got := bc.batches(); fmt.Sprint(got) != "[1]" {
		t.Fatalf("batches %v, want [1]", got)
	}
}

// TestLagWaitZeroCommitsAtOnce: LagWait 0 keeps the old behaviour.
func TestLagWaitZeroCommitsAtOnce(t *testing.T) {
	l, bc, _ := lagWaitLog(t, 0)
	waitFinal(t, enqueueEnd(t, l, "req_zero"), "end record") // a minute; LagWait would be an hour
	if got := bc.batches(); fmt.Sprint(got) != "[1]" {
		t.Fatalf("batches %v, want [1]", got)
	}
}

// TestLagWaitEndsOnAnyWaitedEntry: an end record appended by a caller that
// waits (Append, as with lag_end_records: false or recovery) or an admin
// record ends the wait as a start does.
func TestLagWaitEndsOnAnyWaitedEntry(t *testing.T) {
	for _, kind := range []string{ledger.KindCallEnd, ledger.KindAdmin} {
		t.Run(kind, func(t *testing.T) {
			l, bc, _ := lagWaitLog(t, time.Hour)
			final := enqueueEnd(t, l, "req_lagging")
			time.Sleep(10 * time.Millisecond)
			done := make(chan error, 1)
			go func() { _, err := l.Append(context.Background(), rec(kind, "req_waited")); done <- err }()
			waitFinal(t, done, "waited entry")
			waitFinal(t, final, "end record")
			if got := bc.batches(); fmt.Sprint(got) != "[2]" {
				t.Fatalf("batches %v, want [2]", got)
			}
		})
	}
}

// TestLagWaitFullBatchCommits: lagging end records that fill a batch are
// committed without waiting for LagWait or a start.
func TestLagWaitFullBatchCommits(t *testing.T) {
	l, bc, _ := lagWaitLog(t, time.Hour)
	var finals []<-chan error
	for i := range ledger.MaxBatch {
		finals = append(finals, enqueueEnd(t, l, fmt.Sprintf("req_full_%04d", i)))
	}
	for _, f := range finals {
		waitFinal(t, f, "end record")
	}
	n := 0
	for _, s := range bc.batches() {
		n += s
	}
	if n != ledger.MaxBatch {
		t.Fatalf("batches %v, want %d records in all", bc.batches(), ledger.MaxBatch)
	}
}

// TestLagWaitStopCommitsWaitingEnds: stopping the sequencer while a batch of
// lagging end records waits writes them (not lost, not held for LagWait).
func TestLagWaitStopCommitsWaitingEnds(t *testing.T) {
	l, bc, stop := lagWaitLog(t, time.Hour)
	final := enqueueEnd(t, l, "req_stop")
	time.Sleep(10 * time.Millisecond)
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		t.Fatal("Run did not stop while a batch waited")
	}
	waitFinal(t, final, "end record")
	if got := bc.batches(); fmt.Sprint(got) != "[1]" {
		t.Fatalf("batches %v, want [1]", got)
	}
}
