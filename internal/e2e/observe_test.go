package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
	"github.com/gatehouse-gw/gatehouse/internal/telemetry/otlptest"
)

// scrape GETs the admin listener's /metrics and parses it with Prometheus's
// text parser; it returns the raw text too, for the secret scan.
func scrape(t *testing.T, g *gateway, token string) (map[string]*dto.MetricFamily, string, int) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+g.srv.AdminAddr()+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, string(b), resp.StatusCode
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return fams, string(b), 200
}

func series(f map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
next:
	for _, m := range f[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsEndpoint drives real calls through the gateway with the official
// SDK and checks what /metrics on the admin listener says about them.
func TestMetricsEndpoint(t *testing.T) {
	const token = "scrape-token-for-e2e-0123456789"
	t.Setenv("GATEHOUSE_METRICS_TOKEN", token)
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	scope, team, period, limit, hard := "team", "research", "month", int64(100_000_000), true
	b, err := f.admin.CreateBudget(ctx, client.BudgetInput{Scope: &scope, ScopeID: &team, Period: &period, LimitMicros: &limit, Hard: &hard})
	if err != nil {
		t.Fatal(err)
	}
	oc := f.openai(f.key)
	if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 5)); err != nil {
		t.Fatal(err)
	}
	st := oc.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o", 5))
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	bad, none := f.openai(f.key+"x"), f.openai("")
	bad.Chat.Completions.New(ctx, chatParams("gpt-4o", 5))
	none.Chat.Completions.New(ctx, chatParams("gpt-4o", 5))

	if _, body, status := scrape(t, f.gateway, ""); status != http.StatusUnauthorized || strings.Contains(body, "gatehouse_") {
		t.Fatalf("scrape without the token: %d", status)
	}
	if _, _, status := scrape(t, f.gateway, "wrong-token-0123456789"); status != http.StatusUnauthorized {
		t.Fatalf("scrape with a wrong token: %d", status)
	}
	checks := []struct {
		name   string
		labels map[string]string
		check  func(float64) bool
	}{
		{"gatehouse_requests_total", map[string]string{"endpoint": "chat", "model": "gpt-4o", "provider": "fake-openai", "status": "200"}, func(v float64) bool { return v == 2 }},
		{"gatehouse_tokens_total", map[string]string{"model": "gpt-4o", "type": "output"}, func(v float64) bool { return v > 0 }},
		{"gatehouse_cost_usd_total", map[string]string{"model": "gpt-4o"}, func(v float64) bool { return v > 0 }},
		{"gatehouse_upstream_duration_seconds", map[string]string{"provider": "fake-openai", "endpoint": "chat"}, func(v float64) bool { return v == 2 }},
		{"gatehouse_gateway_duration_seconds", map[string]string{"endpoint": "chat"}, func(v float64) bool { return v == 4 }},
		{"gatehouse_time_to_first_token_seconds", map[string]string{"model": "gpt-4o"}, func(v float64) bool { return v == 1 }},
		{"gatehouse_budget_held_usd_total", map[string]string{"endpoint": "chat"}, func(v float64) bool { return v > 0 }},
		{"gatehouse_auth_failures_total", map[string]string{"reason": "invalid_api_key"}, func(v float64) bool { return v == 1 }},
		{"gatehouse_auth_failures_total", map[string]string{"reason": "missing_api_key"}, func(v float64) bool { return v == 1 }},
		{"gatehouse_budget_limit_usd", map[string]string{"budget": b.ID, "scope": "team", "hard": "true"}, func(v float64) bool { return v == 100 }},
		{"gatehouse_budget_spent_usd", map[string]string{"budget": b.ID}, func(v float64) bool { return v >= 0 }},
		{"gatehouse_ledger_entries", nil, func(v float64) bool { return v >= 4 }},
		{"gatehouse_ledger_append_duration_seconds", map[string]string{"result": "ok"}, func(v float64) bool { return v >= 4 }},
		{"go_sql_max_open_connections", map[string]string{"db_name": "gatehouse"}, func(v float64) bool { return v > 0 }},
	}
	// A call is counted when its handler ends, just after the caller has the
	// whole answer (the end record is written first), and a scrape may fall
	// between two of its metrics: scrape until every check holds, or 5s.
	var fams map[string]*dto.MetricFamily
	var text string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		fams, text, _ = scrape(t, f.gateway, token)
		all := true
		for _, c := range checks {
			v, ok := series(fams, c.name, c.labels)
			all = all && ok && c.check(v)
		}
		if all || time.Now().After(deadline) {
			break
		}
	}
	for _, c := range checks {
		v, ok := series(fams, c.name, c.labels)
		if !ok || !c.check(v) {
			t.Errorf("%s%v = %v (present %v)\n%s", c.name, c.labels, v, ok, grepLines(text, "gatehouse_requests_total", "first_token", "gatehouse_upstream_duration_seconds_count"))
		}
	}
	for _, secret := range []string{upstreamKey, f.key, "budgets that hold"} {
		if strings.Contains(text, secret) {
			t.Fatalf("/metrics contains %q", secret)
		}
	}
}

// TestTracesEndToEnd: with OTEL_EXPORTER_OTLP_ENDPOINT set, a call made with
// a caller's traceparent is exported as a span of the caller's trace, with
// child spans for each phase, and the upstream receives the gateway's
// traceparent; the prompt is never exported.
func TestTracesEndToEnd(t *testing.T) {
	rcv, url := otlptest.NewHTTP(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	f := newFixture(t, gwOptions{})
	const trace = "0af7651916cd43dd8448eb211c80319c"
	oc := f.openai(f.key)
	if _, err := oc.Chat.Completions.New(context.Background(), chatParams("gpt-4o", 5),
		option.WithHeader("traceparent", "00-"+trace+"-b7ad6b7169203331-01")); err != nil {
		t.Fatal(err)
	}
	call := rcv.WaitFor(t, "chat gpt-4o", func(s otlptest.Span) bool { return s.Name == "chat gpt-4o" })
	if call.TraceID != trace || call.ParentSpanID != "b7ad6b7169203331" {
		t.Fatalf("the call span does not continue the caller's trace: trace %s parent %s", call.TraceID, call.ParentSpanID)
	}
	for k, v := range map[string]any{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
		"gen_ai.response.model": "gpt-4o", "gatehouse.decision": "allow", "gatehouse.provider": "fake-openai",
		"http.response.status_code": int64(200)} { // gen_ai.response.model: the simulated upstream names the model asked for
		if call.Attrs[k] != v {
			t.Errorf("%s = %v, want %v", k, call.Attrs[k], v)
		}
	}
	if n, _ := call.Attrs["gen_ai.usage.output_tokens"].(int64); n <= 0 {
		t.Errorf("gen_ai.usage.output_tokens = %v", call.Attrs["gen_ai.usage.output_tokens"])
	}
	var upstream otlptest.Span
	for _, name := range []string{"gatehouse.policy", "gatehouse.reserve", "gatehouse.ledger.append", "gatehouse.upstream"} {
		s := rcv.WaitFor(t, name, func(s otlptest.Span) bool { return s.Name == name && s.TraceID == trace })
		if s.ParentSpanID != call.SpanID {
			t.Errorf("%s is not a child of the call span", name)
		}
		upstream = s
	}
	reqs := f.up.Requests()
	got := reqs[len(reqs)-1].Header.Get("traceparent")
	if want := "00-" + trace + "-" + upstream.SpanID + "-01"; got != want {
		t.Fatalf("the upstream got traceparent %q, want %q", got, want)
	}
	for _, raw := range rcv.Raw() {
		for _, secret := range []string{"budgets that hold", upstreamKey, f.key} {
			if strings.Contains(string(raw), secret) {
				t.Fatalf("an OTLP export contains %q", secret)
			}
		}
	}
}

func grepLines(text string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) && !strings.HasPrefix(l, "#") {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestMetricsAtEveryEnd: calls that end badly are observed too: an upstream
// failure (502, with its upstream time), a stream cut by the upstream (502
// after its first token), a caller that hangs up mid-stream (499), and a
// budget refusal (429), each exactly once.
func TestMetricsAtEveryEnd(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	oc := f.openai(f.key)

	f.up.SetFault(sim.Fault{Status: 500}) // answered 502 (an upstream 503 stays 503)
	oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 5))
	f.up.SetFault(sim.Fault{CutAfter: 2})
	st := oc.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o", 50))
	for st.Next() {
	}
	f.up.SetFault(sim.Fault{ChunkDelay: 100 * time.Millisecond})
	cctx, cancel := context.WithCancel(ctx)
	st = oc.Chat.Completions.NewStreaming(cctx, chatParams("gpt-4o", 200))
	st.Next()
	st.Next()
	cancel()
	for st.Next() {
	}
	f.up.SetFault(sim.Fault{})
	scope, period, limit, hard := "key", "month", int64(1), true
	if _, err := f.admin.CreateBudget(ctx, client.BudgetInput{Scope: &scope, ScopeID: &f.keyID, Period: &period, LimitMicros: &limit, Hard: &hard}); err != nil {
		t.Fatal(err)
	}
	if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 5)); err == nil {
		t.Fatal("a call over a hard budget of one micro-dollar went through")
	}

	checks := map[string]func(map[string]*dto.MetricFamily) bool{
		"one 502 per upstream failure and cut stream": func(m map[string]*dto.MetricFamily) bool {
			v, _ := series(m, "gatehouse_requests_total", map[string]string{"status": "502"})
			return v == 2
		},
		"one 499 for the caller that hung up": func(m map[string]*dto.MetricFamily) bool {
			v, _ := series(m, "gatehouse_requests_total", map[string]string{"status": "499"})
			return v == 1
		},
		"one budget refusal": func(m map[string]*dto.MetricFamily) bool {
			v, _ := series(m, "gatehouse_budget_denials_total", map[string]string{"endpoint": "chat"})
			return v == 1
		},
		"upstream time for the three that went upstream": func(m map[string]*dto.MetricFamily) bool {
			v, _ := series(m, "gatehouse_upstream_duration_seconds", map[string]string{"provider": "fake-openai"})
			return v == 3
		},
		"first token for the two streams": func(m map[string]*dto.MetricFamily) bool {
			v, _ := series(m, "gatehouse_time_to_first_token_seconds", map[string]string{"model": "gpt-4o"})
			return v == 2
		},
		"every call timed once": func(m map[string]*dto.MetricFamily) bool {
			var n float64
			for _, s := range m["gatehouse_request_duration_seconds"].GetMetric() {
				n += float64(s.GetHistogram().GetSampleCount())
			}
			return n == 4
		},
	}
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		fams, _, _ = scrape(t, f.gateway, "")
		all := true
		for _, ok := range checks {
			all = all && ok(fams)
		}
		if all || time.Now().After(deadline) {
			break
		}
	}
	for name, ok := range checks {
		if !ok(fams) {
			t.Errorf("%s: no", name)
		}
	}
}
