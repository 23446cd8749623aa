// Package sqlite is the embedded storage backend: SQLite in one file of the data
// directory, through modernc.org/sqlite (pure Go, no cgo), in WAL mode with
// foreign keys on. WAL with synchronous=NORMAL survives a process crash without
// losing a committed transaction; a power cut may lose the last few.
//
// Writers are serialised by SQLite; transactions begin IMMEDIATE so that a
// read-then-write transaction never fails half-way with SQLITE_BUSY, and a busy
// timeout makes concurrent writers wait instead of failing.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gatehouse-gw/gatehouse/internal/store/migrate"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// FileName is the database file inside the data directory.
const FileName = "gatehouse.db"

// Open opens (creating if needed) the database at path and migrates it.
func Open(ctx context.Context, path string) (*sqlstore.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db.SetMaxOpenConns(8)
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
	return sqlstore.New(db, Dialect), nil
}

// Dialect is SQLite's flavour of SQL for sqlstore.
var Dialect = sqlstore.Dialect{
	Name: "sqlite",
	IsUnique: func(err error) bool {
		return code(err) == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code(err) == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
	IsForeignKey: func(err error) bool { return code(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY },
}

func code(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}
