package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// memHashes is a tlog hash store in memory, the reference the database is
// compared with.
type memHashes map[int64]tlog.Hash

func (m memHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		h, ok := m[x]
		if !ok {
			return nil, fmt.Errorf("hash %d missing", x)
		}
		out[i] = h
	}
	return out, nil
}

// TestHotStatementsStayFewAndLedgerBatchesStayExact appends ledger batches of
// every size from 1 to 70 and a few above the largest multi-row INSERT, then
// checks that the statement cache holds a small fixed set of texts (not one
// per batch size: that would grow without bound) and that every stored hash
// equals the one computed in memory (the chunked INSERTs wrote every row, in
// order).
func TestHotStatementsStayFewAndLedgerBatchesStayExact(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ref := memHashes{}
	var size int64
	sizes := []int{}
	for n := 1; n <= 70; n++ {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, 255, 256, 257, 600)
	for _, n := range sizes {
		entries := make([]ledger.Entry, n)
		for i := range entries {
			entries[i] = ledger.Entry{Data: fmt.Appendf(nil, "record %d", size+int64(i)), RequestID: fmt.Sprintf("req-%d", size+int64(i))}
		}
		_, err := db.LedgerAppend(ctx, "inst", entries, func(start int64, kept []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
			all := make([][]tlog.Hash, len(kept))
			batch := memHashes{}
			reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
				out := make([]tlog.Hash, len(idx))
				for i, x := range idx {
					if h, ok := batch[x]; ok {
						out[i] = h
						continue
					}
					got, err := r.ReadHashes([]int64{x}) // from the database, inside its transaction
					if err != nil {
						return nil, err
					}
					out[i] = got[0]
				}
				return out, nil
			})
			for i, e := range kept {
				hs, err := tlog.StoredHashes(start+int64(i), e.Data, reader)
				if err != nil {
					return nil, err
				}
				for j, h := range hs {
					batch[tlog.StoredHashCount(start+int64(i))+int64(j)] = h
				}
				all[i] = hs
			}
			return all, nil
		})
		if err != nil {
			t.Fatalf("append %d: %v", n, err)
		}
		for range n {
			hs, err := tlog.StoredHashes(size, fmt.Appendf(nil, "record %d", size), ref)
			if err != nil {
				t.Fatal(err)
			}
			for j, h := range hs {
				ref[tlog.StoredHashCount(size)+int64(j)] = h
			}
			size++
		}
	}
	idx := make([]int64, 0, len(ref))
	for x := range ref {
		idx = append(idx, x)
	}
	got, err := db.LedgerHashes(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range idx {
		if got[i] != ref[x] {
			t.Fatalf("stored hash %d differs from the one computed in memory", x)
		}
	}
	if n, err := db.LedgerSize(ctx); err != nil || n != size {
		t.Fatalf("ledger size %d, %v; want %d", n, err, size)
	}
	// Fixed texts: size, closed, open×2, state, and ≤ 9 INSERT shapes for each
	// of entries and hashes, ≤ 9 IN-list shapes for reading hashes.
	if n := db.Statements(); n > 5+9+9+9 {
		t.Fatalf("%d statements prepared after %d batch sizes: the cache grows with the load", n, len(sizes))
	}
	t.Logf("%d statements prepared", db.Statements())
}

// TestHotPathOnOneConnection runs every hot transaction, cold and then warm,
// on a pool of one connection. Preparing a statement inside a transaction
// would wait for a second connection that never comes (with every pooled
// connection held by a transaction, nothing proceeds): each step must finish
// well within its deadline instead.
func TestHotPathOnOneConnection(t *testing.T) {
	db, err := OpenWith(context.Background(), filepath.Join(t.TempDir(), FileName), Options{MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	for round := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		id := fmt.Sprint("res_", round)
		c := budget.Charge{BudgetID: "bud_1", PeriodStart: 1, Limit: 1_000_000, Hard: true}
		if err := db.Reserve(ctx, budget.Reservation{ID: id, Instance: "i", Amount: 100, Charges: []budget.Charge{c}, CreatedAt: now}); err != nil {
			t.Fatalf("round %d: reserve: %v", round, err)
		}
		if _, err := db.Settle(ctx, id, 40); err != nil {
			t.Fatalf("round %d: settle: %v", round, err)
		}
		if err := db.InsertUsageBatch(ctx, []usage.Record{{ID: fmt.Sprint("req_", round), Time: now}}); err != nil {
			t.Fatalf("round %d: usage: %v", round, err)
		}
		if _, err := db.LedgerAppend(ctx, "i", []ledger.Entry{{Data: []byte("x"), RequestID: id, Opens: true}},
			func(start int64, kept []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
				hs, err := tlog.StoredHashes(start, kept[0].Data, r)
				return [][]tlog.Hash{hs}, err
			}); err != nil {
			t.Fatalf("round %d: ledger: %v", round, err)
		}
		cancel()
	}
	sp, err := db.Spend(context.Background(), []budget.Charge{{BudgetID: "bud_1", PeriodStart: 1}})
	if err != nil || sp[0].Spent != 80 || sp[0].Reserved != 0 {
		t.Fatalf("spend %+v, %v; want 80 spent, 0 reserved", sp, err)
	}
	// Every statement those transactions ran is cached, the row-returning ones
	// included: reserve 3, settle 2, usage 1, ledger 5 (size, open, entries,
	// hashes, state).
	if n := db.Statements(); n < 11 {
		t.Fatalf("%d statements prepared after the transactions, want every hot one (11): the cache is not in use inside transactions", n)
	}
}
