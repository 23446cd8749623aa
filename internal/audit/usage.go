package audit

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// keyUsage is one key's calls split into its trailing baseline and the recent
// anomaly window.
type keyUsage struct {
	key              vkey.Key
	baseline, recent []Call
}

// evidenceCap bounds the request ids and ledger indexes a finding carries.
const evidenceCap = 20

// usageByKey splits the calls by key, once per run (rules share the facts).
func (f *Facts) usageByKey(c Config) []keyUsage {
	if f.byKey != nil && f.byKeyCfg == c.AnomalyWindow+c.BaselineWindow {
		return f.byKey
	}
	f.byKey, f.byKeyCfg = f.splitUsage(c), c.AnomalyWindow+c.BaselineWindow
	return f.byKey
}

func (f *Facts) splitUsage(c Config) []keyUsage {
	cut := f.Now.Add(-c.AnomalyWindow)
	from := f.Now.Add(-c.BaselineWindow)
	byID := map[string]*keyUsage{}
	for _, k := range f.Keys {
		byID[k.ID] = &keyUsage{key: k}
	}
	for _, call := range f.Calls {
		u := byID[call.KeyID]
		if u == nil || call.Time.Before(from) || call.Time.After(f.Now) {
			continue
		}
		if call.Time.Before(cut) {
			u.baseline = append(u.baseline, call)
		} else {
			u.recent = append(u.recent, call)
		}
	}
	out := make([]keyUsage, 0, len(byID))
	for _, k := range f.Keys {
		out = append(out, *byID[k.ID])
	}
	return out
}

func cite(calls []Call) Evidence {
	var e Evidence
	for i := len(calls) - 1; i >= 0 && len(e.RequestIDs) < evidenceCap; i-- {
		e.RequestIDs = append(e.RequestIDs, calls[i].RequestID)
		e.LedgerIndexes = append(e.LedgerIndexes, calls[i].Index)
	}
	return e
}

func sumCost(calls []Call) int64 {
	var s int64
	for _, c := range calls {
		s += c.Cost
	}
	return s
}

// perWindow scales a baseline total to one anomaly window.
func perWindow(total int64, c Config) float64 {
	windows := float64(c.BaselineWindow-c.AnomalyWindow) / float64(c.AnomalyWindow)
	return float64(total) / windows
}

// sourceRange is the /24 (IPv4) or /48 (IPv6) of a source address.
func sourceRange(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

func usageRules() []Rule {
	type check func(u keyUsage, f *Facts, c Config) *Candidate
	perKey := func(fn check) func(f *Facts, c Config) []Candidate {
		return func(f *Facts, c Config) []Candidate {
			var out []Candidate
			for _, u := range f.usageByKey(c) {
				if cand := fn(u, f, c); cand != nil {
					cand.Subject = keySubject(u.key)
					out = append(out, *cand)
				}
			}
			return out
		}
	}
	// novel reports the values of dim seen in the window but never in the
	// baseline, once the baseline is big enough to say what is usual.
	novel := func(dim func(Call) string, what string) check {
		return func(u keyUsage, f *Facts, c Config) *Candidate {
			if int64(len(u.baseline)) < c.MinBaseline {
				return nil
			}
			usual := map[string]bool{}
			for _, call := range u.baseline {
				usual[dim(call)] = true
			}
			var fresh []string
			var calls []Call
			for _, call := range u.recent {
				v := dim(call)
				if v == "" || usual[v] {
					continue
				}
				calls = append(calls, call)
				if !slices.Contains(fresh, v) {
					fresh = append(fresh, v)
				}
			}
			if len(fresh) == 0 {
				return nil
			}
			sort.Strings(fresh)
			e := cite(calls)
			e.Summary = fmt.Sprintf("%d call(s) in the last %s with %s never seen in the %d calls of the baseline", len(calls), c.AnomalyWindow, what, len(u.baseline))
			e.Items = fresh
			e.Values = map[string]int64{"calls": int64(len(calls)), "baseline_calls": int64(len(u.baseline))}
			return &Candidate{Title: fmt.Sprintf("key %s: %s never seen before: %v", u.key.Name, what, fresh), Evidence: e}
		}
	}
	statusCount := func(name, what string, threshold func(Config) int64, match func(Call) bool) check {
		return func(u keyUsage, f *Facts, c Config) *Candidate {
			var hit, base []Call
			for _, call := range u.recent {
				if match(call) {
					hit = append(hit, call)
				}
			}
			for _, call := range u.baseline {
				if match(call) {
					base = append(base, call)
				}
			}
			n, avg := callCount(hit), perWindow(callCount(base), c)
			if n < threshold(c) || float64(n) <= float64(c.SpikeMultiple)*avg {
				return nil
			}
			e := cite(hit)
			e.Summary = fmt.Sprintf("%d %s in the last %s (usual: %.1f per window)", n, what, c.AnomalyWindow, avg)
			e.Values = map[string]int64{"count": n, "threshold": threshold(c)}
			return &Candidate{Title: fmt.Sprintf("key %s: %d %s in %s", u.key.Name, n, what, c.AnomalyWindow), Evidence: e}
		}
	}
	return []Rule{
		{Name: "usage.spend_spike", Severity: High, Why: "spend far above a key's own habit is how a stolen key looks from the bill",
			Check: perKey(func(u keyUsage, f *Facts, c Config) *Candidate {
				if int64(len(u.baseline)) < c.MinBaseline {
					return nil
				}
				recent, avg := sumCost(u.recent), perWindow(sumCost(u.baseline), c)
				if recent < c.MinSpikeMicros || float64(recent) <= float64(c.SpikeMultiple)*avg {
					return nil
				}
				e := cite(u.recent)
				e.Summary = fmt.Sprintf("%s spent in the last %s; its baseline is %s per window", pricing.FormatUSD(recent), c.AnomalyWindow, pricing.FormatUSD(int64(avg)))
				e.Values = map[string]int64{"window_micros": recent, "baseline_micros_per_window": int64(avg), "multiple": c.SpikeMultiple}
				return &Candidate{Title: fmt.Sprintf("key %s: spend spike (%s in %s)", u.key.Name, pricing.FormatUSD(recent), c.AnomalyWindow), Evidence: e}
			})},
		{Name: "usage.rate_spike", Severity: Medium, Why: "a burst of calls far above a key's habit is automation it did not run before",
			Check: perKey(func(u keyUsage, f *Facts, c Config) *Candidate {
				if int64(len(u.baseline)) < c.MinBaseline {
					return nil
				}
				n, avg := callCount(u.recent), perWindow(callCount(u.baseline), c)
				if n < c.MinSpikeRequests || float64(n) <= float64(c.SpikeMultiple)*avg {
					return nil
				}
				e := cite(u.recent)
				e.Summary = fmt.Sprintf("%d calls in the last %s; baseline %.1f per window", n, c.AnomalyWindow, avg)
				e.Values = map[string]int64{"calls": n, "multiple": c.SpikeMultiple}
				return &Candidate{Title: fmt.Sprintf("key %s: request-rate spike (%d calls in %s)", u.key.Name, n, c.AnomalyWindow), Evidence: e}
			})},
		{Name: "usage.new_model", Severity: Low, Why: "a key reaching for a model it never used may be in new hands",
			Check: perKey(novel(func(c Call) string { return c.Model }, "model"))},
		{Name: "usage.new_source", Severity: Medium, Why: "calls from an address range a key never used may be someone else's",
			Check: perKey(novel(func(c Call) string { return sourceRange(c.SourceIP) }, "source range"))},
		{Name: "usage.unusual_hours", Severity: Low, Why: "a key that works office hours calling at 3 a.m. deserves a look",
			Check: perKey(novel(func(c Call) string { return strconv.Itoa(c.Time.UTC().Hour()) + "h UTC" }, "hour of day"))},
		{Name: "usage.denials", Severity: Medium, Why: "a run of refusals is someone probing what a key can do",
			Check: perKey(statusCount("denials", "denials (401/403)", func(c Config) int64 { return c.DenialSpike },
				func(c Call) bool { return c.Status == 401 || c.Status == 403 }))},
		{Name: "usage.rate_limited", Severity: Low, Why: "a storm of 429s is a client in a retry loop or a key being hammered",
			Check: perKey(statusCount("rate_limited", "rate-limited answers (429)", func(c Config) int64 { return c.RateLimitStorm },
				func(c Call) bool { return c.Status == 429 && c.ErrorCode != "insufficient_quota" }))},
		{Name: "usage.breaker_tripped", Severity: High, Why: "the spend-velocity breaker suspended a key: its spend jumped far above normal",
			Check: func(f *Facts, c Config) []Candidate {
				var out []Candidate
				trips := map[string][]Trip{}
				var ids []string
				for _, t := range f.Breaker {
					if len(trips[t.KeyID]) == 0 {
						ids = append(ids, t.KeyID)
					}
					trips[t.KeyID] = append(trips[t.KeyID], t)
				}
				keys := map[string]vkey.Key{}
				for _, k := range f.Keys {
					keys[k.ID] = k
					if k.SuspendedAt != nil && len(trips[k.ID]) == 0 {
						ids = append(ids, k.ID)
					}
				}
				// A trip in the window counts even when the key was revoked since:
				// the episode stays on record until it ages out of the baseline.
				for _, id := range ids {
					k, ok := keys[id]
					if !ok {
						k = vkey.Key{ID: id}
					}
					e := Evidence{Summary: "breaker tripped"}
					if k.SuspendReason != "" {
						e.Summary += ": " + k.SuspendReason
					}
					for _, t := range trips[id] {
						e.LedgerIndexes = append(e.LedgerIndexes, t.Index)
						if k.SuspendReason == "" && t.Detail != "" {
							e.Summary += ": " + t.Detail
						}
					}
					if k.SuspendedAt != nil {
						e.Items = append(e.Items, "suspended at "+k.SuspendedAt.UTC().Format(time.RFC3339))
					}
					name := k.Name
					if name == "" {
						name = id
					}
					out = append(out, Candidate{Subject: keySubject(k), Title: fmt.Sprintf("key %s was suspended by the spend-velocity breaker", name), Evidence: e})
				}
				return out
			}},
		{Name: "budgets.near_exhaustion", Severity: Medium, Why: "a budget about to run out will start refusing calls; someone should decide before it does",
			Check: func(f *Facts, c Config) []Candidate {
				var out []Candidate
				for _, s := range f.Statuses {
					if s.LimitMicros <= 0 {
						continue
					}
					used := s.Spent + s.Reserved
					if used*100 < s.LimitMicros*c.BudgetNearPct {
						continue
					}
					pct := used * 100 / s.LimitMicros
					out = append(out, Candidate{Subject: Subject{Kind: "budget", ID: s.ID, Name: string(s.Scope) + ":" + s.ScopeID},
						Title: fmt.Sprintf("budget %s (%s %s) is %d%% used", s.ID, s.Scope, s.ScopeID, pct),
						Evidence: Evidence{Summary: fmt.Sprintf("%s of %s spent or held this %s", pricing.FormatUSD(used), pricing.FormatUSD(s.LimitMicros), s.Period),
							Values: map[string]int64{"spent_micros": s.Spent, "reserved_micros": s.Reserved, "limit_micros": s.LimitMicros, "percent": pct}}})
				}
				return out
			}},
	}
}
