package ledger

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// Exporter copies the committed log to SIEMs: a JSON-lines file and/or a
// webhook (batches of JSON lines, signed like alerts). It is not fed by the
// sequencer: it tails the log in the store by index, from a durable cursor
// per target, so that a record is exported because it is in the log —
// whatever its writer heard of its commit, whichever replica wrote it, and
// across crashes and restarts (docs/design/ledger-export.md).
//
// Delivery is at least once, in log order: a target's cursor advances only
// after its file write was fsynced or its webhook answered 2xx. A range is
// delivered twice only when the process stops (or loses its lease) between a
// delivery and the cursor's save; every line carries its log index
// ("log_index") for the SIEM to drop such duplicates. Failed deliveries are
// retried with capped backoff, for ever, logged and counted (Status). The
// log never waits for an export: Notify is a non-blocking signal.
//
// Replicas sharing one store share each target's cursor: the process that
// delivers a range holds the cursor's lease (ExportStore.ExportLease), so
// each range is delivered by one of them; when it dies, another takes over
// once the lease expires.
type Exporter struct {
	st      ExportStore
	opt     ExportOptions
	log     *slog.Logger
	holder  string
	file    *os.File
	targets []*exportTarget
}

// ExportStore is what an Exporter needs from storage: the log's records by
// index, and per export target a durable cursor (the index of the next record
// to deliver) leased to one process at a time.
type ExportStore interface {
	LedgerSize(ctx context.Context) (int64, error)
	LedgerEntries(ctx context.Context, from, to int64) ([][]byte, error)
	// ExportStart returns the target's cursor, created at start when the
	// target has none.
	ExportStart(ctx context.Context, target string, start int64) (int64, error)
	// ExportLease gives holder the target's lease until until when the lease
	// is holder's or expired at now, and returns the cursor and whether
	// holder holds the lease.
	ExportLease(ctx context.Context, target, holder string, now, until time.Time) (next int64, held bool, err error)
	// ExportAdvance moves the cursor from from to to and extends the lease,
	// only while holder holds it and the cursor is at from; else it fails
	// with store.ErrConflict.
	ExportAdvance(ctx context.Context, target, holder string, from, to int64, until time.Time) error
	// ExportRelease gives up holder's lease.
	ExportRelease(ctx context.Context, target, holder string) error
}

// ExportOptions configures an Exporter; zero values take the defaults.
type ExportOptions struct {
	File    string // append JSON lines here (0600)
	Webhook string // POST batches of JSON lines here
	Secret  []byte // signs webhook deliveries (alert.Sign)
	// FromStart makes a target that has no cursor yet (first start, or an
	// upgrade from the exporter that had none) export the whole log; by
	// default it starts at the log's current end, so an upgrade does not
	// flood a SIEM with the records of the past.
	FromStart bool
	// Instance names this process in the cursor's lease (a random suffix is
	// added).
	Instance string
	// Sole says that no other process uses the store (the embedded store,
	// whose data directory is locked): a lease left by an earlier process,
	// killed, is taken at once instead of when it expires.
	Sole bool
	// Batch bounds the records of one delivery (default 1000), and
	// MaxBytes its size (default 4 MiB; a delivery holds at least one record).
	Batch    int
	MaxBytes int
	// Poll is how often the store is read when no commit was signalled
	// (records of other replicas; default 1 s). Spacing is the least time
	// between two reads after a signal, so that a burst of commits costs one
	// read (default 100 ms).
	Poll    time.Duration
	Spacing time.Duration
	// Lease is how long a replica's hold on a target's cursor lasts
	// without renewal (default 30 s): how soon another replica takes over
	// from one that died. It must exceed twice a delivery's timeout.
	Lease time.Duration
	// MaxBackoff caps the wait between failed deliveries (default 30 s).
	MaxBackoff time.Duration
	// Client posts webhook deliveries (default: a client with a 10 s timeout).
	Client *http.Client
	// FinalTimeout bounds the last pass at shutdown (default 5 s); what it
	// does not deliver is delivered at the next start.
	FinalTimeout time.Duration
}

// Export target names: the keys of the cursors in the store.
const (
	ExportTargetFile    = "file"
	ExportTargetWebhook = "webhook"
)

// ExportStatus is what an Exporter reports of one target (metrics).
type ExportStatus struct {
	Target    string
	Behind    int64     // records in the log not yet delivered, when last looked at
	Delivered int64     // records this process delivered
	Failures  int64     // failed deliveries by this process
	Failing   bool      // the last delivery failed
	LastOK    time.Time // this process's last successful delivery; zero: none yet
	Holding   bool      // this process holds the target's lease
}

type exportTarget struct {
	name    string
	deliver func(ctx context.Context, first int64, n int, body []byte) error
	wake    chan struct{}

	// Only the target's goroutine touches these.
	started    bool
	next       int64     // the cursor, as last read or advanced
	leaseUntil time.Time // this process's lease, by its clock; zero: not held
	failSince  time.Time // first failure of the current streak; zero: none
	failStreak int
	pastEnd    bool // the cursor was seen past the log's end (logged once)

	mu     sync.Mutex
	status ExportStatus
}

// NewExporter opens the export file (append, 0600) when opt.File is set.
func NewExporter(st ExportStore, opt ExportOptions, log *slog.Logger) (*Exporter, error) {
	if opt.Batch <= 0 {
		opt.Batch = 1000
	}
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = 4 << 20
	}
	if opt.Poll <= 0 {
		opt.Poll = time.Second
	}
	if opt.Spacing <= 0 {
		opt.Spacing = 100 * time.Millisecond
	}
	if opt.Lease <= 0 {
		opt.Lease = 30 * time.Second
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 30 * time.Second
	}
	if opt.Client == nil {
		opt.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opt.FinalTimeout <= 0 {
		opt.FinalTimeout = 5 * time.Second
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	e := &Exporter{st: st, opt: opt, log: log, holder: opt.Instance + "/" + hex.EncodeToString(rnd[:])}
	if opt.File != "" {
		f, err := os.OpenFile(opt.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("ledger export: %w", err)
		}
		e.file = f
		e.targets = append(e.targets, &exportTarget{name: ExportTargetFile, deliver: e.writeFile})
	}
	if opt.Webhook != "" {
		if _, err := url.Parse(opt.Webhook); err != nil {
			return nil, errors.New("ledger export: the webhook URL does not parse")
		}
		e.targets = append(e.targets, &exportTarget{name: ExportTargetWebhook, deliver: e.post})
	}
	for _, t := range e.targets {
		t.wake = make(chan struct{}, 1)
		t.status.Target = t.name
	}
	return e, nil
}

// Enabled reports whether anything is exported.
func (e *Exporter) Enabled() bool { return e != nil && len(e.targets) > 0 }

// Notify tells the exporter that records were committed. It never blocks
// (Log.Committed calls it on the sequencer's goroutine).
func (e *Exporter) Notify() {
	for _, t := range e.targets {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// Status reports each target, in the order file, webhook.
func (e *Exporter) Status() []ExportStatus {
	if e == nil {
		return nil
	}
	out := make([]ExportStatus, len(e.targets))
	for i, t := range e.targets {
		t.mu.Lock()
		out[i] = t.status
		t.mu.Unlock()
	}
	return out
}

// Start reads each target's cursor, creating the cursor of a target that has
// none where the export starts (the log's end, or its start with FromStart).
// The server calls it before it commits or serves anything: a target's
// first start is then the process's start, not whenever Run's goroutine
// first gets to run, so no record this process commits is left before the
// cursor. Run starts a target Start did not. Call it before Run.
func (e *Exporter) Start(ctx context.Context) error {
	for _, t := range e.targets {
		if err := e.start(ctx, t); err != nil {
			return fmt.Errorf("ledger export: %s: %w", t.name, err)
		}
	}
	return nil
}

// start reads t's cursor once (creating it if it has none).
func (e *Exporter) start(ctx context.Context, t *exportTarget) error {
	if t.started {
		return nil
	}
	size, err := e.st.LedgerSize(ctx)
	if err != nil {
		return fmt.Errorf("reading the log's size: %w", err)
	}
	start := size
	if e.opt.FromStart {
		start = 0
	}
	if t.next, err = e.st.ExportStart(ctx, t.name, start); err != nil {
		return fmt.Errorf("reading the export cursor: %w", err)
	}
	t.started = true
	return nil
}

// Run exports until ctx ends, then makes one last bounded pass, gives up
// its leases and closes the file.
func (e *Exporter) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, t := range e.targets {
		wg.Go(func() { e.run(ctx, t) })
	}
	wg.Wait()
	if e.file != nil {
		e.file.Close()
	}
	return nil
}

// errNotHolder: another process holds the target's lease.
var errNotHolder = errors.New("ledger export: another replica holds the export")

func (e *Exporter) run(ctx context.Context, t *exportTarget) {
	backoff := e.opt.Spacing
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sleep := func(d time.Duration, wake bool) bool {
		timer.Reset(d)
		defer timer.Stop()
		var w chan struct{}
		if wake {
			w = t.wake
		}
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
		case <-w:
			// A commit: wait Spacing for more, so that a burst costs one pass.
			timer.Stop()
			timer.Reset(e.opt.Spacing)
			select {
			case <-ctx.Done():
				return false
			case <-timer.C:
			}
		}
		return true
	}
	for ctx.Err() == nil {
		more, err := e.pass(ctx, t)
		var ok bool
		switch {
		case errors.Is(err, errNotHolder):
			ok = sleep(e.opt.Poll, false)
		case err != nil:
			e.failed(t, err)
			ok = sleep(backoff, false)
			backoff = min(2*backoff, e.opt.MaxBackoff)
		case more:
			backoff = e.opt.Spacing
			ok = true
		default:
			backoff = e.opt.Spacing
			ok = sleep(e.opt.Poll, true)
		}
		if !ok {
			break
		}
	}
	// The last pass: what is committed by now, within FinalTimeout.
	final, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.opt.FinalTimeout)
	defer cancel()
	for final.Err() == nil {
		more, err := e.pass(final, t)
		if err != nil && !errors.Is(err, errNotHolder) {
			e.failed(t, err)
		}
		if err != nil || !more {
			break
		}
	}
	if !t.leaseUntil.IsZero() {
		if err := e.st.ExportRelease(final, t.name, e.holder); err != nil {
			e.log.Warn("ledger export: releasing the export lease failed; another replica takes over when it expires", "target", t.name, "err", err)
		}
	}
}

// pass delivers at most one batch of t's records; more reports that records
// are left to deliver at once.
func (e *Exporter) pass(ctx context.Context, t *exportTarget) (more bool, err error) {
	if err := e.start(ctx, t); err != nil {
		return false, err
	}
	size, err := e.st.LedgerSize(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the log's size: %w", err)
	}
	// The cursor only grows: when the one last seen is at the end, there is
	// nothing to do, and no write is needed to know it.
	if t.next >= size {
		if t.next > size && !t.pastEnd {
			// Only a store restored from an older backup has a cursor past
			// the log's end: records appended up to the cursor are not
			// exported.
			t.pastEnd = true
			e.log.Error("ledger export: the export cursor is past the log's end (was the store restored from a backup?); records up to it will not be exported", "target", t.name, "cursor", t.next, "size", size)
		}
		e.setStatus(t, func(s *ExportStatus) { s.Behind = 0 })
		return false, nil
	}
	now := time.Now()
	if t.leaseUntil.IsZero() || now.After(t.leaseUntil.Add(-e.opt.Lease/2)) {
		expired := now
		if e.opt.Sole {
			expired = now.Add(100 * 365 * 24 * time.Hour) // every other holder is gone
		}
		next, held, err := e.st.ExportLease(ctx, t.name, e.holder, expired, now.Add(e.opt.Lease))
		if err != nil {
			return false, fmt.Errorf("taking the export lease: %w", err)
		}
		t.next = next
		if !held {
			t.leaseUntil = time.Time{}
			e.setStatus(t, func(s *ExportStatus) { s.Behind, s.Holding = max(size-next, 0), false })
			return false, errNotHolder
		}
		t.leaseUntil = now.Add(e.opt.Lease)
		e.setStatus(t, func(s *ExportStatus) { s.Holding = true })
		if t.next >= size {
			e.setStatus(t, func(s *ExportStatus) { s.Behind = 0 })
			return false, nil
		}
	}
	from := t.next
	e.setStatus(t, func(s *ExportStatus) { s.Behind = size - from })
	recs, err := e.st.LedgerEntries(ctx, from, min(size, from+int64(e.opt.Batch)))
	if err != nil {
		return false, fmt.Errorf("reading records %d and on: %w", from, err)
	}
	body, n := e.lines(from, recs)
	// Neither the delivery nor the cursor's save is cut short by a stop:
	// each is bounded (the client's timeout, the store's), and a delivery
	// cut short would be delivered again.
	if err := t.deliver(context.WithoutCancel(ctx), from, n, body); err != nil {
		if !t.failSince.IsZero() && time.Since(t.failSince) > e.opt.Lease {
			// Failing for a lease's time: maybe only here (this replica's
			// network or disk). Let another replica try.
			if rerr := e.st.ExportRelease(ctx, t.name, e.holder); rerr == nil {
				t.leaseUntil = time.Time{}
			}
		}
		return false, err
	}
	to := from + int64(n)
	until := time.Now().Add(e.opt.Lease)
	if err := e.advance(ctx, t, from, to, until); err != nil {
		t.leaseUntil = time.Time{}
		if errors.Is(err, store.ErrConflict) {
			e.log.Warn("ledger export: another replica took the export over during a delivery; these records may reach the target twice (log_index tells)", "target", t.name, "from", from, "to", to)
			return false, nil
		}
		return false, fmt.Errorf("saving the export cursor (records %d to %d were delivered and will be again): %w", from, to, err)
	}
	t.next, t.leaseUntil = to, until
	if !t.failSince.IsZero() {
		e.log.Info("ledger export: delivering again", "target", t.name, "failed_attempts", t.failStreak, "since", t.failSince)
		t.failSince, t.failStreak = time.Time{}, 0
	}
	e.setStatus(t, func(s *ExportStatus) {
		s.Delivered += int64(n)
		s.Behind = max(size-to, 0)
		s.Failing = false
		s.LastOK = time.Now()
		s.Holding = true
	})
	return to < size, nil
}

// advance saves the cursor, retrying a store that fails (not a conflict) a
// few times: a cursor not saved means the range is delivered again.
func (e *Exporter) advance(ctx context.Context, t *exportTarget, from, to int64, until time.Time) error {
	ctx = context.WithoutCancel(ctx)
	wait := 50 * time.Millisecond
	for i := 0; ; i++ {
		err := e.st.ExportAdvance(ctx, t.name, e.holder, from, to, until)
		if err == nil || errors.Is(err, store.ErrConflict) || i == 4 || time.Now().After(until.Add(-e.opt.Lease/2)) {
			return err
		}
		time.Sleep(wait)
		wait *= 2
	}
}

// failed counts and logs a failed pass: the first of a streak, then at
// doubling counts, so a target down for hours logs a few lines, not one a
// retry.
func (e *Exporter) failed(t *exportTarget, err error) {
	if t.failSince.IsZero() {
		t.failSince = time.Now()
	}
	t.failStreak++
	e.setStatus(t, func(s *ExportStatus) { s.Failures++; s.Failing = true })
	if t.failStreak&(t.failStreak-1) == 0 {
		level := slog.LevelWarn
		var se *statusError
		if errors.As(err, &se) && se.code < 500 {
			level = slog.LevelError // 4xx: the receiver refuses; a person must look
		}
		e.log.Log(context.Background(), level, "ledger export: delivery failed; retrying with backoff (nothing is lost: the cursor has not moved)",
			"target", t.name, "err", err, "failed_attempts", t.failStreak, "since", t.failSince)
	}
}

func (e *Exporter) setStatus(t *exportTarget, f func(*ExportStatus)) {
	t.mu.Lock()
	f(&t.status)
	t.mu.Unlock()
}

// lines renders records from index first as JSON lines, each record with its
// index added as the first field: {"log_index":N, followed by the record's
// bytes after its opening brace (the record is recovered exactly by removing
// that prefix). It stops at MaxBytes, after at least one record.
func (e *Exporter) lines(first int64, recs [][]byte) ([]byte, int) {
	var b bytes.Buffer
	n := 0
	for i, r := range recs {
		if n > 0 && b.Len()+len(r)+32 > e.opt.MaxBytes {
			break
		}
		b.WriteString(`{"log_index":`)
		b.WriteString(strconv.FormatInt(first+int64(i), 10))
		if len(r) > 2 && r[0] == '{' {
			b.WriteByte(',')
			b.Write(r[1:])
		} else { // not an object with fields: never appended (Append checks records), kept whole
			b.WriteString(`,"record":`)
			b.Write(r)
			b.WriteByte('}')
		}
		b.WriteByte('\n')
		n++
	}
	return b.Bytes(), n
}

// writeFile appends body and fsyncs; on failure it cuts the file back to its
// size before, so a retry does not leave a torn line behind.
func (e *Exporter) writeFile(_ context.Context, _ int64, _ int, body []byte) error {
	fi, err := e.file.Stat()
	if err != nil {
		return fmt.Errorf("export file: %w", err)
	}
	if _, err := e.file.Write(body); err != nil {
		e.file.Truncate(fi.Size())
		return fmt.Errorf("export file: %w", err)
	}
	if err := e.file.Sync(); err != nil {
		e.file.Truncate(fi.Size())
		return fmt.Errorf("export file: %w", err)
	}
	return nil
}

// statusError is a webhook's answer other than 2xx.
type statusError struct{ code int }

func (s *statusError) Error() string { return fmt.Sprintf("the webhook answered %d", s.code) }

// post delivers body to the webhook, signed as alerts are; X-Gatehouse-Log-Index
// and X-Gatehouse-Log-Count name the range. Only a 2xx answer delivers.
func (e *Exporter) post(ctx context.Context, first int64, n int, body []byte) error {
	ts := time.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.opt.Webhook, bytes.NewReader(body))
	if err != nil {
		return errors.New("webhook: the URL is not usable")
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("X-Gatehouse-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Gatehouse-Signature", alert.Sign(e.opt.Secret, ts, body))
	req.Header.Set("X-Gatehouse-Log-Index", strconv.FormatInt(first, 10))
	req.Header.Set("X-Gatehouse-Log-Count", strconv.Itoa(n))
	resp, err := e.opt.Client.Do(req)
	if err != nil {
		// The URL may carry a credential: log the cause, not the URL.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return &statusError{code: resp.StatusCode}
	}
	return nil
}
