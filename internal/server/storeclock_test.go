package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
)

// TestBudgetPeriodsFollowTheStoresClockOnPostgres: on PostgreSQL the
// budget ledger reads periods from the store's clock, which the heartbeat
// in Open has read before any call; the embedded store keeps the process's
// own clock (no store clock, nothing to fail closed on).
func TestBudgetPeriodsFollowTheStoresClockOnPostgres(t *testing.T) {
	ctx := context.Background()
	lite, err := Open(ctx, dataDirConfig(t, filepath.Join(t.TempDir(), "data")), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.closeAll()
	if lite.budgets.StoreClock != nil {
		t.Fatal("the embedded store's gateway reads periods from a store clock")
	}
	cfg := dataDirConfig(t, filepath.Join(t.TempDir(), "data"))
	cfg.Database = pgtest.DSN(t)
	pg, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.closeAll()
	if pg.budgets.StoreClock == nil {
		t.Fatal("a gateway on PostgreSQL reads periods from its own clock")
	}
	if _, _, err := pg.budgets.StoreClock(); err != nil {
		t.Fatalf("the store's clock right after Open: %v", err)
	}
}
