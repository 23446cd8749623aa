// Package sqlite is the embedded storage backend: SQLite in one file of the data
// directory, through modernc.org/sqlite (pure Go, no cgo), in WAL mode with
// foreign keys on. By default synchronous=FULL: a commit returns only after
// its WAL frames are on disk (fsync), so a committed transaction survives a
// power cut as well as a crash, and the gateway never answers a call whose
// start record could still be lost. Options.Synchronous "NORMAL" trades that
// for speed: it survives a process crash, but a power cut may lose the last
// commits before a checkpoint (docs/operations.md, "Durability").
//
// One process owns a data directory: the server takes LockDir before Open.
//
// Writers are serialised by SQLite; transactions begin IMMEDIATE so that a
// read-then-write transaction never fails half-way with SQLITE_BUSY, and a busy
// timeout (5 s by default) makes concurrent writers wait instead of failing,
// and bounds that wait.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gatehouse-gw/gatehouse/internal/store/migrate"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// FileName is the database file inside the data directory.
const FileName = "gatehouse.db"

// Options tune the embedded store. Zero values take the defaults.
type Options struct {
	// BusyTimeout bounds how long a writer waits for SQLite's write lock
	// (default 5 s); past it the statement fails and the caller fails closed.
	BusyTimeout time.Duration
	// MaxOpenConns is the connection pool's size (default 8).
	MaxOpenConns int
	// Wrap, when set, wraps the driver's connector (fault injection in tests).
	Wrap func(driver.Connector) driver.Connector
	// Synchronous is SQLite's synchronous setting: "FULL" (default: every
	// commit is synced to disk before it returns) or "NORMAL" (synced at
	// checkpoints only; a power cut may lose the last commits).
	Synchronous string
	// WriteTurn bounds how long a transaction waits for its turn to write
	// (default BusyTimeout): this process's transactions take turns before
	// they reach SQLite (sqlstore.Dialect.WriteTurn), so only writes from
	// outside a transaction, or from another process, meet the busy handler.
	WriteTurn time.Duration
}

// synchronous returns the PRAGMA value for s, or an error.
func synchronous(s string) (string, error) {
	switch strings.ToUpper(s) {
	case "", "FULL":
		return "FULL", nil
	case "NORMAL":
		return "NORMAL", nil
	}
	return "", fmt.Errorf("sqlite: synchronous %q: want FULL or NORMAL", s)
}

// fileURI is path as an SQLite file: URI. SQLite decodes %HH in a URI's
// path and ends it at '?' or '#', so those three are escaped: a data
// directory named "50%" or "a?b" opens that directory, not another file.
func fileURI(path string) string {
	return "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// Open opens (creating if needed) the database at path and migrates it.
func Open(ctx context.Context, path string) (*sqlstore.DB, error) {
	return OpenWith(ctx, path, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, o Options) (*sqlstore.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.MaxOpenConns <= 0 {
		o.MaxOpenConns = 8
	}
	sync, err := synchronous(o.Synchronous)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Set("_txlock", "immediate")
	dsn := fileURI(path) + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if o.Wrap != nil {
		drv := db.Driver()
		db.Close()
		db = sql.OpenDB(o.Wrap(dsnConnector{dsn, drv}))
	}
	db.SetMaxOpenConns(o.MaxOpenConns)
	// Every connection stays open when idle: a connection costs a file
	// handle and its page cache, and closing one throws away its prepared
	// statements (database/sql keeps 2 idle by default; a burst on a pool
	// of 32 then reopened and re-prepared 30 connections each time).
	db.SetMaxIdleConns(o.MaxOpenConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// The file holds key hashes and sealed secrets: keep it private.
	os.Chmod(path, 0o600)
	sub, _ := fs.Sub(migrations, "migrations")
	if err := migrate.Up(ctx, db, sub, nil, func(s string) string { return s }); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	d := Dialect
	d.WriteTurn = o.WriteTurn
	if d.WriteTurn <= 0 {
		d.WriteTurn = o.BusyTimeout
	}
	return sqlstore.New(db, d), nil
}

// OpenReadOnly opens the existing database at path for reading only, for
// offline tools that read (audit verify): it takes no lock on the data
// directory, runs no migration and cannot write, so it may run alongside the
// gateway that owns the directory (WAL readers do not block the writer).
func OpenReadOnly(ctx context.Context, path string) (*sqlstore.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", fileURI(path)+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db.SetMaxOpenConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return sqlstore.New(db, Dialect), nil
}

// dsnConnector is the connector database/sql builds for a plain driver.
type dsnConnector struct {
	dsn string
	drv driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.drv }

// Dialect is SQLite's flavour of SQL for sqlstore.
var Dialect = sqlstore.Dialect{
	Name: "sqlite",
	IsUnique: func(err error) bool {
		return code(err) == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code(err) == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
	IsForeignKey: func(err error) bool { return code(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY },
	WriteTurn:    5 * time.Second,
}

func code(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}
