package config

import (
	"strings"
	"testing"
	"time"
)

// TestMaxDeferredRefusals: ledger.max_deferred_refusals defaults to 1,000,
// takes 0 (count every refusal into summaries) and refuses values out of
// range.
func TestMaxDeferredRefusals(t *testing.T) {
	c := Default()
	if err := c.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.Ledger.MaxDeferredRefusals != 1000 {
		t.Fatalf("default %d, %v; want 1000", c.Ledger.MaxDeferredRefusals, err)
	}
	for in, ok := range map[string]bool{"0": true, "50": true, "100000": true, "-1": false, "100001": false} {
		c := Default()
		if err := c.Parse([]byte("ledger:\n  max_deferred_refusals: " + in + "\n")); err != nil {
			t.Fatal(err)
		}
		err := c.Validate()
		if ok && err != nil {
			t.Errorf("max_deferred_refusals %s refused: %v", in, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "ledger.max_deferred_refusals")) {
			t.Errorf("max_deferred_refusals %s: Validate = %v, want a refusal naming the key", in, err)
		}
	}
}

// TestLagWait: ledger.lag_wait defaults to 1 ms, takes 0 (commit at once)
// and refuses values out of range.
func TestLagWait(t *testing.T) {
	c := Default()
	if err := c.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.Ledger.LagWait.D() != time.Millisecond {
		t.Fatalf("default %v, %v; want 1ms", c.Ledger.LagWait.D(), err)
	}
	for in, ok := range map[string]bool{"0s": true, "500us": true, "1s": true, "-1ms": false, "2s": false} {
		c := Default()
		if err := c.Parse([]byte("ledger:\n  lag_wait: " + in + "\n")); err != nil {
			t.Fatal(err)
		}
		err := c.Validate()
		if ok && err != nil {
			t.Errorf("lag_wait %s refused: %v", in, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "ledger.lag_wait")) {
			t.Errorf("lag_wait %s: Validate = %v, want a refusal naming the key", in, err)
		}
	}
}
