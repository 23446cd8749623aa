package server

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/admin"
	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/console"
	"github.com/gatehouse-gw/gatehouse/internal/lockout"
	"github.com/gatehouse-gw/gatehouse/internal/metrics"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/telemetry"
)

// openObservability builds the Prometheus metrics and, when configured, the
// OpenTelemetry tracer (OTEL_* environment variables).
func (s *Server) openObservability(ctx context.Context) error {
	tok, err := s.cfg.Metrics.Token(os.Getenv)
	if err != nil {
		return err
	}
	var pool metrics.Pool
	if s.cfg.Database != "" {
		pool = &s.pool
	}
	s.metrics = metrics.New(metrics.Options{PerKeyLabels: s.cfg.Metrics.PerKeyLabels, Token: tok}, metrics.Sources{
		Budgets:      func(ctx context.Context) ([]budget.Status, error) { return s.budgets.Statuses(ctx, s.budgetList()) },
		Ledger:       s.ledger,
		Verification: s.logCheck, // the audit's verification of the log, stored
		Export:       s.export,
		Usage:        s.usage,
		DB:           s.db.SQL(),
		Pool:         pool,
	}, s.log)
	s.ledger.ObserveAppends(s.metrics.ObserveLedgerAppend)
	s.breaker.OnFlushTrip = func(string) { s.metrics.BreakerTripped() }
	s.tracer, err = telemetry.Open(ctx, telemetry.Options{Enabled: s.cfg.Telemetry.Traces, Getenv: os.Getenv}, s.log)
	return err
}

// observer is what the data plane reports each call to.
func (s *Server) observer() proxy.Observer {
	return proxy.MultiObserver(s.metrics, s.tracer.Observer())
}

// adminHandler adds GET /metrics and the web console (/console/) to the
// admin API's handler. The console calls the admin API in process.
func (s *Server) adminHandler(adm http.Handler, throttle *lockout.Throttle) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	con := console.New(console.Deps{API: adm, Log: s.log, Passkeys: s.webAuthn != nil,
		AbsoluteTimeout: min(s.cfg.SessionTTL.D(), 12*time.Hour), TrustProxyHeaders: s.cfg.TrustProxyHeaders,
		OIDC: s.cfg.OIDCLogin, Sessions: s.db, Throttle: func(r *http.Request) (bool, time.Duration) {
			return throttle.Allow(r.Context(), admin.SourceAddr(r, s.cfg.TrustProxyHeaders, trustedProxies(s.cfg.TrustedProxies)))
		}})
	mux.Handle("/console/", con)
	mux.Handle("GET /console", con)
	mux.Handle("/", adm)
	return mux
}

// shutdownTracer flushes the spans still buffered.
func (s *Server) shutdownTracer() {
	if s.tracer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.tracer.Shutdown(ctx); err != nil {
		s.log.Warn("telemetry: flushing spans failed", "err", err)
	}
	s.tracer = nil
}
