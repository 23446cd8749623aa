package telemetry

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkTraceCall is what tracing adds to each data-plane call: the call's
// span, four phase spans and the upstream injection (batching exporter that
// discards).
func BenchmarkTraceCall(b *testing.B) {
	tr, err := Open(context.Background(), Options{Exporter: discard{}, Getenv: func(string) string { return "" }}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	r.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	rec := usage.Record{Endpoint: "chat", Model: "gpt-4o", Provider: "openai", KeyID: "key_1", Status: 200, Started: true,
		Tokens: usage.Tokens{Input: 100, Output: 20}, CostMicros: 1500, Reasons: []string{"p1"}}
	b.ReportAllocs()
	for b.Loop() {
		ctx, c := tr.Begin(r, "chat")
		for _, p := range []string{proxy.PhasePolicy, proxy.PhaseReserve, proxy.PhaseLedger, proxy.PhaseUpstream} {
			pctx, end := c.Phase(ctx, p)
			if p == proxy.PhaseUpstream {
				c.Inject(pctx, map[string][]string{})
			}
			end(nil)
		}
		c.End(ctx, &rec, proxy.Outcome{Duration: time.Second})
	}
}
