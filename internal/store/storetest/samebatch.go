package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// testBatchHoldSettledInItsOwnBatch: a call's start (with its hold) and its
// end (with the settlement) in one batch. The sequencer puts them together
// when the caller gave up on the start while the start already waited in a
// batch being gathered (a client that disconnects at once): the start is
// not skipped any more, and the end that settles its hold joins the same
// batch. The settlement finds the hold made in the same transaction: the
// counters hold the actual cost, not the hold, and no reservation is left
// for the sweep to charge in full. (The two-round-trip batch on PostgreSQL
// looked for the hold before it wrote it: the call was charged its whole
// worst case though nothing went upstream.)
func testBatchHoldSettledInItsOwnBatch(t *testing.T, b Backend) {
	ctx := context.Background()
	hard := budget.Charge{BudgetID: "bud_hard", PeriodStart: 1, Limit: 10_000, Hard: true}
	soft := budget.Charge{BudgetID: "bud_soft", PeriodStart: 1, Limit: 1, Hard: false}
	start := startWithHold("req_1", 1_000, hard, soft)
	end := ledger.Entry{Data: []byte("end req_1"), RequestID: "req_1", Closes: true, Settle: &ledger.Settlement{ID: "req_1", Actual: 0}}
	other := startWithHold("req_2", 500, hard) // a call that goes on
	idx := appendOne(t, b, "gw.1", start, other, end)
	if idx[0] < 0 || idx[1] < 0 || idx[2] < 0 {
		t.Fatalf("indexes %v: want all three kept", idx)
	}
	if !end.Settle.Settled {
		t.Fatal("the end did not find the hold its own batch made")
	}
	sp, err := b.Spend(ctx, []budget.Charge{hard, soft})
	must(t, err)
	if sp[0].Reserved != 500 || sp[0].Spent != 0 || sp[1].Reserved != 0 || sp[1].Spent != 0 {
		t.Fatalf("after the batch: hard %+v soft %+v; want only req_2's 500 reserved, nothing spent", sp[0], sp[1])
	}
	owned, err := b.Owned(ctx, "gw.1", now.Add(time.Second))
	must(t, err)
	if len(owned) != 1 || owned[0] != "req_2" {
		t.Fatalf("reservations left %v; want only req_2's", owned)
	}
	if open, err := b.LedgerAbandoned(ctx, "other", now.Add(time.Second)); err != nil || len(open) != 1 || open[0].RequestID != "req_2" {
		t.Fatalf("open calls %v (%v); want only req_2", open, err)
	}
}
