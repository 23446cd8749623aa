package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// The sequencer's batches (docs/design/one-write-per-phase.md): holds ride
// start entries, settlements and usage rows ride end entries.

func startWithHold(id string, amount int64, charges ...budget.Charge) ledger.Entry {
	return ledger.Entry{Data: []byte("start " + id), RequestID: id, Opens: true,
		Hold: &ledger.Hold{Reservation: budget.Reservation{ID: id, Instance: "gw.1", Amount: amount, Charges: charges, CreatedAt: now}}}
}

// testBatchOneNoLongerFits: memory admitted a batch whose sum a hard row
// cannot cover any more (another writer spent meanwhile). Only the call that
// no longer fits is refused; the others commit with their start records; the
// rows' counters hold exactly the admitted holds, on every row the refused
// call touched too.
func testBatchOneNoLongerFits(t *testing.T, b Backend) {
	ctx := context.Background()
	key := budget.Charge{BudgetID: "bud_key", PeriodStart: 1, Limit: 10_000, Hard: true}
	org := budget.Charge{BudgetID: "bud_org", PeriodStart: 1, Limit: 1 << 40, Hard: true}
	soft := budget.Charge{BudgetID: "bud_soft", PeriodStart: 1, Limit: 1, Hard: false}
	must(t, b.Reserve(ctx, budget.Reservation{ID: "other", Instance: "gw.2", Amount: 6_000, Charges: []budget.Charge{key}, CreatedAt: now}))
	var entries []ledger.Entry
	for i := range 5 {
		entries = append(entries, startWithHold(fmt.Sprint("req_", i), 1_000, org, soft, key))
	}
	entries = append(entries, ledger.Entry{Data: []byte("admin"), RequestID: "adm_1"})
	idx := appendOne(t, b, "gw.1", entries...)
	for i := range 4 {
		if idx[i] < 0 || entries[i].Hold.Refused != nil {
			t.Fatalf("call %d refused (%v), want admitted: %v", i, entries[i].Hold.Refused, idx)
		}
	}
	if idx[4] != -1 || entries[4].Hold.Refused == nil || entries[4].Hold.Refused.BudgetID != "bud_key" {
		t.Fatalf("the call that no longer fits: idx %d, refusal %+v", idx[4], entries[4].Hold.Refused)
	}
	if idx[5] < 0 {
		t.Fatal("the admin record of the batch was dropped")
	}
	sp, err := b.Spend(ctx, []budget.Charge{key, org, soft})
	must(t, err)
	if sp[0].Reserved != 10_000 || sp[1].Reserved != 4_000 || sp[2].Reserved != 4_000 {
		t.Fatalf("reserved key/org/soft = %d/%d/%d, want 10000/4000/4000", sp[0].Reserved, sp[1].Reserved, sp[2].Reserved)
	}
	if got, err := b.LedgerFind(ctx, "req_4"); err != nil || len(got) != 0 {
		t.Fatalf("the refused call has records %v (%v)", got, err)
	}
	// The refused call has no hold to settle; the admitted ones settle once.
	var ends []ledger.Entry
	for i := range 5 {
		id := fmt.Sprint("req_", i)
		ends = append(ends, ledger.Entry{Data: []byte("end " + id), RequestID: id, Closes: true, Settle: &ledger.Settlement{ID: id, Actual: 250}})
	}
	appendOne(t, b, "gw.1", ends...)
	for i, e := range ends {
		if e.Settle.Settled != (i < 4) {
			t.Fatalf("end %d settled = %v", i, e.Settle.Settled)
		}
	}
	sp, err = b.Spend(ctx, []budget.Charge{key, org})
	must(t, err)
	if sp[0].Reserved != 6_000 || sp[0].Spent != 1_000 || sp[1].Reserved != 0 || sp[1].Spent != 1_000 {
		t.Fatalf("after settling: key %+v org %+v", sp[0], sp[1])
	}
}

// testBatchEndsAreIdempotent: an end batch retried after its answer was
// lost, and one naming the same call twice, settle each hold once and store
// each usage row once; a hold a sweep settled first is not settled again.
func testBatchEndsAreIdempotent(t *testing.T, b Backend) {
	ctx := context.Background()
	c := budget.Charge{BudgetID: "bud_idem", PeriodStart: 1, Limit: 100_000, Hard: true}
	appendOne(t, b, "gw.1", startWithHold("req_a", 1_000, c), startWithHold("req_b", 1_000, c), startWithHold("req_c", 1_000, c))
	_, err := b.Settle(ctx, "req_c", -1) // a sweep charged it in full
	must(t, err)
	end := func(id string, actual int64) ledger.Entry {
		return ledger.Entry{Data: []byte("end " + id), RequestID: id, Closes: true, Settle: &ledger.Settlement{ID: id, Actual: actual},
			Usage: &usage.Record{ID: id, Time: now, KeyID: "key_idem", Model: "m", CostMicros: actual, Reasons: []string{}}}
	}
	batch := []ledger.Entry{end("req_a", 100), end("req_a", 100), end("req_b", -1), end("req_c", 10)}
	appendOne(t, b, "gw.1", batch...)
	if !batch[0].Settle.Settled || batch[1].Settle.Settled || !batch[2].Settle.Settled || batch[3].Settle.Settled {
		t.Fatalf("settled: %v %v %v %v", batch[0].Settle.Settled, batch[1].Settle.Settled, batch[2].Settle.Settled, batch[3].Settle.Settled)
	}
	again := []ledger.Entry{end("req_a", 100), end("req_b", -1), end("req_c", 10)} // the retry
	appendOne(t, b, "gw.1", again...)
	for _, e := range again {
		if e.Settle.Settled {
			t.Fatalf("%s settled twice", e.Settle.ID)
		}
	}
	sp, err := b.Spend(ctx, []budget.Charge{c})
	must(t, err)
	if sp[0].Reserved != 0 || sp[0].Spent != 100+1_000+1_000 {
		t.Fatalf("counters %+v, want spent 2100 reserved 0", sp[0])
	}
	rows, err := b.ListUsage(ctx, usage.Query{KeyID: "key_idem"})
	must(t, err)
	if len(rows) != 3 {
		t.Fatalf("%d usage rows, want one per call (3)", len(rows))
	}
}

// testBatchRace: concurrent start batches on one hard budget (several
// sequencers: replicas) never pass its limit, and exactly the holds that fit
// are admitted.
func testBatchRace(t *testing.T, b Backend) {
	const limit, amount, workers, per = 10_000, 300, 8, 6
	c := budget.Charge{BudgetID: "bud_brace", PeriodStart: 1, Limit: limit, Hard: true}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var entries []ledger.Entry
			for i := range per {
				entries = append(entries, startWithHold(fmt.Sprintf("brace_%d_%d", w, i), amount, c))
			}
			idx := appendOne(t, b, fmt.Sprint("gw.", w), entries...)
			for i, x := range idx {
				if x >= 0 {
					admitted.Add(1)
				} else if entries[i].Hold.Refused == nil {
					t.Errorf("entry dropped without a refusal")
				}
			}
		})
	}
	wg.Wait()
	if got, want := admitted.Load(), int64(limit/amount); got != want {
		t.Fatalf("%d holds admitted, want %d", got, want)
	}
	sp, err := b.Spend(context.Background(), []budget.Charge{c})
	must(t, err)
	if sp[0].Reserved != admitted.Load()*amount || sp[0].Reserved > limit {
		t.Fatalf("reserved %d for %d admitted", sp[0].Reserved, admitted.Load())
	}
}
