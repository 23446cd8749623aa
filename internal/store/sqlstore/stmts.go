package sqlstore

import (
	"context"
	"database/sql"
	"math/bits"
	"strings"
)

// The hot path (a call's reserve, settle, ledger append and usage insert, key
// lookup, breaker spend, heartbeat) runs the same few statements thousands of
// times a second. Parsing their SQL text again on every execution was 17 % of
// the gateway's CPU under full governance on SQLite (docs/benchmarks.md), so
// these statements go through hotExec / hotQueryRow / hotQuery:
//
//   - SQLite (Dialect.DriverCachesStatements false): the statement is prepared
//     once per *DB (database/sql prepares it again, once, on each pooled
//     connection that runs it, and Tx.StmtContext reuses the connection's
//     preparation inside a transaction).
//   - PostgreSQL (true): pgx already keeps a per-connection cache of prepared
//     statements keyed by SQL text (postgres.Options.StatementCache, off for
//     PgBouncer in transaction mode), so the text is run as is; preparing it
//     again through database/sql would only add named statements that
//     PgBouncer cannot carry.
//
// Either way the cache only hits when the hot SQL texts are a small fixed set:
// statements whose text depends on a count (multi-row INSERTs, IN lists) are
// built in power-of-two shapes (see chunks and padIn), never one text per count.

// Inside a transaction (SQLite) the hot statements are cached too, those
// that return rows (DELETE/UPDATE … RETURNING, the ledger's reads) included:
// tx.StmtContext binds the DB-wide statement to the transaction's connection
// and reuses that connection's preparation. This was off for a while
// because TestBudgetHoldsUnderAttack (internal/e2e, SQLite, -race) once
// failed with budget_unavailable in a full e2e run while it was on, and the
// suspicion was a cached statement left in progress when database/sql rolls
// a cancelled transaction back, so that the ROLLBACK fails and the
// connection keeps SQLite's write lock. It does not happen with this driver
// (modernc.org/sqlite v1.62.0): a cached statement is reset, not left in
// progress, when its rows close and when its step is interrupted, and the
// driver's ROLLBACK ignores the transaction's context. Tests in
// internal/store/sqlite hold it so: a call cancelled at each of its driver
// calls in turn (TestCancelAtEveryDriverCallReleasesTheWriteLock) and
// cancelled callers under contention (TestCancelledCallersUnderContention)
// leave the write lock free and nothing reserved.

// hotExec executes query (written with ? placeholders) on tx, or on the pool
// when tx is nil, through the statement cache.
func (s *DB) hotExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	st, done, err := s.stmt(ctx, tx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		var e execer = s.db
		if tx != nil {
			e = tx
		}
		return s.exec(ctx, e, query, args...)
	}
	defer done()
	res, err := st.ExecContext(ctx, args...)
	return res, s.classify(err)
}

// hotQueryRow is QueryRowContext through the statement cache.
func (s *DB) hotQueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) rowScanner {
	st, done, err := s.stmt(ctx, tx, query)
	if err != nil {
		return errRow{err}
	}
	if st == nil {
		if tx != nil {
			return tx.QueryRowContext(ctx, s.q(query), args...)
		}
		return s.db.QueryRowContext(ctx, s.q(query), args...)
	}
	return closingRow{st.QueryRowContext(ctx, args...), done}
}

// hotQuery is QueryContext through the statement cache; the caller closes the rows.
func (s *DB) hotQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	st, _, err := s.stmt(ctx, tx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		if tx != nil {
			return tx.QueryContext(ctx, s.q(query), args...)
		}
		return s.db.QueryContext(ctx, s.q(query), args...)
	}
	// The pool's statement lives as long as the DB; a transaction's binding
	// of it is released when the transaction ends.
	return st.QueryContext(ctx, args...)
}

// stmt returns the DB-wide prepared statement for query, bound to tx when tx
// is not nil, and a function that releases what binding it took; or a nil
// statement when the caller should run the SQL text: always where the driver
// caches statements itself, and inside a transaction when query is not
// prepared yet. Preparing it there would take a second pooled connection
// while the transaction holds one (and perhaps SQLite's write lock): with
// every connection so held, no one could proceed. Such a query is prepared
// instead when its transaction ends (s.tx calls prepareWanted).
func (s *DB) stmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, func(), error) {
	if s.d.DriverCachesStatements {
		return nil, nil, nil
	}
	if tx == nil {
		st, err := s.prepared(ctx, query)
		return st, func() {}, err
	}
	s.mu.RLock()
	st, ok := s.stmts[query]
	s.mu.RUnlock()
	if !ok {
		s.mu.Lock()
		s.wanted[query] = true
		s.mu.Unlock()
		return nil, nil, nil
	}
	ts := tx.StmtContext(ctx, st) // reuses the connection's own preparation
	return ts, func() { ts.Close() }, nil
}

// prepareWanted prepares the queries that transactions ran as text because
// they were not prepared yet. The caller holds no connection; its context
// bounds the wait. A query that fails to prepare (the context ended, the
// store is away) stays unprepared: the next transaction that runs it runs
// its text again and wants it again.
func (s *DB) prepareWanted(ctx context.Context) {
	s.mu.Lock()
	if len(s.wanted) == 0 {
		s.mu.Unlock()
		return
	}
	qs := make([]string, 0, len(s.wanted))
	for q := range s.wanted {
		qs = append(qs, q)
	}
	clear(s.wanted)
	s.mu.Unlock()
	for _, q := range qs {
		if _, err := s.prepared(ctx, q); err != nil {
			return
		}
	}
}

type rowScanner interface{ Scan(dest ...any) error }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type closingRow struct {
	row  *sql.Row
	done func()
}

func (r closingRow) Scan(dest ...any) error {
	defer r.done()
	return r.row.Scan(dest...)
}

// maxChunk is the most rows one multi-row INSERT carries (SQLite allows 32766
// parameters, PostgreSQL 65535).
const maxChunk = 256

// chunks splits n rows into INSERT sizes drawn from powers of two up to
// maxChunk, largest first: at most 9 distinct statement texts per table, and
// at most log2(maxChunk)+1 statements for a batch under maxChunk rows.
func chunks(n int) []int {
	var out []int
	for n >= maxChunk {
		out = append(out, maxChunk)
		n -= maxChunk
	}
	for n > 0 {
		c := 1 << (bits.Len(uint(n)) - 1)
		out = append(out, c)
		n -= c
	}
	return out
}

// padIn pads the arguments of an IN list to the next power of two by
// repeating the first one (IN ignores duplicates), so that the statement
// text takes one of a few shapes. args must not be empty.
func padIn(args []any) []any {
	n := 1 << bits.Len(uint(len(args)-1))
	for len(args) < n {
		args = append(args, args[0])
	}
	return args
}

// inList is "?, ?, …" with n placeholders.
func inList(n int) string { return "?" + strings.Repeat(", ?", n-1) }

// Statements returns how many SQL texts the DB keeps prepared: a small,
// fixed number however the load varies (tests hold it to that).
func (s *DB) Statements() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.stmts)
}
