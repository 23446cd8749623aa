package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/cli"
)

func adminDo(t *testing.T, g *gateway, method, path, key, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+g.srv.AdminAddr()+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

func TestAdminAPI(t *testing.T) {
	g := startGateway(t, gwOptions{})
	ctx := context.Background()

	// Authentication.
	for _, key := range []string{"", "gka_nope", "not-a-key-at-all-xx"} {
		if resp, _ := adminDo(t, g, "GET", "/v1/teams", key, "", nil); resp.StatusCode != 401 {
			t.Errorf("key %q: status %d, want 401", key, resp.StatusCode)
		}
	}
	// A data-plane key is not an admin key.
	team, _ := g.admin.CreateTeam(ctx, "ops")
	name, teams := "bot", []string{"ops"}
	g.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Teams: &teams})
	vk, err := g.admin.CreateKey(ctx, client.KeyInput{Principal: "bot"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := adminDo(t, g, "GET", "/v1/teams", vk.Secret, "", nil); resp.StatusCode != 401 {
		t.Errorf("virtual key on the admin API: %d", resp.StatusCode)
	}
	// A second admin key works; revoking it locks it out.
	ak, err := g.admin.CreateKey(ctx, client.KeyInput{Principal: "bot", Kind: "admin"})
	if err != nil || !strings.HasPrefix(ak.Secret, "gka_") {
		t.Fatalf("admin key: %+v %v", ak, err)
	}
	// Policies decide admin calls too: a member's admin key may do nothing
	// until the principal has the admin role.
	if resp, body := adminDo(t, g, "GET", "/v1/teams", ak.Secret, "", nil); resp.StatusCode != 403 || !strings.Contains(string(body), "policy_denied") {
		t.Errorf("a member's admin key: %d %s", resp.StatusCode, body)
	}
	roles := []string{"admin"}
	if _, err := g.admin.UpdatePrincipal(ctx, "bot", client.PrincipalInput{Roles: &roles}, ""); err != nil {
		t.Fatal(err)
	}
	if resp, _ := adminDo(t, g, "GET", "/v1/teams", ak.Secret, "", nil); resp.StatusCode != 200 {
		t.Errorf("new admin key: %d", resp.StatusCode)
	}
	g.admin.RevokeKey(ctx, ak.ID, "")
	if resp, _ := adminDo(t, g, "GET", "/v1/teams", ak.Secret, "", nil); resp.StatusCode != 401 {
		t.Errorf("revoked admin key: %d", resp.StatusCode)
	}

	// ETag / If-Match on principals.
	resp, _ := adminDo(t, g, "GET", "/v1/principals/bot", g.adminKey, "", nil)
	etag := resp.Header.Get("ETag")
	if etag != `"2"` { // created, then given the admin role
		t.Fatalf("ETag = %q", etag)
	}
	resp, _ = adminDo(t, g, "PATCH", "/v1/principals/bot", g.adminKey, `{"roles":["member","lead"]}`, map[string]string{"If-Match": etag})
	if resp.StatusCode != 200 || resp.Header.Get("ETag") != `"3"` {
		t.Fatalf("PATCH with fresh If-Match: %d %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	resp, body := adminDo(t, g, "PATCH", "/v1/principals/bot", g.adminKey, `{"disabled":true}`, map[string]string{"If-Match": etag})
	if resp.StatusCode != 412 || !strings.Contains(string(body), "precondition_failed") {
		t.Fatalf("PATCH with stale If-Match: %d %s", resp.StatusCode, body)
	}
	// Strict bodies.
	resp, body = adminDo(t, g, "POST", "/v1/teams", g.adminKey, `{"nmae":"typo"}`, nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "nmae") {
		t.Errorf("unknown field: %d %s", resp.StatusCode, body)
	}
	// Conflicts and missing things.
	if _, err := g.admin.CreateTeam(ctx, "ops"); !isStatus(err, 409) {
		t.Errorf("duplicate team: %v", err)
	}
	if err := g.admin.DeleteTeam(ctx, team.ID, ""); !isStatus(err, 409) {
		t.Errorf("delete team in use: %v", err)
	}
	if _, err := g.admin.Key(ctx, "key_missing"); !isStatus(err, 404) {
		t.Errorf("missing key: %v", err)
	}
	for _, in := range []client.KeyInput{
		{Principal: "nobody"},
		{Principal: "bot", Scope: client.Scope{Endpoints: []string{"images"}}},
		{Principal: "bot", Scope: client.Scope{CIDRs: []string{"10.0.0.0/33"}}},
		{Principal: "bot", ExpiresIn: "-1h"},
	} {
		if _, err := g.admin.CreateKey(ctx, in); !isStatus(err, 400) {
			t.Errorf("CreateKey(%+v): %v, want 400", in, err)
		}
	}
	for _, in := range []client.ProviderInput{
		{Name: "x", Type: "gemini", Models: []string{"*"}},
		{Name: "x", Type: "openai", BaseURL: "ftp://host", Models: []string{"*"}},
		{Name: "x", Type: "openai", BaseURL: "https://user:pw@host", Models: []string{"*"}},
		{Name: "x", Type: "openai"},
	} {
		if _, err := g.admin.CreateProvider(ctx, in); !isStatus(err, 400) {
			t.Errorf("CreateProvider(%+v): %v, want 400", in, err)
		}
	}

	// Upstream keys go in and never come out.
	p, err := g.admin.CreateProvider(ctx, client.ProviderInput{Name: "oai", Type: "openai", Models: []string{"gpt-*"}, Keys: []string{"sk-live-DONOTSHOW-1234567890"}})
	if err != nil || p.BaseURL != "https://api.openai.com/v1" || len(p.Keys) != 1 {
		t.Fatalf("provider: %+v %v", p, err)
	}
	_, body = adminDo(t, g, "GET", "/v1/providers", g.adminKey, "", nil)
	if bytes.Contains(body, []byte("DONOTSHOW")) {
		t.Fatal("upstream key returned by the admin API")
	}
	ms, simulated, err := g.admin.Models(ctx)
	if err != nil || simulated {
		t.Fatalf("models after adding a provider: %v simulated=%v", ms, simulated)
	}

	// Prices: override, then the effective table shows it.
	if _, err := g.admin.SetPrice(ctx, client.Price{Model: "my-llama", Input: 100_000, Output: 200_000}); err != nil {
		t.Fatal(err)
	}
	ps, _ := g.admin.Prices(ctx)
	found := false
	for _, p := range ps {
		found = found || (p.Model == "my-llama" && p.Source == "override" && p.Output == 200_000)
	}
	if !found {
		t.Fatal("price override not in the table")
	}

	// The OpenAPI document is served, valid, and names every route.
	resp, body = adminDo(t, g, "GET", "/v1/openapi.json", "", "", nil)
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &doc) != nil || doc.OpenAPI == "" {
		t.Fatalf("openapi: %d", resp.StatusCode)
	}
	for _, route := range []string{"/v1/teams", "/v1/principals/{id}", "/v1/keys", "/v1/keys/{id}/revoke", "/v1/providers", "/v1/providers/{id}/keys",
		"/v1/models", "/v1/prices/{model}", "/v1/usage", "/v1/usage/summary", "/v1/budgets", "/v1/budgets/{id}", "/v1/spend",
		"/v1/limits", "/v1/limits/{id}", "/v1/keys/{id}/reinstate", "/v1/policies", "/v1/policies/history", "/v1/policies/rollback", "/v1/policies/whatif"} {
		if _, ok := doc.Paths[route]; !ok {
			t.Errorf("OpenAPI document lacks %s", route)
		}
	}
	if resp, _ := adminDo(t, g, "GET", "/readyz", "", "", nil); resp.StatusCode != 200 {
		t.Errorf("readyz: %d", resp.StatusCode)
	}
}

func isStatus(err error, status int) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == status
}

// runCLI runs the gatehouse command line against g.
func runCLI(t *testing.T, g *gateway, args ...string) (int, string, string) {
	t.Helper()
	return runCLIAt(t, "http://"+g.srv.AdminAddr(), g.adminKey, args...)
}

// runCLIAt runs the gatehouse command line against the admin API at addr.
func runCLIAt(t *testing.T, addr, adminKey string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{"GATEHOUSE_ADDR": addr, "GATEHOUSE_ADMIN_KEY": adminKey, "MY_UPSTREAM": upstreamKey}
	code := cli.Run(context.Background(), args, &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
	return code, out.String(), errb.String()
}

func TestCLI(t *testing.T) {
	t.Parallel() // independent (own gateway, store and upstream); mostly one core of work
	f := newFixture(t, gwOptions{})
	mustRun := func(args ...string) string {
		t.Helper()
		code, out, errs := runCLI(t, f.gateway, args...)
		if code != 0 {
			t.Fatalf("gatehouse %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		return out
	}
	mustRun("teams", "create", "platform")
	mustRun("principals", "create", "ci-bot", "--team", "platform")
	out := mustRun("keys", "create", "--principal", "ci-bot", "--models", "gpt-4o*", "--endpoints", "chat,models", "--expires-in", "720h", "--json")
	var created struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID == "" || !strings.HasPrefix(created.Key, "gk_") {
		t.Fatalf("keys create --json: %q", out)
	}
	oc := f.openai(created.Key)
	if _, err := oc.Chat.Completions.New(context.Background(), chatParams("gpt-4o", 2)); err != nil {
		t.Fatalf("CLI-made key: %v", err)
	}
	show := mustRun("keys", "show", created.ID)
	for _, want := range []string{created.ID, "gpt-4o*", "chat, models", "active"} {
		if !strings.Contains(show, want) {
			t.Errorf("keys show lacks %q:\n%s", want, show)
		}
	}
	if strings.Contains(show, created.Key) || strings.Contains(mustRun("keys", "list", "--json"), created.Key) {
		t.Fatal("a key's secret was printed after creation")
	}
	mustRun("providers", "add", "--name", "second", "--type", "openai", "--base-url", f.up.OpenAIBaseURL(), "--models", "o4-mini", "--key-env", "MY_UPSTREAM")
	if list := mustRun("providers", "list"); !strings.Contains(list, "second") || strings.Contains(list, upstreamKey) {
		t.Fatalf("providers list:\n%s", list)
	}
	var usage []map[string]any
	if err := json.Unmarshal([]byte(mustRun("usage", "--json", "--group-by", "model")), &usage); err != nil || len(usage) == 0 {
		t.Fatalf("usage --json: %v %v", usage, err)
	}
	mustRun("keys", "revoke", created.ID)
	if _, err := oc.Chat.Completions.New(context.Background(), chatParams("gpt-4o", 2)); err == nil {
		t.Fatal("revoked key still works")
	}
	mustRun("providers", "remove", "second")
	mustRun("prices", "set", "my-model", "--input", "0.50", "--output", "1.5")
	if p := mustRun("prices", "list"); !strings.Contains(p, "my-model") || !strings.Contains(p, "$1.50") {
		t.Fatalf("prices list:\n%s", p)
	}

	// Help and usage errors.
	if code, out, _ := runCLI(t, f.gateway, "--help"); code != 0 || !strings.Contains(out, "keys") || !strings.Contains(out, "serve") {
		t.Errorf("--help: %d\n%s", code, out)
	}
	if code, _, errs := runCLI(t, f.gateway, "keys", "create", "--help"); code != 0 || !strings.Contains(errs+"", "--principal") {
		t.Errorf("keys create --help: %d\n%s", code, errs)
	}
	if code, _, _ := runCLI(t, f.gateway, "keys", "frobnicate"); code != 2 {
		t.Errorf("unknown subcommand: exit %d, want 2", code)
	}
	if code, _, errs := runCLI(t, f.gateway, "keys", "show"); code != 2 || !strings.Contains(errs, "key id") {
		t.Errorf("missing argument: exit %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, f.gateway, "keys", "show", "key_nope"); code != 1 || !strings.Contains(errs, "404") {
		t.Errorf("missing key: exit %d %q", code, errs)
	}
}

// TestRecoverAdminKey: with the data directory and its KEK, an operator gets a
// working admin key back, even while the gateway runs.
func TestRecoverAdminKey(t *testing.T) {
	dir := t.TempDir() + "/data"
	g := startGateway(t, gwOptions{dataDir: dir})
	code, out, errs := runCLI(t, g, "recover-admin-key", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	key := strings.TrimSpace(out[strings.Index(out, "gka_"):])
	key = strings.Fields(key)[0]
	if resp, _ := adminDo(t, g, "GET", "/v1/teams", key, "", nil); resp.StatusCode != 200 {
		t.Fatalf("recovered key: %d", resp.StatusCode)
	}
	// The recovery is an admin record in the ledger.
	keys, err := client.New("http://"+g.srv.AdminAddr(), key).ListKeys(context.Background(), client.KeyFilter{Kind: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range keys {
		if k.Name != "recovered admin key" {
			continue
		}
		resp, body := adminDo(t, g, "GET", "/log/find/recover-admin-key-"+k.ID, "", "", nil)
		found = resp.StatusCode == 200 && regexp.MustCompile(`\[\d`).Match(body)
	}
	if !found {
		t.Fatalf("no ledger record of the recovery among %d admin keys", len(keys))
	}
	empty := t.TempDir()
	if code, _, errs := runCLI(t, g, "recover-admin-key", "--data-dir", empty); code == 0 || !strings.Contains(errs, "key-encryption key") {
		t.Fatalf("recovery without a KEK: exit %d %s", code, errs)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("a failed recovery left files behind: %v", entries)
	}
}
