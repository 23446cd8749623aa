package budget

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
)

// Alerter receives alerts.
type Alerter interface{ Send(alert.Alert) }

// Ledger reserves and settles money for calls against the budgets in force.
type Ledger struct {
	store    Store
	instance func() string
	budgets  func() []Budget
	alerts   Alerter
	log      *slog.Logger
	now      func() time.Time

	// Heartbeat is how often Run retries and sweeps; an instance silent for
	// Stale is presumed dead and its reservations are settled in full.
	Heartbeat, Stale time.Duration
	// Timeout bounds each store call of Reserve and Settle (default 5 s).
	Timeout time.Duration
	// Gate, when set, must return nil for a reservation to be made: a fenced
	// instance (package instance) admits nothing.
	Gate func() error
	// StoreClock, when set (replicas on one shared store:
	// instance.StoreNow), is the clock budget periods and sweeps follow:
	// the store's time, within ±uncertainty, or why it is not known. Nil:
	// this process's clock is the store's (the embedded store).
	StoreClock func() (at time.Time, uncertainty time.Duration, err error)

	clockDown atomic.Bool // the store's clock failed a call's hold (logged once)

	mu    sync.Mutex
	retry map[string]retrySettle // settlements that failed, retried by Run
	live  map[string]struct{}    // reservations of calls in this process, from Reserve (or Admit) to their settlement
	kick  chan struct{}

	counters map[rowKey]*counter // admission in memory (admit.go)
	alertQ   chan thresholdCheck // threshold checks of sequenced settlements, run by Run
}

type retrySettle struct {
	actual  int64
	applied []applied
	// until: a release of a reservation whose answer was lost is repeated
	// until then, in case its transaction commits late on the server.
	until time.Time
}

// NewLedger returns a Ledger. budgets returns the budgets in force (from the
// snapshot); instance names this gateway process uniquely.
func NewLedger(st Store, instance string, budgets func() []Budget, alerts Alerter, log *slog.Logger) *Ledger {
	return &Ledger{store: st, instance: func() string { return instance }, budgets: budgets, alerts: alerts, log: log, now: time.Now,
		Heartbeat: 5 * time.Second, Stale: 20 * time.Second, Timeout: 5 * time.Second,
		retry: map[string]retrySettle{}, live: map[string]struct{}{}, kick: make(chan struct{}, 1),
		counters: map[rowKey]*counter{}, alertQ: make(chan thresholdCheck, 1024)}
}

// SetInstance makes id name the instance that owns the reservations made
// from now on (its epoch changes when it was fenced).
func (l *Ledger) SetInstance(id func() string) { l.instance = id }

type applied struct {
	budget Budget
	charge Charge
}

// plan returns the charges of a call of c made now (this process's clock):
// one per budget that applies, in the period that contains the store's time
// (period.go), or two where the store's time is within its uncertainty of
// the boundary between two periods.
func (l *Ledger) plan(c Call, now time.Time) ([]applied, error) {
	// Counted first: an applied holds a whole Budget, and growing the slice
	// from nothing copied them into three allocations for the usual three
	// budgets (key, team, organisation).
	all, n := l.budgets(), 0
	for _, b := range all {
		if b.Applies(c) {
			n++
		}
	}
	if n == 0 {
		return nil, nil
	}
	out := make([]applied, 0, n)
	var clock storeTime
	read := false
	for _, b := range all {
		if !b.Applies(c) {
			continue
		}
		if b.Period == Lifetime || l.StoreClock == nil {
			start, err := b.period(now)
			if err != nil {
				return nil, err
			}
			out = append(out, applied{b, Charge{BudgetID: b.ID, PeriodStart: start.UnixMicro(), Limit: b.LimitMicros, Hard: b.Hard}})
			continue
		}
		if !read {
			clock, read = l.storeTime(), true
		}
		starts, err := clock.periods(b, now)
		if err != nil {
			return nil, err
		}
		for _, start := range starts {
			out = append(out, applied{b, Charge{BudgetID: b.ID, PeriodStart: start, Limit: b.LimitMicros, Hard: b.Hard}})
		}
	}
	return out, nil
}

// Applies reports whether any budget caps c, and whether a hard one does.
func (l *Ledger) Applies(c Call) (any, hard bool) {
	for _, b := range l.budgets() {
		if b.Applies(c) {
			any = true
			hard = hard || b.Hard
		}
	}
	return any, hard
}

// Hold is a reservation to settle.
type Hold struct {
	l         *Ledger
	id        string
	amount    int64
	applied   []applied
	res       Reservation
	sequenced bool
	started   bool // Started was told (under l.mu)
}

// Refusal names the budget of a store's refusal of the hold.
func (h *Hold) Refusal(ie *InsufficientError) *Refusal {
	for _, a := range h.applied {
		if a.budget.ID == ie.BudgetID {
			return &Refusal{Budget: a.budget, Remaining: ie.Remaining, Needed: ie.Needed}
		}
	}
	return &Refusal{Budget: Budget{ID: ie.BudgetID, LimitMicros: ie.Limit}, Remaining: ie.Remaining, Needed: ie.Needed}
}

// Amount returns the money held.
func (h *Hold) Amount() int64 { return h.amount }

// Refusal is a refused reservation, with the budget that refused it.
type Refusal struct {
	Budget    Budget
	Remaining int64
	Needed    int64
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("budget %s (%s %s, %s) cannot cover this call", r.Budget.ID, r.Budget.Scope, r.Budget.ScopeID, r.Budget.Period)
}

// reservation is the hold a call of amount makes at every budget that
// applies to c now (none: no budget applies), or the gate's refusal.
func (l *Ledger) reservation(id string, c Call, amount int64) (Reservation, []applied, error) {
	now := l.now()
	ap, err := l.plan(c, now)
	if err != nil {
		// A budget applies, so the call must not go without its hold.
		return Reservation{}, nil, fmt.Errorf("budget: reserve: %w", err)
	}
	if len(ap) == 0 {
		return Reservation{}, nil, nil
	}
	if l.Gate != nil {
		if err := l.Gate(); err != nil {
			return Reservation{}, nil, fmt.Errorf("budget: reserve: %w", err)
		}
	}
	r := Reservation{ID: id, Instance: l.instance(), Amount: amount, CreatedAt: now}
	for _, a := range ap {
		r.Charges = append(r.Charges, a.charge)
	}
	return r, ap, nil
}

// Reserve holds amount at every budget that applies to c, or returns a
// *Refusal naming a hard budget that cannot cover it. With no budget applying
// it returns a nil Hold and does no store work.
func (l *Ledger) Reserve(ctx context.Context, id string, c Call, amount int64) (*Hold, error) {
	r, ap, err := l.reservation(id, c, amount)
	if len(ap) == 0 || err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.live[id] = struct{}{}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	err = l.store.Reserve(ctx, r)
	if err != nil {
		l.mu.Lock()
		delete(l.live, id)
		l.mu.Unlock()
	}
	var ie *InsufficientError
	if errors.As(err, &ie) {
		for _, a := range ap {
			if a.budget.ID == ie.BudgetID {
				return nil, &Refusal{Budget: a.budget, Remaining: ie.Remaining, Needed: amount}
			}
		}
	}
	if err != nil {
		// The reservation may have committed with its answer lost (a
		// timeout, a broken connection): release it, at no charge since the
		// call goes nowhere, until the store confirms. Settling a reservation
		// that does not exist is a no-op.
		l.deferSettle(id, retrySettle{actual: 0, applied: ap, until: time.Now().Add(2 * l.Timeout)})
		return nil, fmt.Errorf("budget: reserve: %w", err)
	}
	return &Hold{l: l, id: id, amount: amount, applied: ap}, nil
}

// Settle charges actual and releases the rest of the hold. It must be called
// once the call is over, whatever happened to it; it outlives the caller's
// context. If the store cannot take it now, the settlement is kept in memory
// and retried by Run until it can (settling twice is a no-op, so a commit
// whose answer was lost is harmless); the error says so.
func (h *Hold) Settle(ctx context.Context, actual int64) error {
	if h == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.l.Timeout)
	defer cancel()
	spends, err := h.l.store.Settle(ctx, h.id, max(actual, 0))
	if err != nil {
		h.l.deferSettle(h.id, retrySettle{actual: max(actual, 0), applied: h.applied})
		h.l.log.Warn("budget: settle failed; kept in memory and retried until the store takes it", "request_id", h.id, "err", err)
		return fmt.Errorf("budget: settle: %w", err)
	}
	h.l.mu.Lock()
	delete(h.l.live, h.id)
	h.l.mu.Unlock()
	h.l.checkThresholds(ctx, h.applied, spends)
	return nil
}

func (l *Ledger) deferSettle(id string, r retrySettle) {
	l.mu.Lock()
	l.retry[id] = r
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Deferred returns how many settlements wait for the store.
func (l *Ledger) Deferred() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.retry)
}

// retrySettles retries the deferred settlements; it stops at the first
// failure (the store is still away) and reports whether any are left.
func (l *Ledger) retrySettles(ctx context.Context) bool {
	l.mu.Lock()
	ids := make([]string, 0, len(l.retry))
	for id := range l.retry {
		ids = append(ids, id)
	}
	l.mu.Unlock()
	written := 0
	for _, id := range ids {
		l.mu.Lock()
		r := l.retry[id]
		l.mu.Unlock()
		sctx, cancel := context.WithTimeout(ctx, l.Timeout)
		spends, err := l.store.Settle(sctx, id, r.actual)
		if err == nil {
			l.checkThresholds(sctx, r.applied, spends)
		}
		cancel()
		if err != nil {
			return true
		}
		if time.Now().Before(r.until) {
			continue
		}
		l.mu.Lock()
		delete(l.retry, id)
		delete(l.live, id)
		l.mu.Unlock()
		written++
	}
	if written > 0 {
		l.log.Info("budget: deferred settlements written", "settlements", written)
	}
	return l.Deferred() > 0
}

// checkThresholds fires each threshold alert of a budget once per period.
func (l *Ledger) checkThresholds(ctx context.Context, ap []applied, spends []Spend) {
	for _, sp := range spends {
		for _, a := range ap {
			if a.budget.ID != sp.BudgetID || a.charge.PeriodStart != sp.PeriodStart || a.budget.LimitMicros <= 0 {
				continue
			}
			for _, t := range a.budget.Thresholds {
				if sp.Spent*100 < int64(t)*a.budget.LimitMicros {
					continue
				}
				fired, err := l.store.MarkAlert(ctx, sp.BudgetID, sp.PeriodStart, t)
				if err != nil {
					l.log.Warn("budget: recording an alert failed", "budget", sp.BudgetID, "err", err)
					continue
				}
				if fired && l.alerts != nil {
					kind := "soft"
					if a.budget.Hard {
						kind = "hard"
					}
					l.alerts.Send(alert.Alert{Kind: "budget_threshold",
						Message: fmt.Sprintf("%s budget %s (%s %s, %s) reached %d%% of its limit", kind, a.budget.ID, a.budget.Scope, a.budget.ScopeID, a.budget.Period, t),
						Details: map[string]any{"budget_id": a.budget.ID, "scope": a.budget.Scope, "scope_id": a.budget.ScopeID, "period": a.budget.Period,
							"period_start": time.UnixMicro(sp.PeriodStart).UTC(), "threshold_percent": t, "limit_micros": a.budget.LimitMicros,
							"spent_micros": sp.Spent, "hard": a.budget.Hard}})
				}
			}
		}
	}
}

// Recover settles, at their full amount, the open reservations of instances
// that are gone: every other instance's when exclusive (the embedded store has
// one gateway), else those whose heartbeat is older than Stale.
func (l *Ledger) Recover(ctx context.Context, exclusive bool) (int, error) {
	// Heartbeats are recorded in the store's clock: so is the cutoff.
	now := l.now()
	if l.StoreClock != nil && !exclusive {
		at, _, err := l.StoreClock()
		if err != nil {
			return 0, fmt.Errorf("budget: recover: %w", err)
		}
		now = at
	}
	stale := now.Add(-l.Stale)
	if exclusive {
		stale = now.Add(time.Hour * 24 * 365 * 100)
	}
	ids, err := l.store.Abandoned(ctx, l.instance(), stale)
	if err != nil {
		return 0, fmt.Errorf("budget: recover: %w", err)
	}
	n := 0
	for _, id := range ids {
		if err := l.settleInFull(ctx, id); err != nil {
			return n, err
		}
		n++
	}
	if n > 0 {
		l.log.Warn("budget: settled abandoned reservations at their full amount", "reservations", n)
	}
	l.Forget() // read the counters again: admission in memory starts from the store
	return n, nil
}

// RecoverOwn settles, at their full amount, this instance's reservations
// that no call of this process holds or retries any more: the leftovers of a
// lost answer whose late commit even the repeated release missed. It looks
// only at reservations older than twice Timeout, so that one still being
// committed is not taken for a leftover.
func (l *Ledger) RecoverOwn(ctx context.Context) (int, error) {
	ids, err := l.store.Owned(ctx, l.instance(), l.now().Add(-2*l.Timeout))
	if err != nil {
		return 0, fmt.Errorf("budget: recover own: %w", err)
	}
	n := 0
	for _, id := range ids {
		l.mu.Lock()
		_, live := l.live[id]
		_, waiting := l.retry[id]
		l.mu.Unlock()
		if live || waiting {
			continue
		}
		if err := l.settleInFull(ctx, id); err != nil {
			return n, err
		}
		n++
	}
	if n > 0 {
		l.log.Warn("budget: settled this instance's leftover reservations at their full amount", "reservations", n)
	}
	return n, nil
}

func (l *Ledger) settleInFull(ctx context.Context, id string) error {
	// The full amount is the reservation's own; Settle reads it under lock.
	_, err := l.store.Settle(ctx, id, fullAmount)
	return err
}

// fullAmount asks Settle to charge a reservation at its reserved amount.
const fullAmount = -1

// Run retries deferred settlements (with backoff, at most a second apart)
// and, when sweep is set, settles the reservations of instances that are gone,
// every Heartbeat, until ctx ends; then it tries the deferred ones once more.
// The heartbeat itself belongs to package instance.
func (l *Ledger) Run(ctx context.Context, sweep bool) error {
	t := time.NewTicker(l.Heartbeat)
	defer t.Stop()
	retryT := time.NewTimer(time.Hour)
	retryT.Stop()
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			if l.retrySettles(context.WithoutCancel(ctx)) {
				l.log.Error("budget: settlements could not be written before stopping; recovery charges their reservations in full", "settlements", l.Deferred())
			}
			return nil
		case <-l.kick:
			retryT.Reset(backoff)
		case tc := <-l.alertQ:
			actx, cancel := context.WithTimeout(ctx, l.Timeout)
			l.checkThresholds(actx, tc.applied, tc.spends)
			cancel()
		case <-retryT.C:
			if l.retrySettles(ctx) {
				backoff = min(2*backoff, time.Second)
				retryT.Reset(backoff)
			} else {
				backoff = 50 * time.Millisecond
			}
		case <-t.C:
			if sweep {
				if _, err := l.Recover(ctx, false); err != nil && ctx.Err() == nil {
					l.log.Warn("budget: sweep failed", "err", err)
				}
			}
			if _, err := l.RecoverOwn(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("budget: sweep of this instance's leftovers failed", "err", err)
			}
		}
	}
}

// Status is a budget with its current window's counters.
type Status struct {
	Budget
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	Spent       int64     `json:"spent_micros"`
	Reserved    int64     `json:"reserved_micros"`
	Remaining   int64     `json:"remaining_micros"`
}

// Statuses returns every budget in bs with its current counters.
func (l *Ledger) Statuses(ctx context.Context, bs []Budget) ([]Status, error) {
	now := l.now()
	if l.StoreClock != nil {
		if at, _, err := l.StoreClock(); err == nil {
			now = at // the period calls are charged to
		}
	}
	keys := make([]Charge, len(bs))
	out := make([]Status, len(bs))
	for i, b := range bs {
		start, end := b.Window(now)
		keys[i] = Charge{BudgetID: b.ID, PeriodStart: start.UnixMicro()}
		out[i] = Status{Budget: b, PeriodStart: start.UTC(), PeriodEnd: end.UTC()}
	}
	sp, err := l.store.Spend(ctx, keys)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Spent, out[i].Reserved = sp[i].Spent, sp[i].Reserved
		out[i].Remaining = max(out[i].LimitMicros-sp[i].Spent-sp[i].Reserved, 0)
	}
	return out, nil
}
