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
//
// Observe never waits for the shared backend: it adds the cost to the key's
// window in memory and judges that at once, so a replica's own spend trips
// the breaker on the call that passes the limit. Run sends every key's
// spend since the last flush to the backend in one batch each
// FlushInterval (default 100ms) and judges each key on the shared sums it
// gets back (plus what this replica spent meanwhile). So a trip that needs
// other replicas' spend lags the call that caused it by at most one
// FlushInterval plus one flush (bounded by FlushTimeout, 2s), on the first
// replica to flush after the sum passed the limit; budgets, not the
// breaker, are the hard limit on spend. When a flush fails the spend waits
// for the next one (spend older than the window is dropped), each key is
// judged on this replica's view (the last shared sums plus its own spend),
// and the failure is logged once until a flush succeeds again. The unsent
// spend is held for at most MaxPendingKeys keys (a key's entries are one per
// bucket of the window) once a flush failed: past that, a key not already held is judged on this
// replica's view alone and its spend here is not sent to the shared window
// (logged once an outage); budgets stay the hard limit.
// The cost observed is what the call was charged (a cut stream's whole hold
// included), not only what was metered. A trip is stored as the key's
// suspension, which every replica sees at once (change notifications), and
// alerts once: only the replica whose suspension changed the key alerts.
// The baseline (a key's usual spend) is an EWMA kept per replica from the
// shared buckets it saw. Past MaxKeys windows the idle ones are evicted (a
// key evicted so starts afresh); a window with spend in it never is.
//
// A suspension the store does not take when the key trips is retried by Run
// (the server holds it in memory at once, so the key's later calls on this
// replica are refused and never reach Observe to try again), until the
// store takes it or the key is reinstated or changes elsewhere (Reset,
// Rearm). A retry carries the key's version the trip was decided at, and the
// store takes it only while the key is still at that version: a
// reinstatement between the trip and the retry wins even when this replica
// has not heard of it yet, or hears of it while the retry's write is in
// flight (ErrChanged).
package breaker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
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
	// FlushInterval is how often Run sends this replica's spend to the
	// shared windows and judges the sums (default 100ms): the most a trip on
	// several replicas' spend lags, besides the flush itself.
	FlushInterval time.Duration
}

// Default is on, $5 in 5 minutes, or 10× the key's usual 5 minutes once that is above $1.
var Default = Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 5_000_000, BaselineMultiple: 10, MinSpendMicros: 1_000_000, FlushInterval: 100 * time.Millisecond}

// FlushTimeout bounds one flush to the shared windows.
const FlushTimeout = 2 * time.Second

// ErrNoKey is what a Suspender returns for a caller that has no stored key
// to suspend (a workload identity or a client certificate): the breaker
// alerts once for it and does not retry.
var ErrNoKey = errors.New("breaker: the caller has no key to suspend")

// ErrChanged is what a Suspender returns for a retry whose key changed
// since its trip (an admin reinstated it): the change wins, the retry ends.
var ErrChanged = errors.New("breaker: the key changed since it tripped")

// Suspension is a key's suspension as the breaker asks a Suspender to store
// it.
type Suspension struct {
	Reason string
	// At and Version are zero on a trip; the Suspender returns them as it
	// decided them (the instant written, the key's version it saw, 0 when
	// unknown) and a retry passes them back: the write then takes effect
	// only while the key is still at Version (else ErrChanged), and a key
	// found suspended at At for Reason is this suspension's own earlier
	// write, which committed though its answer was lost (a timeout): first.
	At      time.Time
	Version int64
}

// Suspender stores a suspension; first reports whether this suspension
// suspended the key (false: it was suspended already, by another replica).
type Suspender func(ctx context.Context, keyID string, s Suspension) (first bool, made Suspension, err error)

// Shared keeps windows that every replica adds to. Buckets are numbered
// from the Unix epoch in units of the bucket width.
type Shared interface {
	// AddBreakerSpend adds cost to the key's bucket and returns the sums of
	// the n buckets ending at bucket, oldest first.
	AddBreakerSpend(ctx context.Context, keyID string, bucket, cost int64, n int) ([]int64, error)
	// ResetBreakerSpend empties the key's n buckets ending at bucket.
	ResetBreakerSpend(ctx context.Context, keyID string, bucket int64, n int) error
}

// Spend is one key's cost in one bucket, as a flush sends it.
type Spend struct {
	KeyID  string
	Bucket int64
	Cost   int64
}

// BatchShared is a Shared that takes many keys' spend in one call (one
// statement); a Shared without it gets one AddBreakerSpend per key and
// bucket from the flusher.
type BatchShared interface {
	// AddBreakerSpends adds every spend (at most one per key and bucket,
	// sorted by key and bucket) and returns, for each key named, the sums
	// of the n buckets ending at bucket, oldest first.
	AddBreakerSpends(ctx context.Context, spends []Spend, bucket int64, n int) (map[string][]int64, error)
}

// MaxPendingKeys bounds how many keys' unsent spend a breaker holds while
// the shared windows are unreachable (each key: at most one entry per
// bucket of the window, older ones are dropped).
const MaxPendingKeys = 50_000

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
	// OnFlushTrip, when set, is called when a flush's shared sums trip a key
	// and this replica suspended it (a trip in Observe is reported by its
	// return value instead, with the call that tripped it).
	OnFlushTrip func(keyID string)

	mu   sync.Mutex
	keys map[string]*window
	// maxKeys: past this many windows, the idle ones are evicted (sweep);
	// sweepAt: the size that triggers the next sweep (b.mu held).
	maxKeys, sweepAt int
	// unsaved: trips whose suspension the store did not take, by key id,
	// as the Suspender decided them (reason, instant, version). The
	// suspension holds in memory on this replica at once (the server marks
	// it before writing), so no later call of the key reaches Observe here
	// to try again: Run retries them instead.
	unsaved map[string]Suspension
	// pending: spend not yet sent to Shared, by key and bucket; at most
	// maxPending keys (queue).
	pending    map[string]map[int64]int64
	maxPending int
	// unshared: spends not queued because pending was full, since the last
	// flush that succeeded (logged once, when it first grows).
	unshared int
	// sharedDown: the last flush failed (logged once until one succeeds).
	sharedDown bool
	// rearmed: keys rearmed while a flush is in flight (nil between
	// flushes). The flush's sums for them were read before their
	// suspension or reinstatement changed, so it does not judge them: stale
	// sums would suspend a key just reinstated.
	rearmed map[string]bool
	// flushing: one flush at a time; Reset waits for it, so a flush in
	// flight cannot write spend back into a window just emptied.
	flushing sync.Mutex
}

type window struct {
	start    time.Time // start of buckets[0]
	sums     [buckets]int64
	baseline float64 // EWMA of spend per window, from buckets that left the window
	seen     int     // buckets folded into the baseline
	tripped  bool
	// noKey: tripped, but the caller has no key to suspend; the window
	// rearms once its spend is back under the limit, so each episode
	// alerts once.
	noKey bool
}

// New returns a breaker.
func New(cfg Config, suspend Suspender, alerts Alerter, log *slog.Logger) *Breaker {
	if cfg.Window <= 0 {
		cfg.Window = Default.Window
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = Default.FlushInterval
	}
	return &Breaker{cfg: cfg, suspend: suspend, alerts: alerts, log: log, now: time.Now,
		keys: map[string]*window{}, unsaved: map[string]Suspension{}, pending: map[string]map[int64]int64{}, maxPending: MaxPendingKeys,
		maxKeys: MaxKeys, sweepAt: MaxKeys}
}

// queue adds spend to be sent to Shared by the next flush and reports false
// when it could not: bounded (the shared window is down: pending is held
// flush after flush), pending holds maxPending keys already and not this one
// (b.mu held). Such spend stays in the key's window on this replica, which
// judges the key on it as on every key while the shared window is down; the
// shared window never gets it. While the window is up nothing is refused:
// pending holds one interval's keys (each has a window here already), and
// many keys spending must not keep another key's spend from the sum.
func (b *Breaker) queue(keyID string, bucket, cost int64, bounded bool) bool {
	p := b.pending[keyID]
	if p == nil {
		if bounded && len(b.pending) >= b.maxPending {
			b.unshared++
			return false
		}
		p = map[int64]int64{}
		b.pending[keyID] = p
	}
	p[bucket] += cost
	return true
}

// logUnshared logs, once until a flush succeeds, that pending is full.
func (b *Breaker) logUnshared(first bool) {
	if first {
		b.log.Warn("breaker: too many keys' spend waiting for the shared windows; further keys are judged on this replica's view alone and their spend here is not shared; budgets still apply", "max_keys", b.maxPending)
	}
}

// bucketOf numbers the bucket holding t, from the Unix epoch.
func bucketOf(t time.Time, width time.Duration) int64 { return t.UnixNano() / int64(width) }

// windowStart is the start of the window whose newest bucket holds t.
func windowStart(t time.Time, width time.Duration) time.Time {
	return time.Unix(0, (bucketOf(t, width)-(buckets-1))*int64(width))
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
			w.start = windowStart(now, width)
			w.sums = [buckets]int64{}
		}
	}
}

// Observe adds a call's cost to a key's window and trips the breaker when the
// window's spend is too high. It returns true when this call tripped it.
// It does not wait for the shared windows (Run flushes them).
func (b *Breaker) Observe(ctx context.Context, keyID string, cost int64) bool {
	if !b.cfg.Enabled || cost <= 0 || keyID == "" {
		return false
	}
	width := b.cfg.Window / buckets
	now := b.now()
	b.mu.Lock()
	w := b.window(keyID, now, width)
	w.sums[buckets-1] += cost
	// A key this replica suspended sends no more spend (calls that were in
	// flight when it tripped): an admin's reinstatement empties the shared
	// window (Reset), and spend from before it must not trip the key again.
	full := false
	if b.Shared != nil && (!w.tripped || w.noKey) {
		full = !b.queue(keyID, bucketOf(now, width), cost, b.sharedDown) && b.unshared == 1
	}
	reason, sum := b.judge(w)
	b.mu.Unlock()
	b.logUnshared(full)
	if reason == "" {
		return false
	}
	return b.trip(ctx, keyID, w, reason, sum)
}

// window returns the key's window advanced to now (b.mu held).
func (b *Breaker) window(keyID string, now time.Time, width time.Duration) *window {
	w := b.keys[keyID]
	if w == nil {
		if len(b.keys) >= b.sweepAt {
			b.sweep(now, width)
		}
		w = &window{start: windowStart(now, width)}
		b.keys[keyID] = w
	}
	w.advance(now, width)
	return w
}

// MaxKeys is how many keys' windows a breaker keeps before it evicts the
// idle ones. Window ids are stored keys' ids (tokens carry the id of the
// key they were exchanged for), configured workload issuers ("wif:") and
// configured certificate ids ("mtls:"): no caller makes up new ones, but a
// long-running replica keeps the window of every key it ever saw spend.
const MaxKeys = 1_000_000

// sweep evicts the windows that hold nothing: no spend in the window, not
// tripped, no spend waiting for the shared windows and no suspension
// waiting to be written. Such a key, when it spends again, starts as a new
// key (its baseline is relearned; the ceiling applies from its first call).
// A window with spend in it is never evicted, so that many keys cannot
// reset a key's spend (emptying every window at the cap once did). The
// next sweep comes when the windows kept have doubled, so its cost is
// amortised over the windows created since (b.mu held).
func (b *Breaker) sweep(now time.Time, width time.Duration) {
	for id, w := range b.keys {
		if w.tripped || b.pending[id] != nil {
			continue
		}
		if _, ok := b.unsaved[id]; ok {
			continue
		}
		// Not advanced (a long-idle window would fold bucket by bucket):
		// one whose buckets are all a window old or more is empty now.
		if w.sums == ([buckets]int64{}) || now.Sub(w.start) >= 2*buckets*width {
			delete(b.keys, id)
		}
	}
	b.sweepAt = max(b.maxKeys, 2*len(b.keys))
}

// judge returns why the window trips the breaker ("" when it does not), and
// its sum; a trip marks it tripped (b.mu held).
func (b *Breaker) judge(w *window) (string, int64) {
	var sum int64
	for _, s := range w.sums {
		sum += s
	}
	reason := ""
	switch {
	case w.tripped && !w.noKey:
	case b.cfg.CeilingMicros > 0 && sum > b.cfg.CeilingMicros:
		reason = fmt.Sprintf("spent %s in %v, over the ceiling of %s", pricing.FormatUSD(sum), b.cfg.Window, pricing.FormatUSD(b.cfg.CeilingMicros))
	case b.cfg.BaselineMultiple > 0 && w.seen >= 3*buckets && sum >= b.cfg.MinSpendMicros && float64(sum) > float64(b.cfg.BaselineMultiple)*w.baseline:
		reason = fmt.Sprintf("spent %s in %v, over %d× its usual %s", pricing.FormatUSD(sum), b.cfg.Window, b.cfg.BaselineMultiple, pricing.FormatUSD(int64(w.baseline)))
	}
	if w.noKey { // tripped without a key to suspend: rearm when calm
		if reason == "" {
			w.tripped, w.noKey = false, false
		}
		return "", sum
	}
	if reason != "" {
		w.tripped = true
	}
	return reason, sum
}

// trip stores the suspension of a key whose window judge just tripped, and
// alerts when this replica's write suspended it. It reports whether it did.
func (b *Breaker) trip(ctx context.Context, keyID string, w *window, reason string, sum int64) bool {
	// A trip of a key whose earlier trip still waits to be written (a call
	// came: this replica's mark was lifted) is that trip's retry: the call
	// may come because an admin reinstated the key.
	b.mu.Lock()
	s, retried := b.unsaved[keyID]
	b.mu.Unlock()
	if !retried {
		s = Suspension{Reason: reason}
	}
	first, made, err := b.suspend(context.WithoutCancel(ctx), keyID, s)
	if errors.Is(err, ErrChanged) {
		b.changed(keyID)
		return false
	}
	if errors.Is(err, ErrNoKey) || errors.Is(err, store.ErrNotFound) {
		// No key to suspend (a workload identity or certificate caller, or a
		// key deleted meanwhile): the window stays tripped, so this alerts
		// and logs once, not on every later call; budgets still bound it.
		b.mu.Lock()
		w.noKey = true
		b.mu.Unlock()
		b.log.Warn("breaker: a caller passed the spend limit but has no key to suspend; its budgets still apply", "key_id", keyID, "reason", reason)
		if b.alerts != nil {
			b.alerts.Send(alert.Alert{Kind: "breaker_tripped", Message: "caller " + keyID + " passed the spend-velocity limit but has no key to suspend: " + reason,
				Details: map[string]any{"key_id": keyID, "window_spend_micros": sum, "window": b.cfg.Window.String(), "reason": reason, "suspended": false}})
		}
		return false
	}
	if err != nil {
		b.log.Error("breaker: suspending the key failed; retrying", "key_id", keyID, "err", err)
		b.mu.Lock()
		w.tripped = false                         // try again on the next call, if one comes
		if !retried && len(b.unsaved) < 100_000 { // and in Run, since none may
			b.unsaved[keyID] = made
		}
		b.mu.Unlock()
		return false
	}
	b.mu.Lock()
	delete(b.unsaved, keyID)
	// The spend that tripped it is in the suspension's record; sent after an
	// admin reinstated the key elsewhere (which empties the shared window), it
	// would suspend the key again at once.
	delete(b.pending, keyID)
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

// Run, until ctx ends, flushes this replica's spend to the shared windows
// every FlushInterval (and once more when ctx ends, so a clean stop loses
// none) and retries, every retryInterval, the suspensions the store did not
// take when their key tripped.
func (b *Breaker) Run(ctx context.Context, retryInterval time.Duration) {
	retry := time.NewTicker(retryInterval)
	defer retry.Stop()
	var flushC <-chan time.Time
	if b.Shared != nil {
		flush := time.NewTicker(b.cfg.FlushInterval)
		defer flush.Stop()
		flushC = flush.C
	}
	for {
		select {
		case <-ctx.Done():
			if b.Shared != nil {
				b.Flush(context.WithoutCancel(ctx))
			}
			return
		case <-flushC:
			b.Flush(ctx)
		case <-retry.C:
			b.retry(ctx)
		}
	}
}

// Flush sends the spend observed since the last flush to the shared windows
// in one batch and judges every key it sent on the sums it gets back. Run
// calls it; tests call it directly.
func (b *Breaker) Flush(ctx context.Context) {
	if b.Shared == nil {
		return
	}
	b.flushing.Lock()
	defer b.flushing.Unlock()
	b.mu.Lock()
	if len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	batch := b.pending
	b.pending = map[string]map[int64]int64{}
	b.rearmed = map[string]bool{}
	b.mu.Unlock()

	width := b.cfg.Window / buckets
	now := b.now()
	cur := bucketOf(now, width)
	spends := make([]Spend, 0, len(batch))
	for id, m := range batch {
		for bk, c := range m {
			spends = append(spends, Spend{KeyID: id, Bucket: bk, Cost: c})
		}
	}
	// One lock order for every replica's batch: no deadlock between them.
	slices.SortFunc(spends, func(x, y Spend) int {
		if c := cmp.Compare(x.KeyID, y.KeyID); c != 0 {
			return c
		}
		return cmp.Compare(x.Bucket, y.Bucket)
	})
	fctx, cancel := context.WithTimeout(ctx, FlushTimeout)
	sums, sent, err := b.addSpends(fctx, spends, cur)
	cancel()

	b.mu.Lock()
	rearmed := b.rearmed
	b.rearmed = nil
	if err != nil {
		// Keep the spend not sent for the next flush (what left the window
		// no longer counts); the keys' windows already hold it, so each is
		// judged on this replica's view meanwhile.
		full := false
		for _, sp := range spends[sent:] {
			if sp.Bucket <= cur-buckets {
				continue
			}
			if !b.queue(sp.KeyID, sp.Bucket, sp.Cost, true) && b.unshared == 1 {
				full = true
			}
		}
		logIt := !b.sharedDown
		b.sharedDown = true
		b.mu.Unlock()
		b.logUnshared(full)
		if logIt {
			b.log.Warn("breaker: the shared windows are unavailable; judging each key on this replica's view until they return", "err", err)
		}
		return
	}
	back := b.sharedDown
	b.sharedDown = false
	b.unshared = 0
	type tripped struct {
		id, reason string
		w          *window
		sum        int64
	}
	var trips []tripped
	for id, s := range sums {
		w := b.keys[id]
		if w == nil || len(s) != buckets || rearmed[id] { // reset or rearmed meanwhile
			continue
		}
		w.advance(now, width)
		first := bucketOf(w.start, width)
		if first != cur-buckets+1 {
			continue // the clock moved back: keep the view this replica has
		}
		copy(w.sums[:], s)
		for bk, c := range b.pending[id] { // spent since the batch left
			if i := bk - first; i >= 0 && i < buckets {
				w.sums[i] += c
			}
		}
		if reason, sum := b.judge(w); reason != "" {
			trips = append(trips, tripped{id, reason, w, sum})
		}
	}
	b.mu.Unlock()
	if back {
		b.log.Info("breaker: the shared windows are back")
	}
	for _, t := range trips {
		if b.trip(ctx, t.id, t.w, t.reason, t.sum) {
			b.log.Warn("spend-velocity breaker tripped on the shared window; key suspended", "key_id", t.id)
			if b.OnFlushTrip != nil {
				b.OnFlushTrip(t.id)
			}
		}
	}
}

// addSpends sends spends to Shared in one call when it takes batches, else
// one call per key and bucket, and returns each key's n buckets ending at
// cur; on failure, how many of spends (a prefix) were added all the same, so
// that a retry does not count them twice.
func (b *Breaker) addSpends(ctx context.Context, spends []Spend, cur int64) (map[string][]int64, int, error) {
	if bs, ok := b.Shared.(BatchShared); ok {
		sums, err := bs.AddBreakerSpends(ctx, spends, cur, buckets)
		if err != nil {
			return nil, 0, err // one transaction: nothing was added
		}
		return sums, len(spends), nil
	}
	out := map[string][]int64{}
	for i, s := range spends {
		got, err := b.Shared.AddBreakerSpend(ctx, s.KeyID, s.Bucket, s.Cost, buckets)
		if err != nil {
			return nil, i, err
		}
		if len(got) != buckets {
			return nil, i + 1, fmt.Errorf("breaker: the shared window has %d buckets, not %d", len(got), buckets)
		}
		// got ends at s.Bucket (≤ cur): shift it to end at cur.
		shifted := make([]int64, buckets)
		if k := cur - s.Bucket; k < buckets {
			copy(shifted, got[k:])
		}
		out[s.KeyID] = shifted // spends are sorted: the newest bucket comes last
	}
	return out, len(spends), nil
}

// retry writes each unsaved suspension once more; one the store takes is
// forgotten (and alerts if it changed the key), one it refuses waits for
// the next round.
func (b *Breaker) retry(ctx context.Context) {
	b.mu.Lock()
	todo := maps.Clone(b.unsaved)
	b.mu.Unlock()
	for id, u := range todo {
		b.mu.Lock()
		still := b.unsaved[id] == u // not reinstated or rearmed meanwhile
		b.mu.Unlock()
		if !still {
			continue
		}
		reason := u.Reason
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		first, _, err := b.suspend(sctx, id, u)
		cancel()
		if errors.Is(err, ErrChanged) { // reinstated (or changed) since the trip: that wins
			b.changed(id)
			continue
		}
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrNoKey) { // gone meanwhile
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

// changed ends a trip whose key changed in the store since (an admin
// reinstated it): the retry is dropped and the key rearmed on a window
// without the spend that tripped it, which predates the change.
func (b *Breaker) changed(keyID string) {
	b.log.Info("breaker: a suspension waiting to be written was dropped: the key changed since it tripped (reinstated)", "key_id", keyID)
	b.mu.Lock()
	delete(b.unsaved, keyID)
	if w := b.keys[keyID]; w != nil {
		w.tripped, w.noKey = false, false
		w.sums = [buckets]int64{}
	}
	b.mu.Unlock()
}

// Reset forgets a key's window, shared ones included (after an admin
// reinstates it). It waits for a flush in flight, so that one cannot write
// the key's old spend back after the reset.
func (b *Breaker) Reset(keyID string) {
	b.flushing.Lock()
	defer b.flushing.Unlock()
	b.mu.Lock()
	delete(b.keys, keyID)
	delete(b.unsaved, keyID)
	delete(b.pending, keyID)
	b.mu.Unlock()
	if b.Shared != nil {
		width := b.cfg.Window / buckets
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := b.Shared.ResetBreakerSpend(ctx, keyID, bucketOf(b.now(), width), buckets); err != nil {
			b.log.Warn("breaker: resetting the shared window failed", "key_id", keyID, "err", err)
		}
	}
}

// Rearm lets a key trip again on this replica (its suspension or
// reinstatement changed elsewhere) and drops a suspension waiting to be
// retried whose trip's version is unknown (one at a known version is left to
// the store to judge); the baseline stays, and so does the window unless it is a view
// of the shared one (refreshed by the next flush).
func (b *Breaker) Rearm(keyID string) {
	b.mu.Lock()
	if w := b.keys[keyID]; w != nil {
		w.tripped, w.noKey = false, false
		if b.Shared != nil {
			// The view came from the shared window, which a reinstatement
			// elsewhere emptied (Reset): the next flush reads it again.
			w.sums = [buckets]int64{}
		}
	}
	// The key changed in the store: the server's in-memory suspension ends
	// there too (vkey.Verifier.Overlay). A retry decided at a known version
	// stays: the store takes it only while the key is still at that version
	// (ErrChanged otherwise: a reinstatement wins) and tells it when the
	// change is its own write, committed though its answer was lost, whose
	// notification this may be (then it is recorded and alerted once). One
	// decided at no known version would overrule a reinstatement: dropped.
	if u, ok := b.unsaved[keyID]; ok && u.Version == 0 {
		delete(b.unsaved, keyID)
	}
	if b.rearmed != nil { // a flush in flight read the sums before the change
		b.rearmed[keyID] = true
	}
	b.mu.Unlock()
}
