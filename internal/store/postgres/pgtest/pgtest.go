// Package pgtest gives tests a fresh PostgreSQL schema of their own on the server
// named by GATEHOUSE_TEST_POSTGRES_URL, and skips them when it is unset.
//
// It holds no connection between a test's start and end, and Open's pool is
// small (PoolSize), so that the whole suite fits in a few of the server's
// connections (scripts/pg-squeeze.sh runs it with all but 20 taken).
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

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
	if err := Exec(base, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("postgres test schema: %v", err)
	}
	t.Cleanup(func() { Exec(base, `DROP SCHEMA `+schema+` CASCADE`) })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Exec runs statements on a connection of its own, closed after them. A
// server at its connection limit (others' tests, pg-squeeze.sh) is retried
// for up to ten seconds: a test's bookkeeping should not fail on it.
func Exec(dsn string, stmts ...string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	deadline := time.Now().Add(10 * time.Second)
	for err = db.Ping(); postgres.IsTooManyConnections(err) && time.Now().Before(deadline); err = db.Ping() {
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			return err
		}
	}
	return nil
}

// PoolSize is the pool of a store that Open opens.
const PoolSize = 3

// Open opens a fresh schema on the test server, closed when t ends.
func Open(t testing.TB) *sqlstore.DB {
	t.Helper()
	db, err := postgres.OpenWith(context.Background(), DSN(t), postgres.Options{MaxOpenConns: PoolSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Available reports whether a test PostgreSQL is configured.
func Available() bool { return os.Getenv(EnvTestURL) != "" }

// DropRole ends the sessions of a test's role and drops it with what it
// owns. Roles belong to the whole server, not the test's schema, so it
// retries for a while rather than leave one behind.
func DropRole(dsn, role string) error {
	var err error
	for range 25 {
		if err = Exec(dsn, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '`+role+`'`,
			`DROP OWNED BY `+role+` CASCADE`, `DROP ROLE IF EXISTS `+role); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}
