package audit

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Facts is everything rules look at, gathered once per run.
type Facts struct {
	Now        time.Time
	Keys       []vkey.Key // not revoked
	Principals map[string]org.Principal
	// MFA tells whether a principal has a second factor (confirmed TOTP or a passkey).
	MFA      map[string]bool
	Budgets  []budget.Budget
	Statuses []budget.Status // current period of each budget, when known
	// KeyMaxAge is the enforced maximum age of a team's keys (0: none).
	KeyMaxAge func(teamID string) time.Duration
	Policies  []policy.Version // newest first
	Settings  Settings
	// UsageDropped: usage rows this gateway dropped (usage.Writer.Dropped).
	UsageDropped int64
	Calls        []Call // the log's calls in the baseline and anomaly windows, oldest first
	Breaker      []Trip
	// Truncated: the log's tail was longer than max_ledger_records; usage
	// rules saw only the newest part.
	Truncated bool
	LogCheck  *LogCheck

	byKey    []keyUsage // usageByKey's result, computed once
	byKeyCfg time.Duration
}

// Settings are the gateway settings the configuration rules read.
type Settings struct {
	StepUpMaxAge      time.Duration
	TrustProxyHeaders bool
	TrustedProxies    []string
}

// Call is one data-plane call as the ledger tells it.
type Call struct {
	Index     int64 // of the end record
	RequestID string
	Time      time.Time
	KeyID     string
	Model     string
	SourceIP  string
	Status    int
	ErrorCode string
	Cost      int64
	// Count is how many calls this one stands for: a call.summary record
	// counts refused calls of one key, error code and minute (written
	// during a store outage); 0 means one.
	Count int64
}

// weight is how many calls c stands for.
func (c Call) weight() int64 { return max(c.Count, 1) }

// callCount is how many calls cs stand for.
func callCount(cs []Call) int64 {
	var n int64
	for _, c := range cs {
		n += c.weight()
	}
	return n
}

// Trip is a breaker trip as the ledger records it.
type Trip struct {
	Index  int64
	Time   time.Time
	KeyID  string
	Detail string
}

// LogCheck is the outcome of the gateway's latest verification of its own log.
type LogCheck struct {
	At       time.Time `json:"at"`
	OK       bool      `json:"ok"`
	Size     int64     `json:"size"`
	Root     string    `json:"root,omitempty"`
	Error    string    `json:"error,omitempty"`
	LastGood time.Time `json:"last_good"` // zero: never verified
	// GoodSize, GoodRoot and GoodOrigin are the tree of the last passing
	// check, carried past failures: after a restart the verifier still
	// checks that the log grew from it (no truncation or fork across restarts).
	GoodSize   int64  `json:"good_size,omitempty"`
	GoodRoot   string `json:"good_root,omitempty"`
	GoodOrigin string `json:"good_origin,omitempty"`
}

// Candidate is what a rule reports; the engine turns it into a finding.
type Candidate struct {
	Rule     string
	Severity Severity
	Subject  Subject
	Title    string
	Evidence Evidence
}

// Rule is one check.
type Rule struct {
	Name     string
	Severity Severity
	Why      string // why it matters (docs/audits.md says more)
	Check    func(f *Facts, c Config) []Candidate
}

// Rules returns every rule, in a fixed order.
func Rules() []Rule {
	return slices.Concat(keyRules(), principalRules(), usageRules(), configRules())
}

func keySubject(k vkey.Key) Subject { return Subject{Kind: "key", ID: k.ID, Name: k.Name} }

// keyLabel names a key in a finding's title: its name, or its id when it has none.
func keyLabel(k vkey.Key) string {
	if k.Name != "" {
		return k.Name
	}
	return k.ID
}

func days(d time.Duration) int64 { return int64(d / (24 * time.Hour)) }

func keyRules() []Rule {
	return []Rule{
		{Name: "keys.unused", Severity: Low, Why: "an unused key is pure risk: nobody would notice it being stolen",
			Check: func(f *Facts, c Config) []Candidate {
				return f.perKey(func(k vkey.Key, found func(title string, ev Evidence)) {
					last := k.CreatedAt
					if k.LastUsedAt != nil {
						last = *k.LastUsedAt
					}
					if idle := f.Now.Sub(last); idle >= c.UnusedKeyAfter {
						what := "never used"
						if k.LastUsedAt != nil {
							what = "last used " + k.LastUsedAt.UTC().Format(time.RFC3339)
						}
						found(fmt.Sprintf("key %s unused for %d days", keyLabel(k), days(idle)),
							Evidence{Summary: what, Values: map[string]int64{"idle_days": days(idle), "threshold_days": days(c.UnusedKeyAfter)}})
					}
				})
			}},
		{Name: "keys.no_expiry", Severity: Medium, Why: "a key that never expires is valid for as long as it stays leaked",
			Check: func(f *Facts, c Config) []Candidate {
				return f.perKey(func(k vkey.Key, found func(title string, ev Evidence)) {
					if k.Expiry(f.maxAge(k.TeamID)) == nil {
						found(fmt.Sprintf("key %s never expires", keyLabel(k)),
							Evidence{Summary: "no expiry and no maximum key age applies"})
					}
				})
			}},
		{Name: "keys.too_old", Severity: Medium, Why: "old secrets have had more chances to leak; rotation bounds that",
			Check: func(f *Facts, c Config) []Candidate {
				return f.perKey(func(k vkey.Key, found func(title string, ev Evidence)) {
					born := k.CreatedAt
					if k.RotatedAt != nil {
						born = *k.RotatedAt
					}
					if age := f.Now.Sub(born); age >= c.KeyMaxAge {
						found(fmt.Sprintf("key %s is %d days old", keyLabel(k), days(age)),
							Evidence{Summary: "created or last rotated " + born.UTC().Format(time.RFC3339), Values: map[string]int64{"age_days": days(age), "max_days": days(c.KeyMaxAge)}})
					}
				})
			}},
		{Name: "keys.no_hard_budget", Severity: High, Why: "without a hard budget a leaked key's spend has no ceiling",
			Check: func(f *Facts, c Config) []Candidate {
				return f.perKey(func(k vkey.Key, found func(title string, ev Evidence)) {
					if k.Kind != vkey.KindVirtual {
						return
					}
					if b := f.hardBudgetFor(k); b == "" {
						found(fmt.Sprintf("key %s has no hard budget (uncapped spend)", keyLabel(k)),
							Evidence{Summary: "no hard budget on the key, its principal, its team or the organisation"})
					}
				})
			}},
		{Name: "keys.unscoped", Severity: Medium, Why: "a key for every model and every endpoint gives a thief the most to use",
			Check: func(f *Facts, c Config) []Candidate {
				return f.perKey(func(k vkey.Key, found func(title string, ev Evidence)) {
					if k.Kind == vkey.KindVirtual && len(k.Scope.Models) == 0 && len(k.Scope.Endpoints) == 0 {
						found(fmt.Sprintf("key %s is unscoped (all models, all endpoints)", keyLabel(k)),
							Evidence{Summary: "scope names no model and no endpoint"})
					}
				})
			}},
		{Name: "keys.owner_disabled", Severity: High, Why: "a disabled person's or service's key should have died with their access",
			Check: func(f *Facts, c Config) []Candidate {
				return f.perKey(func(k vkey.Key, found func(title string, ev Evidence)) {
					if p, ok := f.Principals[k.PrincipalID]; ok && p.Disabled && k.State(f.Now) == nil {
						found(fmt.Sprintf("key %s is active although its principal %s is disabled", keyLabel(k), p.Name),
							Evidence{Summary: "principal " + p.ID + " is disabled"})
					}
				})
			}},
		{Name: "keys.admin_owner_no_mfa", Severity: High, Why: "an admin key whose owner has no second factor is one password away from the whole gateway",
			Check: func(f *Facts, c Config) []Candidate {
				return f.perKey(func(k vkey.Key, found func(title string, ev Evidence)) {
					if k.Kind == vkey.KindAdmin && !f.MFA[k.PrincipalID] {
						found(fmt.Sprintf("admin key %s belongs to %s, who has no second factor", keyLabel(k), f.name(k.PrincipalID)),
							Evidence{Summary: "no confirmed TOTP and no passkey"})
					}
				})
			}},
		{Name: "keys.grace_expired", Severity: Low, Why: "a rotation's previous secret should be gone once its grace period ends",
			Check: func(f *Facts, c Config) []Candidate {
				return f.perKey(func(k vkey.Key, found func(title string, ev Evidence)) {
					if k.PrevHash != "" && k.PrevValidUntil != nil && f.Now.After(*k.PrevValidUntil) {
						found(fmt.Sprintf("key %s keeps a previous secret past its grace period", keyLabel(k)),
							Evidence{Summary: "grace period ended " + k.PrevValidUntil.UTC().Format(time.RFC3339)})
					}
				})
			}},
	}
}

func principalSubject(p org.Principal) Subject {
	return Subject{Kind: "principal", ID: p.ID, Name: p.Name}
}

func principalRules() []Rule {
	return []Rule{
		{Name: "principals.admin_no_mfa", Severity: High, Why: "administrators hold the keys to every key; a password alone is not enough",
			Check: func(f *Facts, c Config) []Candidate {
				return f.eachPrincipal(func(p org.Principal) (string, bool) {
					return "admin " + p.Name + " has no second factor", p.Kind == org.KindUser && slices.Contains(p.Roles, "admin") && !f.MFA[p.ID]
				})
			}},
		{Name: "principals.user_no_mfa", Severity: Medium, Why: "users without a second factor fall to phishing and password reuse",
			Check: func(f *Facts, c Config) []Candidate {
				return f.eachPrincipal(func(p org.Principal) (string, bool) {
					return "user " + p.Name + " has no second factor", p.Kind == org.KindUser && !slices.Contains(p.Roles, "admin") && !f.MFA[p.ID]
				})
			}},
		{Name: "principals.inactive", Severity: Low, Why: "access nobody uses should be removed before someone else uses it",
			Check: func(f *Facts, c Config) []Candidate {
				seen := map[string]time.Time{}
				for _, k := range f.Keys {
					if k.LastUsedAt != nil && k.LastUsedAt.After(seen[k.PrincipalID]) {
						seen[k.PrincipalID] = *k.LastUsedAt
					}
				}
				return f.eachPrincipal(func(p org.Principal) (string, bool) {
					last := p.CreatedAt
					if s := seen[p.ID]; s.After(last) {
						last = s
					}
					idle := f.Now.Sub(last)
					return fmt.Sprintf("user %s not seen for %d days", p.Name, days(idle)), p.Kind == org.KindUser && idle >= c.UserInactiveFor
				})
			}},
		{Name: "principals.service_no_pop", Severity: Low, Why: "a service account whose keys need no proof of possession is a bearer secret",
			Check: func(f *Facts, c Config) []Candidate {
				bearer := map[string]int64{}
				for _, k := range f.Keys {
					if k.Kind == vkey.KindVirtual && !k.MFARequired && len(k.Scope.CIDRs) == 0 {
						bearer[k.PrincipalID]++
					}
				}
				return f.eachPrincipal(func(p org.Principal) (string, bool) {
					return fmt.Sprintf("service account %s has %d key(s) usable by whoever holds them (no source range, no token binding)", p.Name, bearer[p.ID]),
						p.Kind == org.KindServiceAccount && bearer[p.ID] > 0
				})
			}},
	}
}

// perKey runs a key rule's check on every key, in order: the check calls
// found for a key that is a finding, and perKey makes it a candidate about
// that key.
func (f *Facts) perKey(check func(k vkey.Key, found func(title string, ev Evidence))) []Candidate {
	var out []Candidate
	for _, k := range f.Keys {
		check(k, func(title string, ev Evidence) {
			out = append(out, Candidate{Subject: keySubject(k), Title: title, Evidence: ev})
		})
	}
	return out
}

func (f *Facts) eachPrincipal(fn func(org.Principal) (string, bool)) []Candidate {
	ids := make([]string, 0, len(f.Principals))
	for id := range f.Principals {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []Candidate
	for _, id := range ids {
		p := f.Principals[id]
		if p.Disabled {
			continue
		}
		if title, ok := fn(p); ok {
			out = append(out, Candidate{Subject: principalSubject(p), Title: title, Evidence: Evidence{Summary: title}})
		}
	}
	return out
}

func (f *Facts) name(principalID string) string {
	if p, ok := f.Principals[principalID]; ok {
		return p.Name
	}
	return principalID
}

func (f *Facts) maxAge(teamID string) time.Duration {
	if f.KeyMaxAge == nil {
		return 0
	}
	return f.KeyMaxAge(teamID)
}

// hardBudgetFor returns the id of a hard budget covering every model of k, or "".
func (f *Facts) hardBudgetFor(k vkey.Key) string {
	for _, b := range f.Budgets {
		if !b.Hard || b.Model != "" {
			continue
		}
		switch {
		case b.Scope == budget.ScopeKey && b.ScopeID == k.ID,
			b.Scope == budget.ScopePrincipal && b.ScopeID == k.PrincipalID,
			b.Scope == budget.ScopeTeam && b.ScopeID == k.TeamID,
			b.Scope == budget.ScopeOrg:
			return b.ID
		}
	}
	return ""
}

func configRules() []Rule {
	cfg := Subject{Kind: "config", ID: "gateway"}
	return []Rule{
		{Name: "config.step_up_off", Severity: Medium, Why: "without step-up a stolen admin session can raise budgets and change policies",
			Check: func(f *Facts, c Config) []Candidate {
				if f.Settings.StepUpMaxAge > 0 {
					return nil
				}
				s := cfg
				s.ID = "step_up_max_age"
				return []Candidate{{Subject: s, Title: "step-up is off (step_up_max_age is 0)", Evidence: Evidence{Summary: "sensitive admin actions need no recent second factor"}}}
			}},
		{Name: "config.proxy_headers_untrusted", Severity: High, Why: "X-Forwarded-For from anyone lets callers choose their source address and pass source-range scopes",
			Check: func(f *Facts, c Config) []Candidate {
				if !f.Settings.TrustProxyHeaders || len(f.Settings.TrustedProxies) > 0 {
					return nil
				}
				s := cfg
				s.ID = "trust_proxy_headers"
				return []Candidate{{Subject: s, Title: "proxy headers are trusted from every address", Evidence: Evidence{Summary: "trust_proxy_headers is on and no trusted proxy range is configured"}}}
			}},
		{Name: "config.policy_changed", Severity: Low, Why: "who changed what the gateway allows, and when, is what an auditor asks first",
			Check: func(f *Facts, c Config) []Candidate {
				var out []Candidate
				for _, v := range f.Policies {
					if f.Now.Sub(v.CreatedAt) > c.BaselineWindow {
						continue
					}
					out = append(out, Candidate{Subject: Subject{Kind: "policy", ID: fmt.Sprintf("v%d", v.Version)},
						Title:    fmt.Sprintf("policy version %d applied %s by %s", v.Version, v.CreatedAt.UTC().Format(time.RFC3339), v.CreatedBy),
						Evidence: Evidence{Summary: v.Note, Values: map[string]int64{"version": v.Version}, Items: []string{"by " + v.CreatedBy}}})
				}
				return out
			}},
		{Name: "config.usage_records_dropped", Severity: Medium, Why: "usage reports and chargeback miss calls whose rows were dropped; their charges stand in the ledger",
			Check: func(f *Facts, c Config) []Candidate {
				if f.UsageDropped <= 0 {
					return nil
				}
				return []Candidate{{Subject: Subject{Kind: "config", ID: "usage"}, Title: fmt.Sprintf("%d usage records were dropped while the store was away", f.UsageDropped),
					Evidence: Evidence{Summary: "more usage records waited for the store than usage.MaxKept; the oldest were dropped (the log has the request ids); each call's records and charge stand in the ledger",
						Values: map[string]int64{"dropped": f.UsageDropped}}}}
			}},
		{Name: "config.log_unverified", Severity: High, Why: "a log nobody verifies protects nobody; tampering shows only when someone checks",
			Check: func(f *Facts, c Config) []Candidate {
				s := Subject{Kind: "config", ID: "ledger"}
				lc := f.LogCheck
				switch {
				case lc != nil && lc.At.After(lc.LastGood) && !lc.OK:
					return []Candidate{{Subject: s, Title: "the log failed verification", Evidence: Evidence{Summary: lc.Error, Values: map[string]int64{"size": lc.Size}}}}
				case lc == nil || lc.LastGood.IsZero():
					return []Candidate{{Subject: s, Title: "the log has never been verified", Evidence: Evidence{Summary: "no verification on record"}}}
				case f.Now.Sub(lc.LastGood) > c.LogUnverifiedAfter:
					return []Candidate{{Subject: s, Title: fmt.Sprintf("the log was last verified %s ago", f.Now.Sub(lc.LastGood).Round(time.Minute)),
						Evidence: Evidence{Summary: "last verified checkpoint: size " + fmt.Sprint(lc.Size) + ", root " + lc.Root, Values: map[string]int64{"size": lc.Size}}}}
				}
				return nil
			}},
	}
}
