package sqlstore

import (
	"context"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// One round trip a batch, when the guesses hold (PostgreSQL).
//
// The two-round-trip batch (pipe.go) waits for the server's first answer
// only to learn what Go cannot know beforehand: the log's size, whether a
// hard counter refuses a hold, whether a closing entry is the first end of
// its request, which holds a settlement still finds. The size is almost
// always the one this store left after its own last batch (one replica,
// or one that appends more than the others), a hold almost always fits (the
// budget admitted it in memory), and a request is almost always closed once.
// So a batch without settlements is sent whole, COMMIT included, on those
// guesses, and every guess is checked by the server in a statement that
// fails when it is wrong:
//
//   - the size: `UPDATE ledger_state SET size = CASE WHEN size = guess THEN
//     new ELSE 1/(size - size) END`, the log's lock, first as always;
//   - a hold: the counter's conditional UPDATE inside a statement that
//     divides by the number of rows it updated;
//   - a claim: a plain INSERT into ledger_closed, a primary-key violation
//     when the request was closed already.
//
// A failed statement aborts the transaction: the server skips everything
// after it up to the pipeline's end, COMMIT included, so nothing of the
// batch is written. The batch is then rolled back and sent the two-round-trip
// way on the same connection, which decides as before. A miss costs two round
// trips more; after one, the next guessMissPause batches do not guess (several
// replicas appending in turn would otherwise miss every time).
//
// Hashes the ledger's cache lacks are read before the transaction: they are
// at indexes below the guessed size, committed and never rewritten, and if
// the guess is wrong the batch aborts anyway.

// guessMissPause is how many batches go the two-round-trip way after a miss.
const guessMissPause = 16

// noteSize records the log's size after a batch this store committed.
func (s *DB) noteSize(size int64) { s.ledgerNext.Store(size + 1) }

// guessable reports whether a batch can be sent on guesses: it settles no
// hold (a settlement needs the held amounts that the DELETE returns) and
// closes no request twice (the first end wins, decided in Go).
func guessable(entries []ledger.Entry) bool {
	var closes map[string]bool
	for _, e := range entries {
		if e.Settle != nil {
			return false
		}
		if e.Closes {
			if closes == nil {
				closes = map[string]bool{}
			}
			if closes[e.RequestID] {
				return false
			}
			closes[e.RequestID] = true
		}
	}
	return true
}

// appendGuessed sends the batch in one round trip on guesses. sent is false
// when it did not try (nothing to guess from, a batch that needs answers) or
// when the server refused a guess (the transaction is rolled back then); the
// caller then sends the batch the two-round-trip way. An error other than a
// refused guess is returned with sent true: the batch failed (or, when the
// answer to COMMIT was lost, may have committed, as on every path).
func (s *DB) appendGuessed(ctx context.Context, p *pipe, instance string, entries []ledger.Entry, hashes func(size int64, appended []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error)) (out []int64, sent bool, err error) {
	next := s.ledgerNext.Load()
	if next == 0 || s.d.Refused == nil || !guessable(entries) {
		return nil, false, nil
	}
	if s.guessPause.Load() > 0 {
		s.guessPause.Add(-1)
		return nil, false, nil
	}
	start := next - 1
	for _, e := range entries {
		if e.Hold != nil {
			e.Hold.Refused, e.Hold.Spends = nil, nil
		}
	}
	claimed := make([]bool, len(entries))
	for i, e := range entries {
		claimed[i] = e.Closes
	}
	out, kept := keptEntries(start, entries, claimed)
	// Hashes the cache lacks are read on the batch's connection (a pool of
	// one has no other), before BEGIN: nothing else is queued yet.
	hs, err := hashes(start, kept, p.hashReader(ctx))
	if err == nil {
		err = checkHashes(start, kept, hs)
	}
	if err != nil {
		// A hash missing below the guessed size: the guess is wrong (the
		// database is not the one the guess was taken from); the
		// two-round-trip path reads the size and decides (and fails a
		// batch whose hashes are not of its records' shape).
		s.guessPause.Store(guessMissPause)
		return nil, false, nil
	}
	p.exec(`BEGIN`)
	p.exec(`UPDATE ledger_state SET size = CASE WHEN size = ? THEN ? ELSE 1 / (size - size) END WHERE id = 1`, start, start+int64(len(kept)))
	after := guessHolds(p, entries)
	pipeUsage(p, entries)
	guessClaims(p, entries)
	var rrows [][]any
	for _, e := range entries {
		if e.Hold != nil {
			r := e.Hold.Reservation
			rrows = append(rrows, []any{r.ID, r.Instance, r.Amount, toJSON(sortCharges(r.Charges)), micros(r.CreatedAt)})
		}
	}
	pipeInsertRows(p, `INSERT INTO reservations (id, instance, amount, charges, created_at) VALUES `, 5, rrows)
	queueLedgerRows(p, start, instance, kept, hs)
	p.exec(`COMMIT`)
	if err := p.send(ctx); err != nil {
		if !s.d.Refused(err) {
			return nil, true, s.classify(err)
		}
		// A guess the server refused: nothing was written.
		p.rollback(ctx)
		s.guessPause.Store(guessMissPause)
		return nil, false, nil
	}
	for _, e := range entries {
		if e.Hold == nil {
			continue
		}
		for _, c := range sortCharges(e.Hold.Reservation.Charges) {
			if sp, ok := after[rowOf(c)]; ok {
				e.Hold.Spends = append(e.Hold.Spends, *sp)
			}
		}
	}
	s.noteSize(start + int64(len(kept)))
	s.guessed.Add(1)
	return out, true, nil
}

// GuessedBatches is how many ledger batches this store committed in one
// round trip on guesses (tests: that a proof took the guessed path).
func (s *DB) GuessedBatches() int64 { return s.guessed.Load() }

// guessHolds queues the holds' counter updates, each failing when its row
// does not take the batch's sum (a hard limit refuses it, or the row is
// gone), and returns where their answers go.
func guessHolds(p *pipe, entries []ledger.Entry) map[spendRow]*budget.Spend {
	sums := holdSums(entries)
	rows := sortedRows(sums)
	after := make(map[spendRow]*budget.Spend, len(rows))
	for _, r := range rows {
		p.exec(`INSERT INTO budget_spend (budget_id, period_start, spent, reserved) VALUES (?, ?, 0, 0)
			ON CONFLICT (budget_id, period_start) DO NOTHING`, r.id, r.period)
	}
	for _, r := range rows {
		sm := sums[r]
		sp := &budget.Spend{BudgetID: r.id, PeriodStart: r.period}
		after[r] = sp
		q, args := addReservedQuery(r, sm.amount, sm.hard, sm.limit)
		q = strings.TrimSuffix(q, ` RETURNING spent, reserved`)
		var found bool
		var one1 int64
		p.query(one(&found, &sp.Spent, &sp.Reserved, &one1), `WITH u AS (`+q+` RETURNING spent, reserved)
			SELECT (SELECT spent FROM u), (SELECT reserved FROM u), 1 / (SELECT count(*) FROM u)`, args...)
	}
	return after
}

// holdSums sums a batch's holds per counter row, with the smallest hard
// limit any of them names for it.
func holdSums(entries []ledger.Entry) map[spendRow]*holdSum {
	sums := map[spendRow]*holdSum{}
	for _, e := range entries {
		if e.Hold == nil {
			continue
		}
		for _, c := range e.Hold.Reservation.Charges {
			r := rowOf(c)
			sm := sums[r]
			if sm == nil {
				sm = &holdSum{limit: c.Limit}
				sums[r] = sm
			}
			sm.amount += e.Hold.Reservation.Amount
			if c.Hard {
				if !sm.hard || c.Limit < sm.limit {
					sm.limit = c.Limit
				}
				sm.hard = true
			}
		}
	}
	return sums
}

// guessClaims queues the closing entries' claims as plain INSERTs: a
// request closed already fails the batch.
func guessClaims(p *pipe, entries []ledger.Entry) {
	var ids []any
	for _, e := range entries {
		if e.Closes {
			ids = append(ids, e.RequestID)
		}
	}
	for _, n := range chunks(len(ids)) {
		p.exec(`INSERT INTO ledger_closed (request_id) VALUES (?)`+strings.Repeat(", (?)", n-1), ids[:n]...)
		ids = ids[n:]
	}
}

// queueLedgerRows queues the log's rows of a batch's kept entries: the open
// starts in, the closed ones out, the entries and their hashes.
func queueLedgerRows(p *pipe, start int64, instance string, kept []ledger.Entry, hs [][]tlog.Hash) {
	var oRows [][]any
	var closed []any
	for i, e := range kept {
		switch {
		case e.Opens:
			oRows = append(oRows, []any{e.RequestID, instance, start + int64(i)})
		case e.Closes:
			closed = append(closed, e.RequestID)
		}
	}
	pipeInsertRows(p, `INSERT INTO ledger_open (request_id, instance, idx) VALUES `, 3, oRows)
	for len(closed) > 0 {
		n := min(len(closed), maxChunk)
		args := padIn(append([]any(nil), closed[:n]...))
		closed = closed[n:]
		p.exec(`DELETE FROM ledger_open WHERE request_id IN (`+inList(len(args))+`)`, args...)
	}
	pipeLogRows(p, start, kept, hs)
}

// pipeLogRows queues a batch's entries and their stored hashes as one
// INSERT each, every column one array parameter (PostgreSQL's unnest):
// multi-row INSERTs took 3-4 statements per table for a batch of 50, each
// with its own bind, execution and answer on the sequencer's path. The
// stored hashes of entries start, start+1, … are consecutive from
// tlog.StoredHashCount(start), so their indexes are an offset, not a column.
func pipeLogRows(p *pipe, start int64, kept []ledger.Entry, hs [][]tlog.Hash) {
	if len(kept) == 0 {
		return
	}
	idx := make([]int64, len(kept))
	ids := make([]string, len(kept))
	data := make([][]byte, len(kept))
	n := 0
	for i, e := range kept {
		idx[i], ids[i], data[i] = start+int64(i), e.RequestID, e.Data
		n += len(hs[i])
	}
	hashes := make([][]byte, 0, n)
	for i := range hs {
		for j := range hs[i] {
			hashes = append(hashes, hs[i][j][:])
		}
	}
	p.exec(`INSERT INTO ledger_entries (idx, request_id, data) SELECT * FROM unnest(?::bigint[], ?::text[], ?::bytea[])`, idx, ids, data)
	p.exec(`INSERT INTO ledger_hashes (idx, hash) SELECT ?::bigint + o - 1, h FROM unnest(?::bytea[]) WITH ORDINALITY AS t (h, o)`,
		tlog.StoredHashCount(start), hashes)
}
