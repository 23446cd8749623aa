package audit

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) *time.Time { t := now.Add(-d); return &t }

const day = 24 * time.Hour

// fixture returns facts with one well-kept key and principal ("good") that
// no rule flags, and principals for the bad keys each test adds.
func fixture() *Facts {
	f := &Facts{Now: now, MFA: map[string]bool{"prn_good": true, "prn_svc": true}, Principals: map[string]org.Principal{
		"prn_good": {ID: "prn_good", Name: "alice", Kind: org.KindUser, Roles: []string{"admin"}, CreatedAt: now.Add(-300 * day)},
		"prn_svc":  {ID: "prn_svc", Name: "svc", Kind: org.KindServiceAccount, Roles: []string{"member"}, CreatedAt: now.Add(-300 * day)},
	}}
	f.Keys = []vkey.Key{{ID: "key_good", Name: "good", Kind: vkey.KindVirtual, PrincipalID: "prn_svc", TeamID: "team_a",
		Scope: vkey.Scope{Models: []string{"gpt-4o"}, CIDRs: []string{"10.0.0.0/8"}}, CreatedAt: now.Add(-10 * day), LastUsedAt: ago(time.Hour), ExpiresAt: ago(-30 * day)}}
	f.Budgets = []budget.Budget{{ID: "bud_good", Scope: budget.ScopeKey, ScopeID: "key_good", Hard: true, LimitMicros: 10_000_000}}
	f.Settings = Settings{StepUpMaxAge: 5 * time.Minute}
	f.LogCheck = &LogCheck{At: now.Add(-time.Hour), OK: true, LastGood: now.Add(-time.Hour), Size: 10}
	return f
}

func flagged(t *testing.T, rule string, f *Facts) []string {
	t.Helper()
	for _, r := range Rules() {
		if r.Name == rule {
			var ids []string
			for _, c := range r.Check(f, DefaultConfig()) {
				ids = append(ids, c.Subject.ID)
			}
			slices.Sort(ids)
			return ids
		}
	}
	t.Fatalf("no rule %s", rule)
	return nil
}

func TestRules(t *testing.T) {
	addKey := func(k vkey.Key) func(*Facts) {
		return func(f *Facts) {
			if k.CreatedAt.IsZero() {
				k.CreatedAt = now.Add(-day)
			}
			if k.PrincipalID == "" {
				k.PrincipalID = "prn_svc"
			}
			f.Keys = append(f.Keys, k)
		}
	}
	scoped := vkey.Scope{Models: []string{"gpt-4o"}}
	exp := ago(-day)
	tests := []struct {
		rule   string
		mutate func(*Facts)
		want   []string
	}{
		{"keys.unused", addKey(vkey.Key{ID: "k1", Scope: scoped, CreatedAt: now.Add(-100 * day)}), []string{"k1"}},
		{"keys.unused", addKey(vkey.Key{ID: "k1", Scope: scoped, CreatedAt: now.Add(-100 * day), LastUsedAt: ago(89 * day)}), nil},
		{"keys.unused", addKey(vkey.Key{ID: "k1", Scope: scoped, CreatedAt: now.Add(-200 * day), LastUsedAt: ago(91 * day)}), []string{"k1"}},
		{"keys.no_expiry", addKey(vkey.Key{ID: "k1", Scope: scoped}), []string{"k1"}},
		{"keys.no_expiry", func(f *Facts) {
			addKey(vkey.Key{ID: "k1", Scope: scoped, TeamID: "team_aged"})(f)
			f.KeyMaxAge = func(team string) time.Duration {
				if team == "team_aged" {
					return 90 * day
				}
				return 0
			}
		}, nil},
		{"keys.too_old", addKey(vkey.Key{ID: "k1", Scope: scoped, CreatedAt: now.Add(-181 * day), ExpiresAt: exp}), []string{"k1"}},
		{"keys.too_old", addKey(vkey.Key{ID: "k1", Scope: scoped, CreatedAt: now.Add(-400 * day), RotatedAt: ago(10 * day), ExpiresAt: exp}), nil},
		{"keys.no_hard_budget", addKey(vkey.Key{ID: "k1", Kind: vkey.KindVirtual, Scope: scoped}), []string{"k1"}},
		{"keys.no_hard_budget", func(f *Facts) {
			addKey(vkey.Key{ID: "k1", Kind: vkey.KindVirtual, TeamID: "team_b"})(f)
			f.Budgets = append(f.Budgets, budget.Budget{ID: "b", Scope: budget.ScopeTeam, ScopeID: "team_b", Hard: true})
		}, nil},
		{"keys.no_hard_budget", func(f *Facts) { // a soft budget or a per-model one does not cap the key
			addKey(vkey.Key{ID: "k1", Kind: vkey.KindVirtual, TeamID: "team_b"})(f)
			f.Budgets = append(f.Budgets, budget.Budget{ID: "b", Scope: budget.ScopeTeam, ScopeID: "team_b", Hard: false},
				budget.Budget{ID: "c", Scope: budget.ScopeOrg, Model: "gpt-*", Hard: true})
		}, []string{"k1"}},
		{"keys.no_hard_budget", addKey(vkey.Key{ID: "k1", Kind: vkey.KindAdmin}), nil},
		{"keys.unscoped", addKey(vkey.Key{ID: "k1", Kind: vkey.KindVirtual}), []string{"k1"}},
		{"keys.unscoped", addKey(vkey.Key{ID: "k1", Kind: vkey.KindVirtual, Scope: vkey.Scope{Endpoints: []string{"chat"}}}), nil},
		{"keys.owner_disabled", func(f *Facts) {
			f.Principals["prn_gone"] = org.Principal{ID: "prn_gone", Name: "bob", Kind: org.KindUser, Disabled: true}
			addKey(vkey.Key{ID: "k1", PrincipalID: "prn_gone"})(f)
			addKey(vkey.Key{ID: "k2", PrincipalID: "prn_gone", SuspendedAt: ago(time.Hour)})(f)
		}, []string{"k1"}},
		{"keys.admin_owner_no_mfa", func(f *Facts) {
			f.Principals["prn_weak"] = org.Principal{ID: "prn_weak", Name: "weak", Kind: org.KindUser, Roles: []string{"admin"}}
			addKey(vkey.Key{ID: "k1", Kind: vkey.KindAdmin, PrincipalID: "prn_weak"})(f)
			addKey(vkey.Key{ID: "k2", Kind: vkey.KindAdmin, PrincipalID: "prn_good"})(f)
		}, []string{"k1"}},
		{"keys.grace_expired", func(f *Facts) {
			addKey(vkey.Key{ID: "k1", PrevHash: "h", PrevValidUntil: ago(time.Minute)})(f)
			addKey(vkey.Key{ID: "k2", PrevHash: "h2", PrevValidUntil: ago(-time.Minute)})(f)
		}, []string{"k1"}},
		{"principals.admin_no_mfa", func(f *Facts) {
			f.Principals["prn_weak"] = org.Principal{ID: "prn_weak", Name: "weak", Kind: org.KindUser, Roles: []string{"admin"}}
			f.Principals["prn_off"] = org.Principal{ID: "prn_off", Name: "off", Kind: org.KindUser, Roles: []string{"admin"}, Disabled: true}
		}, []string{"prn_weak"}},
		{"principals.user_no_mfa", func(f *Facts) {
			f.Principals["prn_u"] = org.Principal{ID: "prn_u", Name: "u", Kind: org.KindUser, Roles: []string{"member"}}
		}, []string{"prn_u"}},
		{"principals.inactive", func(f *Facts) {
			f.Principals["prn_u"] = org.Principal{ID: "prn_u", Name: "u", Kind: org.KindUser, CreatedAt: now.Add(-100 * day)}
			f.Principals["prn_v"] = org.Principal{ID: "prn_v", Name: "v", Kind: org.KindUser, CreatedAt: now.Add(-100 * day)}
			addKey(vkey.Key{ID: "k1", PrincipalID: "prn_v", LastUsedAt: ago(day)})(f)
		}, []string{"prn_good", "prn_u"}},
		{"principals.service_no_pop", func(f *Facts) {
			addKey(vkey.Key{ID: "k1", Kind: vkey.KindVirtual, PrincipalID: "prn_svc"})(f)
		}, []string{"prn_svc"}},
		{"principals.service_no_pop", func(f *Facts) {
			addKey(vkey.Key{ID: "k1", Kind: vkey.KindVirtual, PrincipalID: "prn_svc", MFARequired: true})(f)
		}, nil},
		{"config.step_up_off", func(f *Facts) { f.Settings.StepUpMaxAge = 0 }, []string{"step_up_max_age"}},
		{"config.proxy_headers_untrusted", func(f *Facts) { f.Settings.TrustProxyHeaders = true }, []string{"trust_proxy_headers"}},
		{"config.proxy_headers_untrusted", func(f *Facts) {
			f.Settings.TrustProxyHeaders, f.Settings.TrustedProxies = true, []string{"10.0.0.0/8"}
		}, nil},
		{"config.policy_changed", func(f *Facts) {
			f.Policies = []policy.Version{{Version: 3, CreatedAt: now.Add(-day), CreatedBy: "key_x"}, {Version: 2, CreatedAt: now.Add(-30 * day)}}
		}, []string{"v3"}},
		{"config.usage_records_dropped", func(f *Facts) { f.UsageDropped = 3 }, []string{"usage"}},
		{"config.log_unverified", func(f *Facts) { f.LogCheck = nil }, []string{"ledger"}},
		{"config.log_unverified", func(f *Facts) { f.LogCheck.LastGood, f.LogCheck.At = now.Add(-25*time.Hour), now.Add(-25*time.Hour) }, []string{"ledger"}},
		{"config.log_unverified", func(f *Facts) { f.LogCheck.At, f.LogCheck.OK, f.LogCheck.Error = now, false, "TAMPERED" }, []string{"ledger"}},
		{"budgets.near_exhaustion", func(f *Facts) {
			f.Statuses = []budget.Status{{Budget: budget.Budget{ID: "b1", LimitMicros: 100}, Spent: 85, Reserved: 5},
				{Budget: budget.Budget{ID: "b2", LimitMicros: 100}, Spent: 89}}
		}, []string{"b1"}},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.rule, i), func(t *testing.T) {
			base := fixture()
			if got := flagged(t, tt.rule, base); len(got) != 0 && tt.rule != "principals.inactive" && tt.rule != "principals.service_no_pop" {
				t.Fatalf("the clean fixture is flagged: %v", got)
			}
			f := fixture()
			tt.mutate(f)
			if got := flagged(t, tt.rule, f); !slices.Equal(got, tt.want) {
				t.Errorf("flagged %v, want %v", got, tt.want)
			}
		})
	}
}

// calls makes n calls of key at the given times (spread from start, step apart).
func calls(key string, n int, start time.Time, step time.Duration, mod func(i int, c *Call)) []Call {
	out := make([]Call, n)
	for i := range out {
		out[i] = Call{Index: int64(i), RequestID: fmt.Sprintf("req_%s_%d_%d", key, start.Unix(), i), Time: start.Add(time.Duration(i) * step),
			KeyID: key, Model: "gpt-4o", SourceIP: "10.1.2.3", Status: 200, Cost: 1000}
		if mod != nil {
			mod(i, &out[i])
		}
	}
	return out
}

func TestUsageRules(t *testing.T) {
	// The good key's baseline: 13 days of a call every hour, 09:00-17:00 UTC only.
	var base []Call
	for d := 13; d >= 1; d-- {
		dayStart := time.Date(now.Year(), now.Month(), now.Day()-d, 9, 0, 0, 0, time.UTC)
		base = append(base, calls("key_good", 9, dayStart, time.Hour, nil)...)
	}
	recent := now.Add(-30 * time.Minute) // 11:30 UTC: within its usual hours
	tests := []struct {
		rule   string
		recent []Call
		want   []string
	}{
		{"usage.spend_spike", calls("key_good", 3, recent, time.Minute, func(i int, c *Call) { c.Cost = 2_000_000 }), []string{"key_good"}},
		{"usage.spend_spike", calls("key_good", 3, recent, time.Minute, nil), nil},
		{"usage.rate_spike", calls("key_good", 60, recent, time.Second, nil), []string{"key_good"}},
		{"usage.rate_spike", calls("key_good", 5, recent, time.Second, nil), nil},
		{"usage.new_model", calls("key_good", 1, recent, time.Second, func(i int, c *Call) { c.Model = "o3" }), []string{"key_good"}},
		{"usage.new_model", calls("key_good", 1, recent, time.Second, nil), nil},
		{"usage.new_source", calls("key_good", 1, recent, time.Second, func(i int, c *Call) { c.SourceIP = "203.0.113.9" }), []string{"key_good"}},
		{"usage.new_source", calls("key_good", 1, recent, time.Second, func(i int, c *Call) { c.SourceIP = "10.1.2.200" }), nil},                                // same /24
		{"usage.unusual_hours", calls("key_good", 1, now.Add(-10*time.Second), time.Second, func(i int, c *Call) { c.Time = c.Time.Add(-9 * time.Hour) }), nil}, // outside the window
		{"usage.denials", calls("key_good", 25, recent, time.Second, func(i int, c *Call) { c.Status = 403 }), []string{"key_good"}},
		{"usage.denials", calls("key_good", 10, recent, time.Second, func(i int, c *Call) { c.Status = 401 }), nil},
		// A summary of refused calls (written during a store outage) weighs its count.
		{"usage.denials", calls("key_good", 1, recent, time.Second, func(i int, c *Call) { c.Status = 403; c.Count = 25 }), []string{"key_good"}},
		{"usage.rate_limited", calls("key_good", 1, recent, time.Second, func(i int, c *Call) { c.Status = 429; c.ErrorCode = "rate_limit_exceeded"; c.Count = 60 }), []string{"key_good"}},
		{"usage.rate_limited", calls("key_good", 60, recent, time.Second, func(i int, c *Call) { c.Status = 429; c.ErrorCode = "rate_limit_exceeded" }), []string{"key_good"}},
		{"usage.rate_limited", calls("key_good", 60, recent, time.Second, func(i int, c *Call) { c.Status = 429; c.ErrorCode = "insufficient_quota" }), nil},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.rule, i), func(t *testing.T) {
			f := fixture()
			f.Calls = append(append([]Call{}, base...), tt.recent...)
			if got := flagged(t, tt.rule, f); !slices.Equal(got, tt.want) {
				t.Errorf("flagged %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("unusual hours", func(t *testing.T) {
		f := fixture()
		at3 := time.Date(now.Year(), now.Month(), now.Day(), 3, 0, 0, 0, time.UTC)
		f.Now = at3.Add(10 * time.Minute)
		f.Calls = append(append([]Call{}, base[:len(base)-9]...), calls("key_good", 1, at3, time.Second, nil)...)
		if got := flagged(t, "usage.unusual_hours", f); !slices.Equal(got, []string{"key_good"}) {
			t.Errorf("flagged %v", got)
		}
	})
	t.Run("novelty needs a baseline", func(t *testing.T) {
		f := fixture()
		f.Calls = calls("key_good", 5, recent, time.Second, func(i int, c *Call) { c.Model = "o3"; c.SourceIP = "203.0.113.9" })
		for _, r := range []string{"usage.new_model", "usage.new_source", "usage.unusual_hours", "usage.spend_spike", "usage.rate_spike"} {
			if got := flagged(t, r, f); len(got) != 0 {
				t.Errorf("%s flagged %v for a key without history", r, got)
			}
		}
	})
	t.Run("breaker", func(t *testing.T) {
		f := fixture()
		f.Keys[0].SuspendedAt, f.Keys[0].SuspendReason = ago(time.Minute), "spend $6.00 in 5m0s above ceiling"
		f.Breaker = []Trip{{Index: 42, KeyID: "key_good", Time: now.Add(-time.Minute)}}
		got := Rules()
		for _, r := range got {
			if r.Name != "usage.breaker_tripped" {
				continue
			}
			cs := r.Check(f, DefaultConfig())
			if len(cs) != 1 || cs[0].Subject.ID != "key_good" || !slices.Equal(cs[0].Evidence.LedgerIndexes, []int64{42}) {
				t.Fatalf("breaker candidates %+v", cs)
			}
		}
	})
	t.Run("evidence cites the ledger", func(t *testing.T) {
		f := fixture()
		f.Calls = append(append([]Call{}, base...), calls("key_good", 25, recent, time.Second, func(i int, c *Call) { c.Status = 403; c.Index = 1000 + int64(i) })...)
		for _, r := range Rules() {
			if r.Name == "usage.denials" {
				c := r.Check(f, DefaultConfig())[0]
				if len(c.Evidence.RequestIDs) != evidenceCap || c.Evidence.LedgerIndexes[0] != 1024 || c.Evidence.Values["count"] != 25 {
					t.Fatalf("evidence %+v", c.Evidence)
				}
			}
		}
	})
}

func TestScheduleNext(t *testing.T) {
	for _, tt := range []struct {
		s    Schedule
		from time.Time
		want time.Time
	}{
		{Schedule{Every: "daily", At: "06:00"}, now, time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)},
		{Schedule{Every: "daily", At: "13:00"}, now, time.Date(2026, 11, 30, 13, 0, 0, 0, time.UTC)},
		{Schedule{Every: "weekly"}, now, time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)}, // 2026-11-30 is a Monday, 06:00 has passed
		{Schedule{Every: "monthly", At: "00:00"}, now, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
	} {
		p, err := tt.s.parse()
		if err != nil {
			t.Fatal(err)
		}
		if got := p.next(tt.from); !got.Equal(tt.want) {
			t.Errorf("%+v: next %s, want %s", tt.s, got, tt.want)
		}
	}
	if _, err := (Schedule{Every: "hourly"}).parse(); err == nil {
		t.Error("hourly accepted")
	}
}
