package usage

import (
	"context"
	"errors"
	"log/slog"
	"sync"
)

// BatchStore stores many records in one transaction.
type BatchStore interface {
	InsertUsageBatch(ctx context.Context, rs []Record) error
}

// Writer stores records with group commit: concurrent calls to Record share
// one transaction, so throughput does not depend on one commit per request,
// and each caller still returns only once its record is durable. The proxy
// calls it after the response has reached the client.
type Writer struct {
	store BatchStore
	log   *slog.Logger
	queue chan pending

	mu      sync.RWMutex
	running bool
}

type pending struct {
	rec  Record
	done chan error
}

// MaxBatch is the most records one transaction holds.
const MaxBatch = 256

// NewWriter returns a Writer; call Run to start it.
func NewWriter(st BatchStore, log *slog.Logger) *Writer {
	return &Writer{store: st, log: log, queue: make(chan pending, 4*MaxBatch)}
}

// ErrStopped is returned by Record when the writer is not running.
var ErrStopped = errors.New("usage: writer stopped")

// Record stores r and returns when it is committed.
func (w *Writer) Record(ctx context.Context, r Record) error {
	w.mu.RLock()
	if !w.running {
		w.mu.RUnlock()
		// Not running (starting or stopped): write it alone rather than lose it.
		return w.store.InsertUsageBatch(ctx, []Record{r})
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
	for {
		select {
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
				default:
					return nil
				}
			}
		}
	}
}

func (w *Writer) commit(ctx context.Context, batch []pending) {
	recs := make([]Record, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	err := w.store.InsertUsageBatch(ctx, recs)
	if err != nil && len(batch) > 1 {
		// One bad record (a duplicate id, say) must not take the others with it.
		w.log.Warn("usage: batch insert failed; retrying one by one", "records", len(batch), "err", err)
		for _, p := range batch {
			p.done <- w.store.InsertUsageBatch(ctx, []Record{p.rec})
		}
		return
	}
	for _, p := range batch {
		p.done <- err
	}
}
