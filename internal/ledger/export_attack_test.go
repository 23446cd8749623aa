package ledger_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// The export attacked: a webhook that redirects, hangs, answers with a
// flood or with garbage; a store that lies about its size, was restored
// from an older backup, or was altered; a file moved away by logrotate.
// Each test breaks one promise of the export as it was before its fix.

// waitCursor waits until the exporter created target's cursor (it starts at
// the log's end by default) and returns it.
func waitCursor(t *testing.T, db *sqlstore.DB, target string) int64 {
	t.Helper()
	var next int64
	waitFor(t, "the exporter's cursor", func() bool {
		n, ok := cursor(t, db, target)
		next = n
		return ok
	})
	return next
}

// TestExportWebhookRedirectNotFollowed: a webhook that answers 302, 307 or
// 308 pointing elsewhere. Followed, a 302 became a GET without the records
// whose 200 counted them delivered (lost), and a 307/308 re-sent the signed
// records to the other host (a leak). Now no request reaches the other
// host, the cursor does not move, the failure shows, and once the webhook
// answers itself every record arrives.
func TestExportWebhookRedirectNotFollowed(t *testing.T) {
	for _, code := range []int{http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			_, db, _ := newLog(t)
			l := logOn(t, db)
			var elsewhere atomic.Int64
			other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				elsewhere.Add(1)
				io.Copy(io.Discard, r.Body)
			}))
			t.Cleanup(other.Close)
			rc, _ := newReceiver(t)
			var redirect atomic.Bool
			var redirected atomic.Int64
			redirect.Store(true)
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if redirect.Load() {
					io.Copy(io.Discard, r.Body)
					redirected.Add(1)
					http.Redirect(w, r, other.URL+"/collect", code)
					return
				}
				rc.ServeHTTP(w, r)
			}))
			t.Cleanup(hook.Close)
			e, _ := runExporter(t, db, fastExport(ledger.ExportOptions{Webhook: hook.URL + "/siem"}))
			l.Committed = e.Notify
			ledgertest.Run(t, l)
			start := waitCursor(t, db, ledger.ExportTargetWebhook)
			appendN(t, l, "req_redirect", 5)
			waitFor(t, "redirects answered (or one followed)", func() bool { return redirected.Load() >= 3 || elsewhere.Load() > 0 })
			if n := elsewhere.Load(); n != 0 {
				t.Fatalf("%d requests reached the host the redirect named", n)
			}
			if next, _ := cursor(t, db, ledger.ExportTargetWebhook); next != start {
				t.Fatalf("cursor moved from %d to %d on redirects: records counted delivered that were not", start, next)
			}
			if st := e.Status()[0]; !st.Failing || st.Delivered != 0 || st.Failures == 0 {
				t.Fatalf("status while redirected: %+v; want failing, nothing delivered", st)
			}
			redirect.Store(false)
			waitFor(t, "every record delivered", func() bool { return len(rc.got()) >= 5 })
			checkExported(t, db, rc.got(), start, start+5)
			if n := elsewhere.Load(); n != 0 {
				t.Fatalf("%d requests reached the host the redirect named", n)
			}
		})
	}
}

// TestExportStopBoundedWithHangingWebhook: a webhook that accepts the
// connection and never answers, and a client without a timeout. Stopping
// returned only when the webhook answered, that is never; now it returns
// after FinalTimeout, the cursor unchanged (nothing counted delivered), the
// lease released, and a later run (whose lease is long: it cannot wait the
// old one out) delivers every record.
func TestExportStopBoundedWithHangingWebhook(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			l := logOn(t, db)
			var n notifier
			l.Committed = n.notify
			ledgertest.Run(t, l)
			var entered atomic.Int64
			hang := make(chan struct{})
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				entered.Add(1)
				select {
				case <-hang:
				case <-r.Context().Done():
				}
			}))
			t.Cleanup(hook.Close)
			var unhang sync.Once
			release := func() { unhang.Do(func() { close(hang) }) }
			t.Cleanup(release) // runs before hook.Close
			o := fastExport(ledger.ExportOptions{Webhook: hook.URL, Client: &http.Client{}, FinalTimeout: 200 * time.Millisecond, Lease: time.Hour})
			e, stop := runExporter(t, db, o)
			n.add(e)
			start := waitCursor(t, db, ledger.ExportTargetWebhook)
			appendN(t, l, "req_hang", 3)
			waitFor(t, "the delivery to hang", func() bool { return entered.Load() >= 1 })
			stopped := make(chan struct{})
			go func() { stop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(30 * time.Second):
				release() // so that the test's cleanup can stop it
				t.Fatal("the exporter did not stop with the webhook hanging")
			}
			if next, _ := cursor(t, db, ledger.ExportTargetWebhook); next != start {
				t.Fatalf("cursor moved from %d to %d, though the webhook never answered", start, next)
			}
			rc, url := newReceiver(t)
			e2, _ := runExporter(t, db, fastExport(ledger.ExportOptions{Webhook: url, Lease: time.Hour}))
			n.add(e2)
			waitFor(t, "the later run to deliver", func() bool { return len(rc.got()) >= 3 })
			checkExported(t, db, rc.got(), start, start+3)
		})
	}
}

// hangingRelease is a store whose lease release hangs until its context
// ends.
type hangingRelease struct {
	ledger.ExportStore
	released atomic.Int64
	end      chan struct{} // closed when the test gives up
}

func (h *hangingRelease) ExportRelease(ctx context.Context, _, _ string) error {
	h.released.Add(1)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-h.end:
		return errGone
	}
}

// TestExportStopBoundedWithHangingStore: a store that does not answer the
// lease's release at the stop does not hold the stop (the release has a
// deadline of its own; the lease then expires).
func TestExportStopBoundedWithHangingStore(t *testing.T) {
	_, db, _ := newLog(t)
	l := logOn(t, db)
	ledgertest.Run(t, l)
	appendN(t, l, "req_release", 2)
	rc, url := newReceiver(t)
	st := &hangingRelease{ExportStore: db, end: make(chan struct{})}
	_, stop := runExporter(t, st, fastExport(ledger.ExportOptions{Webhook: url, FromStart: true, FinalTimeout: 100 * time.Millisecond}))
	waitFor(t, "the records delivered", func() bool { return len(rc.got()) >= 2 })
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		close(st.end) // so that the test's cleanup can stop it
		t.Fatal("the exporter did not stop with the store hanging")
	}
	if st.released.Load() != 1 {
		t.Fatalf("%d releases, want 1", st.released.Load())
	}
}

// counting counts an exporter's store reads.
type counting struct {
	ledger.ExportStore
	sizes, reads atomic.Int64
	empty        atomic.Bool // LedgerEntries* give nothing
	maxRead      atomic.Int64
}

func (c *counting) LedgerSize(ctx context.Context) (int64, error) {
	c.sizes.Add(1)
	return c.ExportStore.LedgerSize(ctx)
}

func (c *counting) got(recs [][]byte, err error) ([][]byte, error) {
	c.reads.Add(1)
	if c.empty.Load() {
		return nil, err
	}
	n := 0
	for _, r := range recs {
		n += len(r)
	}
	for m := c.maxRead.Load(); int64(n) > m && !c.maxRead.CompareAndSwap(m, int64(n)); m = c.maxRead.Load() {
	}
	return recs, err
}

func (c *counting) LedgerEntries(ctx context.Context, from, to int64) ([][]byte, error) {
	return c.got(c.ExportStore.(interface {
		LedgerEntries(context.Context, int64, int64) ([][]byte, error)
	}).LedgerEntries(ctx, from, to))
}

func (c *counting) LedgerEntriesMax(ctx context.Context, from, to int64, maxBytes int) ([][]byte, error) {
	return c.got(c.ExportStore.LedgerEntriesMax(ctx, from, to, maxBytes))
}

// TestExportEmptyReadBacksOff: a store whose size says there are records
// but whose read gives none (a lagging or damaged store). The exporter
// looped as fast as the store answered, "delivering" nothing; now it is a
// failure, retried with backoff: reads stay few for the failures counted
// (a count over a window of failures, not of time).
func TestExportEmptyReadBacksOff(t *testing.T) {
	_, db, _ := newLog(t)
	l := logOn(t, db)
	ledgertest.Run(t, l)
	appendN(t, l, "req_empty", 4)
	st := &counting{ExportStore: db}
	st.empty.Store(true)
	rc, url := newReceiver(t)
	o := fastExport(ledger.ExportOptions{Webhook: url, FromStart: true})
	o.MaxBackoff = 20 * time.Millisecond
	e, _ := runExporter(t, st, o)
	waitFor(t, "failures counted (or a spin)", func() bool { return e.Status()[0].Failures >= 4 || st.reads.Load() >= 2000 })
	reads, fails := st.reads.Load(), e.Status()[0].Failures
	if reads > fails+2 {
		t.Fatalf("%d reads for %d failures: the exporter spins on an empty read", reads, fails)
	}
	if a := rc.attempts.Load(); a != 0 {
		t.Fatalf("%d deliveries of nothing", a)
	}
	if st := e.Status()[0]; !st.Failing || st.Delivered != 0 {
		t.Fatalf("status: %+v; want failing", st)
	}
	st.empty.Store(false)
	waitFor(t, "the records once the store gives them", func() bool { return len(rc.got()) >= 4 })
	checkExported(t, db, rc.got(), 0, 4)
}

// TestExportReadsBySize: a pass reads records up to the delivery's size
// bound, not a whole batch of large records to cut it afterwards (1,000
// records of up to 64 KiB: 64 MB read for a 4 MiB delivery).
func TestExportReadsBySize(t *testing.T) {
	_, db, _ := newLog(t)
	l := logOn(t, db)
	ledgertest.Run(t, l)
	pad := strings.Repeat("x", 2000)
	for i := range 60 {
		id := fmt.Sprint("req_big_", i)
		r := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: id, Action: "POST /v1/keys", Detail: pad}
		if _, err := l.Append(context.Background(), ledger.Entry{Data: r.Marshal(), RequestID: id}); err != nil {
			t.Fatal(err)
		}
	}
	st := &counting{ExportStore: db}
	path := filepath.Join(t.TempDir(), "export.jsonl")
	const maxBytes = 10_000
	runExporter(t, st, fastExport(ledger.ExportOptions{File: path, FromStart: true, MaxBytes: maxBytes}))
	waitFor(t, "every record exported", func() bool { return len(fileLines(t, path)) >= 60 })
	checkExported(t, db, fileLines(t, path), 0, 60)
	if m := st.maxRead.Load(); m > maxBytes {
		t.Fatalf("a pass read %d bytes of records for deliveries of at most %d", m, maxBytes)
	}
}

// TestExportFileRotated: logrotate renames the export file mid-export. The
// exporter kept writing to the renamed file (its open handle) and the file
// at the configured path never reappeared; now it reopens the path, and the
// two files together hold every record once, in order.
func TestExportFileRotated(t *testing.T) {
	_, db, _ := newLog(t)
	l := logOn(t, db)
	var n notifier
	l.Committed = n.notify
	ledgertest.Run(t, l)
	path := filepath.Join(t.TempDir(), "export.jsonl")
	e, stop := runExporter(t, db, fastExport(ledger.ExportOptions{File: path, FromStart: true, Batch: 3}))
	n.add(e)
	appendN(t, l, "req_before", 10)
	waitFor(t, "the first records", func() bool { return len(fileLines(t, path)) >= 10 })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, "req_after", 10)
	waitFor(t, "the rest in a new file at the path", func() bool {
		_, err := os.Stat(path)
		return err == nil && len(fileLines(t, path))+len(fileLines(t, path+".1")) >= 20
	})
	stop()
	old, cur := fileLines(t, path+".1"), fileLines(t, path)
	if len(cur) == 0 {
		t.Fatal("nothing in the new file")
	}
	checkExported(t, db, append(old, cur...), 0, 20)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new export file: %v, %v; want mode 0600", fi.Mode(), err)
	}
}

// TestExportCursorPastEnd: the store is restored from an older backup, so
// the export's cursor is past the log's end. The exporter said so once and
// then, once the log grew past the cursor, went on at the cursor, silently
// skipping the records appended below it. Now the target stalls, loudly
// (PastEnd) and without spinning, also after the log grew past the cursor,
// until an operator resets the cursor; then it delivers from there.
func TestExportCursorPastEnd(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			ctx := context.Background()
			l := logOn(t, db)
			var n notifier
			l.Committed = n.notify
			ledgertest.Run(t, l)
			appendN(t, l, "req_kept", 5)
			// The export had reached 12 when the backup of 5 records was
			// restored.
			if _, err := db.ExportStart(ctx, ledger.ExportTargetWebhook, 12); err != nil {
				t.Fatal(err)
			}
			rc, url := newReceiver(t)
			st := &counting{ExportStore: db}
			e, stop := runExporter(t, st, fastExport(ledger.ExportOptions{Webhook: url}))
			n.add(e)
			waitFor(t, "the stall to show", func() bool { return e.Status()[0].PastEnd })
			// Not a spin: a few reads a Poll (20 ms) while the log grows
			// past the cursor.
			appendN(t, l, "req_new", 10)
			sizes := st.sizes.Load()
			waitFor(t, "passes after the log grew past the cursor", func() bool { return st.sizes.Load() >= sizes+5 })
			if st := e.Status()[0]; !st.PastEnd || st.Delivered != 0 {
				t.Fatalf("status after the log grew past the cursor: %+v; want still stalled", st)
			}
			if got := rc.attempts.Load(); got != 0 {
				t.Fatalf("%d deliveries from a cursor past the log's end", got)
			}
			// The stall is stored: a process started now, with the log
			// past the cursor, stalls too (it went on at the cursor).
			waitFor(t, "the stall stored", func() bool { next, _ := cursor(t, db, ledger.ExportTargetWebhook); return next == -13 })
			stop()
			e2, _ := runExporter(t, db, fastExport(ledger.ExportOptions{Webhook: url}))
			n.add(e2)
			waitFor(t, "the restarted exporter to stall", func() bool { return e2.Status()[0].PastEnd })
			if got := rc.attempts.Load(); got != 0 {
				t.Fatalf("%d deliveries by the restarted exporter", got)
			}
			e = e2
			// The operator resets the cursor to the restored log's end.
			if was, err := db.ExportReset(ctx, ledger.ExportTargetWebhook, 5); err != nil || was != -13 {
				t.Fatalf("reset: was %d, %v; want the stored stall -13", was, err)
			}
			waitFor(t, "the records from the reset cursor", func() bool { return len(rc.got()) >= 10 })
			checkExported(t, db, rc.got(), 5, 15)
			if st := e.Status()[0]; st.PastEnd {
				t.Fatalf("status after the reset: %+v", st)
			}
		})
	}
}

// TestExportHostileWebhookAnswers: answers a webhook controls. A 200 with
// an endless body, or one that trickles, delivers (the body is not read and
// costs nothing); an answer that is not HTTP, or a connection cut before
// the answer, fails and is retried; in the end every record arrives once.
func TestExportHostileWebhookAnswers(t *testing.T) {
	_, db, _ := newLog(t)
	l := logOn(t, db)
	var n notifier
	l.Committed = n.notify
	ledgertest.Run(t, l)
	rc, _ := newReceiver(t)
	var mode atomic.Int64 // 0 endless body, 1 trickle, 2 garbage, 3 cut, 4 honest
	var seen [5]atomic.Int64
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := mode.Load()
		seen[m].Add(1)
		switch m {
		case 0, 1:
			rc.ServeHTTP(w, r) // accepted: 200
			w.(http.Flusher).Flush()
			chunk := bytes.Repeat([]byte("A"), 1<<16)
			if m == 1 {
				chunk = chunk[:1]
			}
			for {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-done:
					return
				case <-r.Context().Done():
					return
				default:
				}
				if m == 1 {
					select {
					case <-done:
						return
					case <-r.Context().Done():
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
		case 2, 3:
			io.Copy(io.Discard, r.Body)
			c, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			if m == 2 {
				buf.WriteString("\x00\x01 this is not HTTP \r\n\r\n")
				buf.Flush()
			}
			c.Close()
		default:
			rc.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(hook.Close)
	o := fastExport(ledger.ExportOptions{Webhook: hook.URL, FromStart: true, DeliveryTimeout: 5 * time.Second})
	e, _ := runExporter(t, db, o)
	n.add(e)
	total := 0
	for m := range int64(5) {
		mode.Store(m)
		appendN(t, l, fmt.Sprint("req_mode", m), 2)
		total += 2
		if m == 2 || m == 3 {
			waitFor(t, fmt.Sprint("failures in mode ", m), func() bool { return seen[m].Load() >= 2 })
			continue
		}
		waitFor(t, fmt.Sprint("delivery in mode ", m), func() bool { return len(rc.got()) >= total })
	}
	checkExported(t, db, rc.got(), 0, int64(total))
	waitFor(t, "the exporter to hear the last answer", func() bool { return e.Status()[0].Delivered == int64(total) })
	if st := e.Status()[0]; st.Failures < 2 || st.Failing {
		t.Fatalf("status: %+v; want the garbage and cut answers counted as failures, then recovered", st)
	}
}

// TestExportAlteredRecordCannotForgeLines: a record altered in the store
// (behind the log's back) to hold a newline and a forged line. Copied raw,
// the SIEM read two lines, the second with whatever log_index it claimed.
// Now the record is exported base64-encoded on its own line, with its
// true index; the SIEM gets exactly one line per record.
func TestExportAlteredRecordCannotForgeLines(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			l := logOn(t, db)
			ledgertest.Run(t, l)
			appendN(t, l, "req_altered", 3)
			forged := []byte("{\"v\":1,\"kind\":\"admin\"}\n{\"log_index\":99,\"kind\":\"admin\",\"action\":\"forged\"}")
			q := `UPDATE ledger_entries SET data = ? WHERE idx = 1`
			if name == "postgres" {
				q = `UPDATE ledger_entries SET data = $1 WHERE idx = 1`
			}
			if _, err := db.SQL().Exec(q, forged); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "export.jsonl")
			runExporter(t, db, fastExport(ledger.ExportOptions{File: path, FromStart: true}))
			waitFor(t, "the export", func() bool { return len(fileLines(t, path)) >= 3 })
			lines := fileLines(t, path)
			if len(lines) != 3 {
				t.Fatalf("%d lines for 3 records: %q", len(lines), lines)
			}
			for i, line := range lines {
				if got := lineIndex(t, line); got != int64(i) {
					t.Fatalf("line %d has log_index %d", i, got)
				}
			}
			var v struct {
				Unparsed []byte `json:"unparsed_record"`
			}
			if err := json.Unmarshal(lines[1], &v); err != nil || !bytes.Equal(v.Unparsed, forged) {
				t.Fatalf("the altered record's line %q (%v): want its bytes base64-encoded (%s)", lines[1], err, base64.StdEncoding.EncodeToString(forged))
			}
			checkExported(t, db, [][]byte{lines[0]}, 0, 1)
		})
	}
}

// TestExportWebhookURLChecked: a webhook URL that is not absolute http(s)
// is refused at start (it was accepted and failed every delivery), and the
// refusal does not echo the URL (it may carry a credential).
func TestExportWebhookURLChecked(t *testing.T) {
	_, db, _ := newLog(t)
	for _, u := range []string{"siem.example/ingest", "ftp://user:s3cret@siem.example/x", "http://", "file:///etc/passwd"} {
		_, err := ledger.NewExporter(db, ledger.ExportOptions{Webhook: u}, discard)
		if err == nil {
			t.Errorf("%q accepted", u)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the URL: %v", err)
		}
	}
}

// TestExportWebhookBodyLimit: a receiver whose body limit is below the
// export's 4 MiB answers 413. The same delivery was retried for ever, the
// export stuck; now deliveries shrink until the receiver takes them, and
// every record arrives once, in order.
func TestExportWebhookBodyLimit(t *testing.T) {
	_, db, _ := newLog(t)
	l := logOn(t, db)
	ledgertest.Run(t, l)
	appendN(t, l, "req_limit", 40)
	rc, _ := newReceiver(t)
	var tooLarge atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 2000 {
			tooLarge.Add(1)
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		rc.ServeHTTP(w, r)
	}))
	t.Cleanup(hook.Close)
	runExporter(t, db, fastExport(ledger.ExportOptions{Webhook: hook.URL, FromStart: true}))
	waitFor(t, "every record delivered", func() bool { return len(rc.got()) >= 40 })
	checkExported(t, db, rc.got(), 0, 40)
	if tooLarge.Load() == 0 {
		t.Fatal("no delivery was too large: the test tested nothing")
	}
}

// TestExportWarnsWithoutSecret: webhook deliveries signed with an empty
// secret can be forged by anyone; the exporter says so at start.
func TestExportWarnsWithoutSecret(t *testing.T) {
	_, db, _ := newLog(t)
	var logs bytes.Buffer
	if _, err := ledger.NewExporter(db, ledger.ExportOptions{Webhook: "https://siem.example/in"}, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "empty secret") {
		t.Fatalf("no warning of the empty secret: %q", logs.String())
	}
}

// racingReplica is a store on which another replica delivers the last two
// records between this exporter's size read and its lease: the size it
// read is behind the cursor it then gets.
type racingReplica struct {
	ledger.ExportStore
	db    *sqlstore.DB
	sizes atomic.Int64
	once  sync.Once
}

func (r *racingReplica) LedgerSize(ctx context.Context) (int64, error) {
	n := r.sizes.Add(1)
	s, err := r.ExportStore.LedgerSize(ctx)
	if n == 2 { // the first pass's read, before the other replica's delivery
		return s - 2, err
	}
	return s, err
}

func (r *racingReplica) ExportLease(ctx context.Context, target, holder string, now, until time.Time) (int64, bool, error) {
	r.once.Do(func() { r.db.ExportReset(ctx, target, 10) }) // the other replica delivered up to 10 and let go
	return r.ExportStore.ExportLease(ctx, target, holder, now, until)
}

// TestExportCursorAheadOfAStaleSizeIsNoStall: a cursor that another replica
// moved past the size this exporter read before taking the lease is not
// past the log's end; only a size read after the cursor tells. (Stalling
// there would stop the export, durably, on a race.)
func TestExportCursorAheadOfAStaleSizeIsNoStall(t *testing.T) {
	_, db, _ := newLog(t)
	l := logOn(t, db)
	ledgertest.Run(t, l)
	appendN(t, l, "req_race", 10)
	if _, err := db.ExportStart(context.Background(), ledger.ExportTargetWebhook, 5); err != nil {
		t.Fatal(err)
	}
	rc, url := newReceiver(t)
	st := &racingReplica{ExportStore: db, db: db}
	e, _ := runExporter(t, st, fastExport(ledger.ExportOptions{Webhook: url}))
	waitFor(t, "passes after the race", func() bool { return st.sizes.Load() >= 10 })
	if s := e.Status()[0]; s.PastEnd {
		t.Fatalf("status: %+v; stalled on a race", s)
	}
	if next, _ := cursor(t, db, ledger.ExportTargetWebhook); next != 10 {
		t.Fatalf("cursor %d, want 10", next)
	}
	if n := len(rc.got()); n != 0 {
		t.Fatalf("%d lines delivered again", n)
	}
}
