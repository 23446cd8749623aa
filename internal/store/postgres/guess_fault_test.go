package postgres_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/storetest"
)

// TestRefusedIsOnlyAWrongGuess: of the errors the server answers with, only
// those the guessed batch's checks raise (sqlstore/guess.go) count as a
// refused guess: a division by zero, a claim already in ledger_closed. A
// unique violation elsewhere, a lock or statement timeout are faults.
func TestRefusedIsOnlyAWrongGuess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dsn := pgtest.DSN(t)
	db, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 1, MinOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := pgtest.Exec(dsn, `INSERT INTO ledger_closed (request_id) VALUES ('req_x')`,
		`CREATE TABLE other (id TEXT PRIMARY KEY)`, `INSERT INTO other VALUES ('x')`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, stmt string
		refused    bool
	}{
		{"size or hold check", `UPDATE ledger_state SET size = CASE WHEN size = -1 THEN 0 ELSE 1 / (size - size) END WHERE id = 1`, true},
		{"claim of a closed request", `INSERT INTO ledger_closed (request_id) VALUES ('req_x')`, true},
		{"unique violation elsewhere", `INSERT INTO other VALUES ('x')`, false},
		{"statement timeout", `SET statement_timeout = 10; SELECT pg_sleep(1)`, false},
		{"serialization failure", `DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = 'serialization_failure'; END $$`, false},
		{"lost connection", `SELECT pg_terminate_backend(pg_backend_pid())`, false},
	} {
		err := pgtest.Exec(dsn, c.stmt)
		if err == nil {
			t.Fatalf("%s: no error", c.name)
		}
		if got := postgres.Dialect.Refused(err); got != c.refused {
			t.Errorf("%s (%v): refused %v, want %v", c.name, err, got, c.refused)
		}
	}
}

// TestGuessedBatchFaultIsNotAMiss: a guessed batch that fails for another
// reason than a wrong guess (here: the log's lock held past lock_timeout)
// returns its error at once, as the two-round-trip path would, instead of
// being sent again the two-round-trip way; it writes nothing, and it does
// not pause guessing: the next batch is guessed again and the log verifies.
func TestGuessedBatchFaultIsNotAMiss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dsn := pgtest.DSN(t)
	// Migrate first, without the short lock_timeout: on a loaded server a
	// migration's own locks can wait longer than 200 ms.
	pre, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 1, MinOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	pre.Close()
	var trips postgres.PoolHealth
	db, err := postgres.OpenWith(ctx, dsn+"&lock_timeout=200", postgres.Options{MaxOpenConns: 1, MinOpenConns: 1, StatementCache: -1, Health: &trips})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hh := storetest.NewHasher()
	appendOne := func(id string) error {
		_, err := db.LedgerAppend(ctx, "gw", []ledger.Entry{{Data: []byte("record " + id), RequestID: id}}, hh.Hashes)
		if err == nil {
			hh.Committed()
		}
		return err
	}
	if err := appendOne("req_first"); err != nil { // learns the size
		t.Fatal(err)
	}

	holder, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	tx, err := holder.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT size FROM ledger_state WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	before := trips.RoundTrips()
	err = appendOne("req_locked")
	got := trips.RoundTrips() - before
	if err == nil {
		t.Fatal("a batch past lock_timeout succeeded")
	}
	if postgres.Dialect.Refused(err) {
		t.Errorf("the batch's error %v reads as a refused guess", err)
	}
	// The guessed batch and its ROLLBACK; a second try the two-round-trip
	// way would add its first round trip and another ROLLBACK.
	if got > 2 {
		t.Errorf("a faulted guessed batch took %d round trips, want 2 (sent again the two-round-trip way?)", got)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	guessed := db.GuessedBatches()
	if err := appendOne("req_after"); err != nil {
		t.Fatal(err)
	}
	if db.GuessedBatches() != guessed+1 {
		t.Error("the batch after a fault was not guessed: the fault paused guessing like a miss")
	}
	storetest.CheckLog(t, ctx, db, 2)
	var rows int
	if err := holder.QueryRowContext(ctx, `SELECT count(*) FROM ledger_entries WHERE request_id = 'req_locked'`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("the faulted batch left %d rows (%v)", rows, err)
	}
}
