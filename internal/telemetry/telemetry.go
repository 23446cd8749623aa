// Package telemetry exports OpenTelemetry traces of data-plane calls over
// OTLP (HTTP/protobuf or gRPC). It is off by default; it is configured by the
// standard OTEL_* environment variables, read by the SDK and its exporters
// (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _PROTOCOL, _HEADERS, _TIMEOUT,
// _CERTIFICATE, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_TRACES_SAMPLER, OTEL_BSP_*).
//
// Each call is one SERVER span following the OpenTelemetry GenAI semantic
// conventions (gen_ai.operation.name, gen_ai.provider.name,
// gen_ai.request.model, gen_ai.response.model (the model the upstream's
// answer names), gen_ai.usage.input_tokens, gen_ai.usage.output_tokens) plus gatehouse.* attributes (request id, decision, deciding policy ids,
// budget hold, cost, key/principal/team ids), with child spans for policy,
// budget reservation, the ledger append and the upstream call (CLIENT). A W3C
// traceparent from the caller is continued and the upstream request carries
// the gateway's. Never recorded: prompt or completion text, request or
// response bodies, credentials.
//
// A caller's traceparent sets the trace a call belongs to but not whether it
// is recorded: unless OTEL_TRACES_SAMPLER says otherwise, every call is
// sampled, so a caller cannot hide its calls by sending sampled=0.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// Options configures Open.
type Options struct {
	Enabled bool                // telemetry.traces in the configuration
	Getenv  func(string) string // default os.Getenv
	Version string              // service.version
	// Exporter replaces the OTLP exporter chosen from the environment (tests).
	Exporter sdktrace.SpanExporter
	// Sync exports each span as it ends instead of in batches (tests).
	Sync bool
}

// Tracer traces data-plane calls; it implements proxy.Observer.
type Tracer struct {
	tp   *sdktrace.TracerProvider
	tr   trace.Tracer
	prop propagation.TextMapPropagator
}

// Enabled reports whether traces are on: the configuration or the
// environment turns them on; OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none turns them off.
func Enabled(configured bool, getenv func(string) string) (bool, error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false, nil
	}
	switch e := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); e {
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	case "":
	default:
		return false, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%q: only otlp or none", e)
	}
	return configured || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
}

// Open returns a Tracer, or nil when traces are off.
func Open(ctx context.Context, opt Options, log *slog.Logger) (*Tracer, error) {
	if opt.Getenv == nil {
		opt.Getenv = func(string) string { return "" }
	}
	exp := opt.Exporter
	if exp == nil {
		on, err := Enabled(opt.Enabled, opt.Getenv)
		if err != nil || !on {
			return nil, err
		}
		proto := opt.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if proto == "" {
			proto = opt.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		switch proto {
		case "", "http/protobuf":
			exp, err = otlptracehttp.New(ctx)
		case "grpc":
			exp, err = otlptracegrpc.New(ctx)
		default:
			return nil, fmt.Errorf("telemetry: OTLP protocol %q: want http/protobuf or grpc", proto)
		}
		if err != nil {
			return nil, fmt.Errorf("telemetry: %w", err)
		}
		log.Info("tracing on: exporting spans over OTLP", "protocol", cmp(proto, "http/protobuf"))
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "gatehouse"), attribute.String("service.version", opt.Version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && res == nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	tpo := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if opt.Sync {
		tpo = append(tpo, sdktrace.WithSyncer(exp))
	} else {
		tpo = append(tpo, sdktrace.WithBatcher(exp))
	}
	if opt.Getenv("OTEL_TRACES_SAMPLER") == "" {
		// A caller's sampled=0 must not hide its calls.
		all := sdktrace.AlwaysSample()
		tpo = append(tpo, sdktrace.WithSampler(sdktrace.ParentBased(all, sdktrace.WithRemoteParentNotSampled(all))))
	}
	tp := sdktrace.NewTracerProvider(tpo...)
	return &Tracer{tp: tp, tr: tp.Tracer("github.com/gatehouse-gw/gatehouse/internal/proxy"), prop: propagation.TraceContext{}}, nil
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Shutdown exports the spans still buffered and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// Observer returns t as a proxy.Observer, or nil when t is nil (traces off).
func (t *Tracer) Observer() proxy.Observer {
	if t == nil {
		return nil
	}
	return t
}

// operation maps a data-plane endpoint to gen_ai.operation.name.
func operation(endpoint string) string {
	switch endpoint {
	case "completions":
		return "text_completion"
	case "embeddings":
		return "embeddings"
	}
	return "chat" // chat, responses, messages
}

// providerName is gen_ai.provider.name: the API the endpoint speaks.
func providerName(endpoint string) string {
	if endpoint == "messages" {
		return "anthropic"
	}
	return "openai"
}

// Begin implements proxy.Observer: it starts the call's span, continuing the
// caller's W3C trace context.
func (t *Tracer) Begin(r *http.Request, endpoint string) (context.Context, proxy.CallObserver) {
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	op := operation(endpoint)
	ctx, span := t.tr.Start(ctx, op, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("gen_ai.operation.name", op),
		attribute.String("gen_ai.provider.name", providerName(endpoint)),
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", r.URL.Path),
		attribute.String("gatehouse.endpoint", endpoint),
		attribute.String("gatehouse.request_id", httpx.RequestID(r.Context())),
	))
	return ctx, &call{t: t, span: span}
}

type call struct {
	t    *Tracer
	span trace.Span
}

func (c *call) Phase(ctx context.Context, name string) (context.Context, func(error)) {
	kind := trace.SpanKindInternal
	if name == proxy.PhaseUpstream {
		kind = trace.SpanKindClient
	}
	ctx, span := c.t.tr.Start(ctx, "gatehouse."+name, trace.WithSpanKind(kind))
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, errorType(err))
			span.SetAttributes(attribute.String("error.type", errorType(err)))
		}
		span.End()
	}
}

// errorType names an error by its public code only: a cause may quote the
// upstream and is never exported.
func errorType(err error) string {
	var he *httpx.Error
	if errors.As(err, &he) && he.Code != "" {
		return he.Code
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	return "error"
}

func (c *call) Inject(ctx context.Context, h http.Header) {
	c.t.prop.Inject(ctx, propagation.HeaderCarrier(h))
}

func (c *call) End(_ context.Context, rec *usage.Record, o proxy.Outcome) {
	decision := "deny"
	if rec.Started {
		decision = "allow"
	}
	attrs := []attribute.KeyValue{
		attribute.Int("http.response.status_code", rec.Status),
		attribute.String("gatehouse.decision", decision),
		attribute.Bool("gatehouse.stream", rec.Stream),
		attribute.Float64("gatehouse.duration.gateway_seconds", o.Gateway().Seconds()),
	}
	if rec.Model != "" {
		attrs = append(attrs, attribute.String("gen_ai.request.model", rec.Model))
		c.span.SetName(operation(rec.Endpoint) + " " + rec.Model)
	}
	if o.ResponseModel != "" {
		attrs = append(attrs, attribute.String("gen_ai.response.model", o.ResponseModel))
	}
	if rec.Provider != "" {
		attrs = append(attrs, attribute.String("gatehouse.provider", rec.Provider))
	}
	if rec.Input > 0 || rec.Output > 0 {
		attrs = append(attrs, attribute.Int64("gen_ai.usage.input_tokens", rec.Input), attribute.Int64("gen_ai.usage.output_tokens", rec.Output),
			attribute.Bool("gatehouse.usage.estimated", rec.Estimated))
	}
	if rec.CachedInput > 0 {
		attrs = append(attrs, attribute.Int64("gen_ai.usage.cache_read.input_tokens", rec.CachedInput))
	}
	if rec.CostMicros > 0 {
		attrs = append(attrs, attribute.Int64("gatehouse.cost_micros", rec.CostMicros))
	}
	if o.HeldMicros > 0 {
		attrs = append(attrs, attribute.Int64("gatehouse.budget.hold_micros", o.HeldMicros))
	}
	if len(rec.Reasons) > 0 {
		attrs = append(attrs, attribute.StringSlice("gatehouse.policy_ids", rec.Reasons))
	}
	if o.FirstToken > 0 {
		attrs = append(attrs, attribute.Float64("gatehouse.time_to_first_token_seconds", o.FirstToken.Seconds()))
	}
	for k, v := range map[string]string{"gatehouse.key_id": rec.KeyID, "gatehouse.principal_id": rec.PrincipalID, "gatehouse.team_id": rec.TeamID} {
		if v != "" {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	if rec.ErrorCode != "" {
		attrs = append(attrs, attribute.String("error.type", rec.ErrorCode))
	}
	if o.Tripped {
		attrs = append(attrs, attribute.Bool("gatehouse.breaker_tripped", true))
	}
	c.span.SetAttributes(attrs...)
	if rec.Status >= 500 {
		c.span.SetStatus(codes.Error, rec.ErrorCode)
	}
	c.span.End()
}
