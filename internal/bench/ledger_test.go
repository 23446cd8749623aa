package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// ledgerStores opens the embedded store (synchronous as
// GATEHOUSE_BENCH_SQLITE_SYNCHRONOUS says: FULL, the default, or NORMAL) and,
// when GATEHOUSE_TEST_POSTGRES_URL is set, a PostgreSQL schema.
func ledgerStores(b *testing.B) map[string]ledger.Store {
	out := map[string]ledger.Store{}
	db, err := sqlite.OpenWith(context.Background(), filepath.Join(b.TempDir(), "gh.db"),
		sqlite.Options{Synchronous: os.Getenv("GATEHOUSE_BENCH_SQLITE_SYNCHRONOUS")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	out["sqlite"] = db
	if pgtest.Available() {
		out["postgres"] = pgtest.Open(b)
	}
	return out
}

func sampleRecord(i int) []byte { return sampleRecordValue(i).Marshal() }

func sampleRecordValue(i int) ledger.Record {
	return ledger.Record{Kind: ledger.KindCallEnd, Time: time.Now(), RequestID: fmt.Sprintf("req_%024d", i), PrincipalID: "prn_0123456789abcdefghij",
		KeyID: "key_0123456789abcdefghij", TeamID: "team_0123456789abcdefghij", Endpoint: "chat", Model: "gpt-4o-mini", Provider: "openai",
		Decision: "allow", Status: 200, InputTokens: 512, OutputTokens: 128, CostMicros: 153, LatencyMillis: 840, UpstreamRequestID: "req_abcdef0123456789"}
}

// BenchmarkLedgerAppend: durable appends from 50 concurrent callers (the
// write-ahead step of 50 concurrent calls), group-committed by the sequencer.
// Reports records per second and the latency one append adds at p50 and p99.
// GATEHOUSE_BENCH_LEDGER_WRITERS sets the callers per CPU instead (default 25,
// 50 on 2 CPUs); with -test.cpu 1 and 1 it is one caller, the p50 of an
// append that waits for no other batch.
func BenchmarkLedgerAppend(b *testing.B) {
	perCPU := 25
	if v, err := strconv.Atoi(os.Getenv("GATEHOUSE_BENCH_LEDGER_WRITERS")); err == nil && v > 0 {
		perCPU = v
	}
	for name, st := range ledgerStores(b) {
		b.Run(name, func(b *testing.B) {
			skey, _ := ledger.GenerateKey("bench/log")
			l, err := ledger.New(st, "bench", skey, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			l.Interval = time.Hour
			defer ledgertest.Run(b, l)()
			// Made by Record.Entry, as the gateway makes its records:
			// Append does not parse the record again (an entry of raw
			// bytes is parsed for its request id, ~9 µs of CPU inside
			// the timed call that the gateway does not spend).
			entry := sampleRecordValue(0).Entry()
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(perCPU) // 50 callers on 2 cores by default
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					t := time.Now()
					if _, err := l.Append(context.Background(), entry); err != nil {
						b.Fatal(err)
					}
					mine = append(mine, time.Since(t))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "records/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkLedgerVerify: `audit verify` of a log of 1M records (set
// GATEHOUSE_BENCH_VERIFY_RECORDS to change) from the embedded store: read every
// record, parse it, recompute every hash and the root, check the signature.
func BenchmarkLedgerVerify(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("GATEHOUSE_BENCH_VERIFY_RECORDS")); err == nil && v > 0 {
		n = v
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "gh.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	skey, _ := ledger.GenerateKey("bench/log")
	// Build the log in big transactions, straight through the store.
	var hashes []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	const batch = 20_000
	for from := 0; from < n; from += batch {
		to := min(from+batch, n)
		entries := make([]ledger.Entry, 0, to-from)
		for i := from; i < to; i++ {
			entries = append(entries, ledger.Entry{Data: sampleRecord(i), RequestID: "r"})
		}
		_, err := db.LedgerAppend(ctx, "bench", entries, func(size int64, entries []ledger.Entry, _ tlog.HashReader) ([][]tlog.Hash, error) {
			all := make([][]tlog.Hash, len(entries))
			for i, e := range entries {
				hs, err := tlog.StoredHashes(size+int64(i), e.Data, reader)
				if err != nil {
					return nil, err
				}
				hashes = append(hashes, hs...)
				all[i] = hs
			}
			return all, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	l, _ := ledger.New(db, "bench", skey, slog.New(slog.DiscardHandler))
	if err := l.SignCheckpoint(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		rep, _, err := ledger.Verify(ctx, ledger.StoreSource{Store: db}, l.Key(), nil, nil)
		if err != nil || rep.Size != int64(n) {
			b.Fatalf("verify: %+v %v", rep, err)
		}
	}
	b.ReportMetric(float64(n), "records")
}
