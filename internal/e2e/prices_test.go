package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/client"
)

// TestPricesByExactID is issue #9, item 9, end to end: a model the shipped
// table does not list by exact id is unpriced, even when it starts like a
// priced one and a provider routes it by glob, so a hard budget refuses it
// before the upstream is called; `gatehouse prices show|list` say where each
// price came from.
func TestPricesByExactID(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) { testPricesByExactID(t, dsn(t)) })
	}
}

func testPricesByExactID(t *testing.T, dsn string) {
	f := newFixture(t, gwOptions{database: dsn})
	ctx := context.Background()
	scope, period, hard, limit := "key", "day", true, int64(50_000)
	if _, err := f.admin.CreateBudget(ctx, client.BudgetInput{Scope: &scope, ScopeID: &f.keyID, Period: &period, LimitMicros: &limit, Hard: &hard}); err != nil {
		t.Fatal(err)
	}
	calls := f.up.Calls.Load()
	// gpt-4o-2099-01-01 used to be priced as gpt-4o (prefix); it is routed by
	// the provider's gpt-* glob but has no price.
	for _, model := range []string{"gpt-4o-2099-01-01", "gpt-4o-mini-audio-preview", "gpt-5-turbo"} {
		status, body, _ := rawCall(t, f.dataURL+"/v1/chat/completions", f.key, `{"model":"`+model+`","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, nil)
		if status != 403 || errCode(body) != "model_unpriced" {
			t.Errorf("%s under a hard budget: %d %v; want 403 model_unpriced", model, status, body)
		}
	}
	if got := f.up.Calls.Load(); got != calls {
		t.Fatalf("the upstream was called %d times for unpriced models", got-calls)
	}
	// A dated snapshot listed as an alias is priced (and, under this small
	// budget, reserved and allowed).
	if status, body, _ := rawCall(t, f.dataURL+"/v1/chat/completions", f.key, `{"model":"gpt-4o-2024-08-06","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, nil); status != 200 {
		t.Fatalf("gpt-4o-2024-08-06: %d %v", status, body)
	}

	// prices show: an alias is priced as its entry, with the source.
	_, out, _ := runCLI(t, f.gateway, "prices", "show", "o1-pro-2025-03-19", "--json")
	var p client.Price
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Model != "o1-pro" || p.Input != 150_000_000 || p.Output != 600_000_000 ||
		p.Source != "default" || !strings.HasPrefix(p.SourceURL, "https://developers.openai.com/") || p.Checked == "" {
		t.Fatalf("prices show o1-pro-2025-03-19: %s (%v)", out, err)
	}
	code, out, errs := runCLI(t, f.gateway, "prices", "show", "claude-sonnet-4-5-20250929")
	for _, want := range []string{"priced as claude-sonnet-4-5", "$3.00", "$22.50", "over 200000 input tokens", "list price read", "https://platform.claude.com/"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("prices show claude-sonnet-4-5-20250929: %d, no %q in\n%s%s", code, want, out, errs)
		}
	}
	if code, _, errs := runCLI(t, f.gateway, "prices", "show", "o1-pro-max"); code == 0 || !strings.Contains(errs, "o1-pro-max") {
		t.Errorf("prices show of an unpriced model: exit %d, %s", code, errs)
	}
	// An operator glob, shown as the override it is.
	if code, _, errs := runCLI(t, f.gateway, "prices", "set", "ft:gpt-4o*", "--input", "3", "--output", "12"); code != 0 {
		t.Fatalf("prices set glob: %s", errs)
	}
	if code, out, errs := runCLI(t, f.gateway, "prices", "show", "ft:gpt-4o:acme:1"); code != 0 || !strings.Contains(out, "priced as ft:gpt-4o*") || !strings.Contains(out, "override") {
		t.Errorf("prices show under an operator glob: %d %s %s", code, out, errs)
	}

	// An override of an entry applies to its snapshots and may keep a
	// long-context tier; a tier cheaper than the base is refused.
	if code, _, errs := runCLI(t, f.gateway, "prices", "set", "claude-sonnet-4-5", "--input", "2", "--output", "10",
		"--long-above", "200000", "--long-input", "4", "--long-output", "15"); code != 0 {
		t.Fatalf("prices set with a tier: %s", errs)
	}
	_, out, _ = runCLI(t, f.gateway, "prices", "show", "claude-sonnet-4-5-20250929", "--json")
	p = client.Price{}
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Source != "override" || p.Input != 2_000_000 || p.LongContext == nil ||
		p.LongContext.Above != 200_000 || p.LongContext.Input != 4_000_000 || p.LongContext.Output != 15_000_000 {
		t.Fatalf("override with a tier: %s (%v)", out, err)
	}
	if code, _, errs := runCLI(t, f.gateway, "prices", "set", "claude-sonnet-4-0", "--input", "3", "--output", "15",
		"--long-above", "200000", "--long-input", "1", "--long-output", "15"); code == 0 || !strings.Contains(errs, "long-context") {
		t.Errorf("a tier cheaper than the base: exit %d, %s", code, errs)
	}
	if code, _, _ := runCLI(t, f.gateway, "prices", "delete", "claude-sonnet-4-5"); code != 0 {
		t.Fatal("prices delete")
	}

	// prices list: every shipped entry is an exact id with its source.
	_, out, _ = runCLI(t, f.gateway, "prices", "list", "--json")
	var all []client.Price
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) < 50 {
		t.Fatalf("prices list --json: %v (%d entries)", err, len(all))
	}
	if all[0].Source != "override" {
		t.Errorf("prices list: overrides first; got %+v", all[0])
	}
	for _, p := range all[1:] {
		if p.Source != "default" || strings.ContainsAny(p.Model, "*?[") || !strings.HasPrefix(p.Model, "sim-") && p.SourceURL == "" {
			t.Errorf("prices list: %+v", p)
		}
	}
	if code, out, _ := runCLI(t, f.gateway, "prices", "list"); code != 0 || !strings.Contains(out, "SOURCE") || !strings.Contains(out, "list price read") {
		t.Errorf("prices list: %d\n%s", code, out)
	}
}
