package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// FindingStore keeps findings.
type FindingStore interface {
	// CreateFinding stores a new finding; store.ErrExists when its
	// fingerprint is taken.
	CreateFinding(ctx context.Context, f Finding) error
	// UpdateFinding replaces a finding whose version is version (store.ErrConflict otherwise).
	UpdateFinding(ctx context.Context, f Finding, version int64) (Finding, error)
	// UpdateFindings replaces findings in one transaction, each only if its
	// stored version is still f.Version; it returns the ids that had moved on.
	UpdateFindings(ctx context.Context, fs []Finding) (conflicts []string, err error)
	// TouchFindings records that findings were seen again, unchanged, at at:
	// last seen and occurrences move, the version does not.
	TouchFindings(ctx context.Context, ids []string, at time.Time) error
	Finding(ctx context.Context, id string) (Finding, error)
	FindingByFingerprint(ctx context.Context, fp string) (Finding, error)
	ListFindings(ctx context.Context, f Filter) ([]Finding, error)
	// SaveLogCheck and LogCheck keep the gateway's latest verification of its log.
	SaveLogCheck(ctx context.Context, c LogCheck) error
	LogCheck(ctx context.Context) (*LogCheck, error)
}

// Store is what the engine reads and writes.
type Store interface {
	FindingStore
	ListKeys(ctx context.Context, f vkey.Filter) ([]vkey.Key, error)
	Key(ctx context.Context, id string) (vkey.Key, error)
	KeyByHash(ctx context.Context, hash string) (vkey.Key, error)
	RevokeKey(ctx context.Context, id string, at time.Time, version int64) (vkey.Key, error)
	ListPrincipals(ctx context.Context, teamID string) ([]org.Principal, error)
	Principal(ctx context.Context, idOrName string) (org.Principal, error)
	Team(ctx context.Context, idOrName string) (org.Team, error)
	Credentials(ctx context.Context, principalID string) (mfa.Credentials, error)
	Passkeys(ctx context.Context, principalID string) ([]mfa.Passkey, error)
	ListBudgets(ctx context.Context) ([]budget.Budget, error)
	PolicyHistory(ctx context.Context) ([]policy.Version, error)
	LedgerSize(ctx context.Context) (int64, error)
	LedgerEntries(ctx context.Context, from, to int64) ([][]byte, error)
}

// Appender is the ledger.
type Appender interface {
	Append(ctx context.Context, e ledger.Entry) (int64, error)
}

// Alerter delivers alerts (package alert).
type Alerter interface{ Send(alert.Alert) }

// Deps are the engine's collaborators.
type Deps struct {
	Store  Store
	Ledger Appender
	Alerts Alerter
	// Spend returns budgets with their current period's counters.
	Spend func(ctx context.Context, bs []budget.Budget) ([]budget.Status, error)
	// KeyMaxAge is the enforced maximum age of a team's keys (0: none).
	KeyMaxAge func(teamID string) time.Duration
	// Hasher hashes presented secrets as the store keeps them (leaked keys).
	Hasher *vkey.Hasher
	// ForgetKey drops a key from the authentication caches after a revocation.
	ForgetKey func(id string)
	// Checkpoint signs a checkpoint now (evidence bundles prove their own export).
	Checkpoint func(ctx context.Context) error
	Settings   Settings
	// UsageDropped counts the usage rows this gateway dropped because the
	// store was away too long (usage.Writer.Dropped); nil: none.
	UsageDropped func() int64
	Config       Config
	Log          *slog.Logger
	Now          func() time.Time
}

// Engine evaluates the rules and keeps the findings.
type Engine struct {
	d  Deps
	mu sync.Mutex // one run at a time in this process
}

// New returns an engine.
func New(d Deps) *Engine {
	d.Config = d.Config.WithDefaults()
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.ForgetKey == nil {
		d.ForgetKey = func(string) {}
	}
	return &Engine{d: d}
}

// Config returns the engine's configuration with defaults filled in.
func (e *Engine) Config() Config { return e.d.Config }

// Now returns the engine's clock.
func (e *Engine) Now() time.Time { return e.d.Now() }

// RunResult is what one evaluation of the rules did.
type RunResult struct {
	At        time.Time `json:"at"`
	Rules     int       `json:"rules"`
	Opened    []string  `json:"opened"`   // finding ids, new or reopened
	Updated   int       `json:"updated"`  // still there
	Resolved  []string  `json:"resolved"` // no longer observed
	Open      int       `json:"open"`     // open or acknowledged after the run
	Truncated bool      `json:"truncated,omitempty"`
}

// Run evaluates every rule now. by is who asked (SystemActor for the schedule).
func (e *Engine) Run(ctx context.Context, by string) (RunResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.d.Now().UTC()
	facts, err := e.Gather(ctx, now)
	if err != nil {
		return RunResult{}, err
	}
	return e.evaluate(ctx, facts, Rules(), by)
}

func (e *Engine) evaluate(ctx context.Context, facts *Facts, rules []Rule, by string) (RunResult, error) {
	res := RunResult{At: facts.Now, Rules: len(rules), Truncated: facts.Truncated}
	all, err := e.d.Store.ListFindings(ctx, Filter{})
	if err != nil {
		return res, err
	}
	known := make(map[string]Finding, len(all))
	for _, f := range all {
		known[f.Fingerprint] = f
	}
	seen := map[string]bool{}
	ruleNames := map[string]bool{}
	// Findings seen again are updated in one batch (one transaction), so a
	// run over thousands of keys costs one commit, not thousands.
	var batch, reopened []Finding
	var touched []string // unchanged: only last seen moves
	for _, r := range rules {
		ruleNames[r.Name] = true
		for _, c := range r.Check(facts, e.d.Config) {
			c.Rule, c.Severity = r.Name, r.Severity
			fp := Fingerprint(c.Rule, c.Subject)
			if seen[fp] {
				continue
			}
			seen[fp] = true
			f, ok := known[fp]
			if !ok {
				f, opened, err := e.observe(ctx, c, facts.Now)
				if err != nil {
					return res, err
				}
				if opened {
					res.Opened = append(res.Opened, f.ID)
				} else {
					res.Updated++
				}
				continue
			}
			if f.State != Resolved && f.Severity == c.Severity && f.Title == c.Title && f.Subject == c.Subject && reflect.DeepEqual(f.Evidence, c.Evidence) {
				touched = append(touched, f.ID)
				continue
			}
			if e.update(ctx, &f, c, facts.Now) {
				reopened = append(reopened, f)
			}
			batch = append(batch, f)
		}
	}
	if err := e.d.Store.TouchFindings(ctx, touched, facts.Now); err != nil {
		return res, err
	}
	res.Updated += len(touched)
	conflicts, err := e.d.Store.UpdateFindings(ctx, batch)
	if err != nil {
		return res, err
	}
	for _, f := range batch {
		if slices.Contains(conflicts, f.ID) {
			continue
		}
		if slices.ContainsFunc(reopened, func(x Finding) bool { return x.ID == f.ID }) {
			res.Opened = append(res.Opened, f.ID)
			e.alertNew(f)
		} else {
			res.Updated++
		}
	}
	for _, f := range batch { // changed under us (another replica, an admin): one at a time
		if !slices.Contains(conflicts, f.ID) {
			continue
		}
		c := Candidate{Rule: f.Rule, Severity: f.Severity, Subject: f.Subject, Title: f.Title, Evidence: f.Evidence}
		up, opened, err := e.observe(ctx, c, facts.Now)
		if err != nil {
			return res, err
		}
		if opened {
			res.Opened = append(res.Opened, up.ID)
		} else {
			res.Updated++
		}
	}
	for _, f := range all {
		if (f.State != Open && f.State != Acknowledged) || !ruleNames[f.Rule] {
			continue
		}
		if seen[f.Fingerprint] {
			res.Open++
			continue
		}
		if _, err := e.transition(ctx, f, Resolved, SystemActor, "no longer observed", facts.Now); err != nil && !errors.Is(err, store.ErrConflict) {
			return res, err
		}
		res.Resolved = append(res.Resolved, f.ID)
	}
	e.record(ctx, ledger.Record{Kind: LedgerKind, Time: facts.Now, RequestID: "audit-run-" + facts.Now.Format("20060102T150405.000000Z"), PrincipalID: actor(by),
		Action: "findings.run", Detail: fmt.Sprintf("%d rules, %d opened, %d still there, %d resolved", len(rules), len(res.Opened), res.Updated, len(res.Resolved))})
	return res, nil
}

// update applies a candidate seen again to its finding in memory: last seen,
// evidence, occurrences; a resolved finding reopens (a ledger record). It
// reports whether the finding reopened.
func (e *Engine) update(ctx context.Context, f *Finding, c Candidate, now time.Time) bool {
	f.Severity, f.Subject, f.Title, f.Evidence, f.LastSeen = c.Severity, c.Subject, c.Title, c.Evidence, now
	f.Occurrences++
	if f.State != Resolved {
		return false
	}
	idx := e.record(ctx, e.findingRecord(*f, "finding.reopen", SystemActor, "observed again", now))
	f.State, f.StateBy, f.StateReason, f.StateAt = Open, SystemActor, "observed again", now
	f.History = append(f.History, Event{At: now, State: Open, By: SystemActor, Reason: "observed again", LedgerIndex: idx})
	return true
}

func actor(by string) string {
	if by == SystemActor {
		return ""
	}
	return by
}

// observe stores a candidate: a new finding, or the same finding updated. It
// reports whether the finding is newly open (new or reopened).
func (e *Engine) observe(ctx context.Context, c Candidate, now time.Time) (Finding, bool, error) {
	fp := Fingerprint(c.Rule, c.Subject)
	for attempt := 0; attempt < 5; attempt++ {
		f, err := e.d.Store.FindingByFingerprint(ctx, fp)
		if errors.Is(err, store.ErrNotFound) {
			f = Finding{ID: vkey.NewID("fnd"), Fingerprint: fp, Rule: c.Rule, Severity: c.Severity, Subject: c.Subject, Title: c.Title,
				Evidence: c.Evidence, State: Open, StateBy: SystemActor, StateAt: now, FirstSeen: now, LastSeen: now, Occurrences: 1, Version: 1}
			// Stored first, recorded second: a replica that loses the race to
			// store it (ErrExists) leaves no finding.open record of a finding
			// that does not exist; the winner then notes the record's index.
			f.History = []Event{{At: now, State: Open, By: SystemActor, Reason: c.Evidence.Summary, LedgerIndex: -1}}
			err := e.d.Store.CreateFinding(ctx, f)
			if errors.Is(err, store.ErrExists) {
				continue // another replica stored it first: update theirs
			}
			if err != nil {
				return f, false, err
			}
			if idx := e.record(ctx, e.findingRecord(f, "finding.open", SystemActor, c.Title, now)); idx >= 0 {
				f = e.noteOpenRecord(ctx, f, idx)
			}
			e.alertNew(f)
			return f, true, nil
		}
		if err != nil {
			return f, false, err
		}
		v := f.Version
		reopened := e.update(ctx, &f, c, now)
		up, err := e.d.Store.UpdateFinding(ctx, f, v)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return f, false, err
		}
		if reopened {
			e.alertNew(up)
		}
		return up, reopened, nil
	}
	return Finding{}, false, fmt.Errorf("audit: finding %s keeps changing under us", fp)
}

// noteOpenRecord sets the ledger index of a new finding's first history
// entry, re-reading it when another replica changed it meanwhile.
func (e *Engine) noteOpenRecord(ctx context.Context, f Finding, idx int64) Finding {
	for range 5 {
		if len(f.History) > 0 && f.History[0].State == Open && f.History[0].LedgerIndex < 0 {
			f.History[0].LedgerIndex = idx
		}
		up, err := e.d.Store.UpdateFinding(ctx, f, f.Version)
		if err == nil {
			return up
		}
		if !errors.Is(err, store.ErrConflict) {
			break
		}
		cur, err := e.d.Store.Finding(ctx, f.ID)
		if err != nil {
			break
		}
		f = cur
	}
	e.d.Log.Warn("finding stored without the index of its ledger record", "finding", f.ID, "ledger_index", idx)
	return f
}

func (e *Engine) alertNew(f Finding) {
	if f.Severity != High || e.d.Alerts == nil {
		return
	}
	e.d.Alerts.Send(alert.Alert{Kind: "finding", Time: f.LastSeen, Message: fmt.Sprintf("new high finding %s: %s", f.ID, f.Title),
		Details: map[string]any{"finding_id": f.ID, "rule": f.Rule, "severity": f.Severity, "subject": f.Subject, "evidence": f.Evidence.Summary,
			"request_ids": f.Evidence.RequestIDs, "ledger_indexes": f.Evidence.LedgerIndexes}})
}

func (e *Engine) findingRecord(f Finding, action, by, reason string, now time.Time) ledger.Record {
	return ledger.Record{Kind: LedgerKind, Time: now, RequestID: "finding-" + f.ID, PrincipalID: actor(by), Action: action, Target: f.ID,
		Detail: f.Rule + " " + f.Subject.Kind + ":" + f.Subject.ID + ": " + reason, KeyID: keyOf(f.Subject), Status: http.StatusOK}
}

func keyOf(s Subject) string {
	if s.Kind == "key" {
		return s.ID
	}
	return ""
}

// record appends to the ledger; it returns the record's index, or -1 when the
// ledger is not there or failed (logged: the change stands).
func (e *Engine) record(ctx context.Context, r ledger.Record) int64 {
	if e.d.Ledger == nil {
		return -1
	}
	if len(r.Detail) > 2000 {
		r.Detail = r.Detail[:2000]
	}
	idx, err := e.d.Ledger.Append(context.WithoutCancel(ctx), ledger.Entry{Data: r.Marshal(), RequestID: r.RequestID})
	if err != nil {
		e.d.Log.Error("ledger: an audit change was made but not recorded", "action", r.Action, "target", r.Target, "err", err)
		return -1
	}
	return idx
}

// Transition moves a finding to state (acknowledged, resolved or dismissed)
// for by, with a reason. version is the expected version or store.AnyVersion.
func (e *Engine) Transition(ctx context.Context, id string, to State, by, reason string, version int64) (Finding, error) {
	if reason == "" {
		return Finding{}, ErrNeedReason
	}
	if to != Acknowledged && to != Resolved && to != Dismissed {
		return Finding{}, fmt.Errorf("%w: to %s", ErrBadTransition, to)
	}
	f, err := e.d.Store.Finding(ctx, id)
	if err != nil {
		return Finding{}, err
	}
	if version != store.AnyVersion && version != f.Version {
		return Finding{}, store.ErrConflict
	}
	if f.State == to {
		return Finding{}, fmt.Errorf("%w: the finding is %s already", ErrBadTransition, to)
	}
	if to == Acknowledged && f.State != Open {
		return Finding{}, fmt.Errorf("%w: only an open finding can be acknowledged (it is %s)", ErrBadTransition, f.State)
	}
	return e.transition(ctx, f, to, by, reason, e.d.Now().UTC())
}

func (e *Engine) transition(ctx context.Context, f Finding, to State, by, reason string, now time.Time) (Finding, error) {
	v := f.Version
	idx := e.record(ctx, e.findingRecord(f, "finding."+string(to), by, reason, now))
	f.State, f.StateBy, f.StateReason, f.StateAt = to, by, reason, now
	f.History = append(f.History, Event{At: now, State: to, By: by, Reason: reason, LedgerIndex: idx})
	return e.d.Store.UpdateFinding(ctx, f, v)
}

// Report records an event-type finding that no rule re-evaluates (a leaked
// key): it is opened, or reopened, and never resolved by a run.
func (e *Engine) Report(ctx context.Context, c Candidate) (Finding, bool, error) {
	f, opened, err := e.observe(ctx, c, e.d.Now().UTC())
	return f, opened, err
}

// List returns findings, most severe and newest first.
func (e *Engine) List(ctx context.Context, f Filter) ([]Finding, error) {
	out, err := e.d.Store.ListFindings(ctx, f)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		if d := b.Severity.Rank() - a.Severity.Rank(); d != 0 {
			return d
		}
		return b.LastSeen.Compare(a.LastSeen)
	})
	return out, nil
}

// Get returns one finding.
func (e *Engine) Get(ctx context.Context, id string) (Finding, error) {
	return e.d.Store.Finding(ctx, id)
}

// RunEvery evaluates the rules, and handles overdue review items, at every
// tick until ctx ends (a component of the server). Errors are logged; the
// next tick tries again.
func (e *Engine) RunEvery(ctx context.Context, tick <-chan time.Time) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			if res, err := e.Run(ctx, SystemActor); err != nil {
				if ctx.Err() == nil {
					e.d.Log.Warn("audit: scheduled findings run failed", "err", err)
				}
			} else if len(res.Opened) > 0 {
				e.d.Log.Info("audit: findings opened", "count", len(res.Opened), "open", res.Open)
			}
			if _, ok := e.d.Store.(ReviewStore); ok {
				if n, err := e.SweepReviews(ctx); err != nil && ctx.Err() == nil {
					e.d.Log.Warn("audit: overdue review items not handled", "err", err)
				} else if n > 0 {
					e.d.Log.Info("audit: overdue review items handled", "count", n)
				}
			}
		}
	}
}
