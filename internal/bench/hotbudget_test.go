package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// hotReplica is one gateway's durable path: its budget ledger (admission in
// memory) and its sequencer, on its own pool to the shared PostgreSQL.
type hotReplica struct {
	bl  *budget.Ledger
	log *ledger.Log
}

// hotBudgetReplicas runs n replicas on one fresh schema with one hard
// organisation budget of limit micros; stop ends their sequencers (draining).
func hotBudgetReplicas(b *testing.B, n int, limit int64) (reps []hotReplica, spend func() budget.Spend, stop func()) {
	dsn := pgtest.DSN(b)
	ctx, cancel := context.WithCancel(context.Background())
	org := budget.Budget{ID: "b_org_hot", Scope: budget.ScopeOrg, Period: budget.Month, LimitMicros: limit, Hard: true}
	org.Validate()
	org.CreatedAt = time.Now()
	skey, err := ledger.GenerateKey("gatehouse.bench/log")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range n {
		db, err := postgres.OpenWith(context.Background(), dsn, postgres.Options{MaxOpenConns: 4})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		if i == 0 {
			if err := db.CreateBudget(context.Background(), org); err != nil {
				b.Fatal(err)
			}
			start, _ := org.Window(time.Now())
			spend = func() budget.Spend {
				sp, err := db.Spend(context.Background(), []budget.Charge{{BudgetID: org.ID, PeriodStart: start.UnixMicro()}})
				if err != nil {
					b.Fatal(err)
				}
				return sp[0]
			}
		}
		inst := fmt.Sprint("replica.", i)
		l, err := ledger.New(db, inst, skey, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		l.Interval = time.Hour
		bl := budget.NewLedger(db, inst, func() []budget.Budget { return []budget.Budget{org} }, nil, slog.New(slog.DiscardHandler))
		wg.Go(func() { l.Run(ctx) })
		wg.Go(func() { bl.Run(ctx, false) })
		reps = append(reps, hotReplica{bl, l})
	}
	for _, r := range reps {
		ledgertest.WaitRunning(b, r.log)
	}
	return reps, spend, func() {
		cancel()
		wg.Wait()
	}
}

// hotCall is one call's durable path as the proxy runs it: admit in memory,
// the start entry with the hold, then the end entry with the settlement
// (lagging). It reports whether the call was admitted.
func hotCall(ctx context.Context, r hotReplica, amount, actual int64) (bool, error) {
	id := vkey.NewID("req")
	hold, err := r.bl.Admit(ctx, id, budget.Call{KeyID: "key_hot", Model: "gpt-4o"}, amount)
	var ref *budget.Refusal
	if errors.As(err, &ref) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	start := ledger.Record{Kind: ledger.KindCallStart, Time: time.Now(), RequestID: id, KeyID: "key_hot", Model: "gpt-4o"}
	lh := &ledger.Hold{Reservation: hold.Reservation()}
	_, err = r.log.Append(ctx, ledger.Entry{Data: start.Marshal(), Opens: true, Hold: lh, Done: func(err error) { hold.Started(lh.Spends, err) }})
	var ie *budget.InsufficientError
	started := err == nil
	if err != nil && !errors.As(err, &ie) {
		return false, err
	}
	end := ledger.Record{Kind: ledger.KindCallEnd, Time: time.Now(), RequestID: id, KeyID: "key_hot", Model: "gpt-4o", Status: 200, CostMicros: actual}
	if !started {
		actual = 0
	}
	st := &ledger.Settlement{ID: id, Actual: actual}
	return started, r.log.Enqueue(ctx, ledger.Entry{Data: end.Marshal(), Closes: true, Settle: st,
		Done: func(err error) {
			if err == nil || errors.Is(err, ledger.ErrAlreadyClosed) {
				hold.Settled(st.Settled, st.Spends)
			}
		}})
}

// BenchmarkHotBudgetReplicas: three replicas (each its own pool, budget
// ledger and sequencer) on one hard organisation budget that every call
// charges, PostgreSQL; 30 callers per replica, no upstream time. Reports
// calls/s across the replicas. "ample" never reaches the limit (throughput);
// "exhausted" has room for a fraction of the calls and checks the promise:
// spent + reserved never passes the limit, and exactly as much is spent as
// the admitted calls' settlements.
func BenchmarkHotBudgetReplicas(b *testing.B) {
	if !pgAvailable() {
		b.Skip("PostgreSQL not configured")
	}
	const amount, actual, callers = 4_000, 1_500, 30
	for _, tc := range []struct {
		name  string
		limit func(n int) int64
	}{
		{"ample", func(int) int64 { return 1 << 50 }},
		{"exhausted", func(n int) int64 { return int64(n/2) * amount }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			reps, spend, stop := hotBudgetReplicas(b, 3, tc.limit(b.N))
			var next, admitted atomic.Int64
			ctx := context.Background()
			var wg sync.WaitGroup
			b.ResetTimer()
			t0 := time.Now()
			for _, r := range reps {
				for range callers {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							ok, err := hotCall(ctx, r, amount, actual)
							if err != nil {
								b.Error(err)
								return
							}
							if ok {
								admitted.Add(1)
							}
						}
					})
				}
			}
			wg.Wait()
			el := time.Since(t0)
			b.StopTimer()
			stop() // drains the lagging end entries
			b.ReportMetric(float64(b.N)/el.Seconds(), "calls/s")
			sp := spend()
			limit := tc.limit(b.N)
			if sp.Spent+sp.Reserved > limit || sp.Reserved != 0 || sp.Spent != admitted.Load()*actual {
				b.Fatalf("limit %d: spent %d reserved %d for %d admitted calls", limit, sp.Spent, sp.Reserved, admitted.Load())
			}
		})
	}
}
