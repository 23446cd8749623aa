// Package pgtest gives tests a fresh PostgreSQL schema of their own on the server
// named by GATEHOUSE_TEST_POSTGRES_URL, and skips them when it is unset.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	_ "github.com/jackc/pgx/v5/stdlib"
)

// EnvTestURL names the PostgreSQL server that tests use.
const EnvTestURL = "GATEHOUSE_TEST_POSTGRES_URL"

// DSN returns a DSN for a fresh, empty schema on the test server, dropped
// when t ends. It skips t when EnvTestURL is unset.
func DSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvTestURL)
	if base == "" {
		t.Skipf("%s not set; skipping PostgreSQL test", EnvTestURL)
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "gh_test_" + hex.EncodeToString(b)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		admin.Close()
		t.Fatalf("postgres test schema: %v", err)
	}
	t.Cleanup(func() {
		admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Open opens a fresh schema on the test server, closed when t ends.
func Open(t testing.TB) *sqlstore.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Available reports whether a test PostgreSQL is configured.
func Available() bool { return os.Getenv(EnvTestURL) != "" }
