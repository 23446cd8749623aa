// Package migrate applies a backend's embedded SQL migrations in order, once
// each, recording them in schema_migrations. Files are named NNNN_name.sql; a
// migration runs in one transaction with its record, so a crash leaves it
// either applied or not.
package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Locker serialises migrations across processes sharing a database; it runs
// inside the migration transaction (PostgreSQL: an advisory lock).
type Locker func(ctx context.Context, tx *sql.Tx) error

// Up applies every migration in fsys (a directory of NNNN_*.sql files) not yet
// recorded. rebind rewrites ? placeholders for the backend.
func Up(ctx context.Context, db *sql.DB, fsys fs.FS, lock Locker, rebind func(string) string) error {
	if err := apply(ctx, db, 0, "", `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`, lock, rebind); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		v, err := strconv.ParseInt(strings.SplitN(name, "_", 2)[0], 10, 64)
		if err != nil {
			return fmt.Errorf("migrate: %s: name must start with a number", name)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		if err := apply(ctx, db, v, name, string(body), lock, rebind); err != nil {
			return fmt.Errorf("migrate: %s: %w", name, err)
		}
	}
	return nil
}

func apply(ctx context.Context, db *sql.DB, v int64, name, body string, lock Locker, rebind func(string) string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if lock != nil {
		if err := lock(ctx, tx); err != nil {
			return err
		}
	}
	if v == 0 { // the bookkeeping table itself, created under the lock
		if _, err := tx.ExecContext(ctx, body); err != nil {
			return err
		}
		return tx.Commit()
	}
	var n int
	if err := tx.QueryRowContext(ctx, rebind(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), v).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	// Statements end at ';'. Comments are removed first, so they may hold any
	// text; statements themselves must not contain ';' in string literals,
	// except inside a $$-quoted function body.
	for _, stmt := range splitStatements(stripComments(body)) {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, rebind(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`), v, name, time.Now().UnixMicro()); err != nil {
		return err
	}
	return tx.Commit()
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// splitStatements splits at ';', but not inside $$ … $$.
func splitStatements(s string) []string {
	var out []string
	quoted, from := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "$$"):
			quoted = !quoted
			i++
		case s[i] == ';' && !quoted:
			out = append(out, s[from:i])
			from = i + 1
		}
	}
	return append(out, s[from:])
}
