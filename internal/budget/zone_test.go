package budget_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// TestUnknownTimeZoneFailsClosed (red team rtbudget): a budget's period is
// computed in its time zone on the replica that admits the call. A replica
// that cannot load the zone (its tzdata lacks it, or the file could not be
// read at that moment: a flood that used up the process's file descriptors)
// used to read the period in UTC, a different counter row from the one the
// other replicas charge: a day budget in America/New_York then held
// nothing against the row the others filled, and the key could spend a
// second limit per period. Such a call must not be admitted at all.
func TestUnknownTimeZoneFailsClosed(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Validated where the zone exists; this replica does not have it.
	b := budget.Budget{ID: "bud_tz", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Day, LimitMicros: 10_000, Hard: true,
		TimeZone: "Gatehouse/Nowhere", Thresholds: []int{}}
	for _, hard := range []bool{true, false} {
		b.Hard = hard
		l := budget.NewLedger(db, "gw.1", func() []budget.Budget { return []budget.Budget{b} }, nil, slog.New(slog.DiscardHandler))
		l.SetNow(func() time.Time { return time.Date(2026, 11, 30, 23, 30, 0, 0, time.UTC) })
		call := budget.Call{KeyID: "key_1", Model: "m"}
		if h, err := l.Admit(ctx, "req_a", call, 1_000); err == nil {
			t.Errorf("hard=%v: Admit held %d in a period read in UTC instead of the budget's zone", hard, h.Amount())
		}
		if h, err := l.Reserve(ctx, "req_r", call, 1_000); err == nil {
			t.Errorf("hard=%v: Reserve held %d in a period read in UTC instead of the budget's zone", hard, h.Amount())
		}
		if p, live := l.Pending(); p != 0 || live != 0 {
			t.Errorf("hard=%v: a refused call left %d pending, %d live", hard, p, live)
		}
	}
}
