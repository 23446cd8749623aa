package budget_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// slowBatches makes every batch take a while, so that a flood queues up.
type slowBatches struct{ *sqlstore.DB }

func (s slowBatches) LedgerAppend(ctx context.Context, inst string, es []ledger.Entry, h func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	time.Sleep(3 * time.Millisecond)
	return s.DB.LedgerAppend(ctx, inst, es, h)
}

// TestGracefulStopUnderALaggingFlood: with lagging end records
// (ledger.lag_end_records), the sequencer is stopped while a flood of calls
// is queued behind slow batches and more keep arriving (a data plane that
// did not drain in time). Every end entry is drained or written alone after
// the stop, so afterwards nothing is reserved, no start is open, each call
// that held money has one end record, the money spent is exactly what the
// started calls were charged, and memory holds no pending money or live
// hold.
func TestGracefulStopUnderALaggingFlood(t *testing.T) {
	ctx := context.Background()
	const amount, actual = 1_000, 700
	b := budget.Budget{ID: "bud_stop", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Lifetime, LimitMicros: 1 << 40, Hard: true}
	r := openSeqRig(t, "test/stop", func(db *sqlstore.DB) ledger.Store { return slowBatches{db} }, nil, b)
	db, bl, l, stop, stopped := r.db, r.bl, r.l, r.stop, r.stopped
	var held, started, done atomic.Int64
	var wg sync.WaitGroup
	for w := range 40 {
		wg.Go(func() {
			for i := range 10 {
				id := fmt.Sprintf("stop_%02d_%02d", w, i)
				h, err := bl.Admit(ctx, id, budget.Call{KeyID: "key_1", Model: "m"}, amount)
				if err != nil || h == nil {
					continue
				}
				held.Add(1)
				start := ledger.Record{Kind: ledger.KindCallStart, Time: time.Now(), RequestID: id, Model: "m"}
				lh := &ledger.Hold{Reservation: h.Reservation()}
				_, err = l.Append(ctx, ledger.Entry{Data: start.Marshal(), Opens: true, Hold: lh, Done: func(err error) { h.Started(lh.Spends, err) }})
				got := int64(0)
				if err == nil {
					started.Add(1)
					got = actual
				}
				h.Abandon()
				end := ledger.Record{Kind: ledger.KindCallEnd, Time: time.Now(), RequestID: id, Model: "m", CostMicros: got}
				st := &ledger.Settlement{ID: id, Actual: got}
				l.Enqueue(ctx, ledger.Entry{Data: end.Marshal(), Closes: true, Settle: st, Done: func(err error) {
					if err == nil || errors.Is(err, ledger.ErrAlreadyClosed) {
						h.Settled(st.Settled, st.Spends)
					} else {
						h.Settled(false, nil)
					}
				}})
				done.Add(1)
			}
		})
	}
	for done.Load() < 100 {
		time.Sleep(time.Millisecond)
	}
	stop()
	wg.Wait()
	<-stopped
	t.Logf("%d held, %d started", held.Load(), started.Load())
	if pending, live := bl.Pending(); pending != 0 || live != 0 {
		t.Fatalf("memory: %d pending, %d live", pending, live)
	}
	sp, err := db.Spend(ctx, []budget.Charge{{BudgetID: b.ID, PeriodStart: 0}})
	if err != nil {
		t.Fatal(err)
	}
	if sp[0].Reserved != 0 || sp[0].Spent != started.Load()*actual {
		t.Fatalf("counters %+v; want nothing reserved, spent %d", sp[0], started.Load()*actual)
	}
	count := func(q string) int64 {
		var n int64
		if err := db.SQL().QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT COUNT(*) FROM ledger_open`); n != 0 {
		t.Fatalf("%d starts left open", n)
	}
	if n := count(`SELECT COUNT(*) FROM ledger_closed`); n != held.Load() {
		t.Fatalf("%d end records for %d calls that held money", n, held.Load())
	}
}
