package audit_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// TestSummaryOfRefusalsCountsAsItsCalls: refused calls that the sequencer
// counted into one call.summary record during a store outage weigh as many
// calls in the audit: a denial flood stays a usage.denials finding.
func TestSummaryOfRefusalsCountsAsItsCalls(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	clk := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	_, key := seed(t, db, clk.Now().Add(-30*24*time.Hour))
	skey, _ := ledger.GenerateKey("test/log")
	lg, err := ledger.New(db, "gw.1", skey, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sum := ledger.Record{Kind: ledger.KindCallSummary, Time: clk.Now().Add(-time.Minute), RequestID: "req_first", KeyID: key.ID,
		PrincipalID: key.PrincipalID, Decision: "deny", Status: 403, ErrorCode: "policy_denied", Count: 500}
	if _, err := lg.Append(ctx, sum.Entry()); err != nil {
		t.Fatal(err)
	}
	e := audit.New(audit.Deps{Store: db, Ledger: &recLedger{}, Alerts: &recAlerts{}, Now: clk.Now})
	if _, err := e.Run(ctx, audit.SystemActor); err != nil {
		t.Fatal(err)
	}
	fs, err := e.List(ctx, audit.Filter{Rule: "usage.denials"})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Subject.ID != key.ID || fs[0].Evidence.Values["count"] != 500 {
		t.Fatalf("usage.denials findings %+v, want one for %s counting 500 calls", fs, key.ID)
	}
}
