// Package denylog leaves a trace of refused credentials in the ledger: calls
// with a revoked, expired, suspended or rotated-out key (or a key whose owner
// is disabled) become "credential.denied" records, so that an incident can be
// reconstructed from the log after a key is revoked.
//
// A flood must not fill the disk, so records are rate-limited per key: at most
// one record per key per interval (one second), each carrying in "count" how
// many refused calls it stands for. The first refusal after a quiet interval
// is written at once; the ones that follow within the interval are counted
// and carried by the next record of that key, or by the flush that Run makes
// every interval, or by Flush at shutdown: no refused call goes uncounted. A
// record's time, request id, source address and user agent are those of the
// last call it covers.
//
// Credentials that match no key (unknown, malformed, and refused tokens that
// name no key) cannot be told apart, and an attacker can make up any number of
// them, so they are never recorded per credential: they share one bucket per
// refusal reason. The number of per-key windows is bounded too (MaxKeys);
// keys beyond it share an overflow bucket.
//
// The records of all buckets together are capped too (MaxRecords per
// interval, 100 by default): a flood of distinct keys (each its own bucket)
// would otherwise write one record per key per interval. A record over the
// cap is not written; the calls it stood for are added to one aggregated
// record per interval, "N more denied credentials suppressed", with
// error_code "suppressed", key_id empty, count N, and the counts by refusal
// reason in detail ("… suppressed: key_revoked=9000 invalid_api_key=900",
// reasons sorted). So at most MaxRecords+1 records are written per interval
// whatever arrives, and the counts of all records still add up to the number
// of refused calls. A lone key's refusal in a quiet moment is written at once
// as before.
//
// Counts are per replica: with several gateways, each writes its own records.
package denylog

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// Kind is the ledger record kind of a refused credential.
const Kind = "credential.denied"

// Appender makes records durable (package ledger).
type Appender interface {
	Append(ctx context.Context, e ledger.Entry) (int64, error)
}

// Event is one refused call.
type Event struct {
	Time        time.Time
	RequestID   string
	KeyID       string // "" when the credential matched no key
	PrincipalID string
	Reason      string // the error code the caller got: key_revoked, key_expired, …
	Status      int
	Endpoint    string
	SourceIP    string
	UserAgent   string
}

// Options tune a Recorder; zero values take the defaults.
type Options struct {
	Interval time.Duration // at most one record per key per Interval; default 1s
	MaxKeys  int           // per-key windows kept at once; default 10,000
	// MaxRecords caps the records of all buckets together per Interval;
	// default 100. Calls over it go to one aggregated record per interval.
	MaxRecords int
}

// SuppressedReason is the error_code of the aggregated record of calls whose
// own records the global cap suppressed.
const SuppressedReason = "suppressed"

// maxSuppressedReasons bounds the reasons counted apart in the aggregated
// record; others count under "other".
const maxSuppressedReasons = 16

// Recorder rate-limits and writes refused-credential records. It is safe for
// concurrent use.
type Recorder struct {
	app      Appender
	log      *slog.Logger
	interval time.Duration
	maxKeys  int
	maxRecs  int
	now      func() time.Time

	mu      sync.Mutex
	windows map[string]*window
	// The global cap: records written (or being written) in the interval
	// that began at capStart.
	capStart time.Time
	capUsed  int
	// Calls over the cap, by reason, for the aggregated record.
	suppressed     map[string]int64
	suppressedLast Event     // the most recent of them
	suppressedAt   time.Time // when the last aggregated record was written
}

type window struct {
	last    time.Time // when the last record of this bucket was written
	pending int64     // refused calls since, in no record yet
	latest  Event     // the most recent of them
}

// New returns a Recorder writing to app.
func New(app Appender, log *slog.Logger, o Options) *Recorder {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 10_000
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = 100
	}
	return &Recorder{app: app, log: log, interval: o.Interval, maxKeys: o.MaxKeys, maxRecs: o.MaxRecords, now: time.Now,
		windows: map[string]*window{}, suppressed: map[string]int64{}}
}

// bucket names the window an event counts in.
func bucket(e Event) string {
	if e.KeyID == "" {
		return "unmatched/" + e.Reason
	}
	return "key/" + e.KeyID
}

const overflow = "overflow"

// Observe counts a refused call and writes a record if the call's key had
// none in the last interval.
func (r *Recorder) Observe(ctx context.Context, e Event) {
	if r == nil || r.app == nil {
		return
	}
	e.UserAgent = clean(e.UserAgent, 256)
	e.Reason, e.Endpoint, e.SourceIP = clean(e.Reason, 64), clean(e.Endpoint, 64), clean(e.SourceIP, 64)
	e.KeyID, e.PrincipalID, e.RequestID = clean(e.KeyID, 128), clean(e.PrincipalID, 128), clean(e.RequestID, 128)
	now := r.now()
	if e.Time.IsZero() {
		e.Time = now
	}
	r.mu.Lock()
	b := bucket(e)
	w := r.windows[b]
	if w == nil {
		if len(r.windows) >= r.maxKeys {
			b = overflow
			e.KeyID, e.PrincipalID = "", ""
			w = r.windows[b]
		}
		if w == nil {
			w = &window{}
			r.windows[b] = w
		}
	}
	if !w.last.IsZero() && now.Sub(w.last) < r.interval {
		w.pending++
		w.latest = e
		r.mu.Unlock()
		return
	}
	count := w.pending + 1
	w.pending, w.latest, w.last = 0, Event{}, now
	ok := r.takeRecord(now, e, count)
	r.mu.Unlock()
	if ok {
		r.write(ctx, b, e, count)
	}
}

// takeRecord takes a place under the global cap for a record of count calls
// ending with e; over the cap, the calls go to the aggregated record instead.
// r.mu is held.
func (r *Recorder) takeRecord(now time.Time, e Event, count int64) bool {
	if now.Sub(r.capStart) >= r.interval || now.Before(r.capStart) {
		r.capStart, r.capUsed = now, 0
	}
	if r.capUsed < r.maxRecs {
		r.capUsed++
		return true
	}
	r.suppress(e, count)
	return false
}

// suppress adds count calls of e's reason to the aggregated record. r.mu is held.
func (r *Recorder) suppress(e Event, count int64) {
	reason := e.Reason
	if _, ok := r.suppressed[reason]; !ok && len(r.suppressed) >= maxSuppressedReasons {
		reason = "other"
	}
	r.suppressed[reason] += count
	if !e.Time.Before(r.suppressedLast.Time) {
		r.suppressedLast = e
	}
}

// aggregate builds the aggregated record of the suppressed calls and resets
// them, or reports false when there are none. r.mu is held.
func (r *Recorder) aggregate(now time.Time) (ledger.Record, map[string]int64, bool) {
	if len(r.suppressed) == 0 {
		return ledger.Record{}, nil, false
	}
	var total int64
	reasons := make([]string, 0, len(r.suppressed))
	for k, n := range r.suppressed {
		reasons = append(reasons, k)
		total += n
	}
	slices.Sort(reasons)
	var b strings.Builder
	fmt.Fprintf(&b, "%d more denied credentials suppressed:", total)
	for _, k := range reasons {
		fmt.Fprintf(&b, " %s=%d", k, r.suppressed[k])
	}
	e := r.suppressedLast
	rec := ledger.Record{Kind: Kind, Time: e.Time, RequestID: e.RequestID, SourceIP: e.SourceIP, UserAgent: e.UserAgent,
		Endpoint: e.Endpoint, Decision: "deny", Status: e.Status, ErrorCode: SuppressedReason, Count: total, Detail: b.String()}
	taken := r.suppressed
	r.suppressed, r.suppressedLast, r.suppressedAt = map[string]int64{}, Event{}, now
	return rec, taken, true
}

// writeAggregate appends the aggregated record; on failure its counts go back.
func (r *Recorder) writeAggregate(ctx context.Context, rec ledger.Record, taken map[string]int64, last Event) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := r.app.Append(actx, ledger.Entry{Data: rec.Marshal(), RequestID: rec.RequestID}); err != nil {
		r.mu.Lock()
		for k, n := range taken {
			r.suppressed[k] += n
		}
		if r.suppressedLast.Time.IsZero() {
			r.suppressedLast = last
		}
		r.mu.Unlock()
		r.log.Error("ledger: suppressed refused-credential record not written; its counts are kept for the next one", "count", rec.Count, "err", err)
	}
}

// write appends one record; on failure its count goes back to the bucket so
// that a later record carries it.
func (r *Recorder) write(ctx context.Context, b string, e Event, count int64) {
	rec := ledger.Record{Kind: Kind, Time: e.Time, RequestID: e.RequestID, KeyID: e.KeyID, PrincipalID: e.PrincipalID,
		SourceIP: e.SourceIP, UserAgent: e.UserAgent, Endpoint: e.Endpoint, Decision: "deny", Status: e.Status,
		ErrorCode: e.Reason, Count: count}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := r.app.Append(actx, ledger.Entry{Data: rec.Marshal(), RequestID: e.RequestID}); err != nil {
		r.mu.Lock()
		w := r.windows[b]
		if w == nil {
			w = &window{last: r.now()}
			r.windows[b] = w
		}
		w.pending += count
		if w.latest.Time.IsZero() {
			w.latest = e
		}
		r.mu.Unlock()
		r.log.Error("ledger: refused-credential record not written; its count is kept for the next one", "key_id", e.KeyID, "reason", e.Reason, "count", count, "err", err)
	}
}

// Run flushes, every interval, the counts of buckets whose interval has passed
// and forgets idle buckets, until ctx ends. Call Flush after it returns (and
// after the data plane has drained) so that the last counts are written.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.flush(ctx, false)
		}
	}
}

// Flush writes every pending count now, whatever the interval.
func (r *Recorder) Flush(ctx context.Context) {
	if r != nil {
		r.flush(ctx, true)
	}
}

func (r *Recorder) flush(ctx context.Context, all bool) {
	type due struct {
		b     string
		e     Event
		count int64
	}
	var out []due
	now := r.now()
	r.mu.Lock()
	for b, w := range r.windows {
		quiet := now.Sub(w.last) >= r.interval
		switch {
		case w.pending > 0 && (all || quiet):
			if r.takeRecord(now, w.latest, w.pending) {
				out = append(out, due{b, w.latest, w.pending})
			}
			w.pending, w.latest, w.last = 0, Event{}, now
		case w.pending == 0 && now.Sub(w.last) >= 2*r.interval:
			delete(r.windows, b) // idle: the next refusal is written at once anyway
		}
	}
	// One aggregated record per interval (at shutdown, whatever the interval).
	var agg ledger.Record
	var taken map[string]int64
	var last Event
	haveAgg := false
	if all || now.Sub(r.suppressedAt) >= r.interval {
		last = r.suppressedLast
		agg, taken, haveAgg = r.aggregate(now)
	}
	r.mu.Unlock()
	for _, d := range out {
		r.write(ctx, d.b, d.e, d.count)
	}
	if haveAgg {
		r.writeAggregate(ctx, agg, taken, last)
	}
}

// clean makes s fit a record: valid UTF-8, at most n bytes, cut on a rune
// boundary.
func clean(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
