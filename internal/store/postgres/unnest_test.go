package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
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

// oddIDs are request ids that an array's text form would have to quote or
// escape (or that it reads as NULL unquoted), bytes a row-shifting or
// NULL-padding bug would show, and a long one.
var oddIDs = []string{
	"NULL", "null", "a,b", "{x}", "{}", `"q"`, `back\slash`, " sp ", "tab\tnl\nend",
	"é✓🙂", "'", "$1", "?", "(1,2)", strings.Repeat("long", 1024),
}

// logModel is what a test appended: every kept entry at its index and the
// requests still open.
type logModel struct {
	rows map[int64]ledger.Entry
	inst map[int64]string
	open map[string]int64
	size int64
}

// appendRows appends es through db on instance inst and records what the
// store says it kept.
func (m *logModel) appendRows(t *testing.T, ctx context.Context, db *sqlstore.DB, h *storetest.Hasher, inst string, es []ledger.Entry) []int64 {
	t.Helper()
	idx, err := db.LedgerAppend(ctx, inst, es, h.Hashes)
	if err != nil {
		t.Fatal(err)
	}
	h.Committed()
	for i, x := range idx {
		if x < 0 {
			continue
		}
		if x != m.size {
			t.Fatalf("entry %d kept at index %d, want %d", i, x, m.size)
		}
		m.size++
		m.rows[x], m.inst[x] = es[i], inst
		switch {
		case es[i].Opens:
			m.open[es[i].RequestID] = x
		case es[i].Closes:
			delete(m.open, es[i].RequestID)
		}
	}
	return idx
}

// check compares every row of ledger_entries, ledger_hashes and
// ledger_open with what was appended, row by row and column by column,
// and recomputes every stored hash from the entries.
func (m *logModel) check(t *testing.T, ctx context.Context, db *sqlstore.DB) {
	t.Helper()
	rows, err := db.SQL().QueryContext(ctx, `SELECT idx, request_id, data FROM ledger_entries ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(0)
	for rows.Next() {
		var x int64
		var id string
		var data []byte
		if err := rows.Scan(&x, &id, &data); err != nil {
			t.Fatal(err)
		}
		want, ok := m.rows[x]
		switch {
		case x != n || !ok:
			t.Fatalf("row %d at index %d (appended: %v)", n, x, ok)
		case id != want.RequestID:
			t.Fatalf("row %d: request id %.40q, want %.40q", x, id, want.RequestID)
		case data == nil || !bytes.Equal(data, want.Data):
			t.Fatalf("row %d: data of %d bytes (nil %v), want %d bytes", x, len(data), data == nil, len(want.Data))
		}
		n++
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if n != m.size {
		t.Fatalf("%d rows, want %d", n, m.size)
	}
	var hashes, maxIdx int64
	if err := db.SQL().QueryRowContext(ctx, `SELECT count(*), coalesce(max(idx), -1) FROM ledger_hashes WHERE hash IS NOT NULL AND length(hash) = 32`).Scan(&hashes, &maxIdx); err != nil {
		t.Fatal(err)
	}
	if want := tlog.StoredHashCount(m.size); hashes != want || maxIdx != want-1 {
		t.Fatalf("%d stored hashes of 32 bytes up to index %d, want %d", hashes, maxIdx, want)
	}
	storetest.CheckLog(t, ctx, db, m.size)
	orows, err := db.SQL().QueryContext(ctx, `SELECT request_id, instance, idx FROM ledger_open`)
	if err != nil {
		t.Fatal(err)
	}
	open := 0
	for orows.Next() {
		var id, inst string
		var x int64
		if err := orows.Scan(&id, &inst, &x); err != nil {
			t.Fatal(err)
		}
		if want, ok := m.open[id]; !ok || x != want || inst != m.inst[want] {
			t.Fatalf("open request %.40q of %s at %d, want open %v at %d of %s", id, inst, x, ok, want, m.inst[want])
		}
		open++
	}
	if err := orows.Close(); err != nil {
		t.Fatal(err)
	}
	if open != len(m.open) {
		t.Fatalf("%d open requests, want %d", open, len(m.open))
	}
}

// TestLedgerBatchArraysRowByRow attacks the array (unnest) statements of a
// PostgreSQL ledger batch: batches of 1 and of ledger.MaxBatch entries with
// records of hundreds of KB (past the ledger's own bound), a full batch of
// records of ledger.MaxEntrySize, empty records, request ids an array's text
// form must quote, starts with and without holds, ends, plain records and
// entries the store drops (a refused hold, a second end) in the middle of a
// batch, on the plain, the guessed, and the refused-then-retried paths.
// Every stored row must be the one given at its index, every stored hash the
// one its entries give, the open requests exactly the starts not yet ended.
func TestLedgerBatchArraysRowByRow(t *testing.T) {
	if testing.Short() {
		t.Skip("appends some 60 MB")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b := twoReplicas(t, ctx)
	ha, hb := storetest.NewHasher(), storetest.NewHasher()
	m := &logModel{rows: map[int64]ledger.Entry{}, inst: map[int64]string{}, open: map[string]int64{}}
	record := func(seed, n int) []byte {
		d := make([]byte, n)
		for i := range d {
			d[i] = byte(seed*31 + i*7)
		}
		return d
	}
	generous := []budget.Charge{{BudgetID: "bud_big", PeriodStart: 1, Limit: 1 << 50, Hard: true}}
	tight := []budget.Charge{{BudgetID: "bud_tight", PeriodStart: 1, Limit: 100, Hard: true}}
	start := func(id string, data []byte, charges []budget.Charge, amount int64) ledger.Entry {
		e := ledger.Entry{Data: data, RequestID: id, Opens: true}
		if charges != nil {
			e.Hold = &ledger.Hold{Reservation: budget.Reservation{ID: id, Instance: "gw", Amount: amount, Charges: charges, CreatedAt: time.Now()}}
		}
		return e
	}
	end := func(id string, data []byte) ledger.Entry {
		return ledger.Entry{Data: data, RequestID: id, Closes: true}
	}
	plain := func(id string, data []byte) ledger.Entry { return ledger.Entry{Data: data, RequestID: id} }

	// mixed is a batch of ledger.MaxBatch entries of every kind, every
	// big-th record of bigSize bytes; round makes its ids unique; it ends
	// the starts of round-1.
	mixed := func(round, big, bigSize int) []ledger.Entry {
		var es []ledger.Entry
		for i := range ledger.MaxBatch {
			id := fmt.Sprintf("%s#%d.%d", oddIDs[i%len(oddIDs)], round, i)
			size := (i * 37) % 300
			switch {
			case i%9 == 0:
				size = 0
			case i%big == 0:
				size = bigSize - i%2
			}
			data := record(round*1000+i, size)
			switch i % 5 {
			case 0:
				es = append(es, plain("", data))
			case 1:
				es = append(es, start(id, data, generous, int64(i)))
			case 2:
				es = append(es, start(id, data, nil, 0))
			case 3:
				es = append(es, end(fmt.Sprintf("%s#%d.%d", oddIDs[(i-2)%len(oddIDs)], round-1, i-2), data))
			default:
				es = append(es, plain(id, data))
			}
		}
		return es
	}

	// Batches of one with a large record: the plain path (no size known
	// yet), then the guessed one.
	m.appendRows(t, ctx, a, ha, "gw.a", []ledger.Entry{plain(oddIDs[0], record(1, 900<<10))})
	m.appendRows(t, ctx, a, ha, "gw.a", []ledger.Entry{start("NULL", record(2, 700<<10), generous, 5)})
	guessed := a.GuessedBatches()
	if guessed != 1 {
		t.Fatalf("%d batches committed on guesses, want 1", guessed)
	}

	// A full batch on the guessed path, every 8th record 200 KB.
	m.appendRows(t, ctx, a, ha, "gw.a", mixed(1, 8, 200<<10))
	if a.GuessedBatches() != guessed+1 {
		t.Fatalf("the full batch was not committed on guesses")
	}
	guessed++
	m.check(t, ctx, a)

	// b moves the size: a's guess is refused and the batch retried the
	// two-round-trip way, with a hold refused at a hard budget's edge and
	// an end of a request ended already in its middle.
	m.appendRows(t, ctx, b, hb, "gw.b", []ledger.Entry{plain("b", record(3, 10))})
	es := mixed(2, 8, 200<<10)
	es[100] = start("tight1", record(4, 100<<10), tight, 60)
	es[101] = start("tight2", record(5, 100<<10), tight, 60)                   // refused
	es[102] = end(fmt.Sprintf("%s#%d.%d", oddIDs[7], 1, 7), record(6, 50<<10)) // round 1's start without a hold
	es[103] = end(fmt.Sprintf("%s#%d.%d", oddIDs[1], 0, 1), record(7, 10))     // ended by round 1 already
	idx := m.appendRows(t, ctx, a, ha, "gw.a", es)
	if idx[101] >= 0 || es[101].Hold.Refused == nil || idx[103] >= 0 || idx[102] < 0 {
		t.Fatalf("indexes %v: want the second tight hold and the second end dropped", idx[100:104])
	}
	if a.GuessedBatches() != guessed {
		t.Fatalf("a batch after another replica's append committed on a guess")
	}
	m.check(t, ctx, a)

	// The guesses pause after a miss; then a guessed batch whose claim is
	// refused (a request ended by the other replica) is retried and drops
	// that end.
	for i := range guessMissPause {
		m.appendRows(t, ctx, a, ha, "gw.a", []ledger.Entry{plain(fmt.Sprint("pause", i), record(i, i))})
	}
	m.appendRows(t, ctx, b, hb, "gw.b", []ledger.Entry{end(fmt.Sprintf("%s#%d.%d", oddIDs[6%len(oddIDs)], 2, 6), record(8, 20))})
	for range guessMissPause + 1 {
		m.appendRows(t, ctx, a, ha, "gw.a", []ledger.Entry{plain("x", record(9, 1))})
	}
	guessed = a.GuessedBatches()
	// A batch the ledger's largest: ledger.MaxBatch records of up to
	// ledger.MaxEntrySize (one in nine empty).
	es = mixed(3, 1, ledger.MaxEntrySize) // its entry 8 ends round 2's entry 6
	idx = m.appendRows(t, ctx, a, ha, "gw.a", es)
	if idx[8] >= 0 {
		t.Fatalf("an end of a request the other replica ended kept at %d", idx[8])
	}
	if a.GuessedBatches() != guessed {
		t.Fatalf("a batch with an end the other replica wrote committed on a guess")
	}
	m.check(t, ctx, a)
	m.check(t, ctx, b)
}

// TestLedgerBatchArrayRefusedFailsClosed: an element PostgreSQL refuses in
// one of the batch's arrays (a request id with a NUL byte or invalid UTF-8,
// a record with no data) fails the whole batch, on the guessed and on the
// plain path: nothing of it is written, the error is returned, and the
// store's next batch (guessed again) appends at the right index.
func TestLedgerBatchArrayRefusedFailsClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dsn := pgtest.DSN(t)
	open := func() *sqlstore.DB { // pgx's exec mode without the statement cache
		db, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 1, MinOpenConns: 1, StatementCache: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	db, h := open(), storetest.NewHasher()
	m := &logModel{rows: map[int64]ledger.Entry{}, inst: map[int64]string{}, open: map[string]int64{}}
	ok := func(id string) ledger.Entry {
		return ledger.Entry{Data: []byte("record " + id), RequestID: id, Opens: true}
	}
	bad := []ledger.Entry{
		{Data: []byte("nul"), RequestID: "req_a\x00b"},
		{Data: []byte("utf8"), RequestID: "req_\xff\xfe"},
		{Data: nil, RequestID: "req_nil"},
	}
	for round, b := range bad {
		for _, guess := range []bool{false, true} {
			m.appendRows(t, ctx, db, h, "gw", []ledger.Entry{ok(fmt.Sprint("req_before_", round, guess))})
			es := []ledger.Entry{ok(fmt.Sprint("req_ok1_", round, guess)), b, ok(fmt.Sprint("req_ok2_", round, guess))}
			guessed := db.GuessedBatches()
			to := db
			if !guess {
				to = open() // a store that does not know the size: the plain path
			}
			if _, err := to.LedgerAppend(ctx, "gw", es, storetest.NewHasher().Hashes); err == nil {
				t.Fatalf("a batch with %q (data nil %v) appended (guessed path %v)", b.RequestID, b.Data == nil, guess)
			}
			if guess && db.GuessedBatches() != guessed || !guess && to.GuessedBatches() != 0 {
				t.Fatalf("guessed batches %d (was %d), other store %d", db.GuessedBatches(), guessed, to.GuessedBatches())
			}
			m.check(t, ctx, db)
			m.appendRows(t, ctx, db, h, "gw", []ledger.Entry{ok(fmt.Sprint("req_after_", round, guess))})
			if db.GuessedBatches() != guessed+1 {
				t.Fatalf("the batch after a failed one did not guess (%d, was %d)", db.GuessedBatches(), guessed)
			}
			m.check(t, ctx, db)
		}
	}
}

// TestLedgerBatchHashesOfWrongShapeFailClosed: the stored hashes a batch
// is given are written from tlog.StoredHashCount(start) on, one after the
// other, so a callback answering one hash too few or too many for a record,
// or fewer lists than records, would shift every hash after it (a log that
// does not verify) or take the next batch's first index (every later batch
// refused). The store fails such a batch, on the plain and the guessed
// path, writes nothing, and appends the next batch.
func TestLedgerBatchHashesOfWrongShapeFailClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dsn := pgtest.DSN(t)
	open := func() *sqlstore.DB {
		db, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 1, MinOpenConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	db, h := open(), storetest.NewHasher()
	m := &logModel{rows: map[int64]ledger.Entry{}, inst: map[int64]string{}, open: map[string]int64{}}
	plain := func(id string) ledger.Entry { return ledger.Entry{Data: []byte("record " + id), RequestID: id} }
	faults := map[string]func([][]tlog.Hash) [][]tlog.Hash{
		"a hash too few": func(hs [][]tlog.Hash) [][]tlog.Hash {
			for i := range hs {
				if len(hs[i]) > 1 {
					hs[i] = hs[i][:len(hs[i])-1]
					break
				}
			}
			return hs
		},
		"a hash too many":           func(hs [][]tlog.Hash) [][]tlog.Hash { hs[0] = append(hs[0], hs[0][0]); return hs },
		"a record's hashes missing": func(hs [][]tlog.Hash) [][]tlog.Hash { return hs[:len(hs)-1] },
		"one hash moved to the next record": func(hs [][]tlog.Hash) [][]tlog.Hash {
			for i := range hs[:len(hs)-1] {
				if len(hs[i]) > 1 {
					hs[i+1] = append([]tlog.Hash{hs[i][len(hs[i])-1]}, hs[i+1]...)
					hs[i] = hs[i][:len(hs[i])-1]
					break
				}
			}
			return hs
		},
	}
	for name, fault := range faults {
		for _, guess := range []bool{false, true} {
			m.appendRows(t, ctx, db, h, "gw", []ledger.Entry{plain(fmt.Sprint("before ", name, guess))})
			to := db
			if !guess {
				to = open() // a store that does not know the size: the plain path
			}
			guessed := to.GuessedBatches()
			es := []ledger.Entry{plain("x1"), plain("x2"), plain("x3"), plain("x4")}
			faulty := func(start int64, kept []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
				hs, err := storetest.NewHasher().Hashes(start, kept, r)
				if err != nil {
					return nil, err
				}
				return fault(hs), nil
			}
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("%s (guessed path %v): panic %v", name, guess, r)
					}
				}()
				if _, err := to.LedgerAppend(ctx, "gw", es, faulty); err == nil {
					t.Fatalf("%s (guessed path %v): appended", name, guess)
				}
			}()
			if to.GuessedBatches() != guessed {
				t.Fatalf("%s: committed on a guess", name)
			}
			m.check(t, ctx, db)
			for range 2 {
				m.appendRows(t, ctx, db, h, "gw", []ledger.Entry{plain(fmt.Sprint("after ", name, guess)), plain("y")})
			}
			m.check(t, ctx, db)
		}
	}
}
