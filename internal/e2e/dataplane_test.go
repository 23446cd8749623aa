package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/provider/providertest"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
)

// attempts counts the HTTP requests an SDK makes (each retry is one).
type attempts struct {
	n    atomic.Int64
	mu   sync.Mutex
	last http.Header
}

func (a *attempts) RoundTrip(r *http.Request) (*http.Response, error) {
	a.n.Add(1)
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		a.mu.Lock()
		a.last = resp.Header.Clone()
		a.mu.Unlock()
	}
	return resp, err
}

func (a *attempts) lastHeader() http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// retryingClients returns both official SDKs with their default retry
// behaviour (two retries), counting attempts.
func (f *fixture) retryingClients(key string) (openai.Client, anthropic.Client, *attempts) {
	a := &attempts{}
	hc := &http.Client{Transport: a}
	oc := openai.NewClient(option.WithBaseURL(f.dataURL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(2), option.WithHTTPClient(hc))
	ac := anthropic.NewClient(aoption.WithBaseURL(f.dataURL+"/"), aoption.WithAPIKey(key), aoption.WithMaxRetries(2), aoption.WithHTTPClient(hc))
	return oc, ac, a
}

func anthropicParams(model string, maxTokens int64) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: maxTokens,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("What is a transparency log?"))}}
}

// TestBudgetRefusalNotRetried: a budget refusal (429 insufficient_quota)
// carries x-should-retry: false, so both official SDKs, left at their default
// of retrying 429s, make exactly one attempt.
func TestBudgetRefusalNotRetried(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	setBudget(t, f.admin, f.keyID, 1, false) // one micro-dollar: every call is refused
	oc, ac, n := f.retryingClients(f.key)

	_, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 50))
	if s, c := openAIStatus(t, err); s != 429 || c != "insufficient_quota" {
		t.Fatalf("OpenAI SDK: %d %q", s, c)
	}
	if got := n.n.Load(); got != 1 {
		t.Fatalf("OpenAI SDK made %d attempts at a budget refusal, want 1", got)
	}
	if h := n.lastHeader(); h.Get("x-should-retry") != "false" {
		t.Fatalf("refusal headers: %v", h)
	}

	n.n.Store(0)
	_, err = ac.Messages.New(ctx, anthropicParams("claude-sonnet-4-5", 50))
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 429 {
		t.Fatalf("Anthropic SDK: %v", err)
	}
	if got := n.n.Load(); got != 1 {
		t.Fatalf("Anthropic SDK made %d attempts at a budget refusal, want 1", got)
	}
	if f.up.Calls.Load() != 0 {
		t.Fatalf("the upstream was called %d times", f.up.Calls.Load())
	}
}

// TestRateLimitRetried: a rate-limit 429 keeps Retry-After and no
// x-should-retry: false, so the SDK waits and retries, and succeeds once the
// slot frees.
func TestRateLimitRetried(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	if _, err := f.admin.SetLimit(ctx, client.Limit{Scope: "key", ScopeID: f.keyID, Concurrent: 1}); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	f.up.SetFault(sim.Fault{Gate: gate})
	held := holdTheSlot(t, f, func() error {
		oc := f.openai(f.key)
		_, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 5))
		return err
	})
	resp := postChat(t, f.dataURL, f.key)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("x-should-retry") == "false" {
		t.Fatalf("rate-limited call: %d %v", resp.StatusCode, resp.Header)
	}
	go func() { time.Sleep(300 * time.Millisecond); close(gate) }() // frees the slot before the SDK's retry
	oc, _, na := f.retryingClients(f.key)
	if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 5)); err != nil {
		t.Fatalf("the SDK did not get through after retrying: %v", err)
	}
	if got := na.n.Load(); got < 2 {
		t.Fatalf("the SDK made %d attempts; the first was refused, so it must have retried", got)
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}

	// The same with the Anthropic SDK.
	gate = make(chan struct{})
	f.up.SetFault(sim.Fault{Gate: gate})
	held = holdTheSlot(t, f, func() error {
		ac := f.anthropic(f.key)
		_, err := ac.Messages.New(ctx, anthropicParams("claude-sonnet-4-5", 5))
		return err
	})
	go func() { time.Sleep(300 * time.Millisecond); close(gate) }()
	_, ac, n := f.retryingClients(f.key)
	if _, err := ac.Messages.New(ctx, anthropicParams("claude-sonnet-4-5", 5)); err != nil {
		t.Fatalf("the Anthropic SDK did not get through after retrying: %v", err)
	}
	if got := n.n.Load(); got < 2 {
		t.Fatalf("the Anthropic SDK made %d attempts; the first was refused, so it must have retried", got)
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// holdTheSlot starts call in the background and returns once it has reached
// the upstream (which holds it at the fixture's gate), so it occupies the
// key's only concurrency slot. The previous call's slot is released just
// after its response reached the client, so a start refused with 429 in that
// window is tried again; anything else, or no progress within 15 s, fails the
// test instead of waiting for ever.
func holdTheSlot(t *testing.T, f *fixture, call func() error) chan error {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		base := f.up.Calls.Load()
		held := make(chan error, 1)
		go func() { held <- call() }()
		if reachedUpstream(f, base, held, deadline, t) {
			return held
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the call meant to hold the slot never reached the upstream")
	return nil
}

// reachedUpstream waits until the upstream has seen more than base calls
// (true) or the call was refused with 429 (false); any other end fails t.
func reachedUpstream(f *fixture, base int64, held chan error, deadline time.Time, t *testing.T) bool {
	t.Helper()
	for f.up.Calls.Load() == base && time.Now().Before(deadline) {
		select {
		case err := <-held:
			if err == nil || !strings.Contains(err.Error(), "429") {
				t.Fatalf("the call meant to hold the slot ended before reaching the upstream: %v", err)
			}
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	return f.up.Calls.Load() != base
}

// TestUpstreamErrorsKeepMeaning: 529 stays 529 on Anthropic routes, 503 stays
// 503, and the upstream's retry hints reach the caller for 429, 503 and 529.
func TestUpstreamErrorsKeepMeaning(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	anth := map[string]string{"x-api-key": f.key, "anthropic-version": "2023-06-01"}
	msgBody := `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	chatBody := `{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`

	f.up.SetFault(sim.Fault{Status: 529, RetryAfter: "3", RetryAfterMs: "2500"})
	status, body, hdr := rawCall(t, f.dataURL+"/v1/messages", "", msgBody, anth)
	if et, _ := body["error"].(map[string]any)["type"].(string); status != 529 || et != "overloaded_error" || hdr.Get("Retry-After") != "3" || hdr.Get("retry-after-ms") != "2500" {
		t.Fatalf("Anthropic 529: %d %v %v", status, body, hdr)
	}
	// The SDK sees Anthropic's overloaded error.
	ac := f.anthropic(f.key)
	_, err := ac.Messages.New(ctx, anthropicParams("claude-sonnet-4-5", 5))
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 529 || !strings.Contains(ae.RawJSON(), "overloaded_error") {
		t.Fatalf("Anthropic SDK on 529: %v", err)
	}

	f.up.SetFault(sim.Fault{Status: 503, RetryAfter: "Wed, 21 Oct 2026 07:28:00 GMT"})
	status, body, hdr = rawCall(t, f.dataURL+"/v1/chat/completions", f.key, chatBody, nil)
	if status != 503 || errCode(body) != "upstream_overloaded" || hdr.Get("Retry-After") != "Wed, 21 Oct 2026 07:28:00 GMT" {
		t.Fatalf("OpenAI 503: %d %v %v", status, body, hdr)
	}
	f.up.SetFault(sim.Fault{Status: 429, RetryAfter: "17"})
	status, body, hdr = rawCall(t, f.dataURL+"/v1/chat/completions", f.key, chatBody, nil)
	if status != 429 || errCode(body) != "upstream_rate_limited" || hdr.Get("Retry-After") != "17" || hdr.Get("x-should-retry") != "" {
		t.Fatalf("OpenAI 429: %d %v %v", status, body, hdr)
	}
	// A malformed hint is dropped, not relayed.
	f.up.SetFault(sim.Fault{Status: 429, RetryAfter: "soon; evil=1", RetryAfterMs: "1e9"})
	_, _, hdr = rawCall(t, f.dataURL+"/v1/chat/completions", f.key, chatBody, nil)
	if hdr.Get("Retry-After") != "" || hdr.Get("retry-after-ms") != "" {
		t.Fatalf("malformed hints relayed: %v", hdr)
	}
	// 500 is still a 502.
	f.up.SetFault(sim.Fault{Status: 500})
	if status, body, _ = rawCall(t, f.dataURL+"/v1/messages", "", msgBody, anth); status != 502 {
		t.Fatalf("Anthropic 500: %d %v", status, body)
	}
	f.up.SetFault(sim.Fault{})
}

// TestCountTokens: the Anthropic SDK's Messages.CountTokens is routed, scoped
// and policy-checked like messages, recorded, and spends nothing, even on a
// key whose hard budget is spent.
func TestCountTokens(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, gwOptions{database: dsn(t)})
			ctx := context.Background()
			ac := f.anthropic(f.key)
			msgs := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("What is a transparency log? Answer in one line."))}
			cnt, err := ac.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "claude-sonnet-4-5", Messages: msgs})
			if err != nil {
				t.Fatal(err)
			}
			msg, err := ac.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 5, Messages: msgs})
			if err != nil {
				t.Fatal(err)
			}
			if cnt.InputTokens == 0 || cnt.InputTokens != msg.Usage.InputTokens {
				t.Fatalf("count_tokens said %d, messages billed %d", cnt.InputTokens, msg.Usage.InputTokens)
			}
			var sawPath bool
			for _, r := range f.up.Requests() {
				if r.Path == "/v1/messages/count_tokens" {
					sawPath = true
					if r.Header.Get("x-api-key") != upstreamKey || strings.Contains(string(r.Body), f.key) {
						t.Fatal("count_tokens went upstream without the provider key, or with the caller's")
					}
				}
			}
			if !sawPath {
				t.Fatal("the upstream never saw /v1/messages/count_tokens")
			}

			// Recorded, no spend.
			recs := f.usageOf(t, f.keyID, 2)
			var ct *client.UsageRecord
			for i := range recs {
				if recs[i].Endpoint == "count_tokens" {
					ct = &recs[i]
				}
			}
			if ct == nil || ct.Status != 200 || ct.CostMicros != 0 || ct.Model != "claude-sonnet-4-5" || ct.Provider != "fake-anthropic" {
				t.Fatalf("count_tokens record: %+v", ct)
			}

			// A spent hard budget does not stop counting (it costs nothing).
			b := setBudget(t, f.admin, f.keyID, 1, false)
			if _, err := ac.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "claude-sonnet-4-5", Messages: msgs}); err != nil {
				t.Fatalf("count_tokens under a spent budget: %v", err)
			}
			if got, err := f.admin.Budget(ctx, b.ID); err != nil || got.Spent != b.Spent || got.Reserved != 0 {
				t.Fatalf("budget after count_tokens: %+v %v", got, err)
			}

			// Scoped: a key without the messages endpoint, or without the model.
			for _, sc := range []client.Scope{{Endpoints: []string{"chat"}}, {Models: []string{"claude-haiku-*"}}} {
				k, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Scope: sc})
				if err != nil {
					t.Fatal(err)
				}
				kc := f.anthropic(k.Secret)
				_, err = kc.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "claude-sonnet-4-5", Messages: msgs})
				if !errors.As(err, new(*anthropic.Error)) || err.(*anthropic.Error).StatusCode != 403 {
					t.Fatalf("scope %+v: %v", sc, err)
				}
			}
		})
	}
}

// TestUpstreamRedirectNotFollowed: an upstream that redirects gets a 502; the
// redirect target never sees the request or the provider key.
func TestUpstreamRedirectNotFollowed(t *testing.T) {
	f := newFixture(t, gwOptions{})
	var seen atomic.Int64
	trap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen.Add(1) }))
	defer trap.Close()
	for _, c := range []struct{ path, key, body string }{
		{"/v1/chat/completions", f.key, `{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/messages", "", `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`},
	} {
		f.up.SetFault(sim.Fault{Redirect: trap.URL + "/collect"})
		status, body, hdr := rawCall(t, f.dataURL+c.path, c.key, c.body, map[string]string{"x-api-key": f.key})
		if status != 502 || hdr.Get("x-should-retry") != "false" || !strings.Contains(jsonString(body), "redirect") {
			t.Fatalf("%s: %d %v", c.path, status, body)
		}
	}
	if seen.Load() != 0 {
		t.Fatalf("the redirect was followed %d times", seen.Load())
	}
	recs := f.usageOf(t, f.keyID, 2)
	for _, r := range recs {
		if r.ErrorCode != "upstream_redirect" || r.CostMicros != 0 {
			t.Fatalf("record %+v", r)
		}
	}
}

// TestUpstreamEchoedKeyScrubbed: an upstream that quotes the provider key it
// was given (in message, type, code and param) — a key of no known shape —
// leaks none of it to the caller or the log.
func TestUpstreamEchoedKeyScrubbed(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	plain := "Zq8vLm3Np7Rt5Xw2Ky9Hb4Jd6Fg1Sc0A" // no prefix the generic scrubber knows
	up := providertest.New(t, plain)
	up.SetFault(sim.Fault{EchoKey: true})
	if _, err := f.admin.CreateProvider(ctx, client.ProviderInput{Name: "echoing", Type: "openai", BaseURL: up.OpenAIBaseURL(), Models: []string{"echo-model"}, Keys: []string{plain}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.CreateProvider(ctx, client.ProviderInput{Name: "echoing-anthropic", Type: "anthropic", BaseURL: up.URL, Models: []string{"echo-claude"}, Keys: []string{plain}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"echo-model","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/messages", `{"model":"echo-claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`},
	} {
		status, body, _ := rawCall(t, f.dataURL+c.path, f.key, c.body, map[string]string{"x-api-key": f.key})
		raw := jsonString(body)
		if status != 400 || !strings.Contains(raw, "[REDACTED]") {
			t.Fatalf("%s: %d %s", c.path, status, raw)
		}
		for j := 0; j+8 <= len(plain); j++ {
			if strings.Contains(raw, plain[j:j+8]) {
				t.Fatalf("%s: the answer holds %q of the provider key: %s", c.path, plain[j:j+8], raw)
			}
		}
	}
	if up.Calls.Load() != 2 {
		t.Fatalf("the echoing upstream saw %d calls", up.Calls.Load())
	}
	for j := 0; j+8 <= len(plain); j++ {
		if strings.Contains(f.logs.String(), plain[j:j+8]) {
			t.Fatalf("the log holds %q of the provider key", plain[j:j+8])
		}
	}
}

// TestProviderBaseURLValidated: the admin API refuses base URLs with
// credentials, a query or a fragment, with a clear 400.
func TestProviderBaseURLValidated(t *testing.T) {
	f := newFixture(t, gwOptions{})
	for _, u := range []string{"https://u:p@api.example.com/v1", "https://api.example.com/v1?key=x", "https://api.example.com/v1#x", "file:///etc/passwd"} {
		_, err := f.admin.CreateProvider(context.Background(), client.ProviderInput{Name: "bad", Type: "openai", BaseURL: u, Models: []string{"x"}, Keys: []string{"k"}})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != 400 || !strings.Contains(ce.Message, "base URL") {
			t.Fatalf("%s: %v", u, err)
		}
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestCountTokensPolicy: count_tokens is decided by policy as action
// "messages" for its model; a refusal never reaches the upstream.
func TestCountTokensPolicy(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gatehouse.cedar"), []byte(`
@id("callers")
permit (principal, action in [Action::"chat", Action::"messages", Action::"models"], resource is Model);

@id("admins-administer")
permit (principal in Role::"admin", action, resource);

@id("no-sonnet")
forbid (principal, action == Action::"messages", resource is Model) when { context.model like "claude-sonnet*" };
`), 0o644)
	if code, out, errs := runCLI(t, f.gateway, "policy", "apply", dir, "--note", "no sonnet"); code != 0 {
		t.Fatalf("policy apply: %d %s %s", code, out, errs)
	}
	ac := f.anthropic(f.key)
	msgs := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}
	before := f.up.Calls.Load()
	_, err := ac.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "claude-sonnet-4-5", Messages: msgs})
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 403 || !strings.Contains(ae.RawJSON(), "no-sonnet") {
		t.Fatalf("forbidden model: %v", err)
	}
	if f.up.Calls.Load() != before {
		t.Fatal("a refused count_tokens reached the upstream")
	}
	if _, err := ac.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "claude-haiku-4-5", Messages: msgs}); err != nil {
		t.Fatalf("allowed model: %v", err)
	}
	recs := f.usageOf(t, f.keyID, 2)
	var denied bool
	for _, r := range recs {
		denied = denied || (r.Endpoint == "count_tokens" && r.ErrorCode == "policy_denied" && r.Status == 403)
	}
	if !denied {
		t.Fatalf("no record of the refused count: %+v", recs)
	}
}
