package budget_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// seqRig is a budget ledger and a running sequencer on one SQLite store.
type seqRig struct {
	db      *sqlstore.DB
	bl      *budget.Ledger
	l       *ledger.Log
	budgets atomic.Pointer[[]budget.Budget]
	stop    context.CancelFunc // stops the sequencer (it drains, then Run returns)
	stopped chan struct{}      // closed when Run returned
}

// openSeqRig opens a fresh SQLite store, a budget ledger (instance gw.1)
// that reads bs as given, and a sequencer signing as origin that writes
// through through(db) (nil: the store itself), changed by tune (nil: none)
// before it runs. At cleanup the sequencer is stopped (r.stop) and waited
// for (r.stopped) before the store closes.
func openSeqRig(t *testing.T, origin string, through func(*sqlstore.DB) ledger.Store, tune func(*ledger.Log), bs ...budget.Budget) *seqRig {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &seqRig{db: db}
	r.budgets.Store(&bs)
	log := slog.New(slog.DiscardHandler)
	r.bl = budget.NewLedger(db, "gw.1", func() []budget.Budget { return *r.budgets.Load() }, nil, log)
	skey, err := ledger.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	var st ledger.Store = db
	if through != nil {
		st = through(db)
	}
	if r.l, err = ledger.New(st, "gw.1", skey, log); err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(r.l)
	}
	runCtx, stop := context.WithCancel(ctx)
	r.stop, r.stopped = stop, make(chan struct{})
	go func() { r.l.Run(runCtx); close(r.stopped) }()
	t.Cleanup(func() { r.stop(); <-r.stopped })
	ledgertest.WaitRunning(t, r.l)
	return r
}
