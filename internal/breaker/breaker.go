// Package breaker is the spend-velocity breaker: it watches each key's spend
// over a sliding window and suspends the key at once when that spend passes a
// ceiling (e.g. $5 in 5 minutes) or a multiple of the key's own trailing
// baseline. A suspended key gets 403 key_suspended until an admin reinstates
// it; the suspension is stored, so it survives restarts and holds on every
// replica.
//
// Windows are kept in memory per gateway process. With N replicas behind a load
// balancer a key can spend up to N times the ceiling before one of them trips
// (each sees its share); the hard budgets (package budget) are the bound that
// holds across replicas.
package breaker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
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

// Suspender stores a suspension.
type Suspender func(ctx context.Context, keyID, reason string) error

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

	mu   sync.Mutex
	keys map[string]*window
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
	return &Breaker{cfg: cfg, suspend: suspend, alerts: alerts, log: log, now: time.Now, keys: map[string]*window{}}
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
	w.sums[buckets-1] += cost
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
	if err := b.suspend(context.WithoutCancel(ctx), keyID, reason); err != nil {
		b.log.Error("breaker: suspending the key failed", "key_id", keyID, "err", err)
		b.mu.Lock()
		w.tripped = false // try again on the next call
		b.mu.Unlock()
		return false
	}
	if b.alerts != nil {
		b.alerts.Send(alert.Alert{Kind: "breaker_tripped", Message: "key " + keyID + " suspended: " + reason,
			Details: map[string]any{"key_id": keyID, "window_spend_micros": sum, "window": b.cfg.Window.String(), "reason": reason}})
	}
	return true
}

// Reset forgets a key's window (after an admin reinstates it).
func (b *Breaker) Reset(keyID string) {
	b.mu.Lock()
	delete(b.keys, keyID)
	b.mu.Unlock()
}
