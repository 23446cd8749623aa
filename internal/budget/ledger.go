package budget

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
)

// Alerter receives alerts.
type Alerter interface{ Send(alert.Alert) }

// Ledger reserves and settles money for calls against the budgets in force.
type Ledger struct {
	store    Store
	instance string
	budgets  func() []Budget
	alerts   Alerter
	log      *slog.Logger
	now      func() time.Time

	// Heartbeat is how often this instance says it is alive; an instance
	// silent for Stale is presumed dead and its reservations are settled in full.
	Heartbeat, Stale time.Duration
}

// NewLedger returns a Ledger. budgets returns the budgets in force (from the
// snapshot); instance names this gateway process uniquely.
func NewLedger(st Store, instance string, budgets func() []Budget, alerts Alerter, log *slog.Logger) *Ledger {
	return &Ledger{store: st, instance: instance, budgets: budgets, alerts: alerts, log: log, now: time.Now,
		Heartbeat: 5 * time.Second, Stale: 20 * time.Second}
}

type applied struct {
	budget Budget
	charge Charge
}

func (l *Ledger) plan(c Call, now time.Time) []applied {
	var out []applied
	for _, b := range l.budgets() {
		if !b.Applies(c) {
			continue
		}
		start, _ := b.Window(now)
		out = append(out, applied{b, Charge{BudgetID: b.ID, PeriodStart: start.UnixMicro(), Limit: b.LimitMicros, Hard: b.Hard}})
	}
	return out
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
	l       *Ledger
	id      string
	amount  int64
	applied []applied
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

// Reserve holds amount at every budget that applies to c, or returns a
// *Refusal naming a hard budget that cannot cover it. With no budget applying
// it returns a nil Hold and does no store work.
func (l *Ledger) Reserve(ctx context.Context, id string, c Call, amount int64) (*Hold, error) {
	now := l.now()
	ap := l.plan(c, now)
	if len(ap) == 0 {
		return nil, nil
	}
	r := Reservation{ID: id, Instance: l.instance, Amount: amount, CreatedAt: now}
	for _, a := range ap {
		r.Charges = append(r.Charges, a.charge)
	}
	err := l.store.Reserve(ctx, r)
	var ie *InsufficientError
	if errors.As(err, &ie) {
		for _, a := range ap {
			if a.budget.ID == ie.BudgetID {
				return nil, &Refusal{Budget: a.budget, Remaining: ie.Remaining, Needed: amount}
			}
		}
	}
	if err != nil {
		// The transaction may have committed before the error reached us (a
		// cancelled context, a lost connection): release whatever it left,
		// so no reservation outlives a call that never happened.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, rerr := l.store.Settle(rctx, id, 0); rerr != nil {
			l.log.Error("budget: a failed reservation could not be released; recovery charges it in full", "request_id", id, "err", rerr)
		}
		return nil, fmt.Errorf("budget: reserve: %w", err)
	}
	return &Hold{l: l, id: id, amount: amount, applied: ap}, nil
}

// Settle charges actual and releases the rest of the hold. It must be called
// once the call is over, whatever happened to it; it outlives the caller's
// context.
func (h *Hold) Settle(ctx context.Context, actual int64) error {
	if h == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	spends, err := h.l.store.Settle(ctx, h.id, max(actual, 0))
	if err != nil {
		h.l.log.Error("budget: settle failed; the reservation stays held and is settled in full by recovery", "request_id", h.id, "err", err)
		return fmt.Errorf("budget: settle: %w", err)
	}
	h.l.checkThresholds(ctx, h.applied, spends)
	return nil
}

// checkThresholds fires each threshold alert of a budget once per period.
func (l *Ledger) checkThresholds(ctx context.Context, ap []applied, spends []Spend) {
	for _, sp := range spends {
		for _, a := range ap {
			if a.budget.ID != sp.BudgetID || a.budget.LimitMicros <= 0 {
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
	stale := l.now().Add(-l.Stale)
	if exclusive {
		stale = l.now().Add(time.Hour * 24 * 365 * 100)
	}
	ids, err := l.store.Abandoned(ctx, l.instance, stale)
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
	return n, nil
}

func (l *Ledger) settleInFull(ctx context.Context, id string) error {
	// The full amount is the reservation's own; Settle reads it under lock.
	_, err := l.store.Settle(ctx, id, fullAmount)
	return err
}

// fullAmount asks Settle to charge a reservation at its reserved amount.
const fullAmount = -1

// Run keeps this instance's heartbeat and sweeps abandoned reservations until
// ctx ends.
func (l *Ledger) Run(ctx context.Context) error {
	t := time.NewTicker(l.Heartbeat)
	defer t.Stop()
	for {
		if err := l.store.Heartbeat(ctx, l.instance, l.now()); err != nil && ctx.Err() == nil {
			l.log.Warn("budget: heartbeat failed", "err", err)
		}
		if _, err := l.Recover(ctx, false); err != nil && ctx.Err() == nil {
			l.log.Warn("budget: sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
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
