package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/client"
)

// TestCountTokensGoesThroughTheFrontHalf: count_tokens shares the request
// path's front half (proxy.prepare) with every other call, so each refusal a
// generation call gets before its budget is checked, count_tokens gets too —
// a hostile body, the wrong API, the rate limits — and none reaches the
// upstream. What differs is stated: it counts as one request and no tokens.
func TestCountTokensGoesThroughTheFrontHalf(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	anth := map[string]string{"x-api-key": f.key, "anthropic-version": "2023-06-01"}
	ct := f.dataURL + "/v1/messages/count_tokens"
	const good = `{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}`
	before := f.up.Calls.Load()

	for _, c := range []struct{ name, body, code string }{
		{"duplicate model", `{"model":"claude-haiku-4-5","model":"claude-sonnet-4-5","messages":[]}`, ""},
		{"case-variant model", `{"model":"claude-haiku-4-5","Model":"claude-sonnet-4-5","messages":[]}`, ""},
		{"OpenAI model", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, "served through the OpenAI-compatible endpoints"},
	} {
		status, body, _ := rawCall(t, ct, "", c.body, anth)
		if status != 400 || (c.code != "" && !strings.Contains(jsonString(body), c.code)) {
			t.Fatalf("%s: %d %v", c.name, status, body)
		}
	}

	// Tokens per minute: count_tokens takes none (a message takes its
	// estimate); requests per minute count it as one.
	if _, err := f.admin.SetLimit(ctx, client.Limit{Scope: "key", ScopeID: f.keyID, RPM: 2, TPM: 1000}); err != nil {
		t.Fatal(err)
	}
	status, body, hdr := rawCall(t, ct, "", good, anth)
	if status != 200 || hdr.Get("x-ratelimit-remaining-requests") != "1" || hdr.Get("x-ratelimit-remaining-tokens") != "1000" {
		t.Fatalf("count_tokens within the limits: %d %v %v", status, body, hdr)
	}
	if status, body, hdr = rawCall(t, ct, "", good, anth); status != 200 || hdr.Get("x-ratelimit-remaining-tokens") != "1000" {
		t.Fatalf("second count_tokens: %d %v %v", status, body, hdr)
	}
	if status, body, hdr = rawCall(t, ct, "", good, anth); status != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("third count_tokens over 2 rpm: %d %v %v", status, body, hdr)
	}
	// The same limits on another key: a message takes its tokens.
	other, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.SetLimit(ctx, client.Limit{Scope: "key", ScopeID: other.ID, RPM: 2, TPM: 1000}); err != nil {
		t.Fatal(err)
	}
	status, body, hdr = rawCall(t, f.dataURL+"/v1/messages", "", `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"x-api-key": other.Secret, "anthropic-version": "2023-06-01"})
	if status != 200 || hdr.Get("x-ratelimit-remaining-tokens") == "" || hdr.Get("x-ratelimit-remaining-tokens") == "1000" {
		t.Fatalf("a message takes tokens: %d %v %v", status, body, hdr)
	}
	if got := f.up.Calls.Load() - before; got != 3 {
		t.Fatalf("the upstream saw %d calls, want the 2 admitted counts and the message", got)
	}
}
