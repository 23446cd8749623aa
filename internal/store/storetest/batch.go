package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// testBatchSplitEachCallRefusedByADifferentRow: a batch of calls under key,
// team and organisation budgets where memory admitted too much on several
// rows at once, and different calls no longer fit at different rows (one at
// its key, one at the team, one at the organisation). The split refuses
// exactly those, names the row that refused each, takes back every charge a
// refused call made on its other rows, and leaves every row at or under its
// limit with exactly the admitted holds.
func testBatchSplitEachCallRefusedByADifferentRow(t *testing.T, b Backend) {
	ctx := context.Background()
	key := func(id string) budget.Charge {
		return budget.Charge{BudgetID: "bud_k_" + id, PeriodStart: 7, Limit: 1_000, Hard: true}
	}
	team := budget.Charge{BudgetID: "bud_t", PeriodStart: 7, Limit: 5_000, Hard: true}
	org := budget.Charge{BudgetID: "bud_o", PeriodStart: 7, Limit: 8_000, Hard: true}
	soft := budget.Charge{BudgetID: "bud_s", PeriodStart: 7, Limit: 1, Hard: false}
	// Other writers (replicas) spent on the shared rows meanwhile.
	must(t, b.Reserve(ctx, budget.Reservation{ID: "other_t", Instance: "gw.2", Amount: 3_000, Charges: []budget.Charge{team}, CreatedAt: now}))
	must(t, b.Reserve(ctx, budget.Reservation{ID: "other_o", Instance: "gw.2", Amount: 2_000, Charges: []budget.Charge{org}, CreatedAt: now}))
	entries := []ledger.Entry{
		startWithHold("sp_0", 1_000, key("a"), team, org, soft), // fits: team 4000, org 3000
		startWithHold("sp_1", 1_000, org, key("a"), team, soft), // key a is full
		startWithHold("sp_2", 1_000, key("b"), team, org),       // fits: team 5000, org 4000
		startWithHold("sp_3", 1_000, key("c"), team, org, soft), // team is full
		{Data: []byte("admin sp"), RequestID: "adm_sp"},
		startWithHold("sp_4", 3_000, key("d"), org), // key d cannot cover 3000
		startWithHold("sp_5", 1_000, key("e"), org), // fits: org 5000
		startWithHold("sp_6", 1_000, key("f"), org), // fits: org 6000
		startWithHold("sp_7", 1_000, key("g"), org), // fits: org 7000
		startWithHold("sp_8", 1_000, key("h"), org), // fits: org 8000
		startWithHold("sp_9", 1_000, key("i"), org), // the organisation is full
	}
	idx := appendOne(t, b, "gw.1", entries...)
	refusedAt := map[int]string{1: "bud_k_a", 3: "bud_t", 5: "bud_k_d", 10: "bud_o"}
	for i, e := range entries {
		if e.Hold == nil {
			if idx[i] < 0 {
				t.Fatalf("the admin record was dropped")
			}
			continue
		}
		want, refused := refusedAt[i]
		switch {
		case refused && (idx[i] != -1 || e.Hold.Refused == nil || e.Hold.Refused.BudgetID != want):
			t.Errorf("entry %d: idx %d refusal %+v, want refused at %s", i, idx[i], e.Hold.Refused, want)
		case !refused && (idx[i] < 0 || e.Hold.Refused != nil):
			t.Errorf("entry %d: idx %d refusal %+v, want admitted", i, idx[i], e.Hold.Refused)
		}
	}
	rows := []budget.Charge{key("a"), key("b"), key("c"), key("d"), key("e"), key("i"), team, org, soft}
	want := []int64{1_000, 1_000, 0, 0, 1_000, 0, 5_000, 8_000, 1_000}
	sp, err := b.Spend(ctx, rows)
	must(t, err)
	for i := range rows {
		if sp[i].Reserved != want[i] || sp[i].Spent != 0 {
			t.Errorf("%s: %+v, want reserved %d", rows[i].BudgetID, sp[i], want[i])
		}
	}
	// Every admitted hold reports its rows' counters; they are within limits.
	for i, e := range entries {
		if e.Hold == nil || e.Hold.Refused != nil {
			continue
		}
		if len(e.Hold.Spends) != len(e.Hold.Reservation.Charges) {
			t.Errorf("entry %d: %d counters for %d charges", i, len(e.Hold.Spends), len(e.Hold.Reservation.Charges))
		}
	}
	for _, id := range []string{"sp_1", "sp_3", "sp_4", "sp_9"} {
		if got, err := b.LedgerFind(ctx, id); err != nil || len(got) != 0 {
			t.Fatalf("refused call %s has records %v (%v)", id, got, err)
		}
	}
}

// testBatchOfAThousandCalls: one transaction carrying a thousand starts
// (each with key, team and organisation charges) and then a thousand ends
// with their usage rows stays under every statement parameter limit (SQLite
// 32,766, PostgreSQL 65,535) and settles each hold once.
func testBatchOfAThousandCalls(t *testing.T, b Backend) {
	const n = 1_000
	ctx := context.Background()
	team := budget.Charge{BudgetID: "bud_kt", PeriodStart: 3, Limit: 1 << 40, Hard: true}
	org := budget.Charge{BudgetID: "bud_ko", PeriodStart: 3, Limit: n * 10, Hard: true}
	var starts, ends []ledger.Entry
	for i := range n {
		id := fmt.Sprintf("thou_%04d", i)
		k := budget.Charge{BudgetID: fmt.Sprintf("bud_kk_%d", i%50), PeriodStart: 3, Limit: 1 << 40, Hard: true}
		starts = append(starts, startWithHold(id, 10, k, team, org))
		ends = append(ends, ledger.Entry{Data: []byte("end " + id), RequestID: id, Closes: true, Settle: &ledger.Settlement{ID: id, Actual: 7},
			Usage: &usage.Record{ID: id, Time: now, KeyID: "key_thou", Model: "m", CostMicros: 7, Reasons: []string{}}})
	}
	for i, x := range appendOne(t, b, "gw.1", starts...) {
		if x < 0 {
			t.Fatalf("start %d dropped (%v)", i, starts[i].Hold.Refused)
		}
	}
	sp, err := b.Spend(ctx, []budget.Charge{org})
	must(t, err)
	if sp[0].Reserved != n*10 {
		t.Fatalf("org reserved %d, want %d", sp[0].Reserved, n*10)
	}
	appendOne(t, b, "gw.1", append(ends, ends[:10]...)...) // ten named twice
	for i, e := range ends {
		if !e.Settle.Settled {
			t.Fatalf("end %d not settled", i)
		}
	}
	sp, err = b.Spend(ctx, []budget.Charge{org, team})
	must(t, err)
	if sp[0].Reserved != 0 || sp[0].Spent != n*7 || sp[1].Spent != n*7 {
		t.Fatalf("after settling org %+v team %+v, want spent %d", sp[0], sp[1], n*7)
	}
	rows, err := b.ListUsage(ctx, usage.Query{KeyID: "key_thou", Limit: 2 * n})
	must(t, err)
	if len(rows) != n {
		t.Fatalf("%d usage rows, want %d", len(rows), n)
	}
	open, err := b.LedgerAbandoned(ctx, "gw.other", now.Add(time.Hour))
	must(t, err)
	for _, oc := range open {
		if strings.HasPrefix(oc.RequestID, "thou_") {
			t.Fatalf("call %s left open", oc.RequestID)
		}
	}
}

// testBatchHoldWithoutCharges: a start entry whose hold names no budget
// still makes its hold durable (a reservations row, settled by its end
// entry), alone in its batch, so with no counter row for the batch to touch.
func testBatchHoldWithoutCharges(t *testing.T, b Backend) {
	ctx := context.Background()
	if idx := appendOne(t, b, "gw.1", startWithHold("req_free", 500)); idx[0] < 0 {
		t.Fatal("the start was dropped")
	}
	owned, err := b.Owned(ctx, "gw.1", now.Add(time.Hour))
	must(t, err)
	if len(owned) != 1 || owned[0] != "req_free" {
		t.Fatalf("reservations of gw.1 = %v, want [req_free]", owned)
	}
	end := ledger.Entry{Data: []byte("end req_free"), RequestID: "req_free", Closes: true, Settle: &ledger.Settlement{ID: "req_free", Actual: 100}}
	if idx := appendOne(t, b, "gw.1", end); idx[0] < 0 || !end.Settle.Settled {
		t.Fatalf("the end: idx %v, settled %v", idx, end.Settle.Settled)
	}
	owned, err = b.Owned(ctx, "gw.1", now.Add(time.Hour))
	must(t, err)
	if len(owned) != 0 {
		t.Fatalf("reservations of gw.1 after the end = %v, want none", owned)
	}
}
