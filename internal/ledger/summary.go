package ledger

import (
	"fmt"
	"time"
)

// While the store is unreachable, the sequencer keeps every end record it
// could not write (Log.retry) and retries them in order. End records that
// settle money (a hold, a cost, an upstream call) are bounded by the calls in
// flight: no new call starts while the store is away, since its start record
// cannot be written. End records of refused calls are not: an authenticated
// caller can send refused calls (policy denials, rate-limit and budget
// refusals) as fast as the gateway answers them, each ending with an end
// record, and nothing else bounds them. So past MaxDeferredRefusals of them
// kept one by one, such records are counted into summary records instead
// (docs/design/faults.md, "A flood of refusals during an outage").

// DefaultMaxDeferredRefusals is Log.MaxDeferredRefusals's default.
const DefaultMaxDeferredRefusals = 1000

// MaxSummaries bounds the summary records that wait for the store at once.
// Refusals that would open another are counted per key, error code and
// status in overflow summaries (every minute of the outage in one), so that
// the audit still sees each key's refusals with their codes; up to
// MaxSummaries more of those, and past them one overflow summary with no key
// (error code SummaryOverflow) covers the rest of the outage.
const MaxSummaries = 1024

// SummaryOverflow is the error code of the overflow summary with no key,
// which counts refusals of several keys and error codes.
const SummaryOverflow = "summary_overflow"

// ErrAggregated (wrapping ErrDeferred) finishes an end entry of a refused call
// that was counted into a summary record instead of kept: its own record (and
// the usage row it carried) will not be written; the summary will.
var ErrAggregated = fmt.Errorf("%w: counted in a summary record", ErrDeferred)

// summaryKey is a summary's bucket: a key, an error code and a minute; a
// key's overflow bucket is a key, an error code and a status (any minute);
// the last overflow bucket is nothing (every key and code).
type summaryKey struct {
	keyID, code string
	minute      int64
	status      int
	overflow    overflow
}

// overflow says which kind of bucket a summaryKey is.
type overflow uint8

const (
	notOverflow overflow = iota
	keyOverflow          // one key, code and status, several minutes
	allOverflow          // the rest: several keys and codes
)

// summary counts refused calls of one bucket while they wait for the store.
type summary struct {
	key   summaryKey
	rec   Record // the first call's record, as the template
	count int64
	first struct {
		id string
		at time.Time
	}
	last struct {
		id, source, agent string
		at                time.Time
	}
}

// add counts r in s.
func (s *summary) add(r Record) {
	if s.count == 0 {
		s.rec = r
		s.first.id, s.first.at = r.RequestID, r.Time
	} else {
		// What the calls do not share is left out.
		if s.rec.Endpoint != r.Endpoint {
			s.rec.Endpoint = ""
		}
		if s.rec.Model != r.Model {
			s.rec.Model = ""
		}
		if s.rec.Status != r.Status {
			s.rec.Status = 0
		}
		if s.rec.PrincipalID != r.PrincipalID {
			s.rec.PrincipalID = ""
		}
		if s.rec.TeamID != r.TeamID {
			s.rec.TeamID = ""
		}
	}
	s.count++
	s.last.id, s.last.at, s.last.source, s.last.agent = r.RequestID, r.Time, r.SourceIP, r.UserAgent
}

// entry is s as a log entry, with the counts as they are now.
func (s *summary) entry() Entry {
	r := Record{Kind: KindCallSummary, Time: s.last.at, RequestID: s.first.id, PrincipalID: s.rec.PrincipalID,
		KeyID: s.rec.KeyID, TeamID: s.rec.TeamID, SourceIP: s.last.source, UserAgent: s.last.agent,
		Endpoint: s.rec.Endpoint, Model: s.rec.Model, Decision: s.rec.Decision, Status: s.rec.Status,
		ErrorCode: s.rec.ErrorCode, Count: s.count}
	scope := "calls"
	switch s.key.overflow {
	case allOverflow:
		// Several keys and codes: only what all calls share is kept.
		r.KeyID, r.PrincipalID, r.TeamID, r.ErrorCode, r.Status, r.Decision = "", "", "", SummaryOverflow, 0, ""
		scope = "calls of several keys or error codes (too many summaries waited at once)"
	case keyOverflow:
		// One key, error code and status, several minutes: the record
		// keeps all three (the audit's rules read the code).
		scope = "calls of several minutes (too many summaries waited at once)"
	}
	r.Detail = fmt.Sprintf("%d refused %s with nothing at stake, counted while the store was unreachable; first %s at %s, last %s at %s",
		s.count, scope, s.first.id, s.first.at.UTC().Format(time.RFC3339Nano), s.last.id, s.last.at.UTC().Format(time.RFC3339Nano))
	return r.Entry()
}

// aggregable reports whether p may be counted into a summary: the end of a
// refused call with nothing at stake, by its writer's word and by what it
// carries (no hold, no settlement, no cost).
func (p *pending) aggregable() bool {
	e := &p.e
	return e.NothingAtStake && e.Closes && !e.Opens && e.Hold == nil && e.Settle == nil && (e.Usage == nil || e.Usage.CostMicros == 0)
}

// keep puts p, an entry the store did not take, at the end of the retry
// queue, or counts it into a summary when it is a refusal past the bound.
// Only Run calls it.
func (l *Log) keep(p *pending) {
	if p.aggregable() {
		if l.keptRefusals >= l.MaxDeferredRefusals && l.aggregate(p) {
			return
		}
		l.keptRefusals++
	}
	l.retry = append(l.retry, p)
}

// setRetry makes ps the retry queue (bounding it as keep does).
func (l *Log) setRetry(ps []*pending) {
	l.retry, l.keptRefusals = make([]*pending, 0, len(ps)), 0
	for _, p := range ps {
		l.keep(p)
	}
	if len(l.retry) == 0 && len(l.buckets) == 0 {
		l.aggregating = false // the next outage warns again
	}
	l.retryCount.Store(int64(len(l.retry)))
}

// aggregate counts p into its bucket's summary (opening one at the end of
// the retry queue) and finishes p with ErrAggregated. It reports false, and
// leaves p alone, if p's record does not parse (it always does: Append and
// Enqueue checked it).
func (l *Log) aggregate(p *pending) bool {
	r, err := ParseRecord(p.e.Data)
	if err != nil {
		return false
	}
	if !l.aggregating {
		l.aggregating = true
		l.log.Warn("ledger: too many end records of refused calls wait for the store; counting further ones into summary records",
			"max_deferred_refusals", l.MaxDeferredRefusals)
	}
	k := summaryKey{keyID: r.KeyID, code: r.ErrorCode, minute: r.Time.Unix() / 60}
	if k.code == SummaryOverflow {
		k.code = SummaryOverflow + "_" // a caller's code never lands in the overflow bucket
	}
	s := l.buckets[k]
	if s == nil && len(l.buckets) >= MaxSummaries {
		// The key's refusals of this code and status in one summary: a
		// flood pushed past the bound (by the attacker's own calls or by
		// other keys' refusals) stays the key's, with its error code, in the
		// log and in the audit's findings. Error codes are the gateway's
		// own (a few dozen), so a key adds a few of these at most.
		k = summaryKey{keyID: r.KeyID, code: k.code, status: r.Status, overflow: keyOverflow}
		s = l.buckets[k]
		if s == nil && len(l.buckets) >= 2*MaxSummaries {
			k = summaryKey{overflow: allOverflow}
			s = l.buckets[k]
		}
	}
	if s == nil {
		if l.buckets == nil {
			l.buckets = map[summaryKey]*pending{}
		}
		s = &pending{sum: &summary{key: k}, done: make(chan error, 1)}
		l.buckets[k] = s
		l.retry = append(l.retry, s)
	}
	s.sum.add(r)
	l.aggregatedCalls.Add(1)
	p.final(-1, ErrAggregated)
	return true
}

// written forgets the summaries of a batch the store took: calls counted
// from now on open new ones.
func (l *Log) written(batch []*pending) {
	var n int
	var calls int64
	for _, p := range batch {
		if p.sum != nil {
			if l.buckets[p.sum.key] == p {
				delete(l.buckets, p.sum.key)
			}
			n, calls = n+1, calls+p.sum.count
		}
	}
	if n > 0 {
		l.log.Info("ledger: summary records of refused calls written", "summaries", n, "calls", calls)
	}
}

// Aggregated returns how many refused calls this process counted into
// summary records instead of keeping their end records (a counter).
func (l *Log) Aggregated() int64 { return l.aggregatedCalls.Load() }
