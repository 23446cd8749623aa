package budget_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// lostAnswer commits a reservation and then reports a failure, as when the
// connection breaks after COMMIT reached the server; failSettle fails settles.
type lostAnswer struct {
	*sqlstore.DB
	failSettle atomic.Bool
}

func (l *lostAnswer) Reserve(ctx context.Context, r budget.Reservation) error {
	if err := l.DB.Reserve(ctx, r); err != nil {
		return err
	}
	return errors.New("connection reset by peer")
}

func (l *lostAnswer) Settle(ctx context.Context, id string, actual int64) ([]budget.Spend, error) {
	if l.failSettle.Load() {
		return nil, errors.New("connection refused")
	}
	return l.DB.Settle(ctx, id, actual)
}

// TestReserveWithALostAnswerIsReleased: a reservation that committed while
// its caller saw an error is released by the ledger itself (no call went
// upstream), not left held until a restart.
func TestReserveWithALostAnswerIsReleased(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := budget.Budget{ID: "bud_1", Scope: budget.ScopeOrg, Period: budget.Lifetime, LimitMicros: 1000, Hard: true}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateBudget(ctx, b); err != nil {
		t.Fatal(err)
	}
	st := &lostAnswer{DB: db}
	st.failSettle.Store(true)
	l := budget.NewLedger(st, "gw.1", func() []budget.Budget { return []budget.Budget{b} }, nil, slog.New(slog.DiscardHandler))
	l.Timeout = time.Second
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { l.Run(runCtx, false); close(done) }()
	defer func() { stop(); <-done }()
	if _, err := l.Reserve(ctx, "req_1", budget.Call{KeyID: "k"}, 400); err == nil {
		t.Fatal("want the reserve error")
	}
	status := func() budget.Status {
		s, err := l.Statuses(ctx, []budget.Budget{b})
		if err != nil {
			t.Fatal(err)
		}
		return s[0]
	}
	if s := status(); s.Reserved != 400 || l.Deferred() != 1 {
		t.Fatalf("reserved %d with %d deferred; want the committed 400 and one release waiting", s.Reserved, l.Deferred())
	}
	st.failSettle.Store(false) // the store is back
	deadline := time.Now().Add(10 * time.Second)
	for l.Deferred() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the release was never retried")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := status(); s.Reserved != 0 || s.Spent != 0 {
		t.Fatalf("after the release: spent %d reserved %d, want 0 and 0", s.Spent, s.Reserved)
	}
}

// TestRecoverOwnLeftovers: a reservation of this instance that no call of the
// process holds any more is charged in full by the instance itself, while
// its running store is up; a hold of a running call is never touched.
func TestRecoverOwnLeftovers(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := budget.Budget{ID: "bud_1", Scope: budget.ScopeOrg, Period: budget.Lifetime, LimitMicros: 10_000, Hard: true}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateBudget(ctx, b); err != nil {
		t.Fatal(err)
	}
	l := budget.NewLedger(db, "gw.1", func() []budget.Budget { return []budget.Budget{b} }, nil, slog.New(slog.DiscardHandler))
	l.Timeout = time.Second
	hold, err := l.Reserve(ctx, "req_live", budget.Call{KeyID: "k"}, 300)
	if err != nil {
		t.Fatal(err)
	}
	// A leftover: this instance's reservation that no call holds.
	start, _ := b.Window(time.Now())
	c := budget.Charge{BudgetID: b.ID, PeriodStart: start.UnixMicro(), Limit: b.LimitMicros, Hard: true}
	if err := db.Reserve(ctx, budget.Reservation{ID: "req_lost", Instance: "gw.1", Amount: 500, Charges: []budget.Charge{c}, CreatedAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // the live hold is older than 2 × Timeout too
	n, err := l.RecoverOwn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Statuses(ctx, []budget.Budget{b})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || s[0].Spent != 500 || s[0].Reserved != 300 {
		t.Fatalf("recovered %d; spent %d reserved %d; want the leftover charged in full (500) and the live hold (300) kept", n, s[0].Spent, s[0].Reserved)
	}
	if err := hold.Settle(ctx, 120); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.RecoverOwn(ctx); n != 0 {
		t.Fatalf("recovered %d after the live call settled, want 0", n)
	}
}
