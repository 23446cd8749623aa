package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// testFencing: a sweep claims a silent instance before it closes anything, a
// claimed instance can never beat again, and the same process in a new epoch
// is live: its reservations and open calls are never swept.
func testFencing(t *testing.T, b Backend) {
	ctx := context.Background()
	c := budget.Charge{BudgetID: "bud_f", PeriodStart: 1, Limit: 1000, Hard: true}
	ta := beat(t, b, "gw_a.1", now, time.Time{})
	beat(t, b, "gw_b.1", now, time.Time{})
	cutoff := ta.Add(time.Microsecond) // gw_a.1 is silent since then
	must(t, b.Reserve(ctx, budget.Reservation{ID: "req_a1", Instance: "gw_a.1", Amount: 100, Charges: []budget.Charge{c}, CreatedAt: now}))
	appendOne(t, b, "gw_a.1", ledger.Entry{Data: []byte("start a1"), RequestID: "req_a1", Opens: true})

	// gw_b sweeps later: gw_a.1 is silent, so it is claimed.
	ids, err := b.Abandoned(ctx, "gw_b.1", cutoff)
	must(t, err)
	if len(ids) != 1 || ids[0] != "req_a1" {
		t.Fatalf("Abandoned = %v, want [req_a1]", ids)
	}
	if _, err := b.Heartbeat(ctx, "gw_a.1", now.Add(20*time.Second)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("heartbeat of a claimed instance: want ErrFenced, got %v", err)
	}
	// gw_a comes back in a new epoch and admits a call.
	beat(t, b, "gw_a.2", now.Add(20*time.Second), cutoff)
	must(t, b.Reserve(ctx, budget.Reservation{ID: "req_a2", Instance: "gw_a.2", Amount: 100, Charges: []budget.Charge{c}, CreatedAt: now}))
	appendOne(t, b, "gw_a.2", ledger.Entry{Data: []byte("start a2"), RequestID: "req_a2", Opens: true})
	ids, err = b.Abandoned(ctx, "gw_b.1", cutoff)
	must(t, err)
	if len(ids) != 1 || ids[0] != "req_a1" {
		t.Fatalf("Abandoned after the new epoch = %v, want only [req_a1]", ids)
	}
	open, err := b.LedgerAbandoned(ctx, "gw_b.1", cutoff)
	must(t, err)
	if len(open) != 1 || open[0].RequestID != "req_a1" {
		t.Fatalf("LedgerAbandoned = %+v, want only req_a1", open)
	}
	// An instance never heard of (it crashed before its first heartbeat) is gone.
	must(t, b.Reserve(ctx, budget.Reservation{ID: "req_x", Instance: "gw_never.1", Amount: 1, Charges: []budget.Charge{c}, CreatedAt: now}))
	ids, err = b.Abandoned(ctx, "gw_b.1", ta.Add(-time.Hour))
	must(t, err)
	if len(ids) != 2 {
		t.Fatalf("Abandoned = %v, want req_a1 and req_x", ids)
	}
	// Its own reservations are never returned to an instance.
	ids, err = b.Abandoned(ctx, "gw_a.1", ta.Add(time.Hour))
	must(t, err)
	for _, id := range ids {
		if id == "req_a1" {
			t.Fatalf("an instance's own reservation returned as abandoned: %v", ids)
		}
	}
}

// testFencingRace: a sweep's claim and the instance's heartbeat race, many
// times; exactly one wins each time: either the heartbeat succeeded (and the
// instance's calls are not returned) or the instance was claimed (and its
// heartbeat failed with ErrFenced).
func testFencingRace(t *testing.T, b Backend) {
	ctx := context.Background()
	c := budget.Charge{BudgetID: "bud_r", PeriodStart: 1, Limit: 1 << 40}
	for i := range 20 {
		inst := fmt.Sprintf("gw_r%d.1", i)
		t0 := beat(t, b, inst, now, time.Time{})
		req := fmt.Sprintf("req_r%d", i)
		must(t, b.Reserve(ctx, budget.Reservation{ID: req, Instance: inst, Amount: 1, Charges: []budget.Charge{c}, CreatedAt: now}))
		var wg sync.WaitGroup
		var beatErr, sweepErr error
		var swept []string
		// The sweep's cutoff is just after the first heartbeat: the race's
		// heartbeat (a round trip later, or a minute on SQLite) is after it.
		wg.Go(func() { _, beatErr = b.Heartbeat(ctx, inst, now.Add(time.Minute)) })
		wg.Go(func() { swept, sweepErr = b.Abandoned(ctx, "gw_sweeper.1", t0.Add(time.Microsecond)) })
		wg.Wait()
		must(t, sweepErr)
		gotSwept := false
		for _, id := range swept {
			gotSwept = gotSwept || id == req
		}
		switch {
		case beatErr == nil && gotSwept:
			t.Fatalf("round %d: the heartbeat succeeded and the sweep still returned the instance's call", i)
		case errors.Is(beatErr, store.ErrFenced) && !gotSwept:
			// Claimed after the sweep's read? Then the next sweep must return it.
			again, err := b.Abandoned(ctx, "gw_sweeper.1", t0.Add(time.Microsecond))
			must(t, err)
			found := false
			for _, id := range again {
				found = found || id == req
			}
			if !found {
				t.Fatalf("round %d: the instance is fenced but its call is never swept", i)
			}
		case beatErr != nil && !errors.Is(beatErr, store.ErrFenced):
			t.Fatalf("round %d: heartbeat: %v", i, beatErr)
		}
		if _, err := b.Settle(ctx, req, 1); err != nil {
			t.Fatal(err)
		}
	}
}

// testOneEndPerRequest: a request's end record is appended once, whoever
// closes it (recovery, the call itself, a retry whose first commit was not
// acknowledged), in separate batches or in one.
func testOneEndPerRequest(t *testing.T, b Backend) {
	appendOne(t, b, "gw.1", ledger.Entry{Data: []byte("start 1"), RequestID: "req_1", Opens: true})
	if idx := appendOne(t, b, "gw.1", ledger.Entry{Data: []byte("end 1 (recovery)"), RequestID: "req_1", Closes: true}); idx[0] < 0 {
		t.Fatal("the first end record was dropped")
	}
	if idx := appendOne(t, b, "gw.1", ledger.Entry{Data: []byte("end 1 (late call)"), RequestID: "req_1", Closes: true}); idx[0] != -1 {
		t.Fatalf("a second end record was appended at %d", idx[0])
	}
	idx := appendOne(t, b, "gw.1",
		ledger.Entry{Data: []byte("start 2"), RequestID: "req_2", Opens: true},
		ledger.Entry{Data: []byte("end 2"), RequestID: "req_2", Closes: true},
		ledger.Entry{Data: []byte("end 2 again"), RequestID: "req_2", Closes: true},
		ledger.Entry{Data: []byte("admin"), RequestID: "adm_1"})
	if idx[0] < 0 || idx[1] != idx[0]+1 || idx[2] != -1 || idx[3] != idx[1]+1 {
		t.Fatalf("batch indexes = %v, want consecutive with the duplicate end dropped", idx)
	}
	ctx := context.Background()
	size, err := b.LedgerSize(ctx)
	must(t, err)
	if size != 5 {
		t.Fatalf("log size = %d, want 5", size)
	}
	for _, req := range []string{"req_1", "req_2"} {
		got, err := b.LedgerFind(ctx, req)
		must(t, err)
		if len(got) != 2 {
			t.Fatalf("%s has %d records, want a start and one end", req, len(got))
		}
	}
	open, err := b.LedgerAbandoned(ctx, "other.1", now.Add(time.Hour))
	must(t, err)
	if len(open) != 0 {
		t.Fatalf("closed calls still open: %+v", open)
	}
}

// appendOne appends entries in one transaction, hashing them as the
// sequencer does, and returns their indexes.
func appendOne(t *testing.T, b Backend, inst string, entries ...ledger.Entry) []int64 {
	t.Helper()
	idx, err := b.LedgerAppend(context.Background(), inst, entries, NewHasher().Hashes)
	must(t, err)
	return idx
}
