// Package breaker is the spend-velocity breaker: it watches each key's spend
// over a sliding window and suspends the key at once when that spend passes a
// ceiling (e.g. $5 in 5 minutes) or a multiple of the key's own trailing
// baseline. A suspended key gets 403 key_suspended until an admin reinstates
// it; the suspension is stored, so it survives restarts and holds on every
// replica.
//
// Windows are shared by every replica when a Shared backend is set (Redis
// when configured, else PostgreSQL): each replica adds its calls' cost to the
// key's buckets and judges the sum, so N replicas do not multiply the
// ceiling. Without one (a single embedded gateway) they are kept in memory.
// The cost observed is what the call was charged (a cut stream's whole hold
// included), not only what was metered. A trip is stored as the key's
// suspension, which every replica sees at once (change notifications), and
// alerts once: only the replica whose suspension changed the key alerts.
// The baseline (a key's usual spend) is an EWMA kept per replica from the
// shared buckets it saw.
//
// A suspension the store does not take when the key trips is retried by Run
// (the server holds it in memory at once, so the key's later calls on this
// replica are refused and never reach Observe to try again), until the
// store takes it or the key is reinstated or changes elsewhere (Reset,
// Rearm).
package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// Config tunes the breaker.
type Config struct {
	Enabled          bool
	Window           time.Duration // sliding window, default 5m
	CeilingMicros    int64         // trip when window spend exceeds this; 0: no ceiling
	BaselineMultiple int64         // trip when window spend exceeds this × the key's baseline; 0: off
	MinSpendMicros   int64         // the baseline rule ignores windows below this
}

// Default is on, $5 in 5 minutes, or 10× the key's usual 5 minutes once that is above $1.
var Default = Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 5_000_000, BaselineMultiple: 10, MinSpendMicros: 1_000_000}

// Suspender stores a suspension; first reports whether this call suspended
// the key (false: it was suspended already).
type Suspender func(ctx context.Context, keyID, reason string) (first bool, err error)

// Shared keeps windows that every replica adds to. Buckets are numbered
// from the Unix epoch in units of the bucket width.
type Shared interface {
	// AddBreakerSpend adds cost to the key's bucket and returns the sums of
	// the n buckets ending at bucket, oldest first.
	AddBreakerSpend(ctx context.Context, keyID string, bucket, cost int64, n int) ([]int64, error)
	// ResetBreakerSpend empties the key's n buckets ending at bucket.
	ResetBreakerSpend(ctx context.Context, keyID string, bucket int64, n int) error
}

// Alerter receives alerts.
type Alerter interface{ Send(alert.Alert) }

const buckets = 10

// Breaker watches key spend.
type Breaker struct {
	cfg     Config
	suspend Suspender
	alerts  Alerter
	log     *slog.Logger
	now     func() time.Time

	// Shared, when set, holds the windows every replica adds to.
	Shared Shared

	mu   sync.Mutex
	keys map[string]*window
	// unsaved: trips whose suspension the store did not take, by key id,
	// with the reason. The suspension holds in memory on this replica at
	// once (the server marks it before writing), so no later call of the key
	// reaches Observe here to try again: Run retries them instead.
	unsaved map[string]string
}

type window struct {
	start    time.Time // start of buckets[0]
	sums     [buckets]int64
	baseline float64 // EWMA of spend per window, from buckets that left the window
	seen     int     // buckets folded into the baseline
	tripped  bool
}

// New returns a breaker.
func New(cfg Config, suspend Suspender, alerts Alerter, log *slog.Logger) *Breaker {
	if cfg.Window <= 0 {
		cfg.Window = Default.Window
	}
	return &Breaker{cfg: cfg, suspend: suspend, alerts: alerts, log: log, now: time.Now, keys: map[string]*window{}, unsaved: map[string]string{}}
}

// SetClock replaces the clock (tests).
func (b *Breaker) SetClock(now func() time.Time) { b.now = now }

func (w *window) advance(now time.Time, width time.Duration) {
	for now.Sub(w.start) >= buckets*width {
		// The oldest bucket leaves the window: fold it into the baseline as a
		// per-window rate.
		rate := float64(w.sums[0] * buckets)
		if w.seen == 0 {
			w.baseline = rate
		} else {
			w.baseline = 0.95*w.baseline + 0.05*rate
		}
		w.seen++
		copy(w.sums[:], w.sums[1:])
		w.sums[buckets-1] = 0
		w.start = w.start.Add(width)
		if w.seen > 10_000 && now.Sub(w.start) > 100*buckets*width { // long idle: jump
			w.start = now.Truncate(width).Add(-(buckets - 1) * width)
			w.sums = [buckets]int64{}
		}
	}
}

// Observe adds a call's cost to a key's window and trips the breaker when the
// window's spend is too high. It returns true when this call tripped it.
func (b *Breaker) Observe(ctx context.Context, keyID string, cost int64) bool {
	if !b.cfg.Enabled || cost <= 0 || keyID == "" {
		return false
	}
	width := b.cfg.Window / buckets
	now := b.now()
	var shared []int64
	if b.Shared != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		var err error
		shared, err = b.Shared.AddBreakerSpend(sctx, keyID, now.UnixNano()/int64(width), cost, buckets)
		cancel()
		if err != nil || len(shared) != buckets {
			// Judge this replica's share alone rather than nothing.
			b.log.Warn("breaker: the shared window is unavailable; judging this replica's calls alone", "key_id", keyID, "err", err)
			shared = nil
		}
	}
	b.mu.Lock()
	w := b.keys[keyID]
	if w == nil {
		if len(b.keys) > 1_000_000 {
			clear(b.keys)
		}
		w = &window{start: now.Truncate(width).Add(-(buckets - 1) * width)}
		b.keys[keyID] = w
	}
	w.advance(now, width)
	if shared != nil {
		copy(w.sums[:], shared)
	} else {
		w.sums[buckets-1] += cost
	}
	var sum int64
	for _, s := range w.sums {
		sum += s
	}
	reason := ""
	switch {
	case w.tripped:
	case b.cfg.CeilingMicros > 0 && sum > b.cfg.CeilingMicros:
		reason = fmt.Sprintf("spent %s in %v, over the ceiling of %s", pricing.FormatUSD(sum), b.cfg.Window, pricing.FormatUSD(b.cfg.CeilingMicros))
	case b.cfg.BaselineMultiple > 0 && w.seen >= 3*buckets && sum >= b.cfg.MinSpendMicros && float64(sum) > float64(b.cfg.BaselineMultiple)*w.baseline:
		reason = fmt.Sprintf("spent %s in %v, over %d× its usual %s", pricing.FormatUSD(sum), b.cfg.Window, b.cfg.BaselineMultiple, pricing.FormatUSD(int64(w.baseline)))
	}
	if reason != "" {
		w.tripped = true
	}
	b.mu.Unlock()
	if reason == "" {
		return false
	}
	first, err := b.suspend(context.WithoutCancel(ctx), keyID, reason)
	if err != nil {
		b.log.Error("breaker: suspending the key failed; retrying", "key_id", keyID, "err", err)
		b.mu.Lock()
		w.tripped = false // try again on the next call, if one comes
		// and in Run, since none may; not a key the store does not have (a
		// workload identity or certificate caller has no key to suspend).
		if len(b.unsaved) < 100_000 && !errors.Is(err, store.ErrNotFound) {
			b.unsaved[keyID] = reason
		}
		b.mu.Unlock()
		return false
	}
	b.mu.Lock()
	delete(b.unsaved, keyID)
	b.mu.Unlock()
	if !first {
		return false // another replica tripped it and alerted
	}
	b.alert(keyID, reason, sum)
	return true
}

func (b *Breaker) alert(keyID, reason string, sum int64) {
	if b.alerts != nil {
		b.alerts.Send(alert.Alert{Kind: "breaker_tripped", Message: "key " + keyID + " suspended: " + reason,
			Details: map[string]any{"key_id": keyID, "window_spend_micros": sum, "window": b.cfg.Window.String(), "reason": reason}})
	}
}

// Run retries, every interval until ctx ends, the suspensions the store did
// not take when their key tripped.
func (b *Breaker) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.retry(ctx)
		}
	}
}

// retry writes each unsaved suspension once more; one the store takes is
// forgotten (and alerts if it changed the key), one it refuses waits for
// the next round.
func (b *Breaker) retry(ctx context.Context) {
	b.mu.Lock()
	todo := maps.Clone(b.unsaved)
	b.mu.Unlock()
	for id, reason := range todo {
		b.mu.Lock()
		still := b.unsaved[id] == reason // not reinstated or rearmed meanwhile
		b.mu.Unlock()
		if !still {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		first, err := b.suspend(sctx, id, reason)
		cancel()
		if errors.Is(err, store.ErrNotFound) { // gone meanwhile
			b.mu.Lock()
			delete(b.unsaved, id)
			b.mu.Unlock()
			continue
		}
		if err != nil {
			b.log.Warn("breaker: suspending the key failed again", "key_id", id, "err", err)
			continue
		}
		var sum int64
		b.mu.Lock()
		delete(b.unsaved, id)
		if w := b.keys[id]; w != nil {
			w.tripped = true
			for _, s := range w.sums {
				sum += s
			}
		}
		b.mu.Unlock()
		if first { // this write suspended the key: it alerts, whatever else ran meanwhile
			b.alert(id, reason, sum)
		}
	}
}

// Reset forgets a key's window, shared ones included (after an admin
// reinstates it).
func (b *Breaker) Reset(keyID string) {
	b.mu.Lock()
	delete(b.keys, keyID)
	delete(b.unsaved, keyID)
	b.mu.Unlock()
	if b.Shared != nil {
		width := b.cfg.Window / buckets
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := b.Shared.ResetBreakerSpend(ctx, keyID, b.now().UnixNano()/int64(width), buckets); err != nil {
			b.log.Warn("breaker: resetting the shared window failed", "key_id", keyID, "err", err)
		}
	}
}

// Rearm lets a key trip again on this replica (its suspension or
// reinstatement changed elsewhere) and drops a suspension waiting to be
// retried; the window and baseline stay.
func (b *Breaker) Rearm(keyID string) {
	b.mu.Lock()
	if w := b.keys[keyID]; w != nil {
		w.tripped = false
	}
	// The key changed in the store: the server's in-memory suspension ends
	// there too (vkey.Verifier.Overlay), so a retry would overrule it.
	delete(b.unsaved, keyID)
	b.mu.Unlock()
}
