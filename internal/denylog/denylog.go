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
// Counts are per replica: with several gateways, each writes its own records.
package denylog

import (
	"context"
	"log/slog"
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
}

// Recorder rate-limits and writes refused-credential records. It is safe for
// concurrent use.
type Recorder struct {
	app      Appender
	log      *slog.Logger
	interval time.Duration
	maxKeys  int
	now      func() time.Time

	mu      sync.Mutex
	windows map[string]*window
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
	return &Recorder{app: app, log: log, interval: o.Interval, maxKeys: o.MaxKeys, now: time.Now, windows: map[string]*window{}}
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
	r.mu.Unlock()
	r.write(ctx, b, e, count)
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
			out = append(out, due{b, w.latest, w.pending})
			w.pending, w.latest, w.last = 0, Event{}, now
		case w.pending == 0 && now.Sub(w.last) >= 2*r.interval:
			delete(r.windows, b) // idle: the next refusal is written at once anyway
		}
	}
	r.mu.Unlock()
	for _, d := range out {
		r.write(ctx, d.b, d.e, d.count)
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
