package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// cancelFixture is a store whose driver calls a test can count and cancel at.
type cancelFixture struct {
	db   *sqlstore.DB
	path string
	hook atomic.Pointer[func(op string)]
	b    budget.Budget
	mu   sync.Mutex // the ledger has one sequencer: appends never overlap
}

func newCancelFixture(t *testing.T, conns int) *cancelFixture {
	t.Helper()
	ctx := context.Background()
	f := &cancelFixture{path: filepath.Join(t.TempDir(), FileName)}
	// These tests are about the write lock after cancellation, not about
	// durability: NORMAL and a long busy timeout keep 48 contending writers
	// from waiting out SQLite's (unfair) busy handler behind fsyncs on a
	// loaded CI machine, which is not what they test.
	db, err := OpenWith(ctx, f.path, Options{BusyTimeout: 30 * time.Second, Synchronous: "NORMAL", MaxOpenConns: conns,
		Wrap: func(c driver.Connector) driver.Connector { return &hookConnector{c, &f.hook} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.db = db
	f.b = budget.Budget{ID: "b1", Scope: budget.ScopeOrg, Period: budget.Lifetime, TimeZone: "UTC", LimitMicros: 1 << 40, Hard: true, CreatedAt: time.Now()}
	if err := db.CreateBudget(ctx, f.b); err != nil {
		t.Fatal(err)
	}
	return f
}

// call runs every hot transaction of one call in order, all on ctx: reserve,
// start record, settle, end record, usage row. It stops at the first error.
func (f *cancelFixture) call(ctx context.Context, id string) error {
	r := budget.Reservation{ID: id, Instance: "i", Amount: 10, CreatedAt: time.Now(),
		Charges: []budget.Charge{{BudgetID: f.b.ID, PeriodStart: 0, Limit: f.b.LimitMicros, Hard: true}}}
	if err := f.db.Reserve(ctx, r); err != nil {
		return fmt.Errorf("reserve: %w", err)
	}
	if err := f.append(ctx, ledger.Entry{Data: []byte("start " + id), RequestID: id, Opens: true}); err != nil {
		return fmt.Errorf("start record: %w", err)
	}
	if _, err := f.db.Settle(ctx, id, 7); err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	if err := f.append(ctx, ledger.Entry{Data: []byte("end " + id), RequestID: id, Closes: true}); err != nil {
		return fmt.Errorf("end record: %w", err)
	}
	if err := f.db.InsertUsageBatch(ctx, []usage.Record{{ID: id, Time: time.Now()}}); err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	return nil
}

// append appends e to the ledger, reading the hashes it needs inside the
// append's transaction (the cached row-returning statements).
func (f *cancelFixture) append(ctx context.Context, e ledger.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.db.LedgerAppend(ctx, "i", []ledger.Entry{e}, func(start int64, kept []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
		out := make([][]tlog.Hash, len(kept))
		for i, e := range kept {
			hs, err := tlog.StoredHashes(start+int64(i), e.Data, r)
			if err != nil {
				return nil, err
			}
			out[i] = hs
		}
		return out, nil
	})
	return err
}

// settled settles ids (a no-op for those already settled) and checks that
// nothing stays reserved and that every call that was settled was charged
// exactly once.
func (f *cancelFixture) settled(t *testing.T, ids []string) {
	t.Helper()
	ctx := context.Background()
	for _, id := range ids {
		if _, err := f.db.Settle(ctx, id, 7); err != nil {
			t.Fatalf("settle %s afterwards: %v", id, err)
		}
	}
	sp, err := f.db.Spend(ctx, []budget.Charge{{BudgetID: f.b.ID, PeriodStart: 0}})
	if err != nil {
		t.Fatal(err)
	}
	if sp[0].Reserved != 0 || sp[0].Spent%7 != 0 {
		t.Fatalf("after settling every call: spent %d, reserved %d; want nothing reserved and spend in whole calls", sp[0].Spent, sp[0].Reserved)
	}
}

// writerGetsTheLock checks, from a connection outside the store's pool, that
// no connection holds SQLite's write lock: BEGIN IMMEDIATE must succeed well
// within the wait (a rollback still in progress ends in microseconds; a
// connection that kept the lock keeps it for ever).
func writerGetsTheLock(t *testing.T, path string, wait time.Duration) {
	t.Helper()
	other, err := sql.Open("sqlite", fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)", path, wait.Milliseconds()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	c, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("the next writer did not get SQLite's write lock within %v: %v", wait, err)
	}
	if _, err := c.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
}

// TestCancelAtEveryDriverCallReleasesTheWriteLock cancels a call's context
// at each driver call of its hot transactions in turn (reserve, start record
// with its hash reads, settle with its DELETE … RETURNING and UPDATE …
// RETURNING, end record, usage row; every statement cached inside the
// transactions), before and after the call reaches SQLite, with and without
// a pause that lets database/sql's rollback and the driver's interrupt run
// at that point. After each: the next writer gets the write lock at once,
// the same pool serves a whole call, and nothing stays reserved.
func TestCancelAtEveryDriverCallReleasesTheWriteLock(t *testing.T) {
	f := newCancelFixture(t, 2)
	ctx := context.Background()
	var ids []string
	for i := range 3 { // prepare the hot statements on both connections
		id := fmt.Sprint("warm-", i)
		ids = append(ids, id)
		if err := f.call(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	var ops []string
	rec := func(op string) { ops = append(ops, op) }
	f.hook.Store(&rec)
	if err := f.call(ctx, "count"); err != nil {
		t.Fatal(err)
	}
	f.hook.Store(nil)
	ids = append(ids, "count")
	t.Logf("%d driver calls in one call's transactions", len(ops))
	for _, pause := range []time.Duration{0, 300 * time.Microsecond} {
		for k := 1; k <= len(ops)+1; k++ {
			id := fmt.Sprintf("p%v-k%d", pause, k)
			ids = append(ids, id, id+"-next")
			cctx, cancel := context.WithCancel(ctx)
			var n atomic.Int64
			at := func(string) {
				if n.Add(1) == int64(k) {
					cancel()
					if pause > 0 {
						time.Sleep(pause)
					}
				}
			}
			f.hook.Store(&at)
			cerr := f.call(cctx, id)
			f.hook.Store(nil)
			cancel()
			where := "after the last"
			if k <= len(ops) {
				where = "at " + ops[k-1]
			}
			writerGetsTheLock(t, f.path, 2*time.Second)
			if err := f.call(ctx, id+"-next"); err != nil {
				t.Fatalf("cancelled %s (driver call %d, pause %v; the call returned %v), the next call failed: %v", where, k, pause, cerr, err)
			}
		}
	}
	f.settled(t, ids)
}

// TestCancelledCallersUnderContention: many calls at once on a full pool, a
// third of them cancelled at a random moment (inside any of their
// transactions, mid-statement included). No call may fail for a reason other
// than its own cancellation, the write lock must be free after each wave,
// and nothing may stay reserved.
func TestCancelledCallersUnderContention(t *testing.T) {
	f := newCancelFixture(t, 8)
	var failed atomic.Int64
	var ids []string
	for wave := range 3 {
		var wg sync.WaitGroup
		for g := range 48 {
			id := fmt.Sprintf("w%d-g%d", wave, g)
			ids = append(ids, id)
			wg.Go(func() {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if g%3 == 0 {
					time.AfterFunc(time.Duration(rand.IntN(30_000))*time.Microsecond, cancel)
				}
				if err := f.call(ctx, id); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, sql.ErrTxDone) {
					if failed.Add(1) <= 5 {
						t.Errorf("%s: %v", id, err)
					}
				}
			})
		}
		wg.Wait()
		writerGetsTheLock(t, f.path, 2*time.Second)
	}
	f.settled(t, ids)
}
