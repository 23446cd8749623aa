package proxy

import (
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// TestSettlement: charged ≥ billed at every way a call can end.
func TestSettlement(t *testing.T) {
	const held = 1000
	tests := []struct {
		name            string
		o               outcome
		metered         int64
		hasHold         bool
		charged         int64
		over, estimated bool
	}{
		{"never sent", outcome{}, 0, true, 0, false, false},
		{"upstream refused", outcome{sent: true, refused: true}, 0, true, 0, false, false},
		{"metered", outcome{sent: true, metered: true}, 300, true, 300, false, false},
		{"metered above the hold", outcome{sent: true, metered: true}, 5000, true, 5000, true, false},
		{"metered, no budget", outcome{sent: true, metered: true}, 5000, false, 5000, false, false},
		{"no usage (background, JSON or SSE)", outcome{sent: true}, 20, true, held, false, true},
		{"hang-up before the answer", outcome{sent: true}, 0, true, held, false, true},
		{"local count above the hold", outcome{sent: true}, 4000, true, held, false, true},
	}
	for _, tt := range tests {
		charged, over := settlement(tt.o, tt.metered, held, tt.hasHold)
		if charged != tt.charged || over != tt.over || tt.o.unmetered() != tt.estimated {
			t.Errorf("%s: charged %d over %v unmetered %v; want %d %v %v", tt.name, charged, over, tt.o.unmetered(), tt.charged, tt.over, tt.estimated)
		}
	}
}

// TestWorstOf: every multiplier and input kind raises the worst case by what
// it can cost.
func TestWorstOf(t *testing.T) {
	p := pricing.Price{Model: "m", Input: 1_000_000, CachedInput: 100_000, CacheWrite: 1_250_000, Output: 2_000_000} // $1 / $2 per Mtok
	worst := func(ep provider.Endpoint, body string, out int64) worstCase {
		t.Helper()
		c, err := ParseCall(ep, []byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return worstOf(ep, c, []byte(body), p, out)
	}
	base := `{"model":"m","max_tokens":100,"service_tier":"default","messages":[]}`
	in := InputUpperBound([]byte(base))
	tests := []struct {
		name          string
		ep            provider.Endpoint
		body          string
		input, output int64
		cost          int64
	}{
		{"plain: input at the cache-write rate (dearer than uncached)", provider.Chat, base, in, 100, (in*1_250_000 + 100*2_000_000 + 999_999) / 1_000_000},
		{"n multiplies output", provider.Chat, `{"model":"m","max_tokens":100,"service_tier":"default","n":7,"messages":[]}`, in + 6, 700, -1},
		{"best_of × prompts", provider.Completions, `{"model":"m","max_tokens":10,"best_of":4,"prompt":["a","b","c"]}`, -1, 120, -1},
		{"thinking above the cap", provider.Messages, `{"model":"m","max_tokens":100,"thinking":{"type":"enabled","budget_tokens":900},"messages":[]}`, -1, 900, -1},
		{"prediction adds output", provider.Chat, `{"model":"m","max_tokens":100,"prediction":{"type":"content","content":"0123456789"},"messages":[]}`, -1, 100 + int64(len(`{"type":"content","content":"0123456789"}`)), -1},
		{"an image", provider.Chat, `{"model":"m","max_tokens":100,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}]}`, -1, 100, -1},
		{"a gpt-4o-mini image", provider.Chat, `{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}]}`, -1, 100, -1},
	}
	for _, tt := range tests {
		wc := worst(tt.ep, tt.body, 100)
		if tt.ep.Name == provider.Completions.Name {
			wc = worst(tt.ep, tt.body, 10)
		}
		if (tt.input >= 0 && wc.input != tt.input) || wc.output != tt.output || (tt.cost >= 0 && wc.cost != tt.cost) {
			t.Errorf("%s: %+v, want input %d output %d cost %d", tt.name, wc, tt.input, tt.output, tt.cost)
		}
	}
	img := worst(provider.Chat, tests[5].body, 100)
	mini := worst(provider.Chat, tests[6].body, 100)
	if img.input < imageTokens || mini.input < miniImageTokens {
		t.Errorf("images: %d, %d tokens", img.input, mini.input)
	}
	plain := worst(provider.Messages, `{"model":"m","max_tokens":100,"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}]}`, 100)
	hour := worst(provider.Messages, `{"model":"m","max_tokens":100,"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]}`, 100)
	tool := worst(provider.Messages, `{"model":"m","max_tokens":100,"messages":[],"tools":[{"name":"f","input_schema":{},"cache_control":{"type":"ephemeral","ttl":"1h"}}]}`, 100)
	toolPlain := worst(provider.Messages, `{"model":"m","max_tokens":100,"messages":[],"tools":[{"name":"f","input_schema":{},"cache_control":{"type":"ephemeral","ttl":"5m"}}]}`, 100)
	if tool.cost < toolPlain.cost+p.Cost(usage.Tokens{Input: toolPlain.input})-1 {
		t.Errorf("one-hour cache write on a tool: %d, 5-minute %d", tool.cost, toolPlain.cost)
	}
	if hour.cost < plain.cost+p.Cost(usage.Tokens{Input: plain.input})-1 {
		t.Errorf("one-hour cache write: %d, 5-minute %d", hour.cost, plain.cost)
	}
	normal := worst(provider.Chat, base, 100)
	prio := worst(provider.Chat, `{"model":"m","max_tokens":100,"service_tier":"priority","messages":[]}`, 100)
	if prio.cost < 2*normal.cost {
		t.Errorf("priority: %d, default %d", prio.cost, normal.cost)
	}
	// A call that names no tier (or "auto") may run at the project's default
	// tier, which can be priority: held at the priority rate.
	standard := func(ep provider.Endpoint, body string) int64 { // the same call at the standard rate
		c, _ := ParseCall(ep, []byte(body))
		c.Shape.Priority = false
		return worstOf(ep, c, []byte(body), p, 100).cost
	}
	for _, tc := range []struct {
		ep   provider.Endpoint
		body string
	}{
		{provider.Chat, `{"model":"m","max_tokens":100,"messages":[]}`},
		{provider.Chat, `{"model":"m","max_tokens":100,"service_tier":"auto","messages":[]}`},
		{provider.Chat, `{"model":"m","max_tokens":100,"service_tier":null,"messages":[]}`},
		{provider.Responses, `{"model":"m","input":"x"}`},
	} {
		if w := worst(tc.ep, tc.body, 100); w.cost < 2*standard(tc.ep, tc.body) {
			t.Errorf("%s: %d, want at least the priority rate (2 × %d)", tc.body, w.cost, standard(tc.ep, tc.body))
		}
	}
	for _, tc := range []struct {
		ep   provider.Endpoint
		body string
	}{
		{provider.Chat, `{"model":"m","max_tokens":100,"service_tier":"flex","messages":[]}`},
		{provider.Responses, `{"model":"m","input":"x","service_tier":"default"}`},
		{provider.Completions, `{"model":"m","prompt":"x"}`},
		{provider.Messages, `{"model":"m","max_tokens":100,"messages":[]}`},
	} {
		if w := worst(tc.ep, tc.body, 100); w.cost != standard(tc.ep, tc.body) {
			t.Errorf("%s: %d, want the standard rate %d", tc.body, w.cost, standard(tc.ep, tc.body))
		}
	}
	// A top-level one-hour cache_control (Anthropic) costs what one on a block does.
	top := worst(provider.Messages, `{"model":"m","max_tokens":100,"cache_control":{"type":"ephemeral","ttl":"1h"},"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`, 100)
	if top.cost < plain.cost+p.Cost(usage.Tokens{Input: plain.input})-1 {
		t.Errorf("top-level one-hour cache write: %d, 5-minute %d", top.cost, plain.cost)
	}
}
