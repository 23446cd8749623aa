package provider

import "testing"

// TestMeterServiceTier: a stream's service tier is the dearest any event
// reports ("auto", echoed by a Responses stream's first events, says
// nothing), and ParseUsageTier reads it from a JSON answer; a tier spelled
// two ways leaves the usage missing.
func TestMeterServiceTier(t *testing.T) {
	m := NewMeter(Responses)
	for _, d := range []string{
		`{"type":"response.created","response":{"id":"r","service_tier":"auto"}}`,
		`{"type":"response.completed","response":{"id":"r","service_tier":"default","usage":{"input_tokens":3,"output_tokens":2}}}`,
	} {
		m.Observe(Event{Data: []byte(d)})
	}
	if got := m.ServiceTier(); got != "default" {
		t.Fatalf("responses stream tier %q, want default", got)
	}
	c := NewMeter(Chat)
	for _, d := range []string{`{"id":"c","service_tier":"default","choices":[]}`, `{"id":"c","service_tier":"priority","choices":[]}`, `{"id":"c","service_tier":"default","choices":[]}`} {
		c.Observe(Event{Data: []byte(d)})
	}
	if got := c.ServiceTier(); got != "priority" {
		t.Fatalf("chat stream tier %q, want the dearest reported (priority)", got)
	}
	if _, _, _, tier, ok := ParseUsageTier(Chat, []byte(`{"id":"c","service_tier":"flex","usage":{"prompt_tokens":3,"completion_tokens":2}}`)); !ok || tier != "flex" {
		t.Fatalf("JSON tier %q ok %v", tier, ok)
	}
	if _, _, _, _, ok := ParseUsageTier(Chat, []byte(`{"id":"c","service_tier":"default","Service_Tier":"priority","usage":{"prompt_tokens":3,"completion_tokens":2}}`)); ok {
		t.Fatal("a tier spelled two ways was read as one")
	}
	for tier, rank := range map[string]int{"": 0, "auto": 0, "default": 1, "flex": 1, "scale": 1, "standard": 1, "priority": 2, "fast": 3, "Priority": 3} {
		if got := TierRank(tier); got != rank {
			t.Errorf("TierRank(%q) = %d, want %d", tier, got, rank)
		}
	}
}
