package proxy

import (
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// FuzzReserveSettle sends arbitrary request bodies through what the gateway
// does under a hard budget (parse strictly → refuse unbounded → cap the
// output → reserve the worst case → settle) and through the hostile upstream
// (last duplicate wins, case-sensitive, bills every generation to its cap).
// Invariants: the upstream reads the body as the gateway did (model, stream,
// cap, generations); reserved ≥ billed for every admitted call; charged ≥
// billed whether usage comes back or not.
func FuzzReserveSettle(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4o","n":128,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4o","prompt":["a","b"],"best_of":5,"n":2,"max_tokens":7}`,
		`{"model":"gpt-4o","model":"gpt-4o-mini","messages":[]}`,
		`{"model":"m","stream":true,"Stream":false,"messages":[]}`,
		`{"model":"m","input":"x","max_completion_tokens":1,"max_output_tokens":50000}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"image\u005furl","image_url":{"url":"u"}}]}]}`,
		`{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"u"},{"type":"input_text","text":"x"}]}],"max_output_tokens":3}`,
		`{"model":"m","max_tokens":3,"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"m","input":"x","background":true}`,
		`{"model":"m","service_tier":"priority","messages":[{"role":"user","content":"x"}]}`,
	} {
		for ep := range uint8(5) {
			f.Add(s, ep)
		}
	}
	eps := []provider.Endpoint{provider.Chat, provider.Completions, provider.Responses, provider.Messages, provider.Embeddings}
	price := pricing.Price{Model: "m", Input: 2_500_000, CachedInput: 1_250_000, CacheWrite: 3_125_000, Output: 10_000_000}
	f.Fuzz(func(t *testing.T, body string, epi uint8) {
		ep := eps[int(epi)%len(eps)]
		c, err := ParseCall(ep, []byte(body))
		if err != nil || len(c.Shape.Unbounded) > 0 {
			return // refused before anything is reserved
		}
		sent := []byte(body)
		out := int64(4096)
		if ep.Output {
			if c.MaxOutput != nil {
				out = *c.MaxOutput
			} else {
				if c, sent, err = setMaxOutput(ep, c, out); err != nil {
					t.Fatalf("cap rewrite of %q: %v", body, err)
				}
			}
		}
		if up, _, err := requestUsage(ep, c, sent); err != nil {
			t.Fatalf("usage rewrite of %q: %v", sent, err)
		} else {
			sent = up
		}
		wc := worstOf(ep, c, sent, price, out)
		bill, err := sim.HostileBill(ep.Path, sent)
		if err != nil {
			if _, own := sim.HostileBill(ep.Path, []byte(body)); own != nil {
				return // the upstream refuses the caller's own body (400): nothing is billed
			}
			t.Fatalf("the upstream cannot read what the gateway sent: %q: %v", sent, err)
		}
		if bill.Model != c.Model || bill.Stream != c.Stream {
			t.Fatalf("%s %q: gateway read model %q stream %v, upstream %q %v", ep.Name, sent, c.Model, c.Stream, bill.Model, bill.Stream)
		}
		if ep.Output && ep.Name != provider.Embeddings.Name {
			if bill.Cap != out || bill.Choices != c.Choices || bill.Prompts != c.Prompts {
				t.Fatalf("%s %q: gateway read cap %d × %d × %d, upstream %d × %d × %d", ep.Name, sent, out, c.Choices, c.Prompts, bill.Cap, bill.Choices, bill.Prompts)
			}
		}
		billed := price.Cost(usage.Tokens{Input: bill.Input, Output: bill.Output})
		if billed > wc.cost {
			t.Fatalf("%s %q: reserved %d micros (%d in, %d out), upstream billed %d (%d in, %d out)", ep.Name, sent, wc.cost, wc.input, wc.output, billed, bill.Input, bill.Output)
		}
		for _, o := range []outcome{{sent: true, metered: true}, {sent: true}} {
			if charged, _ := settlement(o, billed, wc.cost, true); charged < billed {
				t.Fatalf("%q: charged %d < billed %d (%+v)", sent, charged, billed, o)
			}
		}
	})
}
