package ledger_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// The exporter's promise: every record in the log reaches every export
// target, in log order, whatever happened to the record's writer, to the
// target or to the exporting process. These tests each break one way the
// old, queue-fed exporter lost records.

var exportSecret = []byte("export-test-secret")

// receiver is a SIEM's webhook: it checks each delivery's signature and
// range headers, and keeps the lines of the deliveries it accepted.
type receiver struct {
	t        *testing.T
	down     atomic.Bool
	code     atomic.Int64 // the answer while down
	attempts atomic.Int64
	refused  atomic.Int64

	mu    sync.Mutex
	lines [][]byte
}

func newReceiver(t *testing.T) (*receiver, string) {
	r := &receiver{t: t}
	r.code.Store(http.StatusServiceUnavailable)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv.URL + "/siem"
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.attempts.Add(1)
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ts, _ := strconv.ParseInt(req.Header.Get("X-Gatehouse-Timestamp"), 10, 64)
	if !alert.Verify(exportSecret, ts, body, req.Header.Get("X-Gatehouse-Signature")) {
		r.t.Errorf("delivery with a bad signature")
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		r.t.Errorf("Content-Type %q", ct)
	}
	lines := bytes.SplitAfter(body, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if first, _ := strconv.ParseInt(req.Header.Get("X-Gatehouse-Log-Index"), 10, 64); len(lines) == 0 || lineIndex(r.t, lines[0]) != first {
		r.t.Errorf("X-Gatehouse-Log-Index %d does not name the first line", first)
	}
	if n, _ := strconv.Atoi(req.Header.Get("X-Gatehouse-Log-Count")); n != len(lines) {
		r.t.Errorf("X-Gatehouse-Log-Count %d for %d lines", n, len(lines))
	}
	if r.down.Load() {
		r.refused.Add(1)
		w.WriteHeader(int(r.code.Load()))
		return
	}
	r.mu.Lock()
	r.lines = append(r.lines, lines...)
	r.mu.Unlock()
}

func (r *receiver) got() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.lines...)
}

// lineIndex returns an exported line's log_index.
func lineIndex(t *testing.T, line []byte) int64 {
	t.Helper()
	var v struct {
		Index *int64 `json:"log_index"`
	}
	if err := json.Unmarshal(line, &v); err != nil || v.Index == nil {
		t.Fatalf("exported line without a log_index (%v): %q", err, line)
	}
	return *v.Index
}

// record recovers the record's own bytes from an exported line (the
// documented format: {"log_index":N, then the record after its brace).
func record(t *testing.T, line []byte) []byte {
	t.Helper()
	line = bytes.TrimSuffix(line, []byte("\n"))
	prefix := fmt.Sprintf(`{"log_index":%d,`, lineIndex(t, line))
	if !bytes.HasPrefix(line, []byte(prefix)) {
		t.Fatalf("line does not start with %s: %q", prefix, line)
	}
	return append([]byte("{"), line[len(prefix):]...)
}

// checkExported asserts that lines are exactly the log's records [from,
// size), once each, in log order, and that each one's leaf hash is the
// log's.
func checkExported(t *testing.T, db ledger.Store, lines [][]byte, from, size int64) {
	t.Helper()
	if int64(len(lines)) != size-from {
		t.Fatalf("%d lines exported, want records %d to %d (%d)", len(lines), from, size, size-from)
	}
	recs, err := db.LedgerEntries(context.Background(), from, size)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range lines {
		if got := lineIndex(t, line); got != from+int64(i) {
			t.Fatalf("line %d has log_index %d, want %d (out of order, duplicated or missing)", i, got, from+int64(i))
		}
		r := record(t, line)
		if tlog.RecordHash(r) != tlog.RecordHash(recs[i]) {
			t.Fatalf("line %d is not record %d: %q, want %q", i, from+int64(i), r, recs[i])
		}
	}
}

// fileLines reads the export file's lines.
func fileLines(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// fastExport are options that make tests quick: short polls and backoff.
func fastExport(o ledger.ExportOptions) ledger.ExportOptions {
	o.Secret = exportSecret
	o.Poll = 20 * time.Millisecond
	o.Spacing = 2 * time.Millisecond
	o.MaxBackoff = 40 * time.Millisecond
	if o.Instance == "" {
		o.Instance = "gw.test"
	}
	return o
}

// runExporter starts an exporter over st (its cursors fixed, as the server
// does before it serves) and runs it; stop ends it (once) and waits.
func runExporter(t *testing.T, st ledger.ExportStore, o ledger.ExportOptions) (*ledger.Exporter, func()) {
	t.Helper()
	e, err := ledger.NewExporter(st, o, discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return e, stop
}

// notifier lets a test point a running Log's Committed at exporters made
// later (Committed itself is set before Run).
type notifier struct {
	mu sync.Mutex
	es []*ledger.Exporter
}

func (n *notifier) add(e *ledger.Exporter) {
	n.mu.Lock()
	n.es = append(n.es, e)
	n.mu.Unlock()
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.es {
		e.Notify()
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appendN(t *testing.T, l *ledger.Log, prefix string, n int) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("%s_%d", prefix, i)
		r := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: id, Action: "POST /v1/keys"}
		if _, err := l.Append(context.Background(), ledger.Entry{Data: r.Marshal(), RequestID: id}); err != nil {
			t.Fatal(err)
		}
	}
}

// answerLost commits every batch but answers the first with an error: the
// connection dropped after COMMIT. The writer hears that its record failed;
// the record is in the log.
type answerLost struct {
	*sqlstore.DB
	lost atomic.Bool
}

func (a *answerLost) LedgerAppend(ctx context.Context, inst string, es []ledger.Entry, h func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	idx, err := a.DB.LedgerAppend(ctx, inst, es, h)
	if err == nil && a.lost.CompareAndSwap(false, true) {
		return nil, errors.New("connection reset (the commit went through)")
	}
	return idx, err
}

// TestExportCommitWithLostAnswer: a record whose commit succeeded but whose
// answer was lost is exported, because it is in the log. The old exporter
// was handed only the records whose batch answered, and lost it.
func TestExportCommitWithLostAnswer(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			st := &answerLost{DB: db}
			skey, _ := ledger.GenerateKey(origin)
			l, err := ledger.New(st, "gw.1", skey, discard)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "export.jsonl")
			e, _ := runExporter(t, db, fastExport(ledger.ExportOptions{File: path, FromStart: true}))
			l.Committed = e.Notify
			// Sink is what fed the old exporter: it never sees the record.
			var pushed atomic.Int64
			l.Sink = func(data []byte) {
				if bytes.Contains(data, []byte("req_lost")) {
					pushed.Add(1)
				}
			}
			ledgertest.Run(t, l)
			r := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: "req_lost", Action: "POST /v1/keys"}
			if _, err := l.Append(context.Background(), ledger.Entry{Data: r.Marshal(), RequestID: "req_lost"}); !errors.Is(err, ledger.ErrUnavailable) {
				t.Fatalf("append with a lost answer: %v, want ErrUnavailable", err)
			}
			appendN(t, l, "req_after", 3)
			waitFor(t, "4 exported lines", func() bool { return len(fileLines(t, path)) >= 4 })
			lines := fileLines(t, path)
			checkExported(t, db, lines, 0, 4)
			if !bytes.Contains(lines[0], []byte("req_lost")) {
				t.Fatalf("the first line is not the record whose answer was lost: %q", lines[0])
			}
			if pushed.Load() != 0 {
				t.Fatal("the commit path reported the record whose answer was lost: the test did not lose an answer")
			}
		})
	}
}

// TestExportWebhookDownThenUp: a webhook that refuses (4xx, then 5xx) for a
// while gets, once it is up, every record in log order, once; meanwhile the
// exporter reports the failure and how far behind it is. The old exporter
// dropped every batch the webhook refused.
func TestExportWebhookDownThenUp(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			l := logOn(t, db)
			rc, url := newReceiver(t)
			rc.down.Store(true)
			rc.code.Store(http.StatusBadRequest)
			e, _ := runExporter(t, db, fastExport(ledger.ExportOptions{Webhook: url}))
			l.Committed = e.Notify
			ledgertest.Run(t, l)
			appendN(t, l, "req_down", 40)
			waitFor(t, "refused deliveries", func() bool { return rc.refused.Load() >= 3 })
			rc.code.Store(http.StatusBadGateway)
			appendN(t, l, "req_down5xx", 10)
			waitFor(t, "more refused deliveries", func() bool { return rc.refused.Load() >= 6 })
			st := e.Status()[0]
			if !st.Failing || st.Failures < 3 || st.Delivered != 0 {
				t.Fatalf("status while the webhook refuses: %+v; want failing, failures counted, nothing delivered", st)
			}
			waitFor(t, "the lag to show every record", func() bool { return e.Status()[0].Behind == 50 })
			if got := len(rc.got()); got != 0 {
				t.Fatalf("%d lines accepted while down", got)
			}
			rc.down.Store(false)
			waitFor(t, "every record delivered", func() bool { return len(rc.got()) >= 50 })
			time.Sleep(100 * time.Millisecond) // a duplicate would arrive now
			checkExported(t, db, rc.got(), 0, 50)
			if st := e.Status()[0]; st.Failing || st.Behind != 0 || st.Delivered != 50 {
				t.Fatalf("status after recovery: %+v", st)
			}
		})
	}
}

// TestExportResumesAfterRestart: records committed while no exporter runs
// (the process was stopped, or killed with records in its queue) are
// exported by the next process, from the durable cursor, without loss or
// repetition; a new store handle and a new Log, as after a restart.
func TestExportResumesAfterRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath, path := filepath.Join(dir, "gh.db"), filepath.Join(dir, "export.jsonl")
	skey, _ := ledger.GenerateKey(origin)
	life := func(prefix string, n int, export bool) {
		db, err := sqlite.Open(ctx, dbPath)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		l, err := ledger.New(db, "gw.1", skey, discard)
		if err != nil {
			t.Fatal(err)
		}
		stop := func() {}
		if export {
			var e *ledger.Exporter
			e, stop = runExporter(t, db, fastExport(ledger.ExportOptions{File: path, FromStart: true}))
			l.Committed = e.Notify
		}
		lctx, stopLog := context.WithCancel(ctx)
		logDone := make(chan struct{})
		go func() { l.Run(lctx); close(logDone) }()
		defer func() { stopLog(); <-logDone }()
		ledgertest.WaitRunning(t, l)
		appendN(t, l, prefix, n)
		if !export {
			return // a process whose exporter never got to them
		}
		size, _ := db.LedgerSize(ctx)
		waitFor(t, "the export to catch up", func() bool { return int64(len(fileLines(t, path))) >= size })
		stop()
	}
	life("req_first", 10, true)
	life("req_unexported", 25, false)
	life("req_third", 5, true)
	db, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkExported(t, db, fileLines(t, path), 0, 40)
}

// TestExportFloodLosesNothing: far more records than the old exporter's
// queue (8192) are committed while the webhook is down; once it is up they
// all arrive, in order, in bounded batches.
func TestExportFloodLosesNothing(t *testing.T) {
	_, db, _ := newLog(t)
	l := logOn(t, db)
	l.Linger = time.Millisecond
	l.Calls = func() int { return 64 }
	rc, url := newReceiver(t)
	rc.down.Store(true)
	e, _ := runExporter(t, db, fastExport(ledger.ExportOptions{Webhook: url, FromStart: true, Batch: 700}))
	l.Committed = e.Notify
	ledgertest.Run(t, l)
	const n = 10_000
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 64 {
		wg.Go(func() {
			for i := next.Add(1); i <= n; i = next.Add(1) {
				id := fmt.Sprint("req_flood_", i)
				r := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: id, Action: "flood"}
				if _, err := l.Append(context.Background(), ledger.Entry{Data: r.Marshal(), RequestID: id}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	waitFor(t, "a refused delivery", func() bool { return rc.refused.Load() >= 1 })
	rc.down.Store(false)
	waitFor(t, "the flood delivered", func() bool { return len(rc.got()) >= n })
	time.Sleep(100 * time.Millisecond)
	checkExported(t, db, rc.got(), 0, n)
}

// TestExportStartsAtTheEnd: a target without a cursor (first start, or the
// upgrade from the exporter that had none) starts at the log's end unless
// FromStart: an upgrade does not flood a SIEM with the past.
func TestExportStartsAtTheEnd(t *testing.T) {
	_, db, _ := newLog(t)
	l := logOn(t, db)
	var n notifier
	l.Committed = n.notify
	ledgertest.Run(t, l)
	appendN(t, l, "req_past", 7)
	tail := filepath.Join(t.TempDir(), "tail.jsonl")
	// Two targets of the same store in one test: the whole log goes to a
	// webhook, the tail to the file.
	rc, url := newReceiver(t)
	eTail, stopTail := runExporter(t, db, fastExport(ledger.ExportOptions{File: tail}))
	if next, ok := cursor(t, db, ledger.ExportTargetFile); !ok || next != 7 {
		t.Fatalf("the file's cursor after Start: %d (%v), want 7", next, ok)
	}
	eWhole, _ := runExporter(t, db, fastExport(ledger.ExportOptions{Webhook: url, FromStart: true}))
	n.add(eTail)
	n.add(eWhole)
	appendN(t, l, "req_new", 2)
	waitFor(t, "the tail exported", func() bool { return len(fileLines(t, tail)) >= 2 })
	waitFor(t, "the whole log exported", func() bool { return len(rc.got()) >= 9 })
	stopTail()
	checkExported(t, db, fileLines(t, tail), 7, 9)
	checkExported(t, db, rc.got(), 0, 9)
}

// cursor reads a target's stored cursor.
func cursor(t *testing.T, db *sqlstore.DB, target string) (int64, bool) {
	t.Helper()
	var next int64
	err := db.SQL().QueryRow(`SELECT next FROM ledger_export WHERE target = '` + target + `'`).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return next, true
}

// deadAfter is an exporter's store that dies (every call hangs until the
// test ends, and the lease is never released) after its holder saved the
// cursor advances times: a replica killed while it held the export.
type deadAfter struct {
	ledger.ExportStore
	advances atomic.Int64
	dead     chan struct{} // closed when the replica dies
	end      chan struct{} // closed when the test ends: calls stop hanging
	once     sync.Once
}

var errGone = errors.New("the process is gone")

// check hangs once the replica is dead, until the test ends.
func (d *deadAfter) check() error {
	select {
	case <-d.dead:
		<-d.end
		return errGone
	default:
		return nil
	}
}

func (d *deadAfter) LedgerSize(ctx context.Context) (int64, error) {
	if err := d.check(); err != nil {
		return 0, err
	}
	return d.ExportStore.LedgerSize(ctx)
}

func (d *deadAfter) ExportLease(ctx context.Context, target, holder string, now, until time.Time) (int64, bool, error) {
	if err := d.check(); err != nil {
		return 0, false, err
	}
	return d.ExportStore.ExportLease(ctx, target, holder, now, until)
}

func (d *deadAfter) ExportAdvance(ctx context.Context, target, holder string, from, to int64, until time.Time) error {
	if err := d.check(); err != nil {
		return err
	}
	err := d.ExportStore.ExportAdvance(ctx, target, holder, from, to, until)
	if err == nil && d.advances.Add(-1) == 0 {
		d.once.Do(func() { close(d.dead) })
	}
	return err
}

func (d *deadAfter) ExportRelease(context.Context, string, string) error { return nil }

// TestExportTwoReplicasExportOnce: two replicas on one PostgreSQL database
// append concurrently; a third writes records and dies without exporting;
// the replica that holds the export dies in the middle (its lease is not
// released). Every record of every replica reaches the webhook exactly once,
// in log order. The old exporters each sent only their own process's
// records, and a dead replica's queue was lost.
func TestExportTwoReplicasExportOnce(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	open := func() *sqlstore.DB {
		db, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: pgtest.PoolSize})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b, c := open(), open(), open()
	skey, _ := ledger.GenerateKey(origin)
	var na, nb notifier
	newLog := func(db *sqlstore.DB, inst string, n *notifier) *ledger.Log {
		l, err := ledger.New(db, inst, skey, discard)
		if err != nil {
			t.Fatal(err)
		}
		if n != nil {
			l.Committed = n.notify
		}
		ledgertest.Run(t, l)
		return l
	}
	la, lb, lc := newLog(a, "gw.a", &na), newLog(b, "gw.b", &nb), newLog(c, "gw.c", nil)
	// c writes and dies before any exporter ran.
	appendN(t, lc, "req_c", 20)

	rc, url := newReceiver(t)
	lease := 300 * time.Millisecond
	// a's exporter takes the export first and dies after three cursor
	// saves, holding the lease; b's takes over when the lease expires.
	da := &deadAfter{ExportStore: a, dead: make(chan struct{}), end: make(chan struct{})}
	da.advances.Store(3)
	ea, _ := runExporter(t, da, fastExport(ledger.ExportOptions{Webhook: url, FromStart: true, Lease: lease, Batch: 7, Instance: "gw.a"}))
	t.Cleanup(func() { close(da.end) }) // before the exporter's stop (cleanups run last first)
	na.add(ea)
	var wg sync.WaitGroup
	wg.Go(func() { appendN(t, la, "req_a", 60) })
	waitFor(t, "a's exporter to die holding the export", func() bool {
		select {
		case <-da.dead:
			return true
		default:
			return false
		}
	})
	// b's exporter, and one on c's store (a replica alive again), compete
	// for the export from now on.
	eb, _ := runExporter(t, b, fastExport(ledger.ExportOptions{Webhook: url, FromStart: true, Lease: lease, Batch: 7, Instance: "gw.b"}))
	ec, _ := runExporter(t, c, fastExport(ledger.ExportOptions{Webhook: url, FromStart: true, Lease: lease, Batch: 7, Instance: "gw.c"}))
	nb.add(eb)
	nb.add(ec)
	na.add(ec)
	wg.Go(func() { appendN(t, lb, "req_b", 60) })
	wg.Wait()
	size, err := a.LedgerSize(ctx)
	if err != nil || size != 140 {
		t.Fatalf("log size %d, %v; want 140", size, err)
	}
	waitFor(t, "every replica's records delivered", func() bool { return int64(len(rc.got())) >= size })
	time.Sleep(2 * lease) // a duplicate would arrive now
	checkExported(t, a, rc.got(), 0, size)
	// a's last batch may have been short (fewer than 7 committed yet):
	// what b and c delivered is what a did not.
	if sa, sb, sc := ea.Status()[0], eb.Status()[0], ec.Status()[0]; sb.Delivered+sc.Delivered != size-sa.Delivered || sb.Holding == sc.Holding {
		t.Fatalf("a: %+v, b: %+v, c: %+v; want one of b and c holding the export, and all but a's deliveries delivered by them", sa, sb, sc)
	}
}

// TestExportCursorLease: the store's side of the export, on every backend:
// the cursor is created once, one holder at a time moves it, only from
// where it is, and an expired or released lease passes to another.
func TestExportCursorLease(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			ctx := context.Background()
			const target = "webhook"
			if next, err := db.ExportStart(ctx, target, 5); err != nil || next != 5 {
				t.Fatalf("first start: %d, %v; want 5", next, err)
			}
			if next, err := db.ExportStart(ctx, target, 9); err != nil || next != 5 {
				t.Fatalf("second start: %d, %v; want the first's 5", next, err)
			}
			now := time.Now()
			lease := func(holder string, at time.Time) (int64, bool) {
				t.Helper()
				next, held, err := db.ExportLease(ctx, target, holder, at, at.Add(time.Minute))
				if err != nil {
					t.Fatal(err)
				}
				return next, held
			}
			if next, held := lease("a", now); !held || next != 5 {
				t.Fatalf("a's lease: %d, %v", next, held)
			}
			if _, held := lease("b", now.Add(30*time.Second)); held {
				t.Fatal("b took a lease that has not expired")
			}
			if err := db.ExportAdvance(ctx, target, "b", 5, 8, now.Add(time.Minute)); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("b advanced a's cursor: %v", err)
			}
			if err := db.ExportAdvance(ctx, target, "a", 4, 8, now.Add(time.Minute)); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("a advanced from the wrong place: %v", err)
			}
			if err := db.ExportAdvance(ctx, target, "a", 5, 8, now.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if next, held := lease("b", now.Add(2*time.Minute)); !held || next != 8 {
				t.Fatalf("b after a's lease expired: %d, %v; want it, at 8", next, held)
			}
			if err := db.ExportAdvance(ctx, target, "a", 8, 9, now.Add(3*time.Minute)); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("a advanced after losing its lease: %v", err)
			}
			if err := db.ExportRelease(ctx, target, "a"); err != nil { // not a's: nothing happens
				t.Fatal(err)
			}
			if _, held := lease("c", now.Add(2*time.Minute)); held {
				t.Fatal("a released b's lease")
			}
			if err := db.ExportRelease(ctx, target, "b"); err != nil {
				t.Fatal(err)
			}
			if next, held := lease("c", now); !held || next != 8 {
				t.Fatalf("c after b released: %d, %v", next, held)
			}
		})
	}
}
