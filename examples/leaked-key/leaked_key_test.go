// The incident Gatehouse exists for, end to end (see README.md): a key with a
// $10 hard budget leaks; an attacker bursts it; the budget holds; the
// spend-velocity breaker suspends it; 'gatehouse scan --revoke' finds it in a
// file and revokes it; the findings and the report show the episode; and the
// ledger proves every step, verified offline.
package leakedkey_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/cli"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/provider/providertest"
	"github.com/gatehouse-gw/gatehouse/internal/server"
)

const upstreamKey = "sk-upstream-example-0123456789"

func gatehouse(t *testing.T, addr, adminKey string, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{"GATEHOUSE_ADDR": addr, "GATEHOUSE_ADMIN_KEY": adminKey}
	code := cli.Run(context.Background(), args, &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
	return code, out.String() + errb.String()
}

func TestLeakedKeyIncident(t *testing.T) {
	ctx := context.Background()
	up := providertest.New(t, upstreamKey)
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Breaker.Ceiling = "0.002" // $0.002 per 5 minutes: far above this key's normal use (none)
	cfg.Audit.Interval = -1
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return logs.Write(p) }), nil))
	srv, err := server.Open(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { srv.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	adminURL, adminKey := "http://"+srv.AdminAddr(), srv.Bootstrap.AdminKey
	admin := client.New(adminURL, adminKey)

	// The setup: a provider, a team, an agent with a key capped at $10.
	if _, err := admin.CreateProvider(ctx, client.ProviderInput{Name: "openai", Type: "openai", BaseURL: up.OpenAIBaseURL(), Models: []string{"gpt-*"}, Keys: []string{upstreamKey}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	name, teams := "agent", []string{"research"}
	if _, err := admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Teams: &teams}); err != nil {
		t.Fatal(err)
	}
	key, err := admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: "agent key"})
	if err != nil {
		t.Fatal(err)
	}
	scope, period, limit, hard := "key", "month", int64(10_000_000), true
	if _, err := admin.CreateBudget(ctx, client.BudgetInput{Scope: &scope, ScopeID: &key.ID, Period: &period, LimitMicros: &limit, Hard: &hard}); err != nil {
		t.Fatal(err)
	}

	// The leak: the key is pasted into a file that ends up public.
	repo := t.TempDir()
	os.WriteFile(filepath.Join(repo, "settings.py"), []byte("DEBUG = True\nGATEHOUSE_KEY = \""+key.Secret+"\"\n"), 0o644)

	// The attack: first 20 concurrent calls each asking for 1.5M output
	// tokens ($15 of gpt-4o output, held before the call), then waves of 20
	// small ones, as a script draining a stolen key does.
	codes := map[string]int{}
	var mu sync.Mutex
	for wave := range 6 {
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				maxTokens := 1000
				if wave == 0 {
					maxTokens = 1_500_000
				}
				s, code := call(t, srv.DataAddr(), key.Secret, maxTokens)
				mu.Lock()
				codes[fmt.Sprintf("%d %s", s, code)]++
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	t.Logf("the attack: %v", codes)
	// The budget holds: a $15 hold cannot fit a $10 budget, so each of those
	// is refused before any upstream call.
	if codes["429 insufficient_quota"] != 20 {
		t.Errorf("the budget never refused a call: %v", codes)
	}
	// The breaker suspends the key: its spend jumped from nothing.
	if codes["403 key_suspended"] == 0 {
		t.Fatalf("the breaker never suspended the key: %v", codes)
	}
	if s, code := call(t, srv.DataAddr(), key.Secret, 10); s != 403 || code != "key_suspended" {
		t.Fatalf("after the attack: %d %s", s, code)
	}
	spend, err := admin.Spend(ctx, key.ID, "", "")
	if err != nil || len(spend) != 1 {
		t.Fatalf("spend: %v %v", spend, err)
	}
	if spend[0].Spent+spend[0].Reserved > limit {
		t.Fatalf("spent %d micros against a %d budget", spend[0].Spent, limit)
	}

	// The scan finds the key in the file and revokes it (exit status 1: a key was found).
	code, out := gatehouse(t, adminURL, adminKey, "scan", "--revoke", repo)
	if code != 1 || !strings.Contains(out, "settings.py:2") || !strings.Contains(out, key.ID) || !strings.Contains(out, "REVOKED") || strings.Contains(out, key.Secret) {
		t.Fatalf("scan: exit %d\n%s", code, out)
	}
	if k, _ := admin.Key(ctx, key.ID); k.RevokedAt == nil {
		t.Fatal("the scan did not revoke the key")
	}
	if s, code := call(t, srv.DataAddr(), key.Secret, 10); s != 401 {
		t.Fatalf("the revoked key: %d %s", s, code)
	}

	// The findings show the episode.
	if code, out := gatehouse(t, adminURL, adminKey, "findings", "run"); code != 0 {
		t.Fatalf("findings run: %s", out)
	}
	code, out = gatehouse(t, adminURL, adminKey, "findings", "list", "--severity", "high", "--subject", key.ID)
	if code != 0 || !strings.Contains(out, "keys.leaked") || !strings.Contains(out, "usage.breaker_tripped") {
		t.Fatalf("findings list:\n%s", out)
	}
	// The report shows it too.
	code, out = gatehouse(t, adminURL, adminKey, "audit", "report", "--since", "1d")
	if code != 0 || !strings.Contains(out, "keys.leaked") || !strings.Contains(out, "usage.breaker_tripped") || !strings.Contains(out, "revoked") && !strings.Contains(out, "agent key") {
		t.Fatalf("report:\n%s", out)
	}

	// An evidence bundle carries the proofs to an auditor (its export signs a
	// checkpoint over every record so far).
	dir := t.TempDir()
	zipPath := filepath.Join(dir, "evidence.zip")
	if code, out := gatehouse(t, adminURL, adminKey, "audit", "evidence", "--since", "1d", "-o", zipPath); code != 0 {
		t.Fatalf("evidence: %s", out)
	}
	// The ledger proves every step: the refused calls, the suspension, the
	// revocation and the findings are records in a log that verifies.
	vk, err := get(adminURL + "/log/key")
	if err != nil {
		t.Fatal(err)
	}
	if code, out := gatehouse(t, adminURL, adminKey, "audit", "verify", "--url", adminURL+"/log", "--key", strings.TrimSpace(vk), "--state", filepath.Join(dir, "state")); code != 0 {
		t.Fatalf("audit verify: %s", out)
	}
	kinds := map[string]int{}
	src := ledger.HTTPSource{Base: adminURL + "/log"}
	cp, _ := src.Checkpoint(ctx)
	c, err := ledger.OpenCheckpoint(cp, strings.TrimSpace(vk))
	if err != nil {
		t.Fatal(err)
	}
	for from := int64(0); from < c.Size; from += 256 {
		entries, err := src.Entries(ctx, from, min(from+256, c.Size))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			r, err := ledger.ParseRecord(e)
			if err != nil || r.KeyID != key.ID {
				continue
			}
			switch {
			case r.Kind == ledger.KindCallEnd && r.ErrorCode == "insufficient_quota":
				kinds["budget refused"]++
			case r.Kind == ledger.KindBreaker:
				kinds["suspended"]++
			case r.Action == "keys.revoke_leaked":
				kinds["revoked as leaked"]++
			case r.Kind == "finding" && r.Action == "finding.open":
				kinds["finding opened"]++
			}
		}
	}
	t.Logf("the ledger: %v", kinds)
	for _, step := range []string{"budget refused", "suspended", "revoked as leaked", "finding opened"} {
		if kinds[step] == 0 {
			t.Errorf("the ledger does not show %q: %v", step, kinds)
		}
	}
	if code, out := gatehouse(t, "", "", "audit", "verify", "--bundle", zipPath, "--key", strings.TrimSpace(vk), "--state", filepath.Join(dir, "none")); code != 0 {
		t.Fatalf("verify --bundle: %s", out)
	}
	logMu.Lock()
	leakedToLog := strings.Contains(logs.String(), key.Secret)
	logMu.Unlock()
	if leakedToLog {
		t.Fatal("the key reached the gateway's logs")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// call makes a chat completion asking for maxTokens output tokens; it returns
// the status and the error code.
func call(t *testing.T, addr, key string, maxTokens int) (int, string) {
	body := fmt.Sprintf(`{"model":"gpt-4o","messages":[{"role":"user","content":"exfiltrate"}],"max_tokens":%d}`, maxTokens)
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	cl := &http.Client{Timeout: 30 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	jsonDecode(b, &e)
	return resp.StatusCode, e.Error.Code
}

func get(u string) (string, error) {
	resp, err := http.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func jsonDecode(b []byte, v any) { _ = json.Unmarshal(b, v) }
