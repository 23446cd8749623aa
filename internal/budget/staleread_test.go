package budget_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// pausedRead lets the test hold one counter read between the store's
// answer and the caller's use of it.
type pausedRead struct {
	*sqlstore.DB
	pause        bool
	read, resume chan struct{}
}

func (p *pausedRead) Spend(ctx context.Context, keys []budget.Charge) ([]budget.Spend, error) {
	sp, err := p.DB.Spend(ctx, keys)
	if p.pause {
		p.pause = false
		close(p.read)
		<-p.resume
	}
	return sp, err
}

// TestSlowCounterReadDoesNotUndoANewerSettlement: a call's counter read
// answers (9,000 of 10,000 held) and is slow to reach memory; meanwhile the
// hold settles at no charge and memory learns the row is empty. The old
// read must not overwrite the newer counters: if it did, memory would
// refuse every call for the next 50 ms without asking the store, which has
// all of its money.
func TestSlowCounterReadDoesNotUndoANewerSettlement(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := &pausedRead{DB: db, read: make(chan struct{}), resume: make(chan struct{})}
	b := budget.Budget{ID: "bud_slow", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Lifetime, LimitMicros: 10_000, Hard: true}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	l := budget.NewLedger(st, "gw.1", func() []budget.Budget { return []budget.Budget{b} }, nil, slog.New(slog.DiscardHandler))
	call := budget.Call{KeyID: "key_1", Model: "m"}
	charge := budget.Charge{BudgetID: b.ID, PeriodStart: 0}

	h1, err := l.Admit(ctx, "req_1", call, 9_000)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Reserve(ctx, h1.Reservation()); err != nil {
		t.Fatal(err)
	}
	sp, _ := db.Spend(ctx, []budget.Charge{charge})
	h1.Started(sp, nil)
	l.Forget() // the next call asks the store

	st.pause = true
	refused := make(chan error, 1)
	go func() {
		_, err := l.Admit(ctx, "req_2", call, 2_000)
		refused <- err
	}()
	<-st.read // the store answered 9,000 held
	spends, err := db.Settle(ctx, "req_1", 0)
	if err != nil {
		t.Fatal(err)
	}
	h1.Settled(true, spends) // memory learns: nothing held
	close(st.resume)
	<-refused // refusing on its own read is fair: the read was true when made
	if _, err := l.Admit(ctx, "req_3", call, 2_000); err != nil {
		t.Fatalf("memory refused a call the store covers (nothing is held): %v", err)
	}
}
