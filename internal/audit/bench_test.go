package audit_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
)

// BenchmarkRun evaluates every rule over 1,000 keys and a log of 20,000 calls
// (SQLite): the cost of one scheduled run once the findings exist (the first
// run, which opens them all, is reported as first-run-ms).
func BenchmarkRun(b *testing.B) {
	ctx := context.Background()
	t := &testing.T{}
	db := openStoreB(b)
	now := time.Now().UTC()
	_, k0 := seed(t, db, now.Add(-30*24*time.Hour))
	for i := range 1000 {
		k := k0
		k.ID, k.Hash, k.Name = fmt.Sprintf("key_%04d", i), fmt.Sprintf("h_%d", i), fmt.Sprintf("k%d", i)
		if err := db.CreateKey(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
	skey, _ := ledger.GenerateKey("bench.example/log")
	lg, _ := ledger.New(db, "b", skey, slog.New(slog.DiscardHandler))
	stop := ledgertest.Run(b, lg)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < 20000; i += 8 {
				r := ledger.Record{Kind: ledger.KindCallEnd, Time: now.Add(-time.Duration(20000-i) * time.Minute / 2), RequestID: fmt.Sprintf("req_%d", i),
					KeyID: fmt.Sprintf("key_%04d", i%1000), Model: "gpt-4o", Status: 200, CostMicros: 100}
				if _, err := lg.Append(ctx, ledger.Entry{Data: r.Marshal(), RequestID: r.RequestID}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	stop()
	e := audit.New(audit.Deps{Store: db, Now: func() time.Time { return now }})
	first := time.Now()
	if _, err := e.Run(ctx, audit.SystemActor); err != nil { // the first run opens every finding
		b.Fatal(err)
	}
	firstMS := float64(time.Since(first).Milliseconds())
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.Run(ctx, audit.SystemActor); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(firstMS, "first-run-ms")
}
