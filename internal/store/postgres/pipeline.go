package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// pipeline sends qs to the server in one round trip (pgx's Batch: the
// extended protocol's messages of every statement, then one Sync) and
// reads the answers in order, giving each statement's rows to its Rows.
// This is what lets a ledger batch, BEGIN and COMMIT included, cost two
// round trips instead of one per statement (sqlstore/pipe.go).
//
// On the first error the server skips the rest up to the Sync: the
// statements after the failing one did not run, and a transaction the
// statements opened is left aborted (the caller rolls it back). A statement
// whose answer is lost (the connection broke) may or may not have run.
func pipeline(ctx context.Context, conn *sql.Conn, qs []sqlstore.Queued) error {
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("postgres: pipeline: driver connection is %T, not pgx's", dc)
		}
		b := &pgx.Batch{}
		for _, q := range qs {
			qq := b.Queue(q.SQL, q.Args...)
			if q.Rows != nil {
				read := q.Rows
				qq.Query(func(rows pgx.Rows) error { return read(rows) })
			}
		}
		return sc.Conn().SendBatch(ctx, b).Close()
	})
}
