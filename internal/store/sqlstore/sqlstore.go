// Package sqlstore is the SQL core that the SQLite and PostgreSQL backends share.
// It implements every domain package's Store interface over database/sql; a
// Dialect supplies what differs (placeholders, error classification, and
// where the server has them, pipelines that send a ledger batch in two round
// trips: pipe.go). Schemas and migrations belong to the backends.
//
// Conventions: times are BIGINT unix microseconds UTC; booleans are integers 0/1;
// lists and small structs are JSON text; every mutable row has a version column
// that each write increments (optimistic concurrency, see package store).
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// Dialect is what differs between SQL backends.
type Dialect struct {
	Name         string
	Numbered     bool             // placeholders are $1, $2 … instead of ?
	ForUpdate    string           // row-lock suffix for SELECT (" FOR UPDATE"), "" where the transaction locks already
	IsUnique     func(error) bool // unique or primary-key violation
	IsForeignKey func(error) bool // foreign-key violation
	// DriverCachesStatements is true when the driver keeps its own cache of
	// prepared statements keyed by SQL text (pgx), so the hot path runs text
	// instead of preparing through database/sql (see stmts.go).
	DriverCachesStatements bool
	// Pipeline, where the server takes several statements in one round
	// trip (PostgreSQL), sends qs so and reads their answers in order
	// (pipe.go). Nil: each statement is its own round trip, which costs
	// nothing on an embedded database.
	Pipeline func(ctx context.Context, conn *sql.Conn, qs []Queued) error
	// Refused reports whether an error is the server refusing a guess of a
	// guessed ledger batch (guess.go: the error its checks raise, nothing
	// else; the connection is fine, the transaction is aborted), as opposed
	// to any other fault: a lost connection, a timeout, a serialization
	// failure. Where set, a ledger batch is sent in one round trip on
	// guesses that the server checks; nil: not.
	Refused func(error) bool
	// WriteTurn, where the database has one writer at a time (SQLite, whose
	// transactions all begin IMMEDIATE), makes this process's transactions
	// take turns in Go, each waiting at most this long for its turn: SQLite's
	// own busy handler sleeps and retries, is not fair, and under load let
	// some writers wait past its timeout while others went again and again.
	// Zero: the database arbitrates (PostgreSQL).
	WriteTurn time.Duration
	// Clock, where the store is shared by replicas (PostgreSQL), is an SQL
	// expression for the server's clock in unix microseconds. Heartbeats
	// record it, so that every comparison of one replica's liveness with
	// another's, and every budget period (package instance: StoreNow), reads
	// one clock. "": the process's clock is the store's (SQLite: one gateway).
	Clock string
}

// DB is a store over one *sql.DB.
type DB struct {
	db *sql.DB
	d  Dialect

	mu      sync.RWMutex
	rebound map[string]string
	stmts   map[string]*sql.Stmt
	wanted  map[string]bool // hot queries a transaction ran unprepared (stmts.go)

	onceCalls atomic.Int64 // Once calls, for sweeping dead rows (dpop.go)
	onceSwept atomic.Int64 // micros of the last sweep of dead rows (dpop.go)

	ledgerNext atomic.Int64 // the log's size after this store's last batch, plus one; 0: unknown (guess.go)
	guessPause atomic.Int32 // batches left that do not guess, after a miss
	guessed    atomic.Int64 // batches committed on guesses (GuessedBatches)

	turn chan struct{} // one transaction at a time, when the dialect says so
}

// New wraps db. The caller has migrated it.
func New(db *sql.DB, d Dialect) *DB {
	s := &DB{db: db, d: d, rebound: make(map[string]string), stmts: make(map[string]*sql.Stmt), wanted: make(map[string]bool)}
	if d.WriteTurn > 0 {
		s.turn = make(chan struct{}, 1)
	}
	return s
}

// ErrNoTurn: a transaction waited longer than the dialect's WriteTurn for the
// one writer's turn.
var ErrNoTurn = errors.New("store: the database is busy: no turn to write in time")

// takeTurn waits for this process's one writer's turn, if the dialect has
// one; the returned func gives it back.
func (s *DB) takeTurn(ctx context.Context) (func(), error) {
	if s.turn == nil {
		return func() {}, nil
	}
	select {
	case s.turn <- struct{}{}:
		return func() { <-s.turn }, nil
	default:
	}
	t := time.NewTimer(s.d.WriteTurn)
	defer t.Stop()
	select {
	case s.turn <- struct{}{}:
		return func() { <-s.turn }, nil
	case <-t.C:
		return nil, ErrNoTurn
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// prepared returns a statement prepared once for the life of the DB; the hot
// write paths use it to skip parsing SQL on every call.
func (s *DB) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	s.mu.RLock()
	st, ok := s.stmts[query]
	s.mu.RUnlock()
	if ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, s.q(query))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.stmts[query]; ok {
		st.Close()
		return prev, nil
	}
	s.stmts[query] = st
	return st, nil
}

// SQL returns the underlying database handle.
func (s *DB) SQL() *sql.DB { return s.db }

// Close closes the database.
func (s *DB) Close() error {
	s.mu.Lock()
	for _, st := range s.stmts {
		st.Close()
	}
	clear(s.stmts)
	s.mu.Unlock()
	return s.db.Close()
}

// Ping checks that the database answers.
func (s *DB) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// q rewrites ? placeholders for the dialect; queries are written with ? and never
// contain a literal question mark.
func (s *DB) q(query string) string {
	if !s.d.Numbered {
		return query
	}
	s.mu.RLock()
	r, ok := s.rebound[query]
	s.mu.RUnlock()
	if ok {
		return r
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	r = b.String()
	s.mu.Lock()
	s.rebound[query] = r
	s.mu.Unlock()
	return r
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *DB) exec(ctx context.Context, e execer, query string, args ...any) (sql.Result, error) {
	res, err := e.ExecContext(ctx, s.q(query), args...)
	return res, s.classify(err)
}

func (s *DB) classify(err error) error {
	switch {
	case err == nil:
		return nil
	case s.d.IsUnique != nil && s.d.IsUnique(err):
		return fmt.Errorf("%w: %v", store.ErrExists, err)
	case s.d.IsForeignKey != nil && s.d.IsForeignKey(err):
		return fmt.Errorf("%w: %v", store.ErrInUse, err)
	}
	return err
}

func (s *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	done, err := s.takeTurn(ctx)
	if err != nil {
		return err
	}
	defer done()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer s.prepareWanted(ctx)
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// bumpConfig increments the config generation inside tx, telling every replica
// that routing or prices changed.
func (s *DB) bumpConfig(ctx context.Context, tx *sql.Tx) error {
	_, err := s.exec(ctx, tx, `UPDATE meta SET value = value + 1 WHERE name = 'config_version'`)
	return err
}

// ConfigVersion returns the config generation: it changes whenever providers or
// prices do, so replicas know when to rebuild their snapshot.
func (s *DB) ConfigVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT value FROM meta WHERE name = 'config_version'`)).Scan(&v)
	return v, err
}

// Secret returns the sealed secret stored under name, or store.ErrNotFound.
func (s *DB) Secret(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, s.q(`SELECT sealed FROM secrets WHERE name = ?`), name).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return b, err
}

// PutSecretIfAbsent stores sealed under name unless a secret of that name exists,
// and returns whichever is stored. Replicas racing at first start agree on one.
func (s *DB) PutSecretIfAbsent(ctx context.Context, name string, sealed []byte) ([]byte, error) {
	_, err := s.exec(ctx, s.db, `INSERT INTO secrets (name, sealed, created_at) VALUES (?, ?, ?)`, name, sealed, micros(time.Now()))
	if err != nil && !errors.Is(err, store.ErrExists) {
		return nil, err
	}
	return s.Secret(ctx, name)
}

// SetSecret stores sealed under name, replacing what was there, and bumps the
// config generation so that replicas reload it (key rotation).
func (s *DB) SetSecret(ctx context.Context, name string, sealed []byte) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM secrets WHERE name = ?`, name); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO secrets (name, sealed, created_at) VALUES (?, ?, ?)`, name, sealed, micros(time.Now())); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("sqlstore: marshal %T: %v", v, err)) // only our own plain types reach here
	}
	return string(b)
}

func fromJSON(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("sqlstore: corrupt JSON column: %w", err)
	}
	return nil
}

// queryStrings appends to dst the one text column of query's rows.
func (s *DB) queryStrings(ctx context.Context, dst []string, query string, args ...any) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		dst = append(dst, v)
	}
	return dst, rows.Err()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkVersioned turns the result of a versioned UPDATE or DELETE into
// ErrNotFound or ErrConflict when it touched no row.
func (s *DB) checkVersioned(ctx context.Context, e execer, res sql.Result, table, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 1 {
		return nil
	}
	var one int
	err = e.QueryRowContext(ctx, s.q(`SELECT 1 FROM `+table+` WHERE id = ?`), id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	return store.ErrConflict
}

// oneRow turns "no row changed" into store.ErrNotFound.
func oneRow(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}
