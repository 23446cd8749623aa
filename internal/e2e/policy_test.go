package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

const noMini = `
@id("members-call-models")
permit (principal in Role::"member", action in [Action::"chat", Action::"models"], resource is Model);

@id("admins-administer")
permit (principal in Role::"admin", action, resource);

@id("no-mini")
forbid (principal, action, resource is Model) when { context.model like "gpt-4o-mini*" };
`

// TestPolicies: a policy change takes effect on the next request without a
// restart; a denied request never reaches the upstream; decisions are recorded;
// what-if, history and rollback; admin calls are decided too.
func TestPolicies(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	oc := f.openai(f.key)
	for _, m := range []string{"gpt-4o", "gpt-4o-mini"} {
		if _, err := oc.Chat.Completions.New(ctx, chatParams(m, 3)); err != nil {
			t.Fatalf("%s under the defaults: %v", m, err)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gatehouse.cedar"), []byte(noMini), 0o644)
	cases := filepath.Join(dir, "cases.yaml")
	os.WriteFile(cases, []byte(`
- name: members may chat with gpt-4o
  principal: {roles: [member]}
  action: chat
  resource: gpt-4o
  expect: allow
  reasons: [members-call-models]
- name: nobody uses mini
  principal: {roles: [admin]}
  action: chat
  resource: gpt-4o-mini
  expect: deny
  reasons: [no-mini]
`), 0o644)
	run := func(args ...string) string {
		t.Helper()
		code, out, errs := runCLI(t, f.gateway, args...)
		if code != 0 {
			t.Fatalf("gatehouse %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		return out
	}
	run("policy", "validate", dir)
	if out := run("policy", "test", dir, "--cases", cases); !strings.Contains(out, "2 passed, 0 failed") {
		t.Fatalf("policy test:\n%s", out)
	}
	// What-if, before applying: the mini call recorded above would be denied.
	var wi struct {
		Replayed int                   `json:"replayed"`
		Changes  []client.WhatIfChange `json:"changes"`
	}
	f.usageOf(t, f.keyID, 2)
	json.Unmarshal([]byte(run("policy", "whatif", dir, "--since", "1h", "--json")), &wi)
	if wi.Replayed < 2 || len(wi.Changes) != 1 || wi.Changes[0].From != "allow" || wi.Changes[0].To != "deny" || wi.Changes[0].Reasons[0] != "no-mini" {
		t.Fatalf("whatif: %+v", wi)
	}

	run("policy", "apply", dir, "--note", "no mini")
	calls := f.up.Calls.Load()
	_, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", 3))
	if s, c := openAIStatus(t, err); s != 403 || c != "policy_denied" || !strings.Contains(errMessage(err), "no-mini") {
		t.Fatalf("after apply: %d %q %v", s, c, err)
	}
	if f.up.Calls.Load() != calls {
		t.Fatal("a denied call reached the upstream")
	}
	if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 3)); err != nil {
		t.Fatalf("an allowed call after apply: %v", err)
	}
	// Embeddings are no longer permitted to members: default deny.
	_, err = oc.Embeddings.New(ctx, embedParams())
	if s, c := openAIStatus(t, err); s != 403 || c != "policy_denied" || !strings.Contains(errMessage(err), "default deny") {
		t.Fatalf("embeddings without a permit: %d %q %v", s, c, err)
	}
	recs := f.usageOf(t, f.keyID, 5)
	var denied, allowed bool
	for _, r := range recs {
		denied = denied || (r.Status == 403 && r.ErrorCode == "policy_denied")
		allowed = allowed || (r.Status == 200 && len(r.Reasons) == 1 && r.Reasons[0] == "members-call-models")
	}
	if !denied || !allowed {
		t.Fatalf("decisions not recorded: %+v", recs)
	}
	var hist []client.PolicyVersion
	json.Unmarshal([]byte(run("policy", "history", "--json")), &hist)
	if len(hist) != 1 || hist[0].Version != 1 || hist[0].Note != "no mini" {
		t.Fatalf("history: %+v", hist)
	}
	if out := run("policy", "show"); !strings.Contains(out, "no-mini") {
		t.Fatalf("policy show:\n%s", out)
	}
	run("policy", "rollback")
	if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", 3)); err != nil {
		t.Fatalf("after rollback to the defaults: %v", err)
	}
	// A broken policy is refused with its line and column.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "bad.cedar"), []byte("permit (principal, action, resource)\nwhen { context.nope };\n"), 0o644)
	if code, _, errs := runCLI(t, f.gateway, "policy", "apply", bad); code != 1 || !strings.Contains(errs, "bad.cedar:1:") {
		t.Fatalf("a bad policy: %d %s", code, errs)
	}
	// Admin calls: an auditor's admin key reads usage, and nothing else.
	name, teams, roles := "auditor-1", []string{"research"}, []string{"auditor"}
	kind := "user"
	if _, err := f.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams, Roles: &roles}); err != nil {
		t.Fatal(err)
	}
	ak, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "auditor-1", Kind: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	aud := client.New("http://"+f.srv.AdminAddr(), ak.Secret)
	if _, err := aud.Usage(ctx, client.UsageQuery{}); err != nil {
		t.Fatalf("auditor reading usage: %v", err)
	}
	if _, err := aud.CreateTeam(ctx, "sneaky"); !isStatus(err, 403) {
		t.Fatalf("auditor creating a team: %v", err)
	}
}

func TestDefaultPoliciesCompile(t *testing.T) {
	if _, err := policy.Compile(policy.Defaults()); err != nil {
		t.Fatal(err)
	}
}

func errMessage(err error) string {
	var e *openai.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}
