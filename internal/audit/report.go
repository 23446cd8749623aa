package audit

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// ReportStore keeps generated reports.
type ReportStore interface {
	SaveReport(ctx context.Context, r Report) error
	Report(ctx context.Context, id string) (Report, error)
	ListReports(ctx context.Context, limit int) ([]ReportInfo, error)
	SummarizeUsage(ctx context.Context, q usage.Query, by usage.GroupBy) ([]usage.Summary, error)
	ListLimits(ctx context.Context) ([]ratelimit.Limit, error)
}

// Report is an audit report over one period: spend and calls with the change
// against the period before, the permission inventory, findings, access
// reviews and the log's integrity.
type Report struct {
	ReportInfo
	Spend     Spend          `json:"spend"`
	Keys      []KeyEntry     `json:"keys"`
	Admins    []AdminEntry   `json:"admins"`
	Findings  FindingSummary `json:"findings"`
	Reviews   []Campaign     `json:"reviews"`
	Log       *LogCheck      `json:"log"`
	Truncated bool           `json:"truncated,omitempty"`
}

// ReportInfo names a report.
type ReportInfo struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"` // the schedule's name, or "on demand"
	GeneratedAt time.Time `json:"generated_at"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
}

// Spend is usage in the period and the one before it.
type Spend struct {
	CostMicros     int64       `json:"cost_micros"`
	PrevCostMicros int64       `json:"previous_cost_micros"`
	Calls          int64       `json:"calls"`
	PrevCalls      int64       `json:"previous_calls"`
	ByTeam         []SpendLine `json:"by_team"`
	ByPrincipal    []SpendLine `json:"by_principal"`
	ByKey          []SpendLine `json:"by_key"`
	ByModel        []SpendLine `json:"by_model"`
	ByDay          []SpendLine `json:"by_day"`
}

// SpendLine is one group's usage and its change against the previous period.
type SpendLine struct {
	Group          string `json:"group"`
	Name           string `json:"name,omitempty"`
	CostMicros     int64  `json:"cost_micros"`
	Calls          int64  `json:"calls"`
	PrevCostMicros int64  `json:"previous_cost_micros"`
	PrevCalls      int64  `json:"previous_calls"`
}

// KeyEntry is one key in the permission inventory.
type KeyEntry struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Kind        vkey.Kind  `json:"kind"`
	Owner       string     `json:"owner"`
	Team        string     `json:"team,omitempty"`
	Scope       vkey.Scope `json:"scope"`
	Budgets     []string   `json:"budgets"`
	Limits      []string   `json:"limits"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	AgeDays     int64      `json:"age_days"`
	LastUsedAt  *time.Time `json:"last_used_at,omitempty"`
	MFARequired bool       `json:"mfa_required"`
	PoP         bool       `json:"proof_of_possession"` // source ranges or MFA-exchanged tokens
	State       string     `json:"state"`               // active, suspended, expired
}

// AdminEntry is one administrator.
type AdminEntry struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	MFA      bool   `json:"mfa"`
	Disabled bool   `json:"disabled"`
}

// FindingSummary is the findings of the period.
type FindingSummary struct {
	Opened     []Finding      `json:"opened"`
	Resolved   []Finding      `json:"resolved"`
	Open       []Finding      `json:"still_open"`
	BySeverity map[string]int `json:"open_by_severity"`
}

// Generate builds a report over [from, to) and stores it when store is true.
func (e *Engine) Generate(ctx context.Context, name string, from, to time.Time, save bool) (Report, error) {
	rs, ok := e.d.Store.(ReportStore)
	if !ok {
		return Report{}, fmt.Errorf("audit: the store keeps no reports")
	}
	now := e.d.Now().UTC()
	r := Report{ReportInfo: ReportInfo{ID: vkey.NewID("rpt"), Name: name, GeneratedAt: now, From: from.UTC(), To: to.UTC()}}
	facts, err := e.Gather(ctx, now)
	if err != nil {
		return r, err
	}
	r.Truncated = facts.Truncated
	if err := e.spend(ctx, rs, &r, facts); err != nil {
		return r, err
	}
	limits, err := rs.ListLimits(ctx)
	if err != nil {
		return r, err
	}
	r.Keys, r.Admins = inventory(facts, limits)
	all, err := e.d.Store.ListFindings(ctx, Filter{})
	if err != nil {
		return r, err
	}
	r.Findings = summarizeFindings(all, from, to)
	r.Log = facts.LogCheck
	if cs, ok := e.d.Store.(ReviewStore); ok {
		if r.Reviews, err = cs.ListCampaigns(ctx); err != nil {
			return r, err
		}
	}
	if save {
		if err := rs.SaveReport(ctx, r); err != nil {
			return r, err
		}
		e.record(ctx, ledger.Record{Kind: LedgerKind, Time: now, RequestID: "report-" + r.ID, Action: "report.generate", Target: r.ID,
			Detail: fmt.Sprintf("%s: %s to %s", name, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339))})
	}
	return r, nil
}

func (e *Engine) spend(ctx context.Context, rs ReportStore, r *Report, f *Facts) error {
	prevFrom := r.From.Add(-r.To.Sub(r.From))
	names := map[string]string{}
	for _, k := range f.Keys {
		names[k.ID] = k.Name
	}
	for id, p := range f.Principals {
		names[id] = p.Name
	}
	for _, g := range []struct {
		by  usage.GroupBy
		dst *[]SpendLine
	}{{usage.ByTeam, &r.Spend.ByTeam}, {usage.ByPrincipal, &r.Spend.ByPrincipal}, {usage.ByKey, &r.Spend.ByKey}, {usage.ByModel, &r.Spend.ByModel}, {usage.ByDay, &r.Spend.ByDay}} {
		cur, err := rs.SummarizeUsage(ctx, usage.Query{Since: r.From, Until: r.To}, g.by)
		if err != nil {
			return err
		}
		prev, err := rs.SummarizeUsage(ctx, usage.Query{Since: prevFrom, Until: r.From}, g.by)
		if err != nil {
			return err
		}
		lines := map[string]*SpendLine{}
		for _, s := range cur {
			lines[s.Group] = &SpendLine{Group: s.Group, Name: names[s.Group], CostMicros: s.CostMicros, Calls: s.Requests}
			if g.by == usage.ByDay {
				r.Spend.CostMicros += s.CostMicros
				r.Spend.Calls += s.Requests
			}
		}
		for _, s := range prev {
			if g.by == usage.ByDay {
				r.Spend.PrevCostMicros += s.CostMicros
				r.Spend.PrevCalls += s.Requests
				continue // days of the previous period are not this period's days
			}
			l := lines[s.Group]
			if l == nil {
				l = &SpendLine{Group: s.Group, Name: names[s.Group]}
				lines[s.Group] = l
			}
			l.PrevCostMicros, l.PrevCalls = s.CostMicros, s.Requests
		}
		out := make([]SpendLine, 0, len(lines))
		for _, l := range lines {
			out = append(out, *l)
		}
		if g.by == usage.ByDay {
			sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
		} else {
			sort.Slice(out, func(i, j int) bool {
				if out[i].CostMicros != out[j].CostMicros {
					return out[i].CostMicros > out[j].CostMicros
				}
				return out[i].Group < out[j].Group
			})
		}
		*g.dst = out
	}
	return nil
}

func inventory(f *Facts, limits []ratelimit.Limit) ([]KeyEntry, []AdminEntry) {
	var keys []KeyEntry
	for _, k := range f.Keys {
		e := KeyEntry{ID: k.ID, Name: k.Name, Kind: k.Kind, Owner: f.name(k.PrincipalID), Team: k.TeamID, Scope: k.Scope, ExpiresAt: k.Expiry(f.maxAge(k.TeamID)),
			AgeDays: days(f.Now.Sub(k.CreatedAt)), LastUsedAt: k.LastUsedAt, MFARequired: k.MFARequired, PoP: k.MFARequired || len(k.Scope.CIDRs) > 0, State: "active",
			Budgets: []string{}, Limits: []string{}}
		switch k.State(f.Now) {
		case vkey.ErrSuspended:
			e.State = "suspended"
		case vkey.ErrExpired:
			e.State = "expired"
		}
		for _, b := range f.Budgets {
			if (b.Scope == budget.ScopeKey && b.ScopeID == k.ID) || (b.Scope == budget.ScopePrincipal && b.ScopeID == k.PrincipalID) ||
				(b.Scope == budget.ScopeTeam && b.ScopeID == k.TeamID) || b.Scope == budget.ScopeOrg {
				kind := "soft"
				if b.Hard {
					kind = "hard"
				}
				e.Budgets = append(e.Budgets, fmt.Sprintf("%s %s/%s %s (%s)", kind, pricing.FormatUSD(b.LimitMicros), b.Period, b.Scope, b.ID))
			}
		}
		for _, l := range limits {
			if (l.Scope == ratelimit.ScopeKey && l.ScopeID == k.ID) || (l.Scope == ratelimit.ScopePrincipal && l.ScopeID == k.PrincipalID) || (l.Scope == ratelimit.ScopeTeam && l.ScopeID == k.TeamID) {
				e.Limits = append(e.Limits, fmt.Sprintf("%s: %d rpm, %d tpm, %d concurrent", l.Scope, l.RPM, l.TPM, l.Concurrent))
			}
		}
		keys = append(keys, e)
	}
	var admins []AdminEntry
	for _, p := range f.Principals {
		if slices.Contains(p.Roles, "admin") {
			admins = append(admins, AdminEntry{ID: p.ID, Name: p.Name, Kind: string(p.Kind), MFA: f.MFA[p.ID], Disabled: p.Disabled})
		}
	}
	sort.Slice(admins, func(i, j int) bool { return admins[i].Name < admins[j].Name })
	return keys, admins
}

func summarizeFindings(all []Finding, from, to time.Time) FindingSummary {
	s := FindingSummary{BySeverity: map[string]int{}, Opened: []Finding{}, Resolved: []Finding{}, Open: []Finding{}}
	for _, f := range all {
		if !f.FirstSeen.Before(from) && f.FirstSeen.Before(to) {
			s.Opened = append(s.Opened, f)
		}
		if f.State == Resolved && !f.StateAt.Before(from) && f.StateAt.Before(to) {
			s.Resolved = append(s.Resolved, f)
		}
		if f.State == Open || f.State == Acknowledged {
			s.Open = append(s.Open, f)
			s.BySeverity[string(f.Severity)]++
		}
	}
	bySev := func(a, b Finding) int { return b.Severity.Rank() - a.Severity.Rank() }
	slices.SortStableFunc(s.Opened, bySev)
	slices.SortStableFunc(s.Open, bySev)
	return s
}

// RunReports produces the configured scheduled reports on time until ctx
// ends: each is stored and announced on the alert webhook. It wakes every
// poll to compare the clock with each schedule.
func (e *Engine) RunReports(ctx context.Context, tick <-chan time.Time) error {
	var scheds []schedule
	for _, s := range e.d.Config.Reports {
		p, err := s.parse()
		if err != nil {
			return err
		}
		scheds = append(scheds, p)
	}
	next := make([]time.Time, len(scheds))
	start := e.d.Now()
	for i, s := range scheds {
		next[i] = s.next(start)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
		now := e.d.Now()
		for i, s := range scheds {
			if now.Before(next[i]) {
				continue
			}
			from := next[i].Add(-s.period)
			if s.every == "monthly" {
				from = next[i].AddDate(0, -1, 0)
			}
			r, err := e.Generate(ctx, s.name, from, next[i], true)
			if err != nil {
				e.d.Log.Warn("audit: scheduled report failed", "report", s.name, "err", err)
				continue // try again at the next poll
			}
			next[i] = s.next(now)
			e.d.Log.Info("audit: report generated", "report", s.name, "id", r.ID)
			if e.d.Alerts != nil {
				e.d.Alerts.Send(alert.Alert{Kind: "audit_report", Time: r.GeneratedAt, Message: fmt.Sprintf("audit report %s (%s) for %s to %s", r.ID, s.name, r.From.Format(time.DateOnly), r.To.Format(time.DateOnly)),
					Details: map[string]any{"report_id": r.ID, "name": s.name, "spend": pricing.FormatUSD(r.Spend.CostMicros), "calls": r.Spend.Calls,
						"findings_open": len(r.Findings.Open), "findings_opened": len(r.Findings.Opened), "markdown": strings.TrimSpace(string(Markdown(r)))}})
			}
		}
	}
}
