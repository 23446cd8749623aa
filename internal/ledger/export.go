package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

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
//
// Against a hostile or broken target: a webhook's redirect (3xx) is a failed
// delivery, never followed (the signed body goes to the configured URL only);
// a delivery is bounded by DeliveryTimeout whatever the answer's pace, and
// the answer's body is not read. A stop is bounded: the delivery in flight and
// a last pass get FinalTimeout, the lease's release 2 s more. A cursor past
// the log's end (the log's tables restored from an older backup) stalls the
// target, loudly (Status.PastEnd, an error log) and durably (the stored
// cursor c becomes −(c+1)), until an operator resets the cursor. A file target that is moved away (log rotation) is reopened
// at its path before the next write.
type Exporter struct {
	st      ExportStore
	opt     ExportOptions
	log     *slog.Logger
	holder  string
	file    *exportFile
	targets []*exportTarget
}

// ExportStore is what an Exporter needs from storage: the log's records by
// index, and per export target a durable cursor (the index of the next record
// to deliver) leased to one process at a time.
type ExportStore interface {
	LedgerSize(ctx context.Context) (int64, error)
	// LedgerEntriesMax returns the records [from, to) in order, stopping
	// before the record that would bring their total size past maxBytes
	// (it returns at least one), so that a batch of large records is not
	// read whole only to be cut.
	LedgerEntriesMax(ctx context.Context, from, to int64, maxBytes int) ([][]byte, error)
	// ExportStart returns the target's cursor, created at start when the
	// target has none. A negative cursor −(c+1) is c, stalled (past the
	// log's end) until reset.
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
	// Client posts webhook deliveries (default: a client with a 10 s
	// timeout). The exporter uses a copy that never follows redirects.
	Client *http.Client
	// DeliveryTimeout bounds one delivery, whatever the Client's timeout
	// (default 10 s).
	DeliveryTimeout time.Duration
	// FinalTimeout bounds the stop (default 5 s): the delivery in flight
	// and one last pass; what they do not deliver is delivered at the next
	// start. Releasing the lease after it has 2 s of its own.
	FinalTimeout time.Duration
}

// exportReleaseTimeout bounds the lease's release at a stop: a store that
// does not answer must not hold the shutdown (the lease then expires).
const exportReleaseTimeout = 2 * time.Second

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
	// PastEnd: the target's cursor was found past the log's end (a store
	// restored from an older backup, a log replaced). The target exports
	// nothing until an operator resets its cursor (ExportReset).
	PastEnd bool
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
	// pastEnd: the cursor, stalled, was seen at stalledAt past the log's
	// end; the target waits until the stored cursor changes (a reset).
	pastEnd   bool
	stalledAt int64
	marked    bool // the stall is stored (the cursor as −(stalledAt+1))
	// maxBytes bounds a delivery: MaxBytes, halved each time the target
	// answers 413 (its own limit is lower), down to one record.
	maxBytes int

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
	// A copy: the exporter's refusal to follow redirects is not imposed on
	// the caller's client. A followed 302 turns the POST into a GET that
	// carries no records, whose 200 would count them delivered; a followed
	// 307 or 308 sends the signed records to whatever host the answer names.
	c := *opt.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	opt.Client = &c
	if opt.DeliveryTimeout <= 0 {
		opt.DeliveryTimeout = 10 * time.Second
	}
	if opt.FinalTimeout <= 0 {
		opt.FinalTimeout = 5 * time.Second
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	e := &Exporter{st: st, opt: opt, log: log, holder: opt.Instance + "/" + hex.EncodeToString(rnd[:])}
	if opt.File != "" {
		f, err := openExportFile(opt.File)
		if err != nil {
			return nil, fmt.Errorf("ledger export: %w", err)
		}
		e.file = f
		e.targets = append(e.targets, &exportTarget{name: ExportTargetFile, deliver: e.writeFile})
	}
	if opt.Webhook != "" {
		u, err := url.Parse(opt.Webhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// Not the URL itself: it may carry a credential.
			return nil, errors.New("ledger export: the webhook URL is not an absolute http(s) URL")
		}
		e.targets = append(e.targets, &exportTarget{name: ExportTargetWebhook, deliver: e.post})
	}
	for _, t := range e.targets {
		t.wake = make(chan struct{}, 1)
		t.status.Target = t.name
		t.maxBytes = opt.MaxBytes
	}
	if opt.Webhook != "" && len(opt.Secret) == 0 {
		log.Warn("ledger export: the webhook's deliveries are signed with an empty secret, which anyone can forge; set GATEHOUSE_ALERT_WEBHOOK_SECRET")
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
// its leases and closes the file. It returns at most FinalTimeout plus 2 s
// after ctx ends, whatever the targets and the store do.
func (e *Exporter) Run(ctx context.Context) error {
	// hard ends FinalTimeout after ctx: it bounds what a stop waits for (the
	// delivery in flight, the last pass), so a webhook that never answers,
	// or a client without a timeout, cannot hold the shutdown.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(e.opt.FinalTimeout, cancelHard) })()
	var wg sync.WaitGroup
	for _, t := range e.targets {
		wg.Go(func() { e.run(ctx, hard, t) })
	}
	wg.Wait()
	if e.file != nil {
		e.file.close()
	}
	return nil
}

var (
	// errNotHolder: another process holds the target's lease.
	errNotHolder = errors.New("ledger export: another replica holds the export")
	// errPastEnd: the target is stalled, its cursor past the log's end.
	errPastEnd = errors.New("ledger export: the cursor is past the log's end")
)

func (e *Exporter) run(ctx, hard context.Context, t *exportTarget) {
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
		more, err := e.pass(ctx, hard, t)
		var ok bool
		switch {
		case errors.Is(err, errNotHolder), errors.Is(err, errPastEnd):
			ok = sleep(e.opt.Poll, false)
		case err != nil:
			if ctx.Err() != nil {
				break // the stop cut a store read short: the last pass retries
			}
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
	// The last pass: what is committed by now, within FinalTimeout (hard).
	for hard.Err() == nil {
		more, err := e.pass(hard, hard, t)
		if err != nil && hard.Err() == nil && !errors.Is(err, errNotHolder) && !errors.Is(err, errPastEnd) {
			e.failed(t, err)
		}
		if err != nil || !more {
			break
		}
	}
	if hard.Err() != nil {
		e.log.Warn("ledger export: stopped before the target took every record; the next start (or another replica) delivers them", "target", t.name, "cursor", t.next, "timeout", e.opt.FinalTimeout)
	}
	if !t.leaseUntil.IsZero() {
		// Its own deadline: the store may be what hangs.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exportReleaseTimeout)
		defer cancel()
		if err := e.st.ExportRelease(rctx, t.name, e.holder); err != nil {
			e.log.Warn("ledger export: releasing the export lease failed; another replica takes over when it expires", "target", t.name, "err", err)
		}
	}
}

// pass delivers at most one batch of t's records; more reports that records
// are left to deliver at once. Store reads use ctx; the delivery and the
// cursor's save use hard (a stop does not cut them short before
// FinalTimeout: a delivery cut short is delivered again).
func (e *Exporter) pass(ctx, hard context.Context, t *exportTarget) (more bool, err error) {
	if err := e.start(ctx, t); err != nil {
		return false, err
	}
	size, err := e.st.LedgerSize(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the log's size: %w", err)
	}
	if t.pastEnd || t.next > size || t.next < 0 {
		return e.stalled(ctx, t, size)
	}
	// The cursor only grows: when the one last seen is at the end, there is
	// nothing to do, and no write is needed to know it.
	if t.next == size {
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
		if t.next > size {
			// size was read before the cursor, which another replica may
			// have moved past it since: only a size read after the cursor
			// tells a cursor past the log's end.
			if size, err = e.st.LedgerSize(ctx); err != nil {
				return false, fmt.Errorf("reading the log's size: %w", err)
			}
		}
		if t.next > size || t.next < 0 {
			return e.stalled(ctx, t, size)
		}
		if t.next == size {
			e.setStatus(t, func(s *ExportStatus) { s.Behind = 0 })
			return false, nil
		}
	}
	from := t.next
	e.setStatus(t, func(s *ExportStatus) { s.Behind = size - from })
	recs, err := e.st.LedgerEntriesMax(ctx, from, min(size, from+int64(e.opt.Batch)), t.maxBytes)
	if err != nil {
		return false, fmt.Errorf("reading records %d and on: %w", from, err)
	}
	if len(recs) == 0 {
		// A store that says the log holds more than it gives: an error, so
		// that it is retried with backoff, not in a loop as fast as the
		// store answers.
		return false, fmt.Errorf("the store gave no records from %d though the log's size is %d", from, size)
	}
	body, n, bad := e.lines(from, recs, t.maxBytes)
	if bad >= 0 {
		e.log.Error("ledger export: a stored record is not one JSON object on one line (has the store been altered? run gatehouse audit verify); exported base64-encoded in \"unparsed_record\"", "target", t.name, "log_index", bad)
	}
	dctx, cancel := context.WithTimeout(hard, e.opt.DeliveryTimeout)
	err = t.deliver(dctx, from, n, body)
	cancel()
	if err != nil {
		var se *statusError
		if errors.As(err, &se) && se.code == http.StatusRequestEntityTooLarge && n > 1 {
			// The receiver's limit is below ours: smaller deliveries, from
			// now on (a record the receiver refuses alone stays refused).
			t.maxBytes = max(len(body)/2, 1)
			e.log.Warn("ledger export: the webhook refused a delivery as too large; delivering less at a time", "target", t.name, "bytes", len(body), "max_bytes", t.maxBytes)
		}
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
	if err := e.advance(hard, t, from, to, until); err != nil {
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

// stalled handles a cursor past the log's end. Only a log that lost records
// puts it there: the log's tables restored from an older backup without the
// cursor, or a log cut by hand. The indexes from the log's end up to the
// cursor were delivered as other records, which the target holds (and may
// deduplicate the new ones against), so neither going on at the cursor
// (skipping the new records below it, silently) nor going back (delivering
// other records under indexes already delivered) is right without a person.
// The target stalls, said once at error level and shown by Status.PastEnd
// (gatehouse_ledger_export_cursor_past_end), until the stored cursor
// changes (ExportReset). The stall is stored: the cursor c is saved as
// −(c+1), so that every replica, and a process started after the log grew
// past c, stalls too instead of going on. While stalled the target reads
// its cursor once a Poll.
func (e *Exporter) stalled(ctx context.Context, t *exportTarget, size int64) (bool, error) {
	if !t.pastEnd {
		cur := t.next
		if cur < 0 {
			cur = -cur - 1 // stalled before, by this process or another
		}
		t.pastEnd, t.stalledAt, t.marked = true, cur, t.next < 0
		e.setStatus(t, func(s *ExportStatus) { s.PastEnd, s.Behind = true, 0 })
		e.log.Error("ledger export: the export cursor is past the log's end (were the log's tables restored from an older backup?); this target exports nothing until an operator resets its cursor (gatehouse ledger export-reset)",
			"target", t.name, "cursor", cur, "size", size)
		if t.next >= 0 {
			e.markStalled(ctx, t, cur)
		}
		return false, errPastEnd
	}
	next, err := e.st.ExportStart(ctx, t.name, size) // the stored cursor (it exists)
	if err != nil {
		return false, fmt.Errorf("reading the export cursor: %w", err)
	}
	switch {
	case next == -t.stalledAt-1:
		t.marked = true
		return false, errPastEnd
	case next == t.stalledAt && !t.marked: // not stored yet (another replica held the lease)
		e.markStalled(ctx, t, t.stalledAt)
		return false, errPastEnd
	}
	e.log.Warn("ledger export: the export cursor was reset; exporting again", "target", t.name, "cursor", next, "was", t.stalledAt, "size", size)
	t.pastEnd, t.next, t.leaseUntil = false, next, time.Time{}
	e.setStatus(t, func(s *ExportStatus) { s.PastEnd = false })
	return true, nil
}

// markStalled stores t's cursor cur as stalled, −(cur+1), when this process
// can take the lease; else a later poll (of this or another replica) does.
func (e *Exporter) markStalled(ctx context.Context, t *exportTarget, cur int64) {
	now := time.Now()
	expired := now
	if e.opt.Sole {
		expired = now.Add(100 * 365 * 24 * time.Hour)
	}
	next, held, err := e.st.ExportLease(ctx, t.name, e.holder, expired, now.Add(e.opt.Lease))
	if err != nil || !held {
		return
	}
	t.leaseUntil = now.Add(e.opt.Lease)
	if next == cur {
		if err := e.st.ExportAdvance(ctx, t.name, e.holder, cur, -cur-1, t.leaseUntil); err != nil {
			e.log.Warn("ledger export: storing the stall failed; retrying at the next poll", "target", t.name, "err", err)
			return
		}
		t.marked = true
	}
}

// advance saves the cursor, retrying a store that fails (not a conflict) a
// few times: a cursor not saved means the range is delivered again.
func (e *Exporter) advance(ctx context.Context, t *exportTarget, from, to int64, until time.Time) error {
	wait := 50 * time.Millisecond
	for i := 0; ; i++ {
		err := e.st.ExportAdvance(ctx, t.name, e.holder, from, to, until)
		if err == nil || errors.Is(err, store.ErrConflict) || i == 4 || time.Now().After(until.Add(-e.opt.Lease/2)) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
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
