package sqlite

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store/migrate"
)

// TestFewerPagesMigrationKeepsRows: 0023 rebuilds ledger_closed, ledger_open
// and reservations WITHOUT ROWID (one B-tree each instead of two or three).
// A store migrated from 0022 keeps every row, and the rowid trees and the
// index by instance are gone.
func TestFewerPagesMigrationKeepsRows(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	old := fstest.MapFS{}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		base := strings.TrimPrefix(n, "migrations/")
		if base >= "0023" {
			continue
		}
		b, _ := fs.ReadFile(migrations, n)
		old[base] = &fstest.MapFile{Data: b}
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate.Up(ctx, raw, old, nil, func(s string) string { return s }); err != nil {
		t.Fatal(err)
	}
	created := time.Now().Add(-time.Hour).UnixMicro()
	for _, q := range []string{
		`INSERT INTO ledger_closed (request_id) VALUES ('req_closed')`,
		`INSERT INTO ledger_open (request_id, instance, idx) VALUES ('req_open', 'gw.1', 7)`,
		`INSERT INTO reservations (id, instance, amount, charges, created_at) VALUES ('req_held', 'gw.1', 100, '[]', ?)`,
	} {
		if _, err := raw.ExecContext(ctx, q, created); err != nil {
			t.Fatal(q, err)
		}
	}
	raw.Close()

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if ids, err := db.Owned(ctx, "gw.1", time.Now()); err != nil || len(ids) != 1 || ids[0] != "req_held" {
		t.Fatalf("Owned after the migration = %v, %v; want [req_held]", ids, err)
	}
	var inst string
	var idx int64
	if err := db.SQL().QueryRowContext(ctx, `SELECT instance, idx FROM ledger_open WHERE request_id = 'req_open'`).Scan(&inst, &idx); err != nil || inst != "gw.1" || idx != 7 {
		t.Fatalf("ledger_open after the migration: %q %d %v", inst, idx, err)
	}
	var n int
	if err := db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM ledger_closed WHERE request_id = 'req_closed'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("ledger_closed after the migration: %d %v", n, err)
	}
	for _, table := range []string{"ledger_closed", "ledger_open", "reservations"} {
		if _, err := db.SQL().ExecContext(ctx, `SELECT rowid FROM `+table); err == nil {
			t.Errorf("%s still has a rowid", table)
		}
	}
	var trees []string
	rows, err := db.SQL().QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE tbl_name IN ('ledger_closed', 'ledger_open', 'reservations')`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		rows.Scan(&name)
		trees = append(trees, name)
	}
	rows.Close()
	if len(trees) != 3 {
		t.Errorf("B-trees of the three tables: %v, want only the tables", trees)
	}
}
