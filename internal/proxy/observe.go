package proxy

import (
	"context"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// Observer watches the data plane for metrics and traces (packages metrics
// and telemetry): the one hook through which the request path is observed.
// Begin is called once at the start of every generation call, before
// authentication; the CallObserver it returns sees the call's phases and,
// exactly once, its end. Implementations must be safe for concurrent calls,
// must not block, and cannot change the outcome of a call.
type Observer interface {
	// Begin starts observing a call to endpoint (chat, messages, …). The
	// returned context is the call's (it may carry a trace span, continuing a
	// W3C traceparent the caller sent).
	Begin(r *http.Request, endpoint string) (context.Context, CallObserver)
}

// CallObserver observes one call.
type CallObserver interface {
	// Phase starts a phase of the call (PhasePolicy, PhaseReserve,
	// PhaseLedger, PhaseUpstream) under ctx and returns its context and its
	// end, called once with the phase's error (nil: it succeeded).
	Phase(ctx context.Context, name string) (context.Context, func(err error))
	// Inject writes the trace context of ctx into an upstream request's
	// headers (W3C traceparent), or nothing.
	Inject(ctx context.Context, h http.Header)
	// End reports the finished call: its usage record (never a secret, never
	// a prompt) and what the gateway timed.
	End(ctx context.Context, rec *usage.Record, o Outcome)
}

// The phases of a call reported to CallObserver.Phase.
const (
	PhasePolicy   = "policy"
	PhaseReserve  = "reserve"
	PhaseLedger   = "ledger.append"
	PhaseUpstream = "upstream"
)

// Outcome is what the gateway timed and decided about a finished call.
type Outcome struct {
	Duration   time.Duration // the whole call, as the gateway served it
	Upstream   time.Duration // from the first upstream attempt to the end of the relay; 0: never went upstream
	FirstToken time.Duration // streams: from the call's start to the first event relayed; 0: none
	HeldMicros int64         // the budget hold taken before the upstream call (0: none)
	Tripped    bool          // the spend-velocity breaker suspended the key after this call
	// ResponseModel is the model the upstream's answer names (the model that
	// answered, which may differ from the one asked for); "" when it names
	// none, or a name longer than maxResponseModel bytes.
	ResponseModel string
}

// maxResponseModel bounds a model name an upstream reports: a hostile
// upstream cannot put megabytes into a span attribute.
const maxResponseModel = 256

// Gateway returns the time the gateway itself spent: the whole call minus the
// upstream's part.
func (o Outcome) Gateway() time.Duration { return max(o.Duration-o.Upstream, 0) }

// MultiObserver returns an Observer that reports to each of obs in turn (nil
// entries are skipped); nil when none is left.
func MultiObserver(obs ...Observer) Observer {
	var m multiObserver
	for _, o := range obs {
		if o != nil {
			m = append(m, o)
		}
	}
	switch len(m) {
	case 0:
		return nil
	case 1:
		return m[0]
	}
	return m
}

type multiObserver []Observer

func (m multiObserver) Begin(r *http.Request, endpoint string) (context.Context, CallObserver) {
	cs := make(multiCall, len(m))
	for i, o := range m {
		var ctx context.Context
		ctx, cs[i] = o.Begin(r, endpoint)
		r = r.WithContext(ctx)
	}
	return r.Context(), cs
}

type multiCall []CallObserver

func (m multiCall) Phase(ctx context.Context, name string) (context.Context, func(error)) {
	ends := make([]func(error), len(m))
	for i, c := range m {
		ctx, ends[i] = c.Phase(ctx, name)
	}
	return ctx, func(err error) {
		for i := len(ends) - 1; i >= 0; i-- {
			ends[i](err)
		}
	}
}

func (m multiCall) Inject(ctx context.Context, h http.Header) {
	for _, c := range m {
		c.Inject(ctx, h)
	}
}

func (m multiCall) End(ctx context.Context, rec *usage.Record, o Outcome) {
	for _, c := range m {
		c.End(ctx, rec, o)
	}
}

// observation is the proxy's side of one observed call: the CallObserver and
// the times it needs. It travels in the request context, so the request path
// keeps its signatures. A nil *observation observes nothing.
type observation struct {
	co         CallObserver
	start      time.Time
	upStart    time.Time
	upEnd      time.Time
	firstToken time.Time
	held       int64
	model      string
	now        func() time.Time
}

type observationKey struct{}

// observe begins observing a call: it returns r with the call's context.
func (h *Handler) observe(r *http.Request, endpoint string, start time.Time) (*http.Request, *observation) {
	if h.observer == nil {
		return r, nil
	}
	ctx, co := h.observer.Begin(r, endpoint)
	o := &observation{co: co, start: start, now: h.now}
	return r.WithContext(context.WithValue(ctx, observationKey{}, o)), o
}

func observationOf(ctx context.Context) *observation {
	o, _ := ctx.Value(observationKey{}).(*observation)
	return o
}

// phase starts a phase; the upstream phase also times the upstream's part.
// Its end is a value (done), not a closure: four phases a call each
// allocated one.
func (o *observation) phase(ctx context.Context, name string) (context.Context, phaseEnd) {
	if o == nil {
		return ctx, phaseEnd{}
	}
	if name == PhaseUpstream {
		o.upStart = o.now()
	}
	ctx, end := o.co.Phase(ctx, name)
	return ctx, phaseEnd{o: o, upstream: name == PhaseUpstream, end: end}
}

// phaseEnd ends a phase started by observation.phase; the zero value (no
// observer) does nothing.
type phaseEnd struct {
	o        *observation
	upstream bool
	end      func(error)
}

func (p phaseEnd) done(err error) {
	if p.o == nil {
		return
	}
	if p.upstream {
		p.o.upEnd = p.o.now()
	}
	p.end(err)
}

func (o *observation) inject(ctx context.Context, h http.Header) {
	if o != nil {
		o.co.Inject(ctx, h)
	}
}

// firstEvent marks the first stream event relayed to the caller.
func (o *observation) firstEvent() {
	if o != nil && o.firstToken.IsZero() {
		o.firstToken = o.now()
	}
}

// responseModel notes the model the upstream's answer names.
func (o *observation) responseModel(m string) {
	if o != nil && len(m) <= maxResponseModel && utf8.ValidString(m) {
		o.model = m
	}
}

func (o *observation) hold(micros int64) {
	if o != nil {
		o.held = micros
	}
}

func (o *observation) end(ctx context.Context, rec *usage.Record, tripped bool) {
	if o == nil {
		return
	}
	now := o.now()
	out := Outcome{Duration: now.Sub(o.start), HeldMicros: o.held, Tripped: tripped, ResponseModel: o.model}
	if !o.upStart.IsZero() {
		upEnd := o.upEnd
		if upEnd.IsZero() {
			upEnd = now
		}
		out.Upstream = upEnd.Sub(o.upStart)
	}
	if !o.firstToken.IsZero() {
		out.FirstToken = o.firstToken.Sub(o.start)
	}
	o.co.End(ctx, rec, out)
}
