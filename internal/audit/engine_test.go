package audit_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// recLedger keeps appended records in memory.
type recLedger struct {
	mu   sync.Mutex
	recs []ledger.Record
}

func (l *recLedger) Append(_ context.Context, e ledger.Entry) (int64, error) {
	r, err := ledger.ParseRecord(e.Data)
	if err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return int64(len(l.recs) - 1), nil
}

func (l *recLedger) actions(target string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if r.Target == target {
			out = append(out, r.Action)
		}
	}
	return out
}

type recAlerts struct {
	mu sync.Mutex
	as []alert.Alert
}

func (a *recAlerts) Send(x alert.Alert) { a.mu.Lock(); a.as = append(a.as, x); a.mu.Unlock() }
func (a *recAlerts) n() int             { a.mu.Lock(); defer a.mu.Unlock(); return len(a.as) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// backends runs fn on SQLite and, when GATEHOUSE_TEST_POSTGRES_URL is set, PostgreSQL.
func backends(t *testing.T, fn func(t *testing.T, db *sqlstore.DB)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, openStore(t)) })
	t.Run("postgres", func(t *testing.T) {
		if !pgtest.Available() {
			t.Skip("GATEHOUSE_TEST_POSTGRES_URL not set")
		}
		fn(t, pgtest.Open(t))
	})
}

func openStore(t *testing.T) *sqlstore.DB { return openStoreB(t) }

func openStoreB(t testing.TB) *sqlstore.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func seed(t *testing.T, db *sqlstore.DB, at time.Time) (prn string, key vkey.Key) {
	t.Helper()
	ctx := context.Background()
	team := org.Team{ID: "team_a", Name: "a", CreatedAt: at, Version: 1}
	if err := db.CreateTeam(ctx, team); err != nil {
		t.Fatal(err)
	}
	p := org.Principal{ID: "prn_a", Name: "agent", Kind: org.KindServiceAccount, Teams: []string{team.ID}, Roles: []string{"member"}, CreatedAt: at, Version: 1}
	if err := db.CreatePrincipal(ctx, p); err != nil {
		t.Fatal(err)
	}
	k := vkey.Key{ID: "key_a", Kind: vkey.KindVirtual, Name: "agent key", Hash: "h1", Hint: "gk_abcd…", PrincipalID: p.ID, TeamID: team.ID, CreatedAt: at, Version: 1}
	if err := db.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	return p.ID, k
}

func byRule(fs []audit.Finding, rule string) *audit.Finding {
	for i := range fs {
		if fs[i].Rule == rule {
			return &fs[i]
		}
	}
	return nil
}

func TestEngineLifecycle(t *testing.T) { backends(t, testEngineLifecycle) }

func testEngineLifecycle(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	_, key := seed(t, db, clk.Now())
	led, alerts := &recLedger{}, &recAlerts{}
	e := audit.New(audit.Deps{Store: db, Ledger: led, Alerts: alerts, Now: clk.Now, Settings: audit.Settings{StepUpMaxAge: time.Minute}})

	res, err := e.Run(ctx, "prn_admin")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := e.List(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	uncapped := byRule(fs, "keys.no_hard_budget")
	if uncapped == nil || uncapped.Subject.ID != key.ID || uncapped.State != audit.Open || uncapped.Severity != audit.High {
		t.Fatalf("no open high keys.no_hard_budget finding for the key: %+v", fs)
	}
	if len(res.Opened) != len(fs) {
		t.Errorf("run opened %d, store has %d", len(res.Opened), len(fs))
	}
	if fs[0].Severity != audit.High {
		t.Errorf("list is not most severe first: %s first", fs[0].Severity)
	}
	highs := 0
	for _, f := range fs {
		if f.Severity == audit.High {
			highs++
		}
		if got := led.actions(f.ID); len(got) != 1 || got[0] != "finding.open" {
			t.Errorf("finding %s: ledger actions %v, want [finding.open]", f.Rule, got)
		}
	}
	if alerts.n() != highs {
		t.Errorf("%d alerts for %d new high findings", alerts.n(), highs)
	}

	// The same condition an hour later: the same finding, updated; no new alert.
	clk.Add(time.Hour)
	res, err = e.Run(ctx, audit.SystemActor)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Opened) != 0 || res.Updated != len(fs) {
		t.Fatalf("second run opened %v, updated %d; want 0 and %d", res.Opened, res.Updated, len(fs))
	}
	again, _ := e.Get(ctx, uncapped.ID)
	if again.Occurrences != 2 || !again.LastSeen.Equal(clk.Now()) || !again.FirstSeen.Equal(uncapped.FirstSeen) {
		t.Errorf("recurring finding: occurrences %d, first %s, last %s", again.Occurrences, again.FirstSeen, again.LastSeen)
	}
	if alerts.n() != highs {
		t.Errorf("a recurring finding alerted again")
	}

	// Acknowledge: who and why, in the history and the ledger.
	if _, err := e.Transition(ctx, uncapped.ID, audit.Acknowledged, "prn_admin", "", store.AnyVersion); !errors.Is(err, audit.ErrNeedReason) {
		t.Fatalf("ack without a reason: %v", err)
	}
	if _, err := e.Transition(ctx, uncapped.ID, audit.Acknowledged, "prn_admin", "budget coming", again.Version+1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("ack with a stale version: %v", err)
	}
	ack, err := e.Transition(ctx, uncapped.ID, audit.Acknowledged, "prn_admin", "budget coming", again.Version)
	if err != nil {
		t.Fatal(err)
	}
	if ack.State != audit.Acknowledged || ack.StateBy != "prn_admin" || ack.StateReason != "budget coming" || len(ack.History) != 2 {
		t.Fatalf("acknowledged finding %+v", ack)
	}
	if got := led.actions(uncapped.ID); len(got) != 2 || got[1] != "finding.acknowledged" {
		t.Errorf("ledger actions %v", got)
	}
	if _, err := e.Transition(ctx, uncapped.ID, audit.Acknowledged, "prn_admin", "again", store.AnyVersion); !errors.Is(err, audit.ErrBadTransition) {
		t.Errorf("acknowledging twice: %v", err)
	}

	// The key is revoked: its findings are no longer observed and resolve.
	if _, err := db.RevokeKey(ctx, key.ID, clk.Now(), store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	res, err = e.Run(ctx, audit.SystemActor)
	if err != nil {
		t.Fatal(err)
	}
	gone, _ := e.Get(ctx, uncapped.ID)
	if gone.State != audit.Resolved || gone.StateBy != audit.SystemActor || gone.StateReason != "no longer observed" {
		t.Fatalf("finding of a revoked key: %s by %s (%s)", gone.State, gone.StateBy, gone.StateReason)
	}

	// A dismissed finding stays dismissed while it recurs; a resolved one reopens.
	if svc, _ := e.Get(ctx, byRule(fs, "principals.service_no_pop").ID); svc.State != audit.Resolved {
		t.Errorf("the principal's bearer-key finding, its only key revoked: %s", svc.State)
	}
	stepOff := audit.New(audit.Deps{Store: db, Ledger: led, Alerts: alerts, Now: clk.Now})
	if _, err := stepOff.Run(ctx, audit.SystemActor); err != nil {
		t.Fatal(err)
	}
	all, _ := e.List(ctx, audit.Filter{Rule: "config.step_up_off"})
	if len(all) != 1 {
		t.Fatalf("step-up findings: %d", len(all))
	}
	step := all[0]
	if _, err := e.Transition(ctx, step.ID, audit.Dismissed, "prn_admin", "dev install", store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	if _, err := stepOff.Run(ctx, audit.SystemActor); err != nil {
		t.Fatal(err)
	}
	if f, _ := e.Get(ctx, step.ID); f.State != audit.Dismissed || f.Occurrences != 2 {
		t.Errorf("dismissed finding after recurring: %s, %d occurrences", f.State, f.Occurrences)
	}
	if _, err := e.Transition(ctx, step.ID, audit.Resolved, "prn_admin", "turned on", store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	res, err = stepOff.Run(ctx, audit.SystemActor)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := e.Get(ctx, step.ID)
	if f.State != audit.Open || f.StateReason != "observed again" {
		t.Errorf("resolved finding that recurs: %s (%s)", f.State, f.StateReason)
	}
	found := false
	for _, id := range res.Opened {
		found = found || id == step.ID
	}
	if !found {
		t.Errorf("a reopened finding is not reported as opened")
	}
	if got := led.actions(step.ID); len(got) != 4 || got[3] != "finding.reopen" {
		t.Errorf("ledger actions of the reopened finding: %v", got)
	}
}

// Replicas sharing a store that run at the same time store one finding per
// rule and subject.
func TestEngineConcurrentRunsDedup(t *testing.T) { backends(t, testEngineConcurrentRunsDedup) }

func testEngineConcurrentRunsDedup(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	seed(t, db, clk.Now())
	var wg sync.WaitGroup
	for range 4 {
		e := audit.New(audit.Deps{Store: db, Now: clk.Now})
		wg.Go(func() {
			if _, err := e.Run(ctx, audit.SystemActor); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	fs, err := db.ListFindings(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range fs {
		if seen[f.Fingerprint] {
			t.Errorf("two findings for %s %s", f.Rule, f.Subject.ID)
		}
		seen[f.Fingerprint] = true
	}
	if len(fs) == 0 {
		t.Fatal("no findings")
	}
}
