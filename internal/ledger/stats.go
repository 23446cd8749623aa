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
	Verified         time.Time // when the last self-verification passed; zero: none yet
	VerifyFailures   int64     // self-verifications that failed since start
}

// stats is the part of Stats the log keeps in memory.
type stats struct {
	mu       sync.Mutex
	signed   time.Time
	verified time.Time
	failures int64
	state    *State // the tree the last self-verification accepted
	observe  func(time.Duration, error)
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
	return Stats{Size: size, CheckpointSize: cpSize, CheckpointSigned: l.stats.signed, Verified: l.stats.verified, VerifyFailures: l.stats.failures}, nil
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

// SelfVerify verifies the log in its own store against the latest checkpoint
// (signature, every record, the root) and, after the first run, that it still
// contains the tree verified before. It records the outcome for Stats. It
// reads every record, so run it rarely (ledger.verify_interval).
func (l *Log) SelfVerify(ctx context.Context) error {
	l.stats.mu.Lock()
	prev := l.stats.state
	l.stats.mu.Unlock()
	_, state, err := Verify(ctx, StoreSource{Store: l.store}, l.Key(), prev, nil)
	l.stats.mu.Lock()
	defer l.stats.mu.Unlock()
	if err != nil {
		l.stats.failures++
		return err
	}
	l.stats.state, l.stats.verified = state, l.now()
	return nil
}

// RunSelfVerify verifies the log every interval until ctx ends; failures are
// logged as errors (and counted in Stats).
func (l *Log) RunSelfVerify(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := l.SelfVerify(ctx); err != nil && ctx.Err() == nil {
				l.log.Error("ledger: self-verification FAILED: the stored log does not match its signed checkpoint", "err", err)
			}
		}
	}
}
