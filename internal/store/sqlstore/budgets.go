package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

const budgetCols = `id, scope, scope_id, model, period, time_zone, limit_micros, hard, clamp, thresholds, created_at, version`

// CreateBudget implements budget.Store.
func (s *DB) CreateBudget(ctx context.Context, b budget.Budget) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO budgets (`+budgetCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
			b.ID, string(b.Scope), b.ScopeID, b.Model, string(b.Period), b.TimeZone, b.LimitMicros, boolInt(b.Hard), boolInt(b.Clamp),
			toJSON(b.Thresholds), micros(b.CreatedAt)); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
}

func scanBudget(row interface{ Scan(...any) error }) (budget.Budget, error) {
	var b budget.Budget
	var scope, period, thresholds string
	var hard, clamp int
	var created int64
	err := row.Scan(&b.ID, &scope, &b.ScopeID, &b.Model, &period, &b.TimeZone, &b.LimitMicros, &hard, &clamp, &thresholds, &created, &b.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return b, store.ErrNotFound
	}
	if err != nil {
		return b, err
	}
	b.Scope, b.Period, b.Hard, b.Clamp, b.CreatedAt = budget.Scope(scope), budget.Period(period), hard != 0, clamp != 0, fromMicros(created)
	return b, fromJSON(thresholds, &b.Thresholds)
}

// Budget implements budget.Store.
func (s *DB) Budget(ctx context.Context, id string) (budget.Budget, error) {
	return scanBudget(s.db.QueryRowContext(ctx, s.q(`SELECT `+budgetCols+` FROM budgets WHERE id = ?`), id))
}

// ListBudgets implements budget.Store.
func (s *DB) ListBudgets(ctx context.Context) ([]budget.Budget, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+budgetCols+` FROM budgets ORDER BY created_at, id`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []budget.Budget
	for rows.Next() {
		b, err := scanBudget(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// UpdateBudget implements budget.Store: limit, model, hard, clamp, thresholds
// and time zone change; scope and period do not (delete and create instead).
func (s *DB) UpdateBudget(ctx context.Context, b budget.Budget, version int64) (budget.Budget, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE budgets SET model = ?, time_zone = ?, limit_micros = ?, hard = ?, clamp = ?, thresholds = ?, version = version + 1
			WHERE id = ? AND (? = 0 OR version = ?)`,
			b.Model, b.TimeZone, b.LimitMicros, boolInt(b.Hard), boolInt(b.Clamp), toJSON(b.Thresholds), b.ID, version, version)
		if err != nil {
			return err
		}
		if err := s.checkVersioned(ctx, tx, res, "budgets", b.ID); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
	if err != nil {
		return budget.Budget{}, err
	}
	return s.Budget(ctx, b.ID)
}

// DeleteBudget implements budget.Store; its counters go with it.
func (s *DB) DeleteBudget(ctx context.Context, id string, version int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM budgets WHERE id = ? AND (? = 0 OR version = ?)`, id, version, version)
		if err != nil {
			return err
		}
		if err := s.checkVersioned(ctx, tx, res, "budgets", id); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM budget_spend WHERE budget_id = ?`, id); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
}

// sortCharges orders charges the same way in every transaction, so that two
// reservations touching the same rows lock them in one order (no deadlock).
func sortCharges(cs []budget.Charge) []budget.Charge {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b budget.Charge) int {
		if c := strings.Compare(a.BudgetID, b.BudgetID); c != 0 {
			return c
		}
		return int(a.PeriodStart - b.PeriodStart)
	})
	return cs
}

// Reserve implements budget.Store. The limit check and the increment are one
// conditional UPDATE: under concurrency (SQLite's serialised writers, or
// PostgreSQL's row locks, whose READ COMMITTED re-check sees the latest row)
// no two reservations can both pass on the same remaining money.
func (s *DB) Reserve(ctx context.Context, r budget.Reservation) error {
	charges := sortCharges(r.Charges)
	return s.tx(ctx, func(tx *sql.Tx) error {
		// Work that takes no lock on the hot counter rows comes first, so that
		// the row locks are held for as few round trips as possible (what
		// bounds throughput on one hot budget in PostgreSQL).
		for _, c := range charges {
			if _, err := s.hotExec(ctx, tx, `INSERT INTO budget_spend (budget_id, period_start, spent, reserved) VALUES (?, ?, 0, 0)
				ON CONFLICT (budget_id, period_start) DO NOTHING`, c.BudgetID, c.PeriodStart); err != nil {
				return err
			}
		}
		if _, err := s.hotExec(ctx, tx, `INSERT INTO reservations (id, instance, amount, charges, created_at) VALUES (?, ?, ?, ?, ?)`,
			r.ID, r.Instance, r.Amount, toJSON(charges), micros(r.CreatedAt)); err != nil {
			return err
		}
		for _, c := range charges {
			if !c.Hard {
				if _, err := s.hotExec(ctx, tx, `UPDATE budget_spend SET reserved = reserved + ? WHERE budget_id = ? AND period_start = ?`,
					r.Amount, c.BudgetID, c.PeriodStart); err != nil {
					return err
				}
				continue
			}
			res, err := s.hotExec(ctx, tx, `UPDATE budget_spend SET reserved = reserved + ?
				WHERE budget_id = ? AND period_start = ? AND spent + reserved + ? <= ?`,
				r.Amount, c.BudgetID, c.PeriodStart, r.Amount, c.Limit)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				var spent, reserved int64
				if err := s.hotQueryRow(ctx, tx, `SELECT spent, reserved FROM budget_spend WHERE budget_id = ? AND period_start = ?`,
					c.BudgetID, c.PeriodStart).Scan(&spent, &reserved); err != nil {
					return err
				}
				// Returning an error rolls the whole transaction back: nothing stays reserved.
				return &budget.InsufficientError{BudgetID: c.BudgetID, Limit: c.Limit, Remaining: max(c.Limit-spent-reserved, 0), Needed: r.Amount}
			}
		}
		return nil
	})
}

// Settle implements budget.Store. DELETE … RETURNING makes exactly one
// settler win when a reservation is settled twice (the call, and a recovery).
// A negative actual charges the reservation's own amount.
func (s *DB) Settle(ctx context.Context, id string, actual int64) ([]budget.Spend, error) {
	var out []budget.Spend
	err := s.tx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		var amount int64
		var charges string
		err := s.hotQueryRow(ctx, tx, `DELETE FROM reservations WHERE id = ? RETURNING amount, charges`, id).Scan(&amount, &charges)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		var cs []budget.Charge
		if err := fromJSON(charges, &cs); err != nil {
			return err
		}
		if actual < 0 { // recovery: charge the reservation in full
			actual = amount
		}
		for _, c := range cs {
			sp := budget.Spend{BudgetID: c.BudgetID, PeriodStart: c.PeriodStart}
			if err := s.hotQueryRow(ctx, tx, `UPDATE budget_spend SET reserved = reserved - ?, spent = spent + ?
				WHERE budget_id = ? AND period_start = ? RETURNING spent, reserved`, amount, actual, c.BudgetID, c.PeriodStart).
				Scan(&sp.Spent, &sp.Reserved); err != nil && !errors.Is(err, sql.ErrNoRows) { // budget deleted meanwhile
				return err
			}
			out = append(out, sp)
		}
		return nil
	})
	return out, err
}

// Spend implements budget.Store.
func (s *DB) Spend(ctx context.Context, keys []budget.Charge) ([]budget.Spend, error) {
	out := make([]budget.Spend, 0, len(keys))
	for _, k := range keys {
		sp := budget.Spend{BudgetID: k.BudgetID, PeriodStart: k.PeriodStart}
		err := s.db.QueryRowContext(ctx, s.q(`SELECT spent, reserved FROM budget_spend WHERE budget_id = ? AND period_start = ?`),
			k.BudgetID, k.PeriodStart).Scan(&sp.Spent, &sp.Reserved)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		out = append(out, sp)
	}
	return out, nil
}

// Heartbeat records that instance is alive, or fails with store.ErrFenced
// once a sweep claimed it: a claimed instance never beats again, and the row
// lock makes a sweep's claim and a late heartbeat exclude each other. It
// returns the time recorded: the server's clock, read by the statement
// itself, where the dialect has one (PostgreSQL), else at. Sweeps compare
// heartbeats with a staleBefore in that same clock, so a replica whose own
// clock runs ahead neither looks alive longer nor fences the others early.
func (s *DB) Heartbeat(ctx context.Context, instance string, at time.Time) (time.Time, error) {
	q, args := `INSERT INTO instances (id, heartbeat_at, claimed) VALUES (?, ?, 0)
		ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at WHERE instances.claimed = 0
		RETURNING heartbeat_at`, []any{instance, micros(at)}
	if s.d.Clock != "" {
		q, args = `INSERT INTO instances (id, heartbeat_at, claimed) VALUES (?, `+s.d.Clock+`, 0)
		ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at WHERE instances.claimed = 0
		RETURNING heartbeat_at`, []any{instance}
	}
	var got int64
	err := s.hotQueryRow(ctx, nil, q, args...).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, store.ErrFenced
	}
	if err != nil {
		return time.Time{}, s.classify(err)
	}
	return time.UnixMicro(got).UTC(), nil
}

// claimStale fences every instance but self whose heartbeat is older than
// staleBefore (in the clock Heartbeat records): from now on it cannot beat,
// so its leftovers are safe to close.
func (s *DB) claimStale(ctx context.Context, self string, staleBefore time.Time) error {
	_, err := s.exec(ctx, s.db, `UPDATE instances SET claimed = 1 WHERE claimed = 0 AND heartbeat_at < ? AND id <> ?`, micros(staleBefore), self)
	return err
}

// Abandoned implements budget.Store: it first claims (fences) the instances
// silent since staleBefore, then returns the reservations of every instance
// that is claimed or unknown. An instance alive in a newer epoch has a new,
// unclaimed row, so its calls are never returned.
func (s *DB) Abandoned(ctx context.Context, self string, staleBefore time.Time) ([]string, error) {
	if err := s.claimStale(ctx, self, staleBefore); err != nil {
		return nil, err
	}
	return s.queryStrings(ctx, nil, `SELECT id FROM reservations WHERE instance <> ?
		AND instance NOT IN (SELECT id FROM instances WHERE claimed = 0) ORDER BY created_at`, self)
}

// Owned implements budget.Store.
func (s *DB) Owned(ctx context.Context, instance string, before time.Time) ([]string, error) {
	return s.queryStrings(ctx, nil, `SELECT id FROM reservations WHERE instance = ? AND created_at < ? ORDER BY created_at`, instance, micros(before))
}

// MarkAlert implements budget.Store.
func (s *DB) MarkAlert(ctx context.Context, budgetID string, periodStart int64, threshold int) (bool, error) {
	res, err := s.exec(ctx, s.db, `INSERT INTO budget_alerts (budget_id, period_start, threshold, fired_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (budget_id, period_start, threshold) DO NOTHING`, budgetID, periodStart, threshold, micros(time.Now()))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
