package budget_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/instance"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// fakeClock is one replica's host clock: a wall clock and a monotonic one,
// both frozen until the test moves them, so what a test asserts does not
// depend on how long its steps take.
type fakeClock struct {
	mu   sync.Mutex
	wall time.Time
	mono time.Duration
}

func newFakeClock(wall time.Time) *fakeClock { return &fakeClock{wall: wall, mono: time.Hour} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

func (c *fakeClock) Mono() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// Advance moves both clocks: time passes.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.wall, c.mono = c.wall.Add(d), c.mono+d
	c.mu.Unlock()
}

// Step moves the wall clock alone: an operator or NTP stepped it.
func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	c.wall = c.wall.Add(d)
	c.mu.Unlock()
}

// shiftedStore is the PostgreSQL store as a heartbeat sees it, with the
// server's clock reading by more: a database server whose clock is near
// midnight whenever the test runs. Every replica shares the shift, as they
// share the server. Only the reading is shifted; the store is the real one.
type shiftedStore struct {
	*sqlstore.DB
	by *atomic.Int64
}

func (s shiftedStore) Heartbeat(ctx context.Context, id string, at time.Time) (time.Time, error) {
	t, err := s.DB.Heartbeat(ctx, id, at)
	return t.Add(time.Duration(s.by.Load())), err
}

// clockReplica is one gateway on the shared PostgreSQL: its own pool,
// instance (heartbeat), budget ledger and sequencer, and its own clock.
type clockReplica struct {
	db    *sqlstore.DB
	inst  *instance.Instance
	bl    *budget.Ledger
	l     *ledger.Log
	clock *fakeClock
}

// openClockReplicas opens n replicas on one fresh PostgreSQL schema, each
// with a fake clock at walls[i], reading the store's clock through shift,
// under the budgets bs. Their sequencers run until the test ends.
func openClockReplicas(t *testing.T, shift *atomic.Int64, walls []time.Time, bs ...budget.Budget) []*clockReplica {
	t.Helper()
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	skey, err := ledger.GenerateKey("test/clock")
	if err != nil {
		t.Fatal(err)
	}
	for i := range bs {
		if err := bs[i].Validate(); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	var runs sync.WaitGroup
	t.Cleanup(func() { stop(); runs.Wait() })
	var reps []*clockReplica
	for i, wall := range walls {
		db, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 3})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		log := slog.New(slog.DiscardHandler)
		r := &clockReplica{db: db, clock: newFakeClock(wall)}
		r.inst = instance.New(shiftedStore{db, shift}, fmt.Sprint("gw_clock", i), log)
		r.inst.SetClock(r.clock.Now, r.clock.Mono)
		if r.l, err = ledger.New(db, r.inst.ID(), skey, log); err != nil {
			t.Fatal(err)
		}
		r.l.Interval = time.Hour
		r.bl = budget.NewLedger(db, r.inst.ID(), func() []budget.Budget { return bs }, nil, log)
		r.bl.SetNow(r.clock.Now)
		r.bl.Gate = r.inst.Live
		r.bl.StoreClock = r.inst.StoreNow // what server.Open wires on PostgreSQL
		runs.Go(func() { r.l.Run(runCtx) })
		reps = append(reps, r)
	}
	for _, r := range reps {
		for !r.l.Running() {
			time.Sleep(time.Millisecond)
		}
	}
	return reps
}

// setStoreClock makes the store's clock read near at (shift is shared by
// every replica) and has every replica read it.
func setStoreClock(t *testing.T, shift *atomic.Int64, at time.Time, reps []*clockReplica) {
	t.Helper()
	shift.Store(int64(time.Until(at)))
	for _, r := range reps {
		if err := r.inst.Beat(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// flood sends workers callers per replica, calls calls each, through the
// whole sequenced path, and returns the money that reached the upstream
// (calls started × actual).
func flood(t *testing.T, reps []*clockReplica, tag string, workers, calls int, amount, actual int64) int64 {
	t.Helper()
	ctx := context.Background()
	var started atomic.Int64
	var wg sync.WaitGroup
	for ri, r := range reps {
		for w := range workers {
			wg.Go(func() {
				for i := range calls {
					if _, ok := callHold(ctx, r.bl, r.l, fmt.Sprintf("%s_%d_%02d_%02d", tag, ri, w, i), amount, actual); ok {
						started.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	return started.Load() * actual
}

// drained waits until every replica's ends are committed (the last end of
// a call is appended after callHold returns its start).
func drained(t *testing.T, reps []*clockReplica) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range reps {
		for {
			if _, live := r.bl.Pending(); live == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("ends still not committed after 30 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func daySpend(t *testing.T, db *sqlstore.DB, id string, day time.Time) budget.Spend {
	t.Helper()
	sp, err := db.Spend(context.Background(), []budget.Charge{{BudgetID: id, PeriodStart: day.UnixMicro()}})
	if err != nil {
		t.Fatal(err)
	}
	return sp[0]
}

// TestReplicasWithSkewedClocksSpendOneLimitPerPeriod: two replicas on one
// PostgreSQL whose clocks are 30 s apart around midnight (one 15 s behind
// the database server, one 15 s ahead) flood a key with a hard day budget,
// first while the server's clock reads 10 s before midnight, then 10 s
// after. The money that reaches the upstream in each of the server's days
// is at most one limit, and each day row holds exactly that day's calls.
// Before budget periods followed the store's clock, the replica ahead
// charged the first flood to the next day's row: two limits in one day.
func TestReplicasWithSkewedClocksSpendOneLimitPerPeriod(t *testing.T) {
	const amount, limit = 1_000, 10_000
	b := budget.Budget{ID: "bud_day", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Day, LimitMicros: limit, Hard: true}
	midnight := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	var shift atomic.Int64
	storeAt := midnight.Add(-10 * time.Second)
	reps := openClockReplicas(t, &shift, []time.Time{storeAt.Add(-15 * time.Second), storeAt.Add(15 * time.Second)}, b)
	setStoreClock(t, &shift, storeAt, reps)

	before := flood(t, reps, "d1", 8, 4, amount, amount)
	drained(t, reps)
	// 10 s later on every clock: the server's is past midnight now.
	for _, r := range reps {
		r.clock.Advance(20 * time.Second)
	}
	setStoreClock(t, &shift, midnight.Add(10*time.Second), reps)
	after := flood(t, reps, "d2", 8, 4, amount, amount)
	drained(t, reps)

	d1, d2 := daySpend(t, reps[0].db, b.ID, midnight.Add(-24*time.Hour)), daySpend(t, reps[0].db, b.ID, midnight)
	t.Logf("upstream: %d before midnight, %d after; rows: %+v, %+v", before, after, d1, d2)
	if before > limit || after > limit {
		t.Fatalf("upstream spend per day of the store's clock: %d before midnight, %d after; limit %d", before, after, limit)
	}
	if before != limit || after != limit {
		t.Fatalf("the floods did not exhaust each day: %d and %d of %d", before, after, limit)
	}
	if d1.Spent != before || d2.Spent != after || d1.Reserved != 0 || d2.Reserved != 0 {
		t.Fatalf("day rows %+v, %+v; want spent %d and %d, nothing reserved", d1, d2, before, after)
	}
}

// TestReplicasAtTheBoundaryChargeBothPeriods: three replicas whose
// readings of the store's clock place them before midnight (A), within
// their uncertainty of it (B) and after it (C) flood one key. B's calls
// could belong to either day, so each holds and is charged in both rows.
// Whatever the order, the calls that may fall in the first day (A's and
// B's) reach the upstream for at most one limit, and so do those that may
// fall in the second (B's and C's); each row is charged what its calls
// spent, B's twice. With B charged only to the day of its reading's middle,
// B's and C's calls spent two limits in what may have been one day.
func TestReplicasAtTheBoundaryChargeBothPeriods(t *testing.T) {
	const amount, actual, limit = 1_000, 600, 12_000
	b := budget.Budget{ID: "bud_edge", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Day, LimitMicros: limit, Hard: true}
	midnight := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	var shift atomic.Int64
	reps := openClockReplicas(t, &shift, []time.Time{midnight, midnight, midnight}, b)
	setStoreClock(t, &shift, midnight, reps) // liveness; the readings below are the replicas' own
	readings := []struct {
		at  time.Time
		unc time.Duration
	}{{midnight.Add(-3 * time.Second), time.Second}, {midnight.Add(-500 * time.Millisecond), 2 * time.Second}, {midnight.Add(3 * time.Second), time.Second}}
	for i, r := range reps {
		rd := readings[i]
		r.bl.StoreClock = func() (time.Time, time.Duration, error) { return rd.at, rd.unc, nil }
	}
	var spent [3]int64
	spent[1] = flood(t, reps[1:2], "edge_first", 1, 1, amount, actual) // at least one call at the boundary
	var wg sync.WaitGroup
	for i, r := range reps {
		wg.Go(func() { spent[i] += flood(t, []*clockReplica{r}, fmt.Sprint("edge", i), 8, 5, amount, actual) })
	}
	wg.Wait()
	drained(t, reps)
	d1, d2 := daySpend(t, reps[0].db, b.ID, midnight.Add(-24*time.Hour)), daySpend(t, reps[0].db, b.ID, midnight)
	t.Logf("upstream: A %d, B %d, C %d; rows %+v, %+v", spent[0], spent[1], spent[2], d1, d2)
	if spent[0]+spent[1] > limit || spent[1]+spent[2] > limit {
		t.Fatalf("upstream: A %d + B %d, B + C %d: over the limit %d in one day", spent[0], spent[1], spent[1]+spent[2], limit)
	}
	if spent[1] == 0 {
		t.Fatal("no call admitted at the boundary: the test proves nothing")
	}
	if d1.Spent != spent[0]+spent[1] || d2.Spent != spent[1]+spent[2] || d1.Reserved != 0 || d2.Reserved != 0 {
		t.Fatalf("rows %+v, %+v; want spent %d and %d (B's calls in both), nothing reserved", d1, d2, spent[0]+spent[1], spent[1]+spent[2])
	}
}

// TestSteppedClockChargesTheStoresDay: a replica whose wall clock is
// stepped a day ahead refuses calls under a hard day budget (the store's
// time is not known any more) until its next heartbeat reads the store's
// clock again; then it charges the store's day, not its own. A lifetime
// budget is not touched by any of it. Before, it charged tomorrow's row
// (a second limit today).
func TestSteppedClockChargesTheStoresDay(t *testing.T) {
	day := budget.Budget{ID: "bud_d", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Day, LimitMicros: 1 << 30, Hard: true}
	life := budget.Budget{ID: "bud_life", Scope: budget.ScopeKey, ScopeID: "key_2", Period: budget.Lifetime, LimitMicros: 1 << 30, Hard: true}
	noon := time.Now().UTC().Truncate(24 * time.Hour).Add(12 * time.Hour)
	var shift atomic.Int64
	reps := openClockReplicas(t, &shift, []time.Time{noon}, day, life)
	r := reps[0]
	setStoreClock(t, &shift, noon, reps)
	ctx := context.Background()

	r.clock.Step(24 * time.Hour)
	_, err := r.bl.Admit(ctx, "req_stepped", budget.Call{KeyID: "key_1", Model: "m"}, 100)
	if !errors.Is(err, budget.ErrClock) || !errors.Is(err, instance.ErrClockStepped) {
		t.Fatalf("a call after the wall clock stepped a day: %v, want ErrClock (stepped)", err)
	}
	if h, err := r.bl.Admit(ctx, "req_life", budget.Call{KeyID: "key_2", Model: "m"}, 100); err != nil || h == nil {
		t.Fatalf("a lifetime budget's call after the step: %v", err)
	} else {
		h.Abandon()
	}
	if err := r.inst.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := r.bl.Admit(ctx, "req_after", budget.Call{KeyID: "key_1", Model: "m"}, 100)
	if err != nil {
		t.Fatalf("after a heartbeat: %v", err)
	}
	defer h.Abandon()
	res := h.Reservation()
	if want := noon.Truncate(24 * time.Hour).UnixMicro(); len(res.Charges) != 1 || res.Charges[0].PeriodStart != want {
		t.Fatalf("charges %+v; want the store's day, %v", res.Charges, noon.Truncate(24*time.Hour))
	}
}

// TestStaleStoreClockFailsClosed: without a usable reading of the store's
// clock (none yet, or older than Stale/2) a call under a hard day budget
// is refused with ErrClock, not charged to a day read from the host's
// clock; a lifetime budget and a soft day budget still admit it.
func TestStaleStoreClockFailsClosed(t *testing.T) {
	hard := budget.Budget{ID: "bud_hard", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Month, LimitMicros: 1 << 30, Hard: true}
	soft := budget.Budget{ID: "bud_soft", Scope: budget.ScopeKey, ScopeID: "key_2", Period: budget.Day, LimitMicros: 1 << 30}
	life := budget.Budget{ID: "bud_life", Scope: budget.ScopeKey, ScopeID: "key_3", Period: budget.Lifetime, LimitMicros: 1 << 30, Hard: true}
	now := time.Now().UTC()
	var shift atomic.Int64
	r := openClockReplicas(t, &shift, []time.Time{now}, hard, soft, life)[0]
	r.bl.Gate = nil // the clock alone decides here
	ctx := context.Background()
	admit := func(key string) error {
		h, err := r.bl.Admit(ctx, "req_"+key, budget.Call{KeyID: key, Model: "m"}, 100)
		if h != nil {
			h.Abandon()
		}
		return err
	}
	if err := admit("key_1"); !errors.Is(err, budget.ErrClock) || !errors.Is(err, instance.ErrClockUnknown) {
		t.Fatalf("before the first heartbeat: %v, want ErrClock (unknown)", err)
	}
	setStoreClock(t, &shift, now, []*clockReplica{r})
	if err := admit("key_1"); err != nil {
		t.Fatalf("after a heartbeat: %v", err)
	}
	r.clock.Advance(r.inst.Stale/2 + time.Millisecond)
	if err := admit("key_1"); !errors.Is(err, budget.ErrClock) || !errors.Is(err, instance.ErrClockStale) {
		t.Fatalf("with a reading older than Stale/2: %v, want ErrClock (stale)", err)
	}
	for _, key := range []string{"key_2", "key_3"} {
		if err := admit(key); err != nil {
			t.Fatalf("%s (soft day, lifetime) with a stale clock: %v", key, err)
		}
	}
}

// TestSkewedClocksDoNotFenceLiveReplicas: three live replicas on one
// PostgreSQL, one clock an hour ahead, one an hour behind, each sweep for
// dead replicas (instance_timeout 20 s, far less than the skew). Nobody is
// claimed: every heartbeat still succeeds in its first epoch and no live
// call's hold is charged in full. Heartbeats record the server's clock and
// the sweep's cutoff is read from it too; before, the replica ahead took
// the others' heartbeats for an hour old and fenced them, charging their
// calls in flight in full.
func TestSkewedClocksDoNotFenceLiveReplicas(t *testing.T) {
	b := budget.Budget{ID: "bud_fence", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Lifetime, LimitMicros: 1 << 30, Hard: true}
	now := time.Now().UTC()
	var shift atomic.Int64
	reps := openClockReplicas(t, &shift, []time.Time{now.Add(time.Hour), now, now.Add(-time.Hour)}, b)
	setStoreClock(t, &shift, now, reps)
	ctx := context.Background()
	// A call in flight on each replica, its hold durable.
	for i, r := range reps {
		if err := r.db.Reserve(ctx, budget.Reservation{ID: fmt.Sprint("req_live", i), Instance: r.inst.ID(), Amount: 100,
			Charges: []budget.Charge{{BudgetID: b.ID, Limit: b.LimitMicros, Hard: true}}, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range reps {
		if n, err := r.bl.Recover(ctx, false); err != nil || n != 0 {
			t.Fatalf("replica %d's sweep: %d holds of live replicas charged in full (%v)", i, n, err)
		}
	}
	for i, r := range reps {
		if err := r.inst.Beat(ctx); err != nil || r.inst.Epoch() != 1 {
			t.Fatalf("replica %d after the sweeps: heartbeat %v, epoch %d; want still epoch 1", i, err, r.inst.Epoch())
		}
	}
	sp := daySpend(t, reps[0].db, b.ID, time.Unix(0, 0))
	if sp.Spent != 0 || sp.Reserved != 300 {
		t.Fatalf("counters %+v; want the three holds still reserved, nothing charged", sp)
	}
}

// TestSQLitePeriodsFollowTheLocalClock: the embedded store has one gateway,
// whose clock is the store's: with no store clock set, a call a microsecond
// before midnight is charged to that day alone, with no heartbeat needed.
func TestSQLitePeriodsFollowTheLocalClock(t *testing.T) {
	b := budget.Budget{ID: "bud_local", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Day, LimitMicros: 1_000, Hard: true}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	r := openSeqRig(t, "test/local", nil, nil, b)
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	r.bl.SetNow(func() time.Time { return day.Add(24*time.Hour - time.Microsecond) })
	h, ok := callHold(context.Background(), r.bl, r.l, "req_local", 1_000, 1_000)
	if !ok {
		t.Fatal("the call was not admitted")
	}
	if cs := h.Reservation().Charges; len(cs) != 1 || cs[0].PeriodStart != day.UnixMicro() {
		t.Fatalf("charges %+v; want the local day %v alone", cs, day)
	}
}
