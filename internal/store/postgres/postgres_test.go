package postgres_test

import (
	"context"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/storetest"
)

// TestConformance runs the storage suite on PostgreSQL. It needs
// GATEHOUSE_TEST_POSTGRES_URL (CI sets it) and skips without it.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return pgtest.Open(t) })
}

// TestMigrateConcurrently starts three replicas on one empty schema at once:
// the advisory lock must make them migrate once, without errors.
func TestMigrateConcurrently(t *testing.T) {
	dsn := pgtest.DSN(t)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			db, err := postgres.Open(context.Background(), dsn)
			if err == nil {
				db.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
