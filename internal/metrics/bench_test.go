package metrics

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// BenchmarkObserveCall is what the metrics add to each data-plane call.
func BenchmarkObserveCall(b *testing.B) {
	m := New(Options{}, Sources{}, nil)
	r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	rec := usage.Record{Endpoint: "chat", Model: "gpt-4o", Provider: "openai", KeyID: "key_1", Status: 200, Stream: true,
		Tokens: usage.Tokens{Input: 100, Output: 20}, CostMicros: 1500}
	o := proxy.Outcome{Duration: time.Second, Upstream: 900 * time.Millisecond, FirstToken: 200 * time.Millisecond, HeldMicros: 3000}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, c := m.Begin(r, "chat")
			c.End(ctx, &rec, o)
		}
	})
}
