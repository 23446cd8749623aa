package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// The sequencer's batches (docs/design/one-write-per-phase.md): one
// transaction per batch appends the log records and, with them, makes the
// calls' holds durable (start entries), settles them and stores the usage
// rows (end entries). Each budget counter row the batch touches is updated
// once per batch, with the sum of the batch's holds or settlements on it.

// spendRow is one budget-period counter row.
type spendRow struct {
	id     string
	period int64
}

func rowOf(c budget.Charge) spendRow { return spendRow{c.BudgetID, c.PeriodStart} }

func sortedRows[V any](m map[spendRow]V) []spendRow {
	rows := make([]spendRow, 0, len(m))
	for r := range m {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b spendRow) int {
		if c := strings.Compare(a.id, b.id); c != 0 {
			return c
		}
		return int(a.period - b.period)
	})
	return rows
}

// batchHolds makes the start entries' holds durable: the reservations rows,
// and one conditional UPDATE per touched counter row adding the sum of the
// batch's holds on it. If a hard row refuses the sum (memory admitted more
// than the store has: another replica spent, an admin lowered a limit), the
// sums are taken back and the holds are applied one by one, in order, in the
// same transaction: only the holds that no longer fit are refused (their
// entries' Hold.Refused is set, and the caller drops them). The store stays
// the judge of "never over a hard limit".
func (s *DB) batchHolds(ctx context.Context, tx *sql.Tx, entries []ledger.Entry) error {
	anyHold := false
	for _, e := range entries {
		if e.Hold != nil {
			e.Hold.Refused, e.Hold.Spends = nil, nil // a retried transaction starts afresh
			anyHold = true
		}
	}
	if !anyHold {
		return nil
	}
	sums := holdSums(entries)
	rows := sortedRows(sums)
	for _, r := range rows {
		if _, err := s.hotExec(ctx, tx, `INSERT INTO budget_spend (budget_id, period_start, spent, reserved) VALUES (?, ?, 0, 0)
			ON CONFLICT (budget_id, period_start) DO NOTHING`, r.id, r.period); err != nil {
			return err
		}
	}
	after := map[spendRow]budget.Spend{}
	var done []spendRow
	split := false
	for _, r := range rows {
		sm := sums[r]
		sp, ok, err := s.addReserved(ctx, tx, r, sm.amount, sm.hard, sm.limit)
		if err != nil {
			return err
		}
		if !ok {
			split = true
			break
		}
		after[r] = sp
		done = append(done, r)
	}
	if split {
		for _, r := range done { // take the sums back; the transaction goes on
			if _, err := s.hotExec(ctx, tx, `UPDATE budget_spend SET reserved = reserved - ? WHERE budget_id = ? AND period_start = ?`,
				sums[r].amount, r.id, r.period); err != nil {
				return err
			}
		}
		clear(after)
		for _, e := range entries {
			if e.Hold != nil {
				if err := s.holdOne(ctx, tx, e.Hold, after); err != nil {
					return err
				}
			}
		}
	}
	var rrows [][]any
	for _, e := range entries {
		if e.Hold == nil || e.Hold.Refused != nil {
			continue
		}
		r := e.Hold.Reservation
		charges := sortCharges(r.Charges)
		rrows = append(rrows, []any{r.ID, r.Instance, r.Amount, toJSON(charges), micros(r.CreatedAt)})
		for _, c := range charges {
			if sp, ok := after[rowOf(c)]; ok {
				e.Hold.Spends = append(e.Hold.Spends, sp)
			}
		}
	}
	return s.insertRows(ctx, tx, `INSERT INTO reservations (id, instance, amount, charges, created_at) VALUES `, 5, rrows)
}

// addReserved adds amount to a row's reserved money, only within limit when
// hard; ok is false (and nothing changed) when the limit refuses it.
func (s *DB) addReserved(ctx context.Context, tx *sql.Tx, r spendRow, amount int64, hard bool, limit int64) (budget.Spend, bool, error) {
	sp := budget.Spend{BudgetID: r.id, PeriodStart: r.period}
	var err error
	if hard {
		err = s.hotQueryRow(ctx, tx, `UPDATE budget_spend SET reserved = reserved + ?
			WHERE budget_id = ? AND period_start = ? AND spent + reserved + ? <= ? RETURNING spent, reserved`,
			amount, r.id, r.period, amount, limit).Scan(&sp.Spent, &sp.Reserved)
	} else {
		err = s.hotQueryRow(ctx, tx, `UPDATE budget_spend SET reserved = reserved + ?
			WHERE budget_id = ? AND period_start = ? RETURNING spent, reserved`, amount, r.id, r.period).Scan(&sp.Spent, &sp.Reserved)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return sp, false, nil
	}
	return sp, err == nil, err
}

// holdOne applies one hold charge by charge (the split path); a hard charge
// that cannot cover it takes back the hold's earlier charges and refuses it.
func (s *DB) holdOne(ctx context.Context, tx *sql.Tx, h *ledger.Hold, after map[spendRow]budget.Spend) error {
	r := h.Reservation
	charges := sortCharges(r.Charges)
	for i, c := range charges {
		sp, ok, err := s.addReserved(ctx, tx, rowOf(c), r.Amount, c.Hard, c.Limit)
		if err != nil {
			return err
		}
		if ok {
			after[rowOf(c)] = sp
			continue
		}
		for _, d := range charges[:i] {
			if err := s.hotQueryRow(ctx, tx, `UPDATE budget_spend SET reserved = reserved - ? WHERE budget_id = ? AND period_start = ?
				RETURNING spent, reserved`, r.Amount, d.BudgetID, d.PeriodStart).Scan(&sp.Spent, &sp.Reserved); err != nil {
				return err
			}
			after[rowOf(d)] = budget.Spend{BudgetID: d.BudgetID, PeriodStart: d.PeriodStart, Spent: sp.Spent, Reserved: sp.Reserved}
		}
		var spent, reserved int64
		if err := s.hotQueryRow(ctx, tx, `SELECT spent, reserved FROM budget_spend WHERE budget_id = ? AND period_start = ?`,
			c.BudgetID, c.PeriodStart).Scan(&spent, &reserved); err != nil {
			return err
		}
		h.Refused = &budget.InsufficientError{BudgetID: c.BudgetID, Limit: c.Limit, Remaining: max(c.Limit-spent-reserved, 0), Needed: r.Amount}
		return nil
	}
	return nil
}

// batchSettles settles the end entries' holds: one DELETE … RETURNING for
// all of them (only the holds still there are settled: a sweep or an earlier
// attempt whose answer was lost may have settled some), then one UPDATE per
// touched counter row with the sums.
func (s *DB) batchSettles(ctx context.Context, tx *sql.Tx, entries []ledger.Entry) error {
	var ids []any
	for _, e := range entries {
		if e.Settle != nil {
			e.Settle.Settled, e.Settle.Spends = false, nil
			ids = append(ids, e.Settle.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	found := map[string]settleHeld{}
	for len(ids) > 0 {
		n := min(len(ids), maxChunk)
		args := padIn(slices.Clone(ids[:n]))
		ids = ids[n:]
		rows, err := s.hotQuery(ctx, tx, `DELETE FROM reservations WHERE id IN (`+inList(len(args))+`) RETURNING id, amount, charges`, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id, charges string
			var h settleHeld
			if err := rows.Scan(&id, &h.amount, &charges); err != nil {
				rows.Close()
				return err
			}
			if err := fromJSON(charges, &h.charges); err != nil {
				rows.Close()
				return err
			}
			found[id] = h
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	deltas := settleFound(entries, found)
	after := map[spendRow]budget.Spend{}
	for _, r := range sortedRows(deltas) {
		d := deltas[r]
		sp := budget.Spend{BudgetID: r.id, PeriodStart: r.period}
		err := s.hotQueryRow(ctx, tx, `UPDATE budget_spend SET reserved = reserved - ?, spent = spent + ?
			WHERE budget_id = ? AND period_start = ? RETURNING spent, reserved`, d.reserved, d.spent, r.id, r.period).Scan(&sp.Spent, &sp.Reserved)
		if err != nil && !errors.Is(err, sql.ErrNoRows) { // budget deleted meanwhile
			return err
		}
		after[r] = sp
	}
	fillSpends(entries, after)
	return nil
}

// settleHeld is a hold a batch deleted: what it held, and where.
type settleHeld struct {
	amount  int64
	charges []budget.Charge
}

// settleDelta is what a batch moves on one counter row.
type settleDelta struct{ reserved, spent int64 }

// settleFound marks settled the end entries whose holds the batch deleted
// (found; the same id twice in a batch settles once), names the rows each
// touched, and sums what they move on each counter row.
func settleFound(entries []ledger.Entry, found map[string]settleHeld) map[spendRow]*settleDelta {
	deltas := map[spendRow]*settleDelta{}
	for _, e := range entries {
		if e.Settle == nil {
			continue
		}
		h, ok := found[e.Settle.ID]
		if !ok {
			continue
		}
		delete(found, e.Settle.ID)
		actual := e.Settle.Actual
		if actual < 0 {
			actual = h.amount
		}
		e.Settle.Settled = true
		e.Settle.Spends = make([]budget.Spend, 0, len(h.charges))
		for _, c := range h.charges {
			d := deltas[rowOf(c)]
			if d == nil {
				d = &settleDelta{}
				deltas[rowOf(c)] = d
			}
			d.reserved += h.amount
			d.spent += actual
			e.Settle.Spends = append(e.Settle.Spends, budget.Spend{BudgetID: c.BudgetID, PeriodStart: c.PeriodStart})
		}
	}
	return deltas
}

// fillSpends gives the settled entries their rows' counters after the batch.
func fillSpends(entries []ledger.Entry, after map[spendRow]budget.Spend) {
	for _, e := range entries {
		if e.Settle == nil {
			continue
		}
		for i, sp := range e.Settle.Spends {
			e.Settle.Spends[i] = after[spendRow{sp.BudgetID, sp.PeriodStart}]
		}
	}
}

// batchUsage stores the end entries' usage rows; a row stored already (a
// retried batch whose answer was lost) is kept as it is.
func (s *DB) batchUsage(ctx context.Context, tx *sql.Tx, entries []ledger.Entry) error {
	var rows [][]any
	for _, e := range entries {
		if e.Usage != nil {
			rows = append(rows, usageArgs(*e.Usage))
		}
	}
	if len(rows) == 0 {
		return nil
	}
	const width = 22
	tuple := "(" + strings.Repeat("?, ", width-1) + "?)"
	for _, n := range chunks(len(rows)) {
		args := make([]any, 0, n*width)
		for _, r := range rows[:n] {
			args = append(args, r...)
		}
		q := `INSERT INTO usage (` + usageCols + `) VALUES ` + tuple + strings.Repeat(", "+tuple, n-1) + ` ON CONFLICT (id) DO NOTHING`
		if _, err := s.hotExec(ctx, tx, q, args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// claimClosed claims the closing entries' requests in ledger_closed, with
// multi-row INSERTs (one round trip per chunk, not per record): claimed[i]
// is true for the closing entries that are the first end of their request;
// of two in one batch the earlier one wins.
func (s *DB) claimClosed(ctx context.Context, tx *sql.Tx, entries []ledger.Entry) ([]bool, error) {
	claimed := make([]bool, len(entries))
	var ids []any
	at := map[string][]int{}
	for i, e := range entries {
		if !e.Closes || (e.Hold != nil && e.Hold.Refused != nil) {
			continue
		}
		if _, dup := at[e.RequestID]; !dup {
			ids = append(ids, e.RequestID)
		}
		at[e.RequestID] = append(at[e.RequestID], i)
	}
	for _, n := range chunks(len(ids)) {
		q := `INSERT INTO ledger_closed (request_id) VALUES (?)` + strings.Repeat(", (?)", n-1) + ` ON CONFLICT (request_id) DO NOTHING RETURNING request_id`
		rows, err := s.hotQuery(ctx, tx, q, ids[:n]...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			if is := at[id]; len(is) > 0 {
				claimed[is[0]] = true
			}
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		ids = ids[n:]
	}
	return claimed, nil
}

// deleteOpen forgets the open starts of closed requests.
func (s *DB) deleteOpen(ctx context.Context, tx *sql.Tx, ids []any) error {
	for len(ids) > 0 {
		n := min(len(ids), maxChunk)
		args := padIn(slices.Clone(ids[:n]))
		if _, err := s.hotExec(ctx, tx, `DELETE FROM ledger_open WHERE request_id IN (`+inList(len(args))+`)`, args...); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}
