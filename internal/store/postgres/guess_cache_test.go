package postgres_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/storetest"
)

// TestRefusedGuessLeavesNoHashesBehind: a batch whose guess the server
// refuses and whose two-round-trip retry keeps nothing (a request closed
// twice; likewise a hold a hard budget refuses) called the ledger's hashes
// callback only on the guess. The ledger took that call's hashes, computed
// for a record that was never written, into its cache, and gave the record
// to its export sink. When another replica then wrote that index, this one's
// next append read the phantom hash and stored a tree that does not verify.
func TestRefusedGuessLeavesNoHashesBehind(t *testing.T) {
	rec := func(id, action string) []byte {
		return ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: id, Action: action}.Marshal()
	}
	t.Run("closed twice", func(t *testing.T) {
		refusedGuess(t, func(ctx context.Context, la *ledger.Log) {
			if _, err := la.Append(ctx, ledger.Entry{Data: rec("req_1", "end again"), RequestID: "req_1", Closes: true}); !errors.Is(err, ledger.ErrAlreadyClosed) {
				t.Fatalf("second end: %v, want ErrAlreadyClosed", err)
			}
		})
	})
	t.Run("hard budget at its edge", func(t *testing.T) {
		refusedGuess(t, func(ctx context.Context, la *ledger.Log) {
			hard := []budget.Charge{{BudgetID: "bud_hard", PeriodStart: 1, Limit: 100, Hard: true}}
			hold := func(id string, amount int64) ledger.Entry {
				return ledger.Entry{Data: rec(id, "start"), RequestID: id, Opens: true,
					Hold: &ledger.Hold{Reservation: budget.Reservation{ID: id, Instance: "a", Amount: amount, Charges: hard, CreatedAt: time.Now()}}}
			}
			if _, err := la.Append(ctx, hold("req_h1", 100)); err != nil {
				t.Fatal(err)
			}
			var ierr *budget.InsufficientError
			if _, err := la.Append(ctx, hold("req_h2", 1)); !errors.As(err, &ierr) {
				t.Fatalf("a hold past the hard limit: %v, want refused", err)
			}
		})
	})
}

// refusedGuess: replica a appends, then refused makes a batch of a's that
// the server refuses on its guess and that keeps nothing; replica b writes
// the next index and a the one after: the log must verify, and a must
// have exported only what it wrote.
func refusedGuess(t *testing.T, refused func(context.Context, *ledger.Log)) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, b := twoReplicas(t, ctx)
	skey, _ := ledger.GenerateKey("redpg.example/log")
	la, err := ledger.New(a, "a", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lb, err := ledger.New(b, "b", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var exported []string
	la.Sink = func(data []byte) {
		mu.Lock()
		exported = append(exported, string(data))
		mu.Unlock()
	}
	rec := func(id, action string) []byte {
		return ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: id, Action: action}.Marshal()
	}
	if _, err := la.Append(ctx, ledger.Entry{Data: rec("req_1", "start"), RequestID: "req_1", Opens: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := la.Append(ctx, ledger.Entry{Data: rec("req_1", "end"), RequestID: "req_1", Closes: true}); err != nil {
		t.Fatal(err)
	}
	refused(ctx, la)
	n, err := a.LedgerSize(ctx) // all a's, the refused batch's guess was n
	if err != nil {
		t.Fatal(err)
	}
	// Another replica writes index n, then a writes n+1 (whose tree node
	// reads index n's leaf hash).
	if _, err := lb.Append(ctx, ledger.Entry{Data: rec("req_b", "b"), RequestID: "req_b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := la.Append(ctx, ledger.Entry{Data: rec("req_a", "a"), RequestID: "req_a"}); err != nil {
		t.Fatal(err)
	}
	storetest.CheckLog(t, ctx, a, n+2)
	mu.Lock()
	defer mu.Unlock()
	if int64(len(exported)) != n+1 {
		t.Fatalf("a exported %d records, want the %d it wrote: %q", len(exported), n+1, exported)
	}
}
