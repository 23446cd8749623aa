package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/provider/providertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// endLosingSeq is a sequencer whose start entries commit (the hold is made
// durable in the store, as the real batch does) but whose end entries are
// final without reaching the store: what ledger.Log does with an end entry
// it could not queue within CommitTimeout (a flood behind a stuck store), or
// one given up at shutdown.
type endLosingSeq struct {
	db   *sqlstore.DB
	mu   sync.Mutex
	ends int
}

func (s *endLosingSeq) CarriesCalls() bool { return true }

func (s *endLosingSeq) Append(ctx context.Context, e ledger.Entry) (int64, error) {
	if e.Opens {
		var err error
		if e.Hold != nil {
			if err = s.db.Reserve(ctx, e.Hold.Reservation); err == nil {
				e.Hold.Spends, err = s.db.Spend(ctx, e.Hold.Reservation.Charges)
			}
		}
		if e.Done != nil {
			e.Done(err)
		}
		return 0, err
	}
	s.mu.Lock()
	s.ends++
	s.mu.Unlock()
	err := fmt.Errorf("%w: the sequencer's queue is full", ledger.ErrUnavailable)
	if e.Done != nil {
		e.Done(err)
	}
	return 0, err
}

func (s *endLosingSeq) Enqueue(ctx context.Context, e ledger.Entry) error {
	_, err := s.Append(ctx, e)
	return err
}

// TestEndEntryLostForGoodLeavesHoldToRecoveryAndUsageToWriter: a call
// succeeds but its end entry (settlement + usage row) is final without
// reaching the store. The usage row must not vanish with it (it goes to the
// usage writer), and the durable hold must not stay reserved for the life of
// the process: it leaves the live set, so this instance's sweep of leftovers
// (RecoverOwn) charges it in full, as recovery would after a crash.
func TestEndEntryLostForGoodLeavesHoldToRecoveryAndUsageToWriter(t *testing.T) {
	for _, lag := range []bool{false, true} {
		t.Run(fmt.Sprint("lag=", lag), func(t *testing.T) {
			ctx := context.Background()
			db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gh.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			b := budget.Budget{ID: "bud_key", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Lifetime, LimitMicros: 1_000_000_000, Hard: true}
			if err := b.Validate(); err != nil {
				t.Fatal(err)
			}
			bl := budget.NewLedger(db, "gw.1", func() []budget.Budget { return []budget.Budget{b} }, nil, slog.New(slog.DiscardHandler))

			fake := providertest.New(t, "sk-x")
			pol, err := policy.Compile(policy.Defaults())
			if err != nil {
				t.Fatal(err)
			}
			up := provider.NewUpstream(provider.Provider{Name: "p", Type: provider.TypeOpenAI, BaseURL: fake.OpenAIBaseURL(), Models: []string{"gpt-4o"}},
				[]provider.APIKey{"sk-x"}, http.DefaultClient)
			snap := &config.Snapshot{Router: provider.NewRouter([]*provider.Upstream{up}, nil), Prices: pricing.NewTable(pricing.Defaults(), nil), Policies: pol}
			seq, rec := &endLosingSeq{db: db}, &memUsage{}
			h := New(Deps{Ledger: seq, Budgets: bl, Snapshot: func() *config.Snapshot { return snap }, Auth: oneCaller{}, Usage: rec,
				Log: slog.New(slog.DiscardHandler)}, Options{LagEnd: lag})

			w := chat(h, "gk_test")
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if seq.ends != 1 {
				t.Fatalf("%d end entries, want 1", seq.ends)
			}
			rec.mu.Lock()
			n := len(rec.recs)
			rec.mu.Unlock()
			if n != 1 {
				t.Fatalf("%d usage rows written, want 1 (the end entry that carried it was lost)", n)
			}
			start, _ := b.Window(time.Now())
			charge := budget.Charge{BudgetID: b.ID, PeriodStart: start.UnixMicro()}
			sp, err := db.Spend(ctx, []budget.Charge{charge})
			if err != nil {
				t.Fatal(err)
			}
			held := sp[0].Reserved
			if held <= 0 {
				t.Fatalf("no hold in the store: %+v", sp[0])
			}
			// RecoverOwn looks at reservations older than 2 × Timeout.
			bl.Timeout = time.Millisecond
			time.Sleep(5 * time.Millisecond)
			got, err := bl.RecoverOwn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got != 1 {
				t.Fatalf("RecoverOwn settled %d, want the lost end's hold (1): it stays reserved until a restart", got)
			}
			sp, err = db.Spend(ctx, []budget.Charge{charge})
			if err != nil {
				t.Fatal(err)
			}
			if sp[0].Reserved != 0 || sp[0].Spent != held {
				t.Fatalf("after recovery %+v, want the hold (%d) charged in full", sp[0], held)
			}
		})
	}
}
