package ledgertest

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// DownStore is a real log store that refuses every commit while Down is set
// (an unreachable database), counting the commits tried meanwhile in Tries.
type DownStore struct {
	ledger.Store
	Down  atomic.Bool
	Tries atomic.Int64
}

// LedgerAppend refuses while s is down, else appends to the store.
func (s *DownStore) LedgerAppend(ctx context.Context, instance string, entries []ledger.Entry, hashes func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	if s.Down.Load() {
		s.Tries.Add(1)
		return nil, errors.New("store unreachable")
	}
	return s.Store.LedgerAppend(ctx, instance, entries, hashes)
}

// DownLog returns a running Log over a new SQLite store wrapped in a
// DownStore: CommitTimeout 2 s, then whatever configure sets, before Run
// starts. It waits until Run took over appends and stops it, then closes
// the store, when the test ends.
func DownLog(t testing.TB, configure func(*ledger.Log)) (*ledger.Log, *DownStore, *sqlstore.DB) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := &DownStore{Store: db}
	skey, _ := ledger.GenerateKey("test/log")
	l, err := ledger.New(st, "gw.1", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l.CommitTimeout = 2 * time.Second
	if configure != nil {
		configure(l)
	}
	Run(t, l)
	return l, st, db
}
