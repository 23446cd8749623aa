// Package metrics exports Gatehouse's Prometheus metrics on the admin
// listener (GET /metrics, text exposition format).
//
// The data plane reports to it through proxy.Observer, once per finished call;
// budgets, the ledger, the audit's stored verification of the log and the
// store's connection pool are read at scrape time. Every metric is named gatehouse_* in base units (seconds, USD, tokens)
// with Prometheus's conventions (_total counters, _seconds histograms).
//
// Label cardinality is bounded: endpoints, providers, statuses and reasons
// come from small fixed or configured sets; model and policy labels keep the
// first Options.MaxLabelValues distinct values and fold the rest into "other"
// (a caller choosing model names cannot grow the series count); an unrouted
// call's model is "". Per-key series (gatehouse_key_*) exist only with
// Options.PerKeyLabels, since keys are unbounded.
//
// The scrape can require a bearer token (Options.Token), compared in constant
// time. A Metrics is safe for concurrent use.
package metrics

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// Options configures the metrics.
type Options struct {
	// PerKeyLabels adds gatehouse_key_requests_total and
	// gatehouse_key_cost_usd_total with a key_id label: one series per key.
	PerKeyLabels bool
	// MaxLabelValues bounds the distinct values of the model and policy
	// labels; later values are reported as "other". Default 200.
	MaxLabelValues int
	// Token, when set, must be presented as Authorization: Bearer to scrape.
	Token string
}

// Sources are read at every scrape; nil fields are skipped.
type Sources struct {
	Budgets func(ctx context.Context) ([]budget.Status, error)
	Ledger  interface {
		Stats(ctx context.Context) (ledger.Stats, error)
	}
	// Verification is the log's self-verification (audit.LogVerifier): when
	// the stored log last passed it, and how many checks in this process
	// found it did not.
	Verification interface {
		Verified(ctx context.Context) (lastGood time.Time, failures int64, err error)
	}
	// Export is the ledger's exporter (ledger.Exporter), from memory.
	Export interface {
		Status() []ledger.ExportStatus
	}
	// Usage is the usage-row writer (usage.Writer): rows waiting for the
	// store and rows dropped because too many waited.
	Usage interface {
		Pending() int
		Dropped() int64
	}
	DB   *sql.DB // connection pool statistics (go_sql_* metrics)
	Pool Pool    // PostgreSQL only: the pool against the server's connection limit
	Now  func() time.Time
}

// Pool is how a PostgreSQL pool fares against the server's connection limit
// (postgres.PoolHealth).
type Pool interface {
	Refused() int64 // new connections the server refused (SQLSTATE 53300)
	Capped() bool   // the pool is held at what it has after a refusal
	// RoundTrips counts the times a connection waited for the server's
	// answer: what a store call on PostgreSQL waits on.
	RoundTrips() int64
}

// Metrics holds the registry and the data plane's collectors.
type Metrics struct {
	reg  *prometheus.Registry
	opt  Options
	log  *slog.Logger
	vals *limiter

	requests      *prometheus.CounterVec
	tokens        *prometheus.CounterVec
	cost          *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	gateway       *prometheus.HistogramVec
	upstream      *prometheus.HistogramVec
	ttft          *prometheus.HistogramVec
	held          *prometheus.CounterVec
	policyDenials *prometheus.CounterVec
	rateDenials   *prometheus.CounterVec
	budgetDenials *prometheus.CounterVec
	breakerTrips  prometheus.Counter
	authFailures  *prometheus.CounterVec
	storeErrors   *prometheus.CounterVec
	ledgerAppend  *prometheus.HistogramVec
	keyRequests   *prometheus.CounterVec
	keyCost       *prometheus.CounterVec
}

// Latency buckets: from a millisecond (the gateway's own work) to ten
// minutes (the longest upstream call).
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// New returns Metrics with the data-plane collectors, the Go and process
// collectors, and collectors that read src at scrape time.
func New(opt Options, src Sources, log *slog.Logger) *Metrics {
	if opt.MaxLabelValues <= 0 {
		opt.MaxLabelValues = 200
	}
	if src.Now == nil {
		src.Now = time.Now
	}
	m := &Metrics{reg: prometheus.NewRegistry(), opt: opt, log: log, vals: newLimiter(opt.MaxLabelValues)}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets}, labels)
		m.reg.MustRegister(h)
		return h
	}
	m.requests = counter("gatehouse_requests_total", "Data-plane calls by endpoint, model, provider and HTTP status (499: the caller went away).", "endpoint", "model", "provider", "status")
	m.tokens = counter("gatehouse_tokens_total", "Tokens by direction (type=input|output|cached_input), as the upstream reported them or as counted locally.", "endpoint", "model", "provider", "type")
	m.cost = counter("gatehouse_cost_usd_total", "Cost charged to budgets, in US dollars.", "model", "provider")
	m.duration = histogram("gatehouse_request_duration_seconds", "Whole data-plane calls as the gateway served them.", "endpoint", "stream")
	m.gateway = histogram("gatehouse_gateway_duration_seconds", "The gateway's own part of each call: the whole call minus the upstream's part.", "endpoint")
	m.upstream = histogram("gatehouse_upstream_duration_seconds", "The upstream's part of each call that went upstream: from the first attempt to the end of the relay.", "provider", "endpoint")
	m.ttft = histogram("gatehouse_time_to_first_token_seconds", "Streams: from the call's start to the first event relayed to the caller.", "model", "provider")
	m.held = counter("gatehouse_budget_held_usd_total", "Budget holds taken before upstream calls (worst-case cost), in US dollars.", "endpoint")
	m.policyDenials = counter("gatehouse_policy_denials_total", "Calls denied by policy, by the id of each deciding policy (\"default_deny\": none permitted).", "policy")
	m.rateDenials = counter("gatehouse_rate_limit_denials_total", "Calls refused by a rate limit (429).", "endpoint")
	m.budgetDenials = counter("gatehouse_budget_denials_total", "Calls refused because a hard budget could not cover their worst case (429 insufficient_quota).", "endpoint")
	m.breakerTrips = prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_breaker_trips_total", Help: "Keys suspended by the spend-velocity breaker."})
	m.reg.MustRegister(m.breakerTrips)
	m.authFailures = counter("gatehouse_auth_failures_total", "Data-plane calls refused at authentication, by reason (the error code sent).", "reason")
	m.storeErrors = counter("gatehouse_store_errors_total", "Calls failed closed (503) because a dependency could not answer, by component (auth, budget, ledger, rate_limit).", "component")
	m.ledgerAppend = histogram("gatehouse_ledger_append_duration_seconds", "Time a ledger append waited until its record was durable (queue and group commit).", "result")
	if opt.PerKeyLabels {
		m.keyRequests = counter("gatehouse_key_requests_total", "Data-plane calls per key (per-key labels are on).", "key_id", "status")
		m.keyCost = counter("gatehouse_key_cost_usd_total", "Cost per key in US dollars (per-key labels are on).", "key_id")
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src.DB != nil {
		m.reg.MustRegister(collectors.NewDBStatsCollector(src.DB, "gatehouse"))
	}
	if src.Usage != nil {
		m.reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_usage_records_pending",
				Help: "Usage rows kept in memory because the store did not take them (retried until stored)."},
				func() float64 { return float64(src.Usage.Pending()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gatehouse_usage_records_dropped_total",
				Help: "Usage rows dropped because more than usage.MaxKept waited for the store (their calls are charged through the ledger; usage reports miss them)."},
				func() float64 { return float64(src.Usage.Dropped()) }))
	}
	if src.Pool != nil {
		m.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gatehouse_store_connections_refused_total",
				Help: "New PostgreSQL connections the server refused because it is at its connection limit (SQLSTATE 53300, too many clients)."},
				func() float64 { return float64(src.Pool.Refused()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gatehouse_store_round_trips_total",
				Help: "Round trips to PostgreSQL (a connection waiting for the server's answer to what it sent); per data-plane call, what a call waits on in the store."},
				func() float64 { return float64(src.Pool.RoundTrips()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_store_pool_capped",
				Help: "1 while the PostgreSQL pool is held at the connections it has (below store.max_open_conns) because the server refused more; go_sql_max_open_connections shows the cap."},
				func() float64 {
					if src.Pool.Capped() {
						return 1
					}
					return 0
				}))
	}
	if src.Budgets != nil || src.Ledger != nil || src.Verification != nil || src.Export != nil {
		m.reg.MustRegister(&scrapeCollector{src: src, log: log, errors: map[string]int64{}})
	}
	return m
}

// Registry returns the registry (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry, behind the bearer token when one is set.
func (m *Metrics) Handler() http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slogAdapter{m.log}, ErrorHandling: promhttp.ContinueOnError})
	if m.opt.Token == "" {
		return h
	}
	want := []byte("Bearer " + m.opt.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			http.Error(w, "a bearer token is required to scrape these metrics", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Println(v ...any) {
	if a.log != nil {
		a.log.Warn("metrics: scrape", "err", fmt.Sprint(v...))
	}
}

// ObserveLedgerAppend records one ledger append (ledger.Log.ObserveAppends).
func (m *Metrics) ObserveLedgerAppend(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.ledgerAppend.WithLabelValues(result).Observe(d.Seconds())
}

// Begin implements proxy.Observer: the metrics need only the call's end.
func (m *Metrics) Begin(r *http.Request, endpoint string) (context.Context, proxy.CallObserver) {
	return r.Context(), callObserver{m}
}

type callObserver struct{ m *Metrics }

func (callObserver) Phase(ctx context.Context, _ string) (context.Context, func(error)) {
	return ctx, func(error) {}
}

func (callObserver) Inject(context.Context, http.Header) {}

func (c callObserver) End(_ context.Context, rec *usage.Record, o proxy.Outcome) { c.m.observe(rec, o) }

const usd = 1e6 // micros per dollar

func (m *Metrics) observe(rec *usage.Record, o proxy.Outcome) {
	model := ""
	if rec.Provider != "" { // routed: the model is one some provider serves
		model = m.vals.value("model", rec.Model)
	}
	status := strconv.Itoa(rec.Status)
	m.requests.WithLabelValues(rec.Endpoint, model, rec.Provider, status).Inc()
	if rec.Input > 0 || rec.Output > 0 {
		m.tokens.WithLabelValues(rec.Endpoint, model, rec.Provider, "input").Add(float64(rec.Input))
		m.tokens.WithLabelValues(rec.Endpoint, model, rec.Provider, "output").Add(float64(rec.Output))
		if rec.CachedInput > 0 {
			m.tokens.WithLabelValues(rec.Endpoint, model, rec.Provider, "cached_input").Add(float64(rec.CachedInput))
		}
	}
	if rec.CostMicros > 0 {
		m.cost.WithLabelValues(model, rec.Provider).Add(float64(rec.CostMicros) / usd)
	}
	m.duration.WithLabelValues(rec.Endpoint, strconv.FormatBool(rec.Stream)).Observe(o.Duration.Seconds())
	m.gateway.WithLabelValues(rec.Endpoint).Observe(o.Gateway().Seconds())
	if o.Upstream > 0 {
		m.upstream.WithLabelValues(rec.Provider, rec.Endpoint).Observe(o.Upstream.Seconds())
	}
	if o.FirstToken > 0 {
		m.ttft.WithLabelValues(model, rec.Provider).Observe(o.FirstToken.Seconds())
	}
	if o.HeldMicros > 0 {
		m.held.WithLabelValues(rec.Endpoint).Add(float64(o.HeldMicros) / usd)
	}
	if o.Tripped {
		m.BreakerTripped()
	}
	switch rec.ErrorCode {
	case "policy_denied":
		if len(rec.Reasons) == 0 {
			m.policyDenials.WithLabelValues("default_deny").Inc()
		}
		for _, p := range rec.Reasons {
			m.policyDenials.WithLabelValues(m.vals.value("policy", p)).Inc()
		}
	case "rate_limit_exceeded":
		m.rateDenials.WithLabelValues(rec.Endpoint).Inc()
	case "insufficient_quota":
		m.budgetDenials.WithLabelValues(rec.Endpoint).Inc()
	case "auth_unavailable", "budget_unavailable", "ledger_unavailable", "rate_limit_unavailable":
		m.storeErrors.WithLabelValues(strings.TrimSuffix(rec.ErrorCode, "_unavailable")).Inc()
	}
	if rec.KeyID == "" && (rec.Status == http.StatusUnauthorized || rec.Status == http.StatusForbidden) {
		m.authFailures.WithLabelValues(m.vals.value("reason", rec.ErrorCode)).Inc()
	}
	if m.keyRequests != nil && rec.KeyID != "" {
		m.keyRequests.WithLabelValues(rec.KeyID, status).Inc()
		if rec.CostMicros > 0 {
			m.keyCost.WithLabelValues(rec.KeyID).Add(float64(rec.CostMicros) / usd)
		}
	}
}

// limiter keeps the first max distinct values of each label; later ones are
// "other".
type limiter struct {
	mu   sync.Mutex
	max  int
	seen map[string]map[string]struct{}
}

func newLimiter(max int) *limiter { return &limiter{max: max, seen: map[string]map[string]struct{}{}} }

func (l *limiter) value(label, v string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.seen[label]
	if s == nil {
		s = map[string]struct{}{}
		l.seen[label] = s
	}
	if _, ok := s[v]; ok {
		return v
	}
	if len(s) >= l.max {
		return "other"
	}
	s[v] = struct{}{}
	return v
}

// BreakerTripped counts a key the spend-velocity breaker suspended outside a
// call (on the shared window's flush); calls that trip report it in their
// Outcome.
func (m *Metrics) BreakerTripped() { m.breakerTrips.Inc() }
