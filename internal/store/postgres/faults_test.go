package postgres_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/faultnet"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
)

// TestBlackHoleEndsWithoutACallerDeadline: when PostgreSQL stops answering
// (the connection stays open, no byte flows), a query whose caller gave no
// deadline still fails, after the I/O timeout, instead of hanging; after the
// fault the pool serves again.
func TestBlackHoleEndsWithoutACallerDeadline(t *testing.T) {
	dsn := pgtest.DSN(t)
	u, _ := url.Parse(dsn)
	p, err := faultnet.Listen(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	u.Host = p.Addr()
	ctx := context.Background()
	db, err := postgres.OpenWith(ctx, u.String(), postgres.Options{MaxOpenConns: 2, StatementTimeout: 500 * time.Millisecond, IOTimeout: time.Second, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ConfigVersion(ctx); err != nil {
		t.Fatal(err)
	}
	p.Freeze()
	done := make(chan error, 1)
	go func() { _, err := db.ConfigVersion(context.Background()); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a query through a black hole succeeded")
		}
		t.Logf("black hole: %v", err)
	case <-time.After(30 * time.Second): // generous: the bound is the 1 s I/O timeout
		t.Fatal("a query without a deadline hung on a black-holed connection")
	}
	p.Reset()
	p.Thaw()
	if _, err := db.ConfigVersion(ctx); err != nil {
		// The first query after a reset may find a dead pooled connection.
		if _, err := db.ConfigVersion(ctx); err != nil {
			t.Fatalf("after the fault: %v", err)
		}
	}
}
