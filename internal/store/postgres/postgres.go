// Package postgres is the storage backend for several replicas: PostgreSQL
// through pgx (database/sql adapter), the shared source of truth. Migrations take
// an advisory lock, so replicas starting together migrate once. Where a store
// call's statements can go together (a ledger batch, the breaker's spend),
// they are sent as pgx pipelines through (*sql.Conn).Raw, a round trip each
// (pipeline.go); PoolHealth counts the round trips.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gatehouse-gw/gatehouse/internal/store/migrate"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is an arbitrary advisory-lock id owned by Gatehouse.
const migrationLock = 0x6761746568 // "gateh"

// Open connects to the database at dsn (postgres://…) with the default
// Options and migrates it.
func Open(ctx context.Context, dsn string) (*sqlstore.DB, error) {
	return OpenWith(ctx, dsn, Options{})
}

// OpenWith is Open with options. Migrations run first on a connection of
// their own, without the statement timeout (a migration may take long); the
// store's pool then has every deadline of o.
func OpenWith(ctx context.Context, dsn string, o Options) (*sqlstore.DB, error) {
	o = o.withDefaults()
	cfg, err := connConfig(dsn, o)
	if err != nil {
		return nil, err
	}
	if err := migrateDSN(ctx, dsn, o); err != nil {
		return nil, err
	}
	conn := newConnector(stdlib.GetConnector(*cfg), o)
	db := sql.OpenDB(conn)
	conn.db.Store(db)
	db.SetMaxOpenConns(o.MaxOpenConns)
	db.SetMaxIdleConns(o.MaxIdleConns)
	db.SetConnMaxLifetime(o.ConnMaxLifetime)
	pctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout+o.IOTimeout)
	defer cancel()
	if err := conn.establish(pctx, db, o.MinOpenConns); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: connect: %w", redactDSNError(err, dsn))
	}
	return sqlstore.New(db, Dialect), nil
}

func migrateDSN(ctx context.Context, dsn string, o Options) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("postgres: %w", redactDSNError(err, dsn))
	}
	cfg.ConnectTimeout = o.ConnectTimeout
	// A server at its connection limit is retried for up to the connect
	// timeout: a replica starting while others churn should not give up on
	// the first refusal.
	conn := newConnector(stdlib.GetConnector(*cfg), o)
	conn.establishing.Store(true)
	db := sql.OpenDB(conn)
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("postgres: connect: %w", redactDSNError(err, dsn))
	}
	sub, _ := fs.Sub(migrations, "migrations")
	lock := func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock)
		return err
	}
	if err := migrate.Up(ctx, db, sub, lock, rebind); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

var _ = stdlib.GetDefaultDriver // registers the "pgx" driver

func rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// redactDSNError keeps a password in the DSN out of error messages.
func redactDSNError(err error, dsn string) error {
	cfg, perr := pgconn.ParseConfig(dsn)
	if perr != nil || cfg.Password == "" {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), cfg.Password, "[REDACTED]"))
}

// Dialect is PostgreSQL's flavour of SQL for sqlstore.
var Dialect = sqlstore.Dialect{
	Name:         "postgres",
	Numbered:     true,
	ForUpdate:    " FOR UPDATE",
	IsUnique:     func(err error) bool { return pgCode(err) == "23505" },
	IsForeignKey: func(err error) bool { return pgCode(err) == "23503" },
	// The server's clock: replicas' clocks may differ, the server's is one.
	// clock_timestamp, not now(): the statement's own moment, not its
	// transaction's.
	Clock: `(extract(epoch FROM clock_timestamp()) * 1000000)::bigint`,
	// pgx caches prepared statements per connection (Options.StatementCache).
	DriverCachesStatements: true,
	// A ledger batch's statements go in two pipelined round trips.
	Pipeline: pipeline,
	// A batch that guesses the log's size (and that its holds fit, its
	// claims are new) is one round trip; the server refuses a wrong guess
	// with an error (sqlstore/guess.go).
	Refused: refusedGuess,
}

// refusedGuess reports whether err is one of the two errors by which the
// server refuses a guessed ledger batch (sqlstore/guess.go): the division
// by zero of the size's and the holds' checks (22012), or a claim's
// primary-key violation on ledger_closed (23505). Every other error (a
// connection lost, a serialization failure or deadlock, a statement or lock
// timeout, a cancelled query, a unique violation elsewhere) is a fault of
// the batch, not a wrong guess: it takes the fault path, not a second try
// the two-round-trip way.
func refusedGuess(err error) bool {
	var e *pgconn.PgError
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case "22012": // division_by_zero
		return true
	case "23505": // unique_violation
		return e.ConstraintName == "ledger_closed_pkey"
	}
	return false
}

func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
