package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// openAudit builds the findings engine and the log's self-verification.
func (s *Server) openAudit() {
	s.audit = audit.New(audit.Deps{Store: s.db, Ledger: s.ledger, Alerts: s.alerts, Spend: s.budgets.Statuses, KeyMaxAge: s.keyMaxAge,
		Hasher: s.verifier.Hasher(), ForgetKey: func(id string) { s.verifier.Forget(id); s.auth.ForgetKey(id) },
		Settings: audit.Settings{StepUpMaxAge: s.cfg.StepUpMaxAge.D(), TrustProxyHeaders: s.cfg.TrustProxyHeaders, RequireMFA: s.cfg.RequireMFA},
		Config:   s.cfg.Audit, Log: s.log, Now: s.now, Checkpoint: s.ledger.SignCheckpoint})
	s.logCheck = &audit.LogVerifier{Source: ledger.StoreSource{Store: s.db}, Key: s.ledger.Key, Store: s.db, Now: s.now}
}

// now is the server's clock for audits; tests replace it (SetClock).
func (s *Server) now() time.Time {
	if f := s.clock.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// SetClock replaces the clock the audit engine, its schedule and the log's
// self-verification read (end-to-end tests of time-based rules).
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
	return s.audit.PartnerHandler(keys, s.log)
}

// runAudit runs the scheduled findings (and overdue reviews), the log's
// self-verification and the scheduled reports until ctx ends.
func (s *Server) runAudit(ctx context.Context) {
	c := s.audit.Config()
	var wg sync.WaitGroup
	if c.LogVerifyInterval > 0 {
		wg.Go(func() {
			s.logCheck.Run(ctx, tickNow(ctx, c.LogVerifyInterval), func(err error) { s.log.Warn("audit: the log did not verify", "err", err) })
		})
	}
	if c.Interval > 0 {
		wg.Go(func() {
			t := time.NewTicker(c.Interval)
			defer t.Stop()
			s.audit.RunEvery(ctx, t.C)
		})
	}
	if len(c.Reports) > 0 {
		wg.Go(func() {
			t := time.NewTicker(time.Minute)
			defer t.Stop()
			if err := s.audit.RunReports(ctx, t.C); err != nil {
				s.log.Error("audit: scheduled reports stopped", "err", err)
			}
		})
	}
	wg.Wait()
}

// tickNow ticks at once and then every d, until ctx ends.
func tickNow(ctx context.Context, d time.Duration) <-chan time.Time {
	ch := make(chan time.Time)
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case ch <- time.Now():
			case <-ctx.Done():
				return
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}
