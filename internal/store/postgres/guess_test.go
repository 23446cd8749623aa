package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/store/storetest"
)

// TestLedgerBatchOneRoundTrip: a batch of plain records or of start
// entries with holds is one round trip, BEGIN to COMMIT, once the store
// knows the log's size from its own last batch (sqlstore/guess.go). One
// more is allowed for database/sql's ping of a connection idle for a second.
func TestLedgerBatchOneRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db, trips := countedStore(t, ctx, -1)
	hashes := committing(storetest.NewHasher())
	charges := []budget.Charge{
		{BudgetID: "bud_key", PeriodStart: 1, Limit: 1 << 40, Hard: true},
		{BudgetID: "bud_org", PeriodStart: 1, Limit: 1 << 40, Hard: false},
	}
	if _, err := db.LedgerAppend(ctx, "gw.1", []ledger.Entry{{Data: []byte("first"), RequestID: "req_first"}}, hashes); err != nil {
		t.Fatal(err) // learns the size
	}
	total := int64(1)
	for round := range 3 {
		for _, kind := range []string{"plain", "starts"} {
			var es []ledger.Entry
			for i := range 37 {
				id := fmt.Sprintf("req_%s_%d_%d", kind, round, i)
				e := ledger.Entry{Data: []byte(kind + " " + id), RequestID: id}
				if kind == "starts" {
					e.Opens = true
					e.Hold = &ledger.Hold{Reservation: budget.Reservation{ID: id, Instance: "gw.1", Amount: 10, Charges: charges, CreatedAt: time.Now()}}
				}
				es = append(es, e)
			}
			before := trips.RoundTrips()
			idx, err := db.LedgerAppend(ctx, "gw.1", es, hashes)
			if err != nil {
				t.Fatal(err)
			}
			got := trips.RoundTrips() - before
			t.Logf("%s, round %d: %d round trips", kind, round, got)
			if got > 2 {
				t.Errorf("a batch of %s took %d round trips, want 1", kind, got)
			}
			for i, x := range idx {
				if x != total+int64(i) {
					t.Fatalf("entry %d at index %d, want %d", i, x, total+int64(i))
				}
				if e := es[i]; e.Hold != nil && (e.Hold.Refused != nil || len(e.Hold.Spends) != 2) {
					t.Fatalf("hold %d: refused %v, %d spends", i, e.Hold.Refused, len(e.Hold.Spends))
				}
			}
			total += int64(len(es))
		}
	}
	storetest.CheckLog(t, ctx, db, total)
	sp, err := db.Spend(ctx, charges)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sp {
		if s.Reserved != 3*37*10 {
			t.Errorf("%s: reserved %d, want %d", s.BudgetID, s.Reserved, 3*37*10)
		}
	}
}

// TestLedgerBatchGuessMissed: every guess of the one-round-trip batch
// wrong in turn: another replica appended (the size moved), a hard budget
// no longer takes the batch's holds (another replica spent), a request
// closed already. The server refuses the batch, nothing of it is written,
// and the two-round-trip path decides as before: the log stays whole, the
// refused hold and the second end are dropped, the counters hold what was
// kept.
func TestLedgerBatchGuessMissed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, b := twoReplicas(t, ctx)
	ha, hb := storetest.NewHasher(), storetest.NewHasher()
	var total int64
	appendTo := func(db *sqlstore.DB, h *storetest.Hasher, es ...ledger.Entry) []int64 {
		t.Helper()
		idx, err := db.LedgerAppend(ctx, "gw", es, h.Hashes)
		if err != nil {
			t.Fatal(err)
		}
		h.Committed()
		for _, x := range idx {
			if x >= 0 {
				total++
			}
		}
		return idx
	}
	plain := func(id string) ledger.Entry { return ledger.Entry{Data: []byte("record " + id), RequestID: id} }

	// The size moved: b appends between a's batches, several times over
	// (after a miss a pauses its guesses, then guesses again).
	for i := range 40 {
		appendTo(a, ha, plain(fmt.Sprintf("a%d", i)), plain(fmt.Sprintf("a%d'", i)))
		if i%3 == 0 {
			appendTo(b, hb, plain(fmt.Sprintf("b%d", i)))
		}
	}
	storetest.CheckLog(t, ctx, a, total)

	// A hard budget that another replica filled: a's memory admitted the
	// holds, the store refuses the second.
	hard := []budget.Charge{{BudgetID: "bud_hard", PeriodStart: 1, Limit: 100, Hard: true}}
	hold := func(id string, amount int64) ledger.Entry {
		return ledger.Entry{Data: []byte("start " + id), RequestID: id, Opens: true,
			Hold: &ledger.Hold{Reservation: budget.Reservation{ID: id, Instance: "gw", Amount: amount, Charges: hard, CreatedAt: time.Now()}}}
	}
	appendTo(b, hb, hold("req_b", 50))
	for range guessMissPause + 2 { // a misses the size once, pauses, then guesses right again
		appendTo(a, ha, plain("x"))
	}
	es := []ledger.Entry{hold("req_a1", 40), hold("req_a2", 40)}
	idx := appendTo(a, ha, es...)
	if idx[0] < 0 || idx[1] >= 0 || es[1].Hold.Refused == nil {
		t.Fatalf("indexes %v, refusal %v: want the first hold kept and the second refused", idx, es[1].Hold.Refused)
	}
	var ierr *budget.InsufficientError
	if !errors.As(es[1].Hold.Refused, &ierr) || ierr.Remaining != 10 {
		t.Fatalf("refusal %+v, want 10 remaining", es[1].Hold.Refused)
	}
	sp, err := a.Spend(ctx, hard)
	if err != nil || sp[0].Reserved != 90 {
		t.Fatalf("reserved %+v (%v), want 90", sp, err)
	}

	// A request closed already: the second end is dropped.
	end := func(id string) ledger.Entry {
		return ledger.Entry{Data: []byte("end " + id), RequestID: id, Closes: true}
	}
	appendTo(b, hb, end("req_a1"))
	for range guessMissPause + 2 {
		appendTo(a, ha, plain("y"))
	}
	idx = appendTo(a, ha, end("req_a1"), plain("z"))
	if idx[0] >= 0 || idx[1] < 0 {
		t.Fatalf("indexes %v: want the second end dropped, the record kept", idx)
	}
	storetest.CheckLog(t, ctx, a, total)
}

// guessMissPause mirrors sqlstore's: batches that do not guess after a miss.
const guessMissPause = 16

// twoReplicas opens two stores of one connection each on a fresh schema,
// as two replicas sharing the database; closed when t ends.
func twoReplicas(t *testing.T, ctx context.Context) (a, b *sqlstore.DB) {
	t.Helper()
	dsn := pgtest.DSN(t)
	for _, db := range []**sqlstore.DB{&a, &b} {
		var err error
		if *db, err = postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 1, MinOpenConns: 1}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { (*db).Close() })
	}
	return a, b
}

// committing gives LedgerAppend h's hashes and caches them at once: on one
// store with no other writer every try commits.
func committing(h *storetest.Hasher) func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error) {
	return func(start int64, kept []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
		defer h.Committed()
		return h.Hashes(start, kept, r)
	}
}

// TestLedgerBatchAnySizeSameStatements: a batch's entries and stored
// hashes are one statement each whatever the batch's size (arrays, not
// multi-row INSERTs in chunks of powers of two), so batches of every size
// from 1 to 70 and then 300 prepare nothing new on the connection once the
// first guessed batch has: each is one round trip, none waits for a prepare
// round trip of its own, and the log still recomputes from its entries.
func TestLedgerBatchAnySizeSameStatements(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var trips postgres.PoolHealth
	db, err := postgres.OpenWith(ctx, pgtest.DSN(t), postgres.Options{MaxOpenConns: 1, MinOpenConns: 1, Health: &trips})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hashes := committing(storetest.NewHasher())
	total := int64(0)
	appendN := func(n int) int64 {
		t.Helper()
		var es []ledger.Entry
		for i := range n {
			id := fmt.Sprintf("req_%d_%d", total, i)
			es = append(es, ledger.Entry{Data: []byte("plain " + id), RequestID: id})
		}
		before := trips.RoundTrips()
		idx, err := db.LedgerAppend(ctx, "gw.1", es, hashes)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range idx {
			if x != total+int64(i) {
				t.Fatalf("entry %d at index %d, want %d", i, x, total+int64(i))
			}
		}
		total += int64(n)
		return trips.RoundTrips() - before
	}
	prepared := func() int {
		t.Helper()
		var n int
		if err := db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM pg_prepared_statements`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	appendN(1) // learns the size (two round trips)
	appendN(1) // the guessed batch's statements, prepared
	prepared()
	before := prepared()
	var trip int64
	sizes := []int{300}
	for n := 2; n <= 70; n++ {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		trip += appendN(n)
	}
	if after := prepared(); after != before {
		t.Errorf("%d statements prepared by batches of new sizes, want none", after-before)
	}
	// One round trip a batch; two more allowed for database/sql's ping of a
	// connection idle for a second on a loaded machine.
	if trip > int64(len(sizes))+2 {
		t.Errorf("%d batches took %d round trips, want %d", len(sizes), trip, len(sizes))
	}
	storetest.CheckLog(t, ctx, db, total)
}
