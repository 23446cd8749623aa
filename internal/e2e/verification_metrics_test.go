package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
)

// TestMetricsReadTheAuditsLogVerification: the gateway verifies its log once
// (the audit's LogVerifier) and /metrics reads the stored outcome: after a
// check, the last-verification timestamp is the check's LastGood and no
// failure is counted.
func TestMetricsReadTheAuditsLogVerification(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	var c audit.LogCheck
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		// the fixture's admin records are signed within checkpoint_interval
		if c, err = f.srv.CheckLog(ctx); !errors.Is(err, audit.ErrNoCheckpoint) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || !c.OK {
		t.Fatalf("check: %+v %v", c, err)
	}
	fams, _, _ := scrape(t, f.gateway, "")
	last, ok := series(fams, "gatehouse_ledger_last_verification_timestamp_seconds", nil)
	if !ok || int64(last) < c.LastGood.Unix()-1 {
		t.Fatalf("last verification %v (present %v), the check's last good %v", last, ok, c.LastGood)
	}
	if v, ok := series(fams, "gatehouse_ledger_verification_failures_total", nil); !ok || v != 0 {
		t.Fatalf("failures %v (present %v)", v, ok)
	}
}
