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

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// The sequencer's entries carry the calls' holds (start) and their
// settlements and usage rows (end): what a kill -9 at the worst moments
// leaves behind must be charged in full, never lost, never doubled.

var seqCharge = budget.Charge{BudgetID: "bud_seq", PeriodStart: 1, Limit: 1 << 40, Hard: true}

const seqAmount = 1_000

func startHold(id, inst string) ledger.Entry {
	e := rec(ledger.KindCallStart, id)
	e.Hold = &ledger.Hold{Reservation: budget.Reservation{ID: id, Instance: inst, Amount: seqAmount, Charges: []budget.Charge{seqCharge}, CreatedAt: time.Now()}}
	return e
}

func endSettle(id string, actual int64) ledger.Entry {
	e := rec(ledger.KindCallEnd, id)
	e.Settle = &ledger.Settlement{ID: id, Actual: actual}
	e.Usage = &usage.Record{ID: id, Time: time.Unix(1_700_000_000, 0), KeyID: "key_seq", Model: "gpt-4o", CostMicros: actual, Reasons: []string{}}
	return e
}

func count(t *testing.T, db *sqlstore.DB, q string) int {
	t.Helper()
	var n int
	if err := db.SQL().QueryRow(q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// restart recovers as a new gateway process on the same store would.
func restart(t *testing.T, db *sqlstore.DB, skey string) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	bl := budget.NewLedger(db, "gw.restarted", func() []budget.Budget { return nil }, nil, log)
	if _, err := bl.Recover(ctx, true); err != nil {
		t.Fatal(err)
	}
	l2, err := ledger.New(db, "gw.restarted", skey, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Recover(ctx, true, time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// killedAfterCommit commits a batch, then never answers: the process died
// between the start batch's commit and its callers' replies.
type killedAfterCommit struct {
	*sqlstore.DB
	dead chan struct{}
}

func (k *killedAfterCommit) LedgerAppend(ctx context.Context, inst string, es []ledger.Entry, h func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	if _, err := k.DB.LedgerAppend(ctx, inst, es, h); err != nil {
		return nil, err
	}
	<-k.dead
	return nil, errors.New("killed")
}

func TestKillBetweenStartBatchCommitAndReplies(t *testing.T) {
	_, db, skey := newLog(t)
	k := &killedAfterCommit{DB: db, dead: make(chan struct{})}
	l, err := ledger.New(k, "gw.1", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l.CommitTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { l.Run(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); close(k.dead); <-stopped })
	ledgertest.WaitRunning(t, l)
	var wg sync.WaitGroup
	var answered atomic.Int64
	for i := range 20 {
		wg.Go(func() {
			if _, err := l.Append(context.Background(), startHold(fmt.Sprint("req_", i), "gw.1")); err == nil {
				answered.Add(1)
			}
		})
	}
	wg.Wait()
	if answered.Load() != 0 {
		t.Fatalf("%d starts answered by a dead process", answered.Load())
	}
	held := count(t, db, `SELECT COUNT(*) FROM reservations`)
	if held == 0 || held != count(t, db, `SELECT COUNT(*) FROM ledger_open`) {
		t.Fatalf("%d holds and %d open starts committed before the kill; want the same, at least one", held, count(t, db, `SELECT COUNT(*) FROM ledger_open`))
	}
	restart(t, db, skey)
	sp, err := db.Spend(context.Background(), []budget.Charge{seqCharge})
	if err != nil {
		t.Fatal(err)
	}
	if sp[0].Spent != int64(held)*seqAmount || sp[0].Reserved != 0 {
		t.Fatalf("after restart: %+v; want every one of %d committed holds charged in full", sp[0], held)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM ledger_open`); n != 0 {
		t.Fatalf("%d start records still open after restart", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM ledger_closed`); n != held {
		t.Fatalf("%d end records for %d committed starts", n, held)
	}
}

// answerLostOnce commits the first batch with an end entry, then reports
// a failure: the sequencer keeps the entries and retries them.
type answerLostOnce struct {
	*sqlstore.DB
	lost atomic.Bool
}

func (a *answerLostOnce) LedgerAppend(ctx context.Context, inst string, es []ledger.Entry, h func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	idx, err := a.DB.LedgerAppend(ctx, inst, es, h)
	if err == nil && es[0].Closes && a.lost.CompareAndSwap(false, true) {
		return nil, errors.New("connection reset (the commit went through)")
	}
	return idx, err
}

func TestEndEntriesLostAtKillAndRetriedAfterALostAnswer(t *testing.T) {
	_, db, skey := newLog(t)
	a := &answerLostOnce{DB: db}
	l, err := ledger.New(a, "gw.1", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ledgertest.Run(t, l)
	ctx := context.Background()
	for i := range 6 {
		if _, err := l.Append(ctx, startHold(fmt.Sprint("req_", i), "gw.1")); err != nil {
			t.Fatal(err)
		}
	}
	// Calls 0 and 1 end in one batch whose answer is lost (retried), 2 and 3
	// end normally, 4 and 5 were still queued when the process was killed.
	var wg sync.WaitGroup
	done := make(chan error, 2)
	for _, id := range []string{"req_0", "req_1"} {
		e := endSettle(id, 100)
		e.Done = func(err error) { done <- err }
		wg.Go(func() { l.Enqueue(ctx, e) })
	}
	wg.Wait()
	for range 2 {
		if err := <-done; err != nil && !errors.Is(err, ledger.ErrAlreadyClosed) {
			t.Fatalf("a retried end entry: %v", err)
		}
	}
	for _, id := range []string{"req_2", "req_3"} {
		if _, err := l.Append(ctx, endSettle(id, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if !a.lost.Load() {
		t.Fatal("no answer was lost: the test did not test the retry")
	}
	restart(t, db, skey)
	sp, err := db.Spend(context.Background(), []budget.Charge{seqCharge})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(4*100 + 2*seqAmount); sp[0].Spent != want || sp[0].Reserved != 0 {
		t.Fatalf("after restart: %+v; want spent %d (four settled, two charged in full)", sp[0], want)
	}
	rows, err := db.ListUsage(context.Background(), usage.Query{KeyID: "key_seq"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("%d usage rows, want one for each of the 4 end entries that committed", len(rows))
	}
	if n := count(t, db, `SELECT COUNT(*) FROM ledger_open`); n != 0 {
		t.Fatalf("%d start records still open after restart", n)
	}
}
