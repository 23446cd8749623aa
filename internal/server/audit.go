package server

import (
	"context"
	"net/http"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/admin"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/lockout"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
)

// openAudit builds the findings engine and the log's self-verification.
func (s *Server) openAudit() {
	s.audit = audit.New(audit.Deps{Store: s.db, Ledger: s.ledger, Alerts: s.alerts, Spend: s.budgets.Statuses, KeyMaxAge: s.keyMaxAge,
		Hasher: s.verifier.Hasher(), ForgetKey: func(id string) { s.verifier.Forget(id); s.auth.ForgetKey(id) },
		Settings: audit.Settings{StepUpMaxAge: s.cfg.StepUpMaxAge.D(), TrustProxyHeaders: s.cfg.TrustProxyHeaders, TrustedProxies: s.cfg.TrustedProxies},
		Config:   s.cfg.Audit, Log: s.log, Now: s.now, Checkpoint: s.ledger.SignCheckpoint, UsageDropped: s.usage.Dropped})
	s.logCheck = &audit.LogVerifier{Source: ledger.StoreSource{Store: s.db}, Key: s.ledger.Key, Store: s.db, Now: s.now}
	if s.cfg.Ledger.VerifyInterval != nil { // config.Validate moved it to audit.log_verify_interval
		s.log.Warn("config: ledger.verify_interval is the old name of audit.log_verify_interval; rename it", "interval", s.cfg.Ledger.VerifyInterval.D())
	}
}

// now is the server's clock for audits; tests replace it (SetClock).
func (s *Server) now() time.Time {
	if f := s.clock.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// SetClock replaces the clock the audit engine, its schedule, the log's
// self-verification and the data plane (the time of calls in usage and ledger
// records, key and MFA age, the hour policies see) read: end-to-end tests of
// time-based rules.
func (s *Server) SetClock(now func() time.Time) { s.clock.Store(&now) }

// Audit returns the findings engine.
func (s *Server) Audit() *audit.Engine { return s.audit }

// CheckLog verifies the gateway's own log now (as the schedule does).
func (s *Server) CheckLog(ctx context.Context) (audit.LogCheck, error) { return s.logCheck.Check(ctx) }

// partnerHandler serves the secret-scanning partner endpoint, or nil when no
// public key is configured.
func (s *Server) partnerHandler() http.Handler {
	keys, err := s.cfg.Audit.SecretScanning.Keys()
	if err != nil || len(keys) == 0 {
		return nil
	}
	var rl ratelimit.Backend = ratelimit.NewMemory(nil) // per replica unless Redis is configured
	if s.redis != nil {
		rl = s.redis
	}
	perSource, perKey := s.cfg.Audit.SecretScanning.Limits()
	return s.audit.PartnerHandler(keys, s.log, audit.PartnerLimits{
		Take: func(ctx context.Context, key string, perMinute int64) (bool, time.Duration, error) {
			res, err := rl.Take(ctx, key, perMinute, 1)
			return res.Allowed, res.RetryAfter, err
		},
		Source: func(r *http.Request) string {
			return lockout.SourceSubject(admin.SourceAddr(r, s.cfg.TrustProxyHeaders, trustedProxies(s.cfg.TrustedProxies)))
		},
		PerSource: perSource, PerKey: perKey,
	})
}

// runAudit runs the audit's scheduler until ctx ends.
func (s *Server) runAudit(ctx context.Context) {
	(&audit.Scheduler{Engine: s.audit, Log: s.logCheck, Logger: s.log}).Run(ctx)
}
