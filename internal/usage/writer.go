package usage

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// BatchStore stores many records in one transaction.
type BatchStore interface {
	InsertUsageBatch(ctx context.Context, rs []Record) error
}

// Writer stores records with group commit: concurrent calls to Record share
// one transaction, so throughput does not depend on one commit per request,
// and each caller still returns only once its record is durable. The proxy
// calls it after the response has reached the client.
//
// A record the store cannot take (it is unreachable, its disk is full) is
// kept in memory and retried until it is stored, up to Max records: past
// them the oldest is dropped, loudly (Dropped for the metric and the audit,
// an error in the log at the first drop, every 1,000th and when the store is
// back, with the counts), since memory is the bound that protects every
// other call. At shutdown what is still kept is reported in the log with the
// count lost. A duplicate (a retry of a commit whose answer was lost) counts
// as stored. The rows are a report: the call's charge rides its end record
// in the ledger and its hold, not this row (docs/design/usage-records.md).
type Writer struct {
	store BatchStore
	log   *slog.Logger
	queue chan pending

	// Timeout bounds one batch's transaction (default 5 s).
	Timeout time.Duration
	// Max is the most records kept while the store is away (default MaxKept).
	Max int

	retryMu sync.Mutex
	retry   []Record
	// Drops of the current outage: how many, the first and last dropped.
	outageDrops               int64
	firstDropped, lastDropped string

	dropped atomic.Int64 // records dropped since the writer was made

	mu      sync.RWMutex
	running bool
}

type pending struct {
	rec  Record
	done chan error
}

// MaxKept is Writer.Max's default: about 50 MB of records.
const MaxKept = 100_000

// MaxBatch is the most records one transaction holds.
const MaxBatch = 256

// NewWriter returns a Writer; call Run to start it.
func NewWriter(st BatchStore, log *slog.Logger) *Writer {
	return &Writer{store: st, log: log, queue: make(chan pending, 4*MaxBatch), Timeout: 5 * time.Second, Max: MaxKept}
}

// ErrStopped is returned by Record when the writer is not running.
var ErrStopped = errors.New("usage: writer stopped")

// Record stores r and returns when it is committed.
func (w *Writer) Record(ctx context.Context, r Record) error {
	w.mu.RLock()
	if !w.running {
		w.mu.RUnlock()
		// Not running (starting or stopped): write it alone rather than lose it.
		return w.keep(r, w.insert(ctx, []Record{r}))
	}
	p := pending{rec: r, done: make(chan error, 1)}
	w.queue <- p
	w.mu.RUnlock()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err() // the record is still written; we just stop waiting
	}
}

// Run commits batches until ctx ends, then drains what is queued.
func (w *Writer) Run(ctx context.Context) error {
	w.mu.Lock()
	w.running = true
	w.mu.Unlock()
	batch := make([]pending, 0, MaxBatch)
	retryT := time.NewTicker(time.Second)
	defer retryT.Stop()
	for {
		select {
		case <-retryT.C:
			w.retryFailed(ctx)
		case p := <-w.queue:
			batch = append(batch[:0], p)
		fill:
			for len(batch) < MaxBatch {
				select {
				case p := <-w.queue:
					batch = append(batch, p)
				default:
					break fill
				}
			}
			w.commit(context.WithoutCancel(ctx), batch)
		case <-ctx.Done():
			w.mu.Lock() // no Record is mid-enqueue after this
			w.running = false
			w.mu.Unlock()
			for {
				select {
				case p := <-w.queue:
					w.commit(context.WithoutCancel(ctx), []pending{p})
					continue
				default:
				}
				break
			}
			if n := w.retryFailed(context.WithoutCancel(ctx)); n > 0 {
				w.log.Error("usage: records could not be stored before stopping", "records", n)
			}
			return nil
		}
	}
}

func (w *Writer) commit(ctx context.Context, batch []pending) {
	recs := make([]Record, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	err := w.insert(ctx, recs)
	if err != nil && len(batch) > 1 {
		// One bad record (a duplicate id, say) must not take the others with it.
		w.log.Warn("usage: batch insert failed; retrying one by one", "records", len(batch), "err", err)
		for _, p := range batch {
			p.done <- w.keep(p.rec, w.insert(ctx, []Record{p.rec}))
		}
		return
	}
	for _, p := range batch {
		p.done <- w.keep(p.rec, err)
	}
}

func (w *Writer) insert(ctx context.Context, recs []Record) error {
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	err := w.store.InsertUsageBatch(ctx, recs)
	if errors.Is(err, store.ErrExists) && len(recs) == 1 {
		return nil // stored by an earlier attempt
	}
	return err
}

// keep remembers a record whose insert failed, for retryFailed.
func (w *Writer) keep(r Record, err error) error {
	if err != nil {
		w.retryMu.Lock()
		if len(w.retry) == 0 {
			w.log.Warn("usage: the store did not take a record; keeping records in memory and retrying", "err", err)
		}
		if len(w.retry) >= max(w.Max, 1) {
			w.drop(w.retry[0].ID)
			w.retry = w.retry[1:]
		}
		w.retry = append(w.retry, r)
		w.retryMu.Unlock()
	}
	return err
}

// drop counts the oldest kept record, id, as lost; retryMu is held.
func (w *Writer) drop(id string) {
	w.dropped.Add(1)
	w.outageDrops++
	if w.outageDrops == 1 {
		w.firstDropped = id
	}
	w.lastDropped = id
	if w.outageDrops == 1 || w.outageDrops%1000 == 0 {
		w.log.Error("usage: too many records wait for the store; dropping the oldest (their calls are charged through the ledger; the usage report will miss them)",
			"kept", len(w.retry), "dropped", w.outageDrops, "dropped_total", w.dropped.Load(),
			"first_dropped_request_id", w.firstDropped, "last_dropped_request_id", id)
	}
}

// Dropped returns how many records the writer has dropped since it was made
// (the store was away for longer than Max records).
func (w *Writer) Dropped() int64 { return w.dropped.Load() }

// Pending returns how many records wait for the store.
func (w *Writer) Pending() int {
	w.retryMu.Lock()
	defer w.retryMu.Unlock()
	return len(w.retry)
}

// retryFailed tries the kept records again, one by one until the first
// failure, and returns how many are still kept.
func (w *Writer) retryFailed(ctx context.Context) int {
	w.retryMu.Lock()
	recs := w.retry
	w.retry = nil
	w.retryMu.Unlock()
	for i, r := range recs {
		if err := w.insert(ctx, []Record{r}); err != nil {
			w.retryMu.Lock()
			w.retry = append(recs[i:len(recs):len(recs)], w.retry...)
			n := len(w.retry)
			w.retryMu.Unlock()
			return n
		}
	}
	if len(recs) > 0 {
		w.log.Info("usage: kept records stored", "records", len(recs))
	}
	w.retryMu.Lock()
	if w.outageDrops > 0 && len(w.retry) == 0 {
		w.log.Error("usage: the store is back; records were dropped while it was away",
			"dropped", w.outageDrops, "dropped_total", w.dropped.Load(), "first_dropped_request_id", w.firstDropped, "last_dropped_request_id", w.lastDropped)
		w.outageDrops, w.firstDropped, w.lastDropped = 0, "", ""
	}
	w.retryMu.Unlock()
	return w.Pending()
}
