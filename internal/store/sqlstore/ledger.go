package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// LedgerAppend implements ledger.Store. The tree size row is locked for the
// transaction (FOR UPDATE on PostgreSQL; SQLite's writer lock), so appends from
// several replicas are serialised and each sees the hashes of the ones before.
// A closing entry first claims its request in ledger_closed (primary key): a
// request already closed keeps its one end record and the entry is dropped.
func (s *DB) LedgerAppend(ctx context.Context, instance string, entries []ledger.Entry, hashes func(size int64, appended []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	if s.d.Pipeline != nil {
		return s.ledgerAppendPiped(ctx, instance, entries, hashes) // the same transaction in two round trips (pipe.go)
	}
	var out []int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var start int64
		if err := s.hotQueryRow(ctx, tx, `SELECT size FROM ledger_state WHERE id = 1`+s.d.ForUpdate).Scan(&start); err != nil {
			return err
		}
		// The calls' holds, settlements and usage rows ride the batch (batch.go).
		if err := s.batchHolds(ctx, tx, entries); err != nil {
			return err
		}
		if err := s.batchSettles(ctx, tx, entries); err != nil {
			return err
		}
		if err := s.batchUsage(ctx, tx, entries); err != nil {
			return err
		}
		claimed, err := s.claimClosed(ctx, tx, entries)
		if err != nil {
			return err
		}
		var kept []ledger.Entry
		out, kept = keptEntries(start, entries, claimed)
		if len(kept) == 0 {
			return nil
		}
		reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return s.ledgerHashes(ctx, tx, idx) })
		hs, err := hashes(start, kept, reader)
		if err == nil {
			err = checkHashes(start, kept, hs)
		}
		if err != nil {
			return err
		}
		// Multi-row INSERTs: a batch costs a few round trips, not a few per record.
		eRows, hRows, oRows, closed := ledgerRows(start, instance, kept, hs)
		if err := s.insertRows(ctx, tx, `INSERT INTO ledger_open (request_id, instance, idx) VALUES `, 3, oRows); err != nil {
			return err
		}
		if err := s.deleteOpen(ctx, tx, closed); err != nil {
			return err
		}
		if err := s.insertRows(ctx, tx, `INSERT INTO ledger_entries (idx, request_id, data) VALUES `, 3, eRows); err != nil {
			return err
		}
		if err := s.insertRows(ctx, tx, `INSERT INTO ledger_hashes (idx, hash) VALUES `, 2, hRows); err != nil {
			return err
		}
		_, err = s.hotExec(ctx, tx, `UPDATE ledger_state SET size = ? WHERE id = 1`, start+int64(len(kept)))
		return err
	})
	return out, err
}

// insertRows inserts rows of width columns with multi-row INSERT statements
// whose sizes are powers of two (chunks), so that their texts stay few and
// their preparations are reused.
func (s *DB) insertRows(ctx context.Context, tx *sql.Tx, prefix string, width int, rows [][]any) error {
	tuple := "(" + strings.Repeat("?, ", width-1) + "?)"
	for _, n := range chunks(len(rows)) {
		args := make([]any, 0, n*width)
		for _, r := range rows[:n] {
			args = append(args, r...)
		}
		q := prefix + tuple + strings.Repeat(", "+tuple, n-1)
		if _, err := s.hotExec(ctx, tx, q, args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// ledgerHashes reads stored hashes, inside tx when tx is not nil.
func (s *DB) ledgerHashes(ctx context.Context, tx *sql.Tx, idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	if len(idx) == 0 {
		return out, nil
	}
	pos := make(map[int64][]int, len(idx))
	args := make([]any, 0, len(idx))
	for i, x := range idx {
		if _, ok := pos[x]; !ok {
			args = append(args, x)
		}
		pos[x] = append(pos[x], i)
	}
	args = padIn(args)
	rows, err := s.hotQuery(ctx, tx, `SELECT idx, hash FROM ledger_hashes WHERE idx IN (`+inList(len(args))+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		var x int64
		var h []byte
		if err := rows.Scan(&x, &h); err != nil {
			return nil, err
		}
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("ledger: stored hash %d is %d bytes", x, len(h))
		}
		for _, i := range pos[x] {
			copy(out[i][:], h)
			found++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if found != len(idx) {
		return nil, fmt.Errorf("ledger: %d of %d stored hashes missing", len(idx)-found, len(idx))
	}
	return out, nil
}

// LedgerHashes implements ledger.Store.
func (s *DB) LedgerHashes(ctx context.Context, idx []int64) ([]tlog.Hash, error) {
	return s.ledgerHashes(ctx, nil, idx)
}

// LedgerSize implements ledger.Store.
func (s *DB) LedgerSize(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT size FROM ledger_state WHERE id = 1`)).Scan(&n)
	return n, err
}

// LedgerEntries implements ledger.Store: entries [from, to), in order.
func (s *DB) LedgerEntries(ctx context.Context, from, to int64) ([][]byte, error) {
	return s.LedgerEntriesMax(ctx, from, to, 0)
}

// LedgerEntriesMax implements ledger.ExportStore: entries [from, to), in
// order, stopping before the entry that would bring their total size past
// maxBytes (at least one; maxBytes ≤ 0: no bound). The rows are read one by
// one, so a range of large entries is not held whole to be cut.
func (s *DB) LedgerEntriesMax(ctx context.Context, from, to int64, maxBytes int) ([][]byte, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT idx, data FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx`), from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([][]byte, 0, min(to-from, 1024))
	total := 0
	for rows.Next() {
		var idx int64
		var d []byte
		if err := rows.Scan(&idx, &d); err != nil {
			return nil, err
		}
		if idx != from+int64(len(out)) {
			return nil, fmt.Errorf("ledger: entry %d missing", from+int64(len(out)))
		}
		if total += len(d); maxBytes > 0 && len(out) > 0 && total > maxBytes {
			return out, nil
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// LedgerFind implements ledger.Store: the indexes of a request's records.
func (s *DB) LedgerFind(ctx context.Context, requestID string) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT idx FROM ledger_entries WHERE request_id = ? ORDER BY idx`), requestID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var i int64
		if err := rows.Scan(&i); err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// LedgerSaveCheckpoint implements ledger.Store; an older checkpoint never
// replaces a newer one.
func (s *DB) LedgerSaveCheckpoint(ctx context.Context, size int64, signed []byte) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE ledger_checkpoints SET size = ?, signed = ?, signed_at = ? WHERE id = 1 AND size <= ?`,
			size, signed, micros(time.Now()), size)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			_, err = s.exec(ctx, tx, `INSERT INTO ledger_checkpoints (id, size, signed, signed_at) VALUES (1, ?, ?, ?)
				ON CONFLICT (id) DO NOTHING`, size, signed, micros(time.Now()))
		}
		return err
	})
}

// LedgerCheckpoint implements ledger.Store.
func (s *DB) LedgerCheckpoint(ctx context.Context) (int64, []byte, error) {
	var n int64
	var b []byte
	err := s.db.QueryRowContext(ctx, s.q(`SELECT size, signed FROM ledger_checkpoints WHERE id = 1`)).Scan(&n, &b)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, store.ErrNotFound
	}
	return n, b, err
}

// LedgerAbandoned implements ledger.Store: open calls of instances that are
// gone. Like Abandoned it first claims the instances silent since
// staleBefore, then returns the open calls of claimed or unknown ones.
func (s *DB) LedgerAbandoned(ctx context.Context, self string, staleBefore time.Time) ([]ledger.OpenCall, error) {
	if err := s.claimStale(ctx, self, staleBefore); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT o.request_id, e.data FROM ledger_open o JOIN ledger_entries e ON e.idx = o.idx
		WHERE o.instance <> ? AND o.instance NOT IN (SELECT id FROM instances WHERE claimed = 0) ORDER BY o.idx`), self)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ledger.OpenCall
	for rows.Next() {
		var oc ledger.OpenCall
		if err := rows.Scan(&oc.RequestID, &oc.Start); err != nil {
			return nil, err
		}
		out = append(out, oc)
	}
	return out, rows.Err()
}

// checkHashes fails a batch whose stored hashes are not, record by record,
// as many as tlog gives each: they are written one after the other from
// tlog.StoredHashCount(start), so one too few or too many would shift every
// hash after it (a log that does not verify) or take the next batch's first
// index (every later batch refused), and fewer lists than records would
// index past them.
func checkHashes(start int64, kept []ledger.Entry, hs [][]tlog.Hash) error {
	if len(hs) != len(kept) {
		return fmt.Errorf("sqlstore: %d lists of stored hashes for %d records", len(hs), len(kept))
	}
	for i := range hs {
		n := start + int64(i)
		if want := tlog.StoredHashCount(n+1) - tlog.StoredHashCount(n); int64(len(hs[i])) != want {
			return fmt.Errorf("sqlstore: %d stored hashes for record %d, want %d", len(hs[i]), n, want)
		}
	}
	return nil
}

// keptEntries gives each entry of a batch its index from start, or -1 when it
// is not appended (a hold a hard budget refused: the call does not start; an
// end whose request was closed already), and returns the entries appended.
func keptEntries(start int64, entries []ledger.Entry, claimed []bool) (out []int64, kept []ledger.Entry) {
	out = make([]int64, len(entries))
	kept = make([]ledger.Entry, 0, len(entries))
	for i, e := range entries {
		if (e.Hold != nil && e.Hold.Refused != nil) || (e.Closes && !claimed[i]) {
			out[i] = -1
			continue
		}
		out[i] = start + int64(len(kept))
		kept = append(kept, e)
	}
	return out, kept
}

// ledgerRows are the rows a batch of kept entries adds from index start: the
// entries, their stored hashes, the open starts, and the request ids closed.
func ledgerRows(start int64, instance string, kept []ledger.Entry, hs [][]tlog.Hash) (eRows, hRows, oRows [][]any, closed []any) {
	hidx := tlog.StoredHashCount(start)
	for i, e := range kept {
		n := start + int64(i)
		eRows = append(eRows, []any{n, e.RequestID, e.Data})
		for _, h := range hs[i] {
			hRows = append(hRows, []any{hidx, h[:]})
			hidx++
		}
		switch {
		case e.Opens:
			oRows = append(oRows, []any{e.RequestID, instance, n})
		case e.Closes:
			closed = append(closed, e.RequestID)
		}
	}
	return eRows, hRows, oRows, closed
}
