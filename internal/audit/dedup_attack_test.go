package audit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// TestFindingsDedupAcrossReplicas: two replicas sharing a store run the rules
// at the same moment, again and again. Each (rule, subject) is one finding,
// and every finding.open record in the shared ledger names a finding that
// exists (a replica that lost the race to store it must not leave a record of
// a finding nobody can find).
func TestFindingsDedupAcrossReplicas(t *testing.T) { backends(t, testFindingsDedupAcrossReplicas) }

func testFindingsDedupAcrossReplicas(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	seed(t, db, clk.Now().Add(-time.Hour))
	led := &recLedger{}
	replicas := []*audit.Engine{
		audit.New(audit.Deps{Store: db, Ledger: led, Now: clk.Now}),
		audit.New(audit.Deps{Store: db, Ledger: led, Now: clk.Now}),
	}
	for round := range 3 {
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				if _, err := replicas[i%2].Run(ctx, audit.SystemActor); err != nil {
					t.Errorf("round %d: %v", round, err)
				}
			})
		}
		wg.Wait()
	}
	fs, err := replicas[0].List(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) == 0 {
		t.Fatal("no findings: the fixture should have some")
	}
	seen := map[string]bool{}
	ids := map[string]bool{}
	for _, f := range fs {
		if seen[f.Fingerprint] {
			t.Errorf("finding %s %s:%s stored twice", f.Rule, f.Subject.Kind, f.Subject.ID)
		}
		seen[f.Fingerprint], ids[f.ID] = true, true
	}
	led.mu.Lock()
	defer led.mu.Unlock()
	opens := 0
	openAt := map[string]int64{}
	for i, r := range led.recs {
		if r.Action != "finding.open" {
			continue
		}
		opens++
		openAt[r.Target] = int64(i)
		if !ids[r.Target] {
			t.Errorf("ledger: finding.open of %s, which does not exist (%s)", r.Target, r.Detail)
		}
	}
	for _, f := range fs {
		if at, ok := openAt[f.ID]; !ok || len(f.History) == 0 || f.History[0].LedgerIndex != at {
			t.Errorf("finding %s: first history entry %+v, its finding.open record at %d (%v)", f.ID, f.History, at, ok)
		}
	}
	if opens != len(fs) {
		t.Errorf("%d finding.open records for %d findings", opens, len(fs))
	}
}
