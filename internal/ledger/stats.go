package ledger

import (
	"context"
	"sync"
	"time"
)

// Stats is what the log reports about itself (package metrics).
type Stats struct {
	Size             int64     // records in the log
	CheckpointSize   int64     // records the latest stored checkpoint covers
	CheckpointSigned time.Time // when this process last signed a checkpoint; zero: not yet
}

// stats is the part of Stats the log keeps in memory. The log's
// self-verification is the audit's (audit.LogVerifier), not kept here.
type stats struct {
	mu      sync.Mutex
	signed  time.Time
	observe func(time.Duration, error)
}

// Stats reads the log's size and checkpoint from the store and adds what this
// process saw.
func (l *Log) Stats(ctx context.Context) (Stats, error) {
	size, err := l.store.LedgerSize(ctx)
	if err != nil {
		return Stats{}, err
	}
	cpSize, _, err := l.store.LedgerCheckpoint(ctx)
	if err != nil {
		cpSize = 0 // no checkpoint yet
	}
	l.stats.mu.Lock()
	defer l.stats.mu.Unlock()
	return Stats{Size: size, CheckpointSize: cpSize, CheckpointSigned: l.stats.signed}, nil
}

// ObserveAppends sets a function called after every Append with the time the
// caller waited for durability (queueing and group commit) and its error.
// Call it before Run.
func (l *Log) ObserveAppends(f func(time.Duration, error)) {
	l.stats.mu.Lock()
	l.stats.observe = f
	l.stats.mu.Unlock()
}

func (l *Log) observeAppend(start time.Time, err error) {
	l.stats.mu.Lock()
	f := l.stats.observe
	l.stats.mu.Unlock()
	if f != nil {
		f(l.now().Sub(start), err)
	}
}

func (l *Log) markSigned() {
	l.stats.mu.Lock()
	l.stats.signed = l.now()
	l.stats.mu.Unlock()
}
