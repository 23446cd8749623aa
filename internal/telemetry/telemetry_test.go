package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/telemetry/otlptest"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestEnabled(t *testing.T) {
	for _, c := range []struct {
		configured bool
		env        map[string]string
		want       bool
		err        bool
	}{
		{false, nil, false, false}, // off by default
		{true, nil, true, false},
		{false, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true, false},
		{false, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true, false},
		{false, map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true, false},
		{true, map[string]string{"OTEL_TRACES_EXPORTER": "none"}, false, false},
		{true, map[string]string{"OTEL_SDK_DISABLED": "true"}, false, false},
		{true, map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false, true},
	} {
		got, err := Enabled(c.configured, env(c.env))
		if got != c.want || (err != nil) != c.err {
			t.Errorf("Enabled(%v, %v) = %v, %v; want %v, error %v", c.configured, c.env, got, err, c.want, c.err)
		}
	}
}

// openWithEnv opens a Tracer whose OTLP exporter is configured only through
// the standard environment variables, as an operator would.
func openWithEnv(t *testing.T, vars map[string]string) *Tracer {
	for k, v := range vars {
		t.Setenv(k, v)
	}
	tr, err := Open(context.Background(), Options{Getenv: os.Getenv}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if tr == nil {
		t.Fatal("tracing is off although OTEL_EXPORTER_OTLP_ENDPOINT is set")
	}
	return tr
}

const callerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"

// runCall plays one call through the observer as the proxy does: phases,
// upstream injection, end.
func runCall(t *testing.T, tr *Tracer, traceparent string) http.Header {
	r := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(`{"messages":[{"content":"TOP SECRET PROMPT"}]}`))
	if traceparent != "" {
		r.Header.Set("traceparent", traceparent)
	}
	ctx, c := tr.Begin(r, "chat")
	for _, p := range []string{proxy.PhasePolicy, proxy.PhaseReserve, proxy.PhaseLedger} {
		_, end := c.Phase(ctx, p)
		end(nil)
	}
	uctx, end := c.Phase(ctx, proxy.PhaseUpstream)
	up := http.Header{}
	c.Inject(uctx, up)
	end(httpx.Errorf(502, "upstream_error", "The upstream failed: it said TOP SECRET").WithCause(errors.New("sk-upstream-SECRET")))
	c.End(ctx, &usage.Record{ID: "req_1", Endpoint: "chat", Model: "gpt-4o", Provider: "openai-main", Status: 502, ErrorCode: "upstream_error",
		KeyID: "key_1", PrincipalID: "prn_1", TeamID: "team_1", Started: true, Reasons: []string{"allow-research"},
		Tokens: usage.Tokens{Input: 12, Output: 34}, CostMicros: 56}, proxy.Outcome{Duration: time.Second, Upstream: time.Second / 2, HeldMicros: 789, ResponseModel: "gpt-4o-2024-08-06"})
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	return up
}

func checkCall(t *testing.T, rcv *otlptest.Receiver, up http.Header, wantTrace string) {
	t.Helper()
	call := rcv.WaitFor(t, "chat gpt-4o", func(s otlptest.Span) bool { return s.Name == "chat gpt-4o" })
	if call.Kind != tracepb.Span_SPAN_KIND_SERVER || !call.StatusError {
		t.Errorf("call span: kind %v, error %v", call.Kind, call.StatusError)
	}
	if wantTrace != "" && call.TraceID != wantTrace {
		t.Errorf("call span trace %s, want the caller's %s", call.TraceID, wantTrace)
	}
	for k, v := range map[string]any{
		"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
		"gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.usage.input_tokens": int64(12), "gen_ai.usage.output_tokens": int64(34),
		"gatehouse.request_id": "", "gatehouse.decision": "allow", "gatehouse.budget.hold_micros": int64(789), "gatehouse.cost_micros": int64(56),
		"gatehouse.key_id": "key_1", "gatehouse.provider": "openai-main", "http.response.status_code": int64(502), "error.type": "upstream_error",
	} {
		if got, ok := call.Attrs[k]; !ok || (v != "" && got != v) {
			t.Errorf("call span %s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if ids, _ := call.Attrs["gatehouse.policy_ids"].([]any); len(ids) != 1 || ids[0] != "allow-research" {
		t.Errorf("policy ids %v", call.Attrs["gatehouse.policy_ids"])
	}
	if call.Resource["service.name"] != "gatehouse" {
		t.Errorf("resource service.name %v", call.Resource["service.name"])
	}
	var upstream otlptest.Span
	for _, name := range []string{"gatehouse.policy", "gatehouse.reserve", "gatehouse.ledger.append", "gatehouse.upstream"} {
		s := rcv.WaitFor(t, name, func(s otlptest.Span) bool { return s.Name == name })
		if s.ParentSpanID != call.SpanID || s.TraceID != call.TraceID {
			t.Errorf("%s is not a child of the call span", name)
		}
		if name == "gatehouse.upstream" {
			upstream = s
		}
	}
	if upstream.Kind != tracepb.Span_SPAN_KIND_CLIENT || upstream.Attrs["error.type"] != "upstream_error" {
		t.Errorf("upstream span: kind %v, attrs %v", upstream.Kind, upstream.Attrs)
	}
	// The upstream request carries the upstream span's context.
	if want := "00-" + call.TraceID + "-" + upstream.SpanID + "-01"; up.Get("traceparent") != want {
		t.Errorf("upstream traceparent %q, want %q", up.Get("traceparent"), want)
	}
	for _, raw := range rcv.Raw() {
		for _, secret := range []string{"TOP SECRET", "sk-upstream"} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("an export contains %q", secret)
			}
		}
	}
}

func TestTraceOverOTLPHTTP(t *testing.T) {
	rcv, url := otlptest.NewHTTP(t)
	tr := openWithEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
	up := runCall(t, tr, "00-"+callerTraceID+"-00f067aa0ba902b7-01")
	checkCall(t, rcv, up, callerTraceID)
	call := rcv.WaitFor(t, "call", func(s otlptest.Span) bool { return s.Name == "chat gpt-4o" })
	if call.ParentSpanID != "00f067aa0ba902b7" {
		t.Errorf("call span parent %s, want the caller's span", call.ParentSpanID)
	}
}

func TestTraceOverOTLPGRPC(t *testing.T) {
	rcv, url := otlptest.NewGRPC(t)
	tr := openWithEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_INSECURE": "true"})
	up := runCall(t, tr, "")
	checkCall(t, rcv, up, "")
}

// TestCallerCannotHideFromTraces: a traceparent with sampled=0 still gets the
// call recorded (in the caller's trace); a malformed one starts a new trace.
func TestCallerCannotHideFromTraces(t *testing.T) {
	rcv, url := otlptest.NewHTTP(t)
	tr := openWithEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": url})
	up := runCall(t, tr, "00-"+callerTraceID+"-00f067aa0ba902b7-00")
	checkCall(t, rcv, up, callerTraceID)

	rcv2, url2 := otlptest.NewHTTP(t)
	tr2 := openWithEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": url2})
	up2 := runCall(t, tr2, "00-"+strings.Repeat("zz", 16)+"-00f067aa0ba902b7-01")
	checkCall(t, rcv2, up2, "")
	if s := rcv2.Spans()[0]; s.TraceID == strings.Repeat("zz", 16) {
		t.Fatal("a malformed traceparent was continued")
	}
}

func TestOffByDefault(t *testing.T) {
	tr, err := Open(context.Background(), Options{Getenv: env(nil)}, slog.New(slog.DiscardHandler))
	if err != nil || tr != nil {
		t.Fatalf("Open without configuration = %v, %v; want nil, nil", tr, err)
	}
	if tr.Observer() != nil {
		t.Fatal("a nil Tracer gives an observer")
	}
	if _, err := Open(context.Background(), Options{Enabled: true, Getenv: env(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("an unsupported OTLP protocol was accepted")
	}
}
