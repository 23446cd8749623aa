package budget_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// losingAnswers commits every batch but reports a failure for one in
// every `every` (a connection reset after COMMIT): the sequencer's callers
// see an error for work that is durable.
type losingAnswers struct {
	*sqlstore.DB
	n, every int64
	lost     atomic.Int64
	mu       sync.Mutex
}

func (s *losingAnswers) LedgerAppend(ctx context.Context, inst string, es []ledger.Entry, h func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	idx, err := s.DB.LedgerAppend(ctx, inst, es, h)
	s.mu.Lock()
	s.n++
	lose := s.n%s.every == 0
	s.mu.Unlock()
	if err == nil && lose {
		s.lost.Add(1)
		return nil, errors.New("connection reset (the commit went through)")
	}
	return idx, err
}

// call does what the proxy does with a sequenced hold (proxy.serveCall,
// writeStart, writeEnd): admit, append the start carrying the hold, give up
// on the hold in memory once the call is over, and settle it with the end
// entry; ctx is the caller's, which hangs up at any moment.
func call(ctx context.Context, bl *budget.Ledger, l *ledger.Log, id string, amount, actual int64) (held, started bool) {
	h, started := callHold(ctx, bl, l, id, amount, actual)
	return h != nil, started
}

// callHold is call, returning the call's hold (nil when refused).
func callHold(ctx context.Context, bl *budget.Ledger, l *ledger.Log, id string, amount, actual int64) (*budget.Hold, bool) {
	h, err := bl.Admit(ctx, id, budget.Call{KeyID: "key_1", Model: "m"}, amount)
	if err != nil || h == nil {
		return nil, false
	}
	start := ledger.Record{Kind: ledger.KindCallStart, Time: time.Now(), RequestID: id, Model: "m"}
	lh := &ledger.Hold{Reservation: h.Reservation()}
	_, err = l.Append(ctx, ledger.Entry{Data: start.Marshal(), RequestID: id, Opens: true, Hold: lh,
		Done: func(err error) { h.Started(lh.Spends, err) }})
	started := err == nil
	if !started {
		actual = 0 // nothing went upstream
	}
	h.Abandon()
	end := ledger.Record{Kind: ledger.KindCallEnd, Time: time.Now(), RequestID: id, Model: "m", CostMicros: actual}
	st := &ledger.Settlement{ID: id, Actual: actual}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	l.Append(ectx, ledger.Entry{Data: end.Marshal(), RequestID: id, Closes: true, Settle: st, Done: func(err error) {
		if err == nil || errors.Is(err, ledger.ErrAlreadyClosed) {
			h.Settled(st.Settled, st.Spends)
		} else {
			h.Settled(false, nil)
		}
	}})
	return h, started
}

// TestCallerHangsUpAroundStartedAndLostAnswersLeakNothing: a flood of
// sequenced calls whose callers hang up at random moments (before
// admission, while the start is queued, while its batch commits, after it)
// through a store that loses the answer of every second batch. Afterwards
// memory holds no pending money and no live hold, the store holds no
// reservation and no open start, every call has one end record, and the
// money spent is exactly what the calls that started were charged: nothing
// leaked, nothing counted twice.
func TestCallerHangsUpAroundStartedAndLostAnswersLeakNothing(t *testing.T) {
	ctx := context.Background()
	b := budget.Budget{ID: "bud_hang", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Lifetime, LimitMicros: 1 << 40, Hard: true}
	var st *losingAnswers
	r := openSeqRig(t, "test/hang", func(db *sqlstore.DB) ledger.Store { st = &losingAnswers{DB: db, every: 2}; return st },
		func(l *ledger.Log) { l.CommitTimeout = 2 * time.Second }, b)
	db, bl, l, stop, stopped := r.db, r.bl, r.l, r.stop, r.stopped

	const calls, amount, actual = 200, 1_000, 400
	var heldN, startedN atomic.Int64
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if i%4 != 0 { // one in four never hangs up
				time.AfterFunc(time.Duration(rand.IntN(3000))*time.Microsecond, cancel)
			}
			held, started := call(cctx, bl, l, fmt.Sprintf("hang_%03d", i), amount, actual)
			if held {
				heldN.Add(1)
			}
			if started {
				startedN.Add(1)
			}
		})
	}
	wg.Wait()
	stop()
	<-stopped
	if st.lost.Load() == 0 {
		t.Fatal("no answer was lost: the test did not test that")
	}
	t.Logf("%d calls, %d admitted, %d started, %d answers lost", calls, heldN.Load(), startedN.Load(), st.lost.Load())
	if pending, live := bl.Pending(); pending != 0 || live != 0 {
		t.Fatalf("memory after the flood: %d pending, %d live holds; want none", pending, live)
	}
	start, _ := b.Window(time.Now())
	sp, err := db.Spend(ctx, []budget.Charge{{BudgetID: b.ID, PeriodStart: start.UnixMicro()}})
	if err != nil {
		t.Fatal(err)
	}
	if want := startedN.Load() * actual; sp[0].Reserved != 0 || sp[0].Spent != want {
		t.Fatalf("store: %+v; want reserved 0, spent %d (%d started calls)", sp[0], want, startedN.Load())
	}
	count := func(q string) int {
		var n int
		if err := db.SQL().QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT COUNT(*) FROM reservations`); n != 0 {
		t.Fatalf("%d reservations left", n)
	}
	if n := count(`SELECT COUNT(*) FROM ledger_open`); n != 0 {
		t.Fatalf("%d starts left open", n)
	}
	// One end record per call that held money (its end entry closes it,
	// started or not), and no request with more than a start and an end.
	if n := count(`SELECT COUNT(*) FROM ledger_closed`); n != int(heldN.Load()) {
		t.Fatalf("%d end records for %d calls that held money", n, heldN.Load())
	}
	if n := count(`SELECT COUNT(*) FROM (SELECT request_id FROM ledger_entries GROUP BY request_id HAVING COUNT(*) > 2) AS d`); n != 0 {
		t.Fatalf("%d requests with more than two records", n)
	}
}
