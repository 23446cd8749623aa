package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/provider/providertest"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
)

// The attack of the incident: one key, a hard budget worth ten calls, 200
// concurrent calls.
const (
	attackCalls   = 200 // hundreds at once, as in the incident; far more than the ten the budget covers
	attackBody    = `{"model":"gpt-4o","max_tokens":400,"messages":[{"role":"user","content":"Write a long essay about governance gateways."}]}`
	streamBody    = `{"model":"gpt-4o","max_tokens":400,"stream":true,"messages":[{"role":"user","content":"Write a long essay about governance gateways."}]}`
	gpt4oIn       = 2_500_000 // micros per Mtok
	gpt4oOut      = 10_000_000
	callsAffected = 10
)

// worstCase is what the gateway reserves for attackBody: a chat call that
// names no standard service tier is held at the priority rate (twice the
// price), since the project's default tier may be priority.
func worstCase(body string) int64 {
	in := proxy.InputUpperBound([]byte(body))
	w := (in*gpt4oIn + 400*gpt4oOut + 999_999) / 1_000_000
	if !strings.Contains(body, `"service_tier":"default"`) {
		w *= 2
	}
	return w
}

type attackResult struct {
	ok, refused, other atomic.Int64
}

// attack fires n calls at once at every gateway URL in turn. With a gate, the
// upstream holds its answers until every call has either been refused or
// reached it, so that no settlement frees money while calls still arrive.
func attack(t *testing.T, urls []string, key, body string, n int, disconnectEvery int, up *providertest.Server, gate chan struct{}) *attackResult {
	t.Helper()
	res := &attackResult{}
	if gate != nil {
		base := up.Calls.Load()
		go func() {
			deadline := time.Now().Add(60 * time.Second)
			for res.refused.Load()+res.other.Load()+up.Calls.Load()-base < int64(n) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			close(gate)
		}()
	}
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", urls[i%len(urls)]+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := c.Do(req)
			if err != nil {
				res.other.Add(1)
				return
			}
			defer resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				if disconnectEvery > 0 && i%disconnectEvery == 0 {
					buf := make([]byte, 256)
					resp.Body.Read(buf)
					cancel() // the caller walks away mid-stream
				} else {
					io.Copy(io.Discard, resp.Body)
				}
				res.ok.Add(1)
			case 429:
				b, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(b), "insufficient_quota") {
					t.Errorf("429 without insufficient_quota: %s", b)
				}
				res.refused.Add(1)
			default:
				b, _ := io.ReadAll(resp.Body)
				t.Errorf("status %d: %s", resp.StatusCode, b)
				res.other.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return res
}

// waitSettled waits until nothing is reserved on budget id any more.
func waitSettled(t *testing.T, adm *client.Client, id string) client.Budget {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := adm.Budget(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if b.Reserved == 0 || time.Now().After(deadline) {
			return b
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func setBudget(t *testing.T, adm *client.Client, keyID string, limit int64, clamp bool) client.Budget {
	t.Helper()
	scope, period, hard := "key", "day", true
	b, err := adm.CreateBudget(context.Background(), client.BudgetInput{Scope: &scope, ScopeID: &keyID, Period: &period, LimitMicros: &limit, Hard: &hard, Clamp: &clamp})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBudgetHoldsUnderAttack: proof 1 and 2 of issue #3, on every backend.
func TestBudgetHoldsUnderAttack(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			for _, mode := range []struct {
				name       string
				body       string
				fault      sim.Fault
				disconnect int
			}{
				{"json", attackBody, sim.Fault{}, 0},
				{"stream", streamBody, sim.Fault{}, 0},
				{"stream-no-usage-and-disconnects", streamBody, sim.Fault{NoUsage: true, ChunkDelay: time.Millisecond}, 3},
			} {
				t.Run(mode.name, func(t *testing.T) {
					f := newFixture(t, gwOptions{database: dsn(t), mutate: patient})
					worst := worstCase(mode.body)
					limit := worst*callsAffected + worst/2 // room for ten and a half worst cases
					b := setBudget(t, f.admin, f.keyID, limit, false)
					gate := make(chan struct{})
					fault := mode.fault
					fault.Gate = gate
					f.up.SetFault(fault)
					calls0 := f.up.Calls.Load()
					res := attack(t, []string{f.dataURL}, f.key, mode.body, attackCalls, mode.disconnect, f.up, gate)
					after := waitSettled(t, f.admin, b.ID)
					t.Logf("%s: %d admitted, %d refused; spent %d of %d micros (worst case %d a call)",
						mode.name, res.ok.Load(), res.refused.Load(), after.Spent, limit, worst)
					if after.Reserved != 0 {
						t.Fatalf("%d micros still reserved after every call ended", after.Reserved)
					}
					if after.Spent > limit {
						t.Fatalf("OVERSHOOT: spent %d micros of a %d budget", after.Spent, limit)
					}
					// Every call was attempted while the admitted ones were still in
					// flight (the gate), so exactly the calls whose worst case fits
					// were admitted, and every other was refused.
					if res.ok.Load() != callsAffected || res.refused.Load() != attackCalls-callsAffected {
						t.Fatalf("admitted %d, refused %d; want %d and %d", res.ok.Load(), res.refused.Load(), callsAffected, attackCalls-callsAffected)
					}
					if got := f.up.Calls.Load() - calls0; got != callsAffected {
						t.Fatalf("the upstream saw %d calls; refused calls must never reach it", got)
					}
					// Spend equals what the usage records say, in integer micros
					// (disconnected streams: their whole reservation).
					recs := f.usageOf(t, f.keyID, attackCalls)
					var sum int64
					for _, r := range recs {
						switch {
						case r.Status == 200:
							sum += r.CostMicros
						case r.ErrorCode == "client_closed":
							sum += max(worst, r.CostMicros)
						}
					}
					if sum != after.Spent {
						t.Fatalf("spent %d, usage records add up to %d", after.Spent, sum)
					}
				})
			}
		})
	}
}

// TestBudgetTwoReplicas: proof 3: two gateways on one PostgreSQL, attacked
// together, hold one budget.
func TestBudgetTwoReplicas(t *testing.T) {
	dsn := backends(t)["postgres"](t)
	t.Setenv("GATEHOUSE_KEK", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=")
	a := newFixture(t, gwOptions{database: dsn, mutate: patient})
	b := startGateway(t, gwOptions{database: dsn, mutate: patient})
	worst := worstCase(attackBody)
	limit := worst*callsAffected + worst/2
	bud := setBudget(t, a.admin, a.keyID, limit, false)
	b.srv.Reload(context.Background()) // replica B has the budget before the attack (as its change listener would soon give it)
	gate := make(chan struct{})
	a.up.SetFault(sim.Fault{Gate: gate})
	res := attack(t, []string{a.dataURL, b.dataURL}, a.key, attackBody, attackCalls, 0, a.up, gate)
	after := waitSettled(t, a.admin, bud.ID)
	t.Logf("two replicas: %d admitted, %d refused, spent %d of %d", res.ok.Load(), res.refused.Load(), after.Spent, limit)
	if after.Spent > limit || after.Reserved != 0 {
		t.Fatalf("OVERSHOOT across replicas: spent %d reserved %d of %d", after.Spent, after.Reserved, limit)
	}
	if res.ok.Load() != callsAffected {
		t.Fatalf("admitted %d across replicas, want %d", res.ok.Load(), callsAffected)
	}
}

// TestBudgetClampAndMessages: a clamp budget lowers max_tokens to fit; a hard
// budget's refusal names the budget; an unpriced model cannot pass a hard budget.
func TestBudgetClampAndMessages(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	worst := worstCase(attackBody)
	limit := worst / 2
	b := setBudget(t, f.admin, f.keyID, limit, true)
	oc := f.openai(f.key)
	resp, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o", MaxTokens: openai.Int(400),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Write a long essay about governance gateways.")}})
	if err != nil {
		t.Fatalf("clamped call: %v", err)
	}
	last := f.up.Requests()[len(f.up.Requests())-1]
	var sent struct {
		MaxTokens int64 `json:"max_tokens"`
	}
	json.Unmarshal(last.Body, &sent)
	in := proxy.InputUpperBound(last.Body) // the gateway's own body differs from ours only in max_tokens
	if sent.MaxTokens < 1 || sent.MaxTokens >= 400 || (in*gpt4oIn+sent.MaxTokens*gpt4oOut+999_999)/1_000_000 > limit+10 {
		t.Fatalf("clamp: upstream got max_tokens %d for a %d-micro budget: %s", sent.MaxTokens, limit, last.Body)
	}
	if resp.Usage.CompletionTokens > sent.MaxTokens {
		t.Fatalf("%d tokens over a cap of %d", resp.Usage.CompletionTokens, sent.MaxTokens)
	}
	after := waitSettled(t, f.admin, b.ID)
	if after.Spent > limit {
		t.Fatalf("clamped spend %d over %d", after.Spent, limit)
	}

	// Make the budget hard without clamp, and exhaust it.
	no := false
	tiny := int64(10)
	if _, err := f.admin.UpdateBudget(ctx, b.ID, client.BudgetInput{Clamp: &no, LimitMicros: &tiny}, ""); err != nil {
		t.Fatal(err)
	}
	_, err = oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 100))
	var e *openai.Error
	if !errors.As(err, &e) || e.StatusCode != 429 || e.Code != "insufficient_quota" || e.Type != "insufficient_quota" ||
		!strings.Contains(e.Message, b.ID) || !strings.Contains(e.Message, "key "+f.keyID) {
		t.Fatalf("refusal: %v", err)
	}
	// An unpriced model cannot be bounded by a hard budget.
	if _, err := f.admin.CreateProvider(ctx, client.ProviderInput{Name: "local", Type: "openai", BaseURL: f.up.OpenAIBaseURL(), Models: []string{"llama-local"}}); err != nil {
		t.Fatal(err)
	}
	_, err = oc.Chat.Completions.New(ctx, chatParams("llama-local", 10))
	if s, c := openAIStatus(t, err); s != 403 || c != "model_unpriced" {
		t.Fatalf("unpriced model under a hard budget: %d %q", s, c)
	}
}

// TestBudgetAlerts: soft budgets alert once per period per threshold, signed.
func TestBudgetAlerts(t *testing.T) {
	hook := newWebhook(t)
	t.Setenv("GATEHOUSE_ALERT_WEBHOOK_SECRET", "whsec-test")
	f := newFixture(t, gwOptions{mutate: func(c *configT) { c.AlertWebhookURL = hook.url }})
	ctx := context.Background()
	scope, period, soft, limit := "org", "month", false, int64(200)
	thresholds := []int{50, 100}
	if _, err := f.admin.CreateBudget(ctx, client.BudgetInput{Scope: &scope, Period: &period, Hard: &soft, LimitMicros: &limit, Thresholds: &thresholds}); err != nil {
		t.Fatal(err)
	}
	oc := f.openai(f.key)
	for range 6 {
		if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 20)); err != nil {
			t.Fatalf("a soft budget refused a call: %v", err)
		}
	}
	got := hook.wait(t, 2)
	if len(got) != 2 || got[0]["kind"] != "budget_threshold" {
		t.Fatalf("alerts: %v", got)
	}
	th := map[float64]bool{}
	for _, a := range got {
		th[a["details"].(map[string]any)["threshold_percent"].(float64)] = true
	}
	if !th[50] || !th[100] {
		t.Fatalf("thresholds fired: %v", th)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(hook.all()); n != 2 {
		t.Fatalf("%d alerts; each threshold must fire once a period", n)
	}
}

// TestBudgetCLI: budgets, spend and limits through the command line.
func TestBudgetCLI(t *testing.T) {
	f := newFixture(t, gwOptions{})
	run := func(args ...string) string {
		t.Helper()
		code, out, errs := runCLI(t, f.gateway, args...)
		if code != 0 {
			t.Fatalf("gatehouse %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		return out
	}
	var b client.Budget
	if err := json.Unmarshal([]byte(run("budgets", "set", "--key", f.keyID, "--limit", "1.50", "--period", "month", "--tz", "Europe/Berlin", "--json")), &b); err != nil {
		t.Fatal(err)
	}
	if b.LimitMicros != 1_500_000 || !b.Hard || b.TimeZone != "Europe/Berlin" || b.Remaining != 1_500_000 {
		t.Fatalf("budget: %+v", b)
	}
	run("budgets", "set", "--team", "research", "--model", "gpt-*", "--limit", "100", "--period", "week", "--soft")
	oc := f.openai(f.key)
	if _, err := oc.Chat.Completions.New(context.Background(), chatParams("gpt-4o", 5)); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, f.admin, b.ID) // settlement follows the response
	var spend []client.Budget
	if err := json.Unmarshal([]byte(run("spend", "--key", f.keyID, "--json")), &spend); err != nil || len(spend) != 2 {
		t.Fatalf("spend --key: %v %+v", err, spend)
	}
	for _, s := range spend {
		if s.Spent <= 0 || s.Remaining != s.LimitMicros-s.Spent-s.Reserved {
			t.Fatalf("spend row %+v", s)
		}
	}
	if out := run("budgets", "list"); !strings.Contains(out, "hard") || !strings.Contains(out, "soft") || !strings.Contains(out, "$1.50") {
		t.Fatalf("budgets list:\n%s", out)
	}
	if code, _, _ := runCLI(t, f.gateway, "budgets", "set", "--key", f.keyID, "--org", "--limit", "1", "--period", "day"); code != 2 {
		t.Fatal("two scopes accepted")
	}
	if code, _, errs := runCLI(t, f.gateway, "budgets", "set", "--org", "--limit", "1", "--period", "fortnight"); code != 1 || !strings.Contains(errs, "period") {
		t.Fatalf("bad period: %d %s", code, errs)
	}
	run("limits", "set", "--principal", "agent", "--rpm", "100", "--concurrent", "2")
	if out := run("limits", "list"); !strings.Contains(out, "100") {
		t.Fatalf("limits list:\n%s", out)
	}
	run("budgets", "delete", b.ID)
}

// TestKeyMaxAgeAndWarnings: with a maximum key age, new keys get an expiry
// and owners are warned once before keys expire.
func TestKeyMaxAgeAndWarnings(t *testing.T) {
	hook := newWebhook(t)
	t.Setenv("GATEHOUSE_ALERT_WEBHOOK_SECRET", "whsec-test")
	f := newFixture(t, gwOptions{mutate: func(c *configT) {
		c.AlertWebhookURL = hook.url
		c.Keys.MaxAge = config.Duration(24 * time.Hour)
		c.Keys.ExpiryWarning = config.Duration(48 * time.Hour)
		c.Keys.CheckInterval = config.Duration(100 * time.Millisecond)
	}})
	k, err := f.admin.Key(context.Background(), f.keyID)
	if err != nil || k.ExpiresAt == nil || time.Until(*k.ExpiresAt) > 24*time.Hour || time.Until(*k.ExpiresAt) < 23*time.Hour {
		t.Fatalf("a new key under max_age 24h: %+v %v", k.ExpiresAt, err)
	}
	got := hook.wait(t, 2)
	time.Sleep(300 * time.Millisecond) // more checks run: still one alert per key
	seen := map[string]int{}
	for _, a := range hook.all() {
		if a["kind"] == "key_expiring" {
			seen[a["details"].(map[string]any)["key_id"].(string)]++
		}
	}
	if seen[f.keyID] != 1 || len(got) < 2 {
		t.Fatalf("expiry warnings: %v", seen)
	}
}

// TestTeamMaxKeyAge: a team's maximum key age caps the expiry of its new keys
// and applies at once to its existing keys; clearing it restores them.
func TestTeamMaxKeyAge(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	hour, second, zero := "1h", "1s", "0s"
	team, err := f.admin.UpdateTeam(ctx, "research", client.TeamInput{MaxKeyAge: &hour}, "")
	if err != nil || team.MaxKeyAge != "1h0m0s" {
		t.Fatalf("set max key age: %+v %v", team, err)
	}
	k, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: "capped", ExpiresIn: "720h"})
	if err != nil || k.ExpiresAt == nil || time.Until(*k.ExpiresAt) > time.Hour {
		t.Fatalf("a new key under the team's 1h: %+v %v", k.ExpiresAt, err)
	}
	if s, _ := chatWith(t, f.dataURL, "Bearer "+f.key, ""); s != 200 {
		t.Fatalf("the fixture key under 1h: %d", s)
	}
	if _, err := f.admin.UpdateTeam(ctx, "research", client.TeamInput{MaxKeyAge: &second}, ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the fixture key is now older than 1 s
	if s, c := chatWith(t, f.dataURL, "Bearer "+f.key, ""); s != 401 || c != "key_expired" {
		t.Fatalf("a key older than its team's maximum age: %d %q", s, c)
	}
	if _, err := f.admin.UpdateTeam(ctx, "research", client.TeamInput{MaxKeyAge: &zero}, ""); err != nil {
		t.Fatal(err)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+f.key, ""); s != 200 {
		t.Fatalf("after the team's limit was cleared: %d %q", s, c)
	}
	half := "1500ms"
	if _, err := f.admin.UpdateTeam(ctx, "research", client.TeamInput{MaxKeyAge: &half}, ""); !isStatus(err, 400) {
		t.Fatalf("a fractional key age: %v, want 400", err)
	}
}
