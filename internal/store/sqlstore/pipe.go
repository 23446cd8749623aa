package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// On PostgreSQL every statement is a round trip, and a ledger batch holds
// the log's lock (the ledger_state row) across all of its round trips:
// with BEGIN, COMMIT and a dozen or more statements a batch, the sequencers
// of every replica waited on the network, not on the database. Where the
// dialect has a Pipeline, LedgerAppend therefore sends the batch's
// statements in two round trips, the same statements in the same
// transaction as batch.go and ledger.go send one by one:
//
//  1. BEGIN; lock the log's size; the holds' counter rows (INSERT … ON
//     CONFLICT DO NOTHING and one conditional UPDATE … RETURNING per row);
//     DELETE the settled holds … RETURNING; the usage rows; the ledger_closed
//     claims … RETURNING.
//  2. After Go has read the answers (refusals, claims, which holds were
//     still there, the tree's new hashes): the settlements' counter
//     UPDATEs, the reservations rows, the ledger_open rows in and out, the
//     entries, their hashes, the new size, COMMIT.
//
// What needs an answer before it can be written adds a round trip, as it
// adds a statement on the plain path: a split (a hard row refuses a
// batch's sum, then holds go one by one), a stored hash that the ledger's
// cache lacks (another replica appended since), a closing entry that also
// carries a hold, a hold settled in its own batch (its reservations row is
// written after round trip 1 looked for it). All are rare on the hot path.
// A batch that settles no hold is first tried in one round trip, on
// guesses the server checks (guess.go).

// Rows is what a pipelined statement's reader sees: its rows, once.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// Queued is one statement of a pipeline, its SQL in the dialect's
// placeholders.
type Queued struct {
	SQL  string
	Args []any
	Rows func(Rows) error // reads the statement's rows; nil when none are read
}

// pipe queues statements for one connection and sends them with flush.
type pipe struct {
	s    *DB
	conn *sql.Conn
	qs   []Queued
}

func (p *pipe) exec(query string, args ...any) {
	p.qs = append(p.qs, Queued{SQL: p.s.q(query), Args: args})
}

func (p *pipe) query(read func(Rows) error, query string, args ...any) {
	p.qs = append(p.qs, Queued{SQL: p.s.q(query), Args: args, Rows: read})
}

// flush sends what is queued in one round trip.
func (p *pipe) flush(ctx context.Context) error { return p.s.classify(p.send(ctx)) }

// send is flush with the driver's error as it is.
func (p *pipe) send(ctx context.Context) error {
	qs := p.qs
	p.qs = nil
	if len(qs) == 0 {
		return nil
	}
	return p.s.d.Pipeline(ctx, p.conn, qs)
}

// rollback ends a transaction left open or aborted by a failure. When that
// fails too, the connection's state is unknown and database/sql is told to
// close it rather than pool it (driver.ErrBadConn).
func (p *pipe) rollback(ctx context.Context) {
	p.qs = nil
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := p.s.d.Pipeline(ctx, p.conn, []Queued{{SQL: "ROLLBACK"}}); err != nil {
		p.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
}

// one reads a statement's one row into dest; found reports whether it had one.
func one(found *bool, dest ...any) func(Rows) error {
	return func(r Rows) error {
		if r.Next() {
			*found = true
			return r.Scan(dest...)
		}
		return r.Err()
	}
}

// ledgerAppendPiped is LedgerAppend on a dialect with a Pipeline.
func (s *DB) ledgerAppendPiped(ctx context.Context, instance string, entries []ledger.Entry, hashes func(size int64, appended []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	p := &pipe{s: s, conn: conn}
	out, sent, err := s.appendGuessed(ctx, p, instance, entries, hashes) // one round trip (guess.go)
	if sent {
		if err != nil {
			p.rollback(ctx)
			return nil, err
		}
		return out, nil
	}
	out, err = s.appendPiped(ctx, p, instance, entries, hashes)
	if err != nil {
		p.rollback(ctx)
		return nil, err
	}
	return out, nil
}

func (s *DB) appendPiped(ctx context.Context, p *pipe, instance string, entries []ledger.Entry, hashes func(size int64, appended []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	// Round trip 1.
	p.exec(`BEGIN`)
	var start int64
	var locked bool
	p.query(one(&locked, &start), `SELECT size FROM ledger_state WHERE id = 1`+s.d.ForUpdate)
	holds := s.pipeHolds(p, entries)
	settles := pipeSettles(p, entries)
	pipeUsage(p, entries)
	claimed := make([]bool, len(entries))
	pipeClaims(p, entries, claimed, func(e ledger.Entry) bool { return e.Hold == nil })
	if err := p.flush(ctx); err != nil {
		return nil, err
	}
	if !locked {
		return nil, sql.ErrNoRows
	}
	// Go decides; what needs no answer is queued for round trip 2.
	if err := holds.finish(ctx, p, entries); err != nil {
		return nil, err
	}
	if settles.heldHere(p, entries) {
		if err := p.flush(ctx); err != nil { // a hold settled in its own batch: settled once it is written
			return nil, err
		}
	}
	if err := settles.finish(p, entries); err != nil {
		return nil, err
	}
	if pipeClaims(p, entries, claimed, func(e ledger.Entry) bool { return e.Hold != nil && e.Hold.Refused == nil }) {
		if err := p.flush(ctx); err != nil { // a closing entry with a hold: claimed once its hold is decided
			return nil, err
		}
	}
	out, kept := keptEntries(start, entries, claimed)
	if len(kept) > 0 {
		// A hash the ledger's cache lacks is read in the transaction (this
		// sends what is queued along with it).
		hs, err := hashes(start, kept, p.hashReader(ctx))
		if err == nil {
			err = checkHashes(start, kept, hs)
		}
		if err != nil {
			return nil, err
		}
		queueLedgerRows(p, start, instance, kept, hs)
		p.exec(`UPDATE ledger_state SET size = ? WHERE id = 1`, start+int64(len(kept)))
	}
	// Round trip 2.
	p.exec(`COMMIT`)
	if err := p.flush(ctx); err != nil {
		return nil, err
	}
	settles.spends(entries)
	s.noteSize(start + int64(len(kept)))
	return out, nil
}

// pipeInsertRows queues insertRows' statements.
// hashReader reads the hashes at idx on the pipe's connection, sending
// what is queued before them.
func (p *pipe) hashReader(ctx context.Context) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		if len(idx) == 0 {
			return nil, nil
		}
		var hs []tlog.Hash
		var err error
		q, args := hashesQuery(idx)
		p.query(func(r Rows) error { hs, err = readHashes(r, idx); return err }, q, args...)
		if ferr := p.flush(ctx); ferr != nil {
			return nil, ferr
		}
		return hs, err
	})
}

func pipeInsertRows(p *pipe, prefix string, width int, rows [][]any) {
	tuple := "(" + strings.Repeat("?, ", width-1) + "?)"
	for _, n := range chunks(len(rows)) {
		args := make([]any, 0, n*width)
		for _, r := range rows[:n] {
			args = append(args, r...)
		}
		p.exec(prefix+tuple+strings.Repeat(", "+tuple, n-1), args...)
		rows = rows[n:]
	}
}

// pipeUsage queues batchUsage's statements.
func pipeUsage(p *pipe, entries []ledger.Entry) {
	var rows [][]any
	for _, e := range entries {
		if e.Usage != nil {
			rows = append(rows, usageArgs(*e.Usage))
		}
	}
	const width = 22
	tuple := "(" + strings.Repeat("?, ", width-1) + "?)"
	for _, n := range chunks(len(rows)) {
		args := make([]any, 0, n*width)
		for _, r := range rows[:n] {
			args = append(args, r...)
		}
		p.exec(`INSERT INTO usage (`+usageCols+`) VALUES `+tuple+strings.Repeat(", "+tuple, n-1)+` ON CONFLICT (id) DO NOTHING`, args...)
		rows = rows[n:]
	}
}

// pipeClaims queues claimClosed's statements for the closing entries that
// which accepts, setting claimed[i] when they are answered; it reports
// whether it queued any.
func pipeClaims(p *pipe, entries []ledger.Entry, claimed []bool, which func(ledger.Entry) bool) bool {
	var ids []any
	at := map[string][]int{}
	for i, e := range entries {
		if !e.Closes || !which(e) {
			continue
		}
		if _, dup := at[e.RequestID]; !dup {
			ids = append(ids, e.RequestID)
		}
		at[e.RequestID] = append(at[e.RequestID], i)
	}
	for _, n := range chunks(len(ids)) {
		p.query(func(r Rows) error {
			for r.Next() {
				var id string
				if err := r.Scan(&id); err != nil {
					return err
				}
				if is := at[id]; len(is) > 0 {
					claimed[is[0]] = true // of two ends of one request in a batch, the first wins
				}
			}
			return r.Err()
		}, `INSERT INTO ledger_closed (request_id) VALUES (?)`+strings.Repeat(", (?)", n-1)+` ON CONFLICT (request_id) DO NOTHING RETURNING request_id`, ids[:n]...)
		ids = ids[n:]
	}
	return len(at) > 0
}

// hashesQuery is ledgerHashes' statement for idx (padded, deduplicated).
func hashesQuery(idx []int64) (string, []any) {
	seen := make(map[int64]bool, len(idx))
	args := make([]any, 0, len(idx))
	for _, x := range idx {
		if !seen[x] {
			seen[x] = true
			args = append(args, x)
		}
	}
	args = padIn(args)
	return `SELECT idx, hash FROM ledger_hashes WHERE idx IN (` + inList(len(args)) + `)`, args
}

// readHashes reads hashesQuery's rows into the order of idx.
func readHashes(r Rows, idx []int64) ([]tlog.Hash, error) {
	got := make(map[int64]tlog.Hash, len(idx))
	for r.Next() {
		var x int64
		var h []byte
		if err := r.Scan(&x, &h); err != nil {
			return nil, err
		}
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("ledger: stored hash %d is %d bytes", x, len(h))
		}
		got[x] = tlog.Hash(h)
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	out := make([]tlog.Hash, len(idx))
	missing := 0
	for i, x := range idx {
		h, ok := got[x]
		if !ok {
			missing++
		}
		out[i] = h
	}
	if missing > 0 {
		return nil, fmt.Errorf("ledger: %d of %d stored hashes missing", missing, len(idx))
	}
	return out, nil
}

// pipedHolds is batchHolds over a pipe: the sums go in round trip 1; the
// answers decide, after it, whether the holds split.
type pipedHolds struct {
	sums  map[spendRow]*holdSum
	rows  []spendRow
	after map[spendRow]budget.Spend
	ok    map[spendRow]*bool
}

type holdSum struct {
	amount int64
	limit  int64 // the smallest hard limit any hold names for the row
	hard   bool
}

func (s *DB) pipeHolds(p *pipe, entries []ledger.Entry) *pipedHolds {
	for _, e := range entries {
		if e.Hold != nil {
			e.Hold.Refused, e.Hold.Spends = nil, nil // a retried transaction starts afresh
		}
	}
	h := &pipedHolds{sums: holdSums(entries), after: map[spendRow]budget.Spend{}, ok: map[spendRow]*bool{}}
	h.rows = sortedRows(h.sums)
	for _, r := range h.rows {
		p.exec(`INSERT INTO budget_spend (budget_id, period_start, spent, reserved) VALUES (?, ?, 0, 0)
			ON CONFLICT (budget_id, period_start) DO NOTHING`, r.id, r.period)
	}
	for _, r := range h.rows {
		sm := h.sums[r]
		ok := new(bool)
		h.ok[r] = ok
		sp := budget.Spend{BudgetID: r.id, PeriodStart: r.period}
		q, args := addReservedQuery(r, sm.amount, sm.hard, sm.limit)
		p.query(func(rows Rows) error {
			if err := one(ok, &sp.Spent, &sp.Reserved)(rows); err != nil {
				return err
			}
			if *ok {
				h.after[r] = sp
			}
			return nil
		}, q, args...)
	}
	return h
}

// addReservedQuery is addReserved's statement.
func addReservedQuery(r spendRow, amount int64, hard bool, limit int64) (string, []any) {
	if hard {
		return `UPDATE budget_spend SET reserved = reserved + ?
			WHERE budget_id = ? AND period_start = ? AND spent + reserved + ? <= ? RETURNING spent, reserved`,
			[]any{amount, r.id, r.period, amount, limit}
	}
	return `UPDATE budget_spend SET reserved = reserved + ?
			WHERE budget_id = ? AND period_start = ? RETURNING spent, reserved`, []any{amount, r.id, r.period}
}

// finish splits the holds when a row refused its sum (taking back the sums
// the other rows took, then holding one by one, a round trip per charge as
// on the plain path) and queues the reservations rows of the holds kept.
func (h *pipedHolds) finish(ctx context.Context, p *pipe, entries []ledger.Entry) error {
	split := false
	for _, r := range h.rows {
		if !*h.ok[r] {
			split = true
		}
	}
	if split {
		for _, r := range h.rows {
			if *h.ok[r] {
				p.exec(`UPDATE budget_spend SET reserved = reserved - ? WHERE budget_id = ? AND period_start = ?`, h.sums[r].amount, r.id, r.period)
			}
		}
		clear(h.after)
		for _, e := range entries {
			if e.Hold != nil {
				if err := p.holdOne(ctx, e.Hold, h.after); err != nil {
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
			if sp, ok := h.after[rowOf(c)]; ok {
				e.Hold.Spends = append(e.Hold.Spends, sp)
			}
		}
	}
	pipeInsertRows(p, `INSERT INTO reservations (id, instance, amount, charges, created_at) VALUES `, 5, rrows)
	return nil
}

// holdOne is (*DB).holdOne over a pipe.
func (p *pipe) holdOne(ctx context.Context, h *ledger.Hold, after map[spendRow]budget.Spend) error {
	r := h.Reservation
	charges := sortCharges(r.Charges)
	for i, c := range charges {
		sp := budget.Spend{BudgetID: c.BudgetID, PeriodStart: c.PeriodStart}
		var ok bool
		q, args := addReservedQuery(rowOf(c), r.Amount, c.Hard, c.Limit)
		p.query(one(&ok, &sp.Spent, &sp.Reserved), q, args...)
		if err := p.flush(ctx); err != nil {
			return err
		}
		if ok {
			after[rowOf(c)] = sp
			continue
		}
		back := make([]budget.Spend, i)
		found := make([]bool, i+1)
		for j, d := range charges[:i] {
			back[j] = budget.Spend{BudgetID: d.BudgetID, PeriodStart: d.PeriodStart}
			p.query(one(&found[j], &back[j].Spent, &back[j].Reserved), `UPDATE budget_spend SET reserved = reserved - ? WHERE budget_id = ? AND period_start = ?
				RETURNING spent, reserved`, r.Amount, d.BudgetID, d.PeriodStart)
		}
		var spent, reserved int64
		p.query(one(&found[i], &spent, &reserved), `SELECT spent, reserved FROM budget_spend WHERE budget_id = ? AND period_start = ?`,
			c.BudgetID, c.PeriodStart)
		if err := p.flush(ctx); err != nil {
			return err
		}
		if slices.Contains(found, false) {
			return sql.ErrNoRows // as the plain path's Scan: a row it just locked is gone
		}
		for _, b := range back {
			after[spendRow{b.BudgetID, b.PeriodStart}] = b
		}
		h.Refused = &budget.InsufficientError{BudgetID: c.BudgetID, Limit: c.Limit, Remaining: max(c.Limit-spent-reserved, 0), Needed: r.Amount}
		return nil
	}
	return nil
}

// pipedSettles is batchSettles over a pipe: the DELETE … RETURNING goes in
// round trip 1, the counter UPDATEs with the sums of the holds it returned
// in round trip 2.
type pipedSettles struct {
	found map[string]settleHeld
	after map[spendRow]budget.Spend
}

func pipeSettles(p *pipe, entries []ledger.Entry) *pipedSettles {
	st := &pipedSettles{found: map[string]settleHeld{}, after: map[spendRow]budget.Spend{}}
	var ids []any
	for _, e := range entries {
		if e.Settle != nil {
			e.Settle.Settled, e.Settle.Spends = false, nil
			ids = append(ids, e.Settle.ID)
		}
	}
	st.queueDelete(p, ids)
	return st
}

// heldHere queues the DELETE of the holds that entries both make and
// settle (a start and its end in one batch: the caller gave up on the start
// while it waited in a batch being gathered, and its end joined it), once
// holds.finish has queued their reservations rows; round trip 1 looked for
// them before they were written. It reports whether it queued any.
func (st *pipedSettles) heldHere(p *pipe, entries []ledger.Entry) bool {
	held := map[string]bool{}
	for _, e := range entries {
		if e.Hold != nil && e.Hold.Refused == nil {
			held[e.Hold.Reservation.ID] = true
		}
	}
	var ids []any
	for _, e := range entries {
		if e.Settle == nil || !held[e.Settle.ID] {
			continue
		}
		if _, ok := st.found[e.Settle.ID]; !ok {
			ids = append(ids, e.Settle.ID)
		}
	}
	st.queueDelete(p, ids)
	return len(ids) > 0
}

// queueDelete queues the DELETE … RETURNING of the holds ids, the rows it
// returns going to st.found.
func (st *pipedSettles) queueDelete(p *pipe, ids []any) {
	for len(ids) > 0 {
		n := min(len(ids), maxChunk)
		args := padIn(slices.Clone(ids[:n]))
		ids = ids[n:]
		p.query(func(r Rows) error {
			for r.Next() {
				var id, charges string
				var h settleHeld
				if err := r.Scan(&id, &h.amount, &charges); err != nil {
					return err
				}
				if err := fromJSON(charges, &h.charges); err != nil {
					return err
				}
				st.found[id] = h
			}
			return r.Err()
		}, `DELETE FROM reservations WHERE id IN (`+inList(len(args))+`) RETURNING id, amount, charges`, args...)
	}
}

// finish settles the holds that were still there and queues one UPDATE per
// touched counter row.
func (st *pipedSettles) finish(p *pipe, entries []ledger.Entry) error {
	deltas := settleFound(entries, st.found)
	for _, r := range sortedRows(deltas) {
		d := deltas[r]
		sp := budget.Spend{BudgetID: r.id, PeriodStart: r.period}
		st.after[r] = sp // a budget deleted meanwhile has no row: zero counters
		var found bool
		p.query(func(rows Rows) error {
			if err := one(&found, &sp.Spent, &sp.Reserved)(rows); err != nil {
				return err
			}
			st.after[r] = sp
			return nil
		}, `UPDATE budget_spend SET reserved = reserved - ?, spent = spent + ?
			WHERE budget_id = ? AND period_start = ? RETURNING spent, reserved`, d.reserved, d.spent, r.id, r.period)
	}
	return nil
}

// spends fills the settled entries' counters once the batch committed.
func (st *pipedSettles) spends(entries []ledger.Entry) { fillSpends(entries, st.after) }
