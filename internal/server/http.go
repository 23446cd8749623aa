package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/admin"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/token"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// tlsConfig loads the data plane's certificate and, for mTLS, the client CAs.
// Client certificates are verified when presented, and optional: keys and
// tokens still work over the same listener.
func tlsConfig(c config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: no certificate in %s", c.ClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

func zoneOf(name string) *time.Location {
	if z, err := time.LoadLocation(name); err == nil {
		return z
	}
	return time.UTC
}

// adminSnapshot adapts a config.Snapshot to what the admin API reads.
type adminSnapshot struct{ *config.Snapshot }

func (a adminSnapshot) Policies() *policy.Set        { return a.Snapshot.Policies }
func (a adminSnapshot) Prices() *pricing.Table       { return a.Snapshot.Prices }
func (a adminSnapshot) Models() []provider.ModelInfo { return a.Router.Models(sim.Models) }
func (a adminSnapshot) Simulated() bool              { return a.Router.Simulated() }

func (s *Server) buildHTTP() {
	devHash := ""
	if s.cfg.DevAdminKey != "" {
		devHash = s.verifier.Hasher().Hash(vkey.Secret(s.cfg.DevAdminKey))
	}
	al := s.authLimits()
	endpoint := &token.Endpoint{Issuer: s.tokens, DPoP: s.dpop, Federation: token.NewFederation(s.cfg.WorkloadIdentity, nil),
		Keys: s.auth, Principals: s.db, Log: s.log, // MFA: guardToken
		URL: func(r *http.Request) string {
			scheme := "http"
			if r.TLS != nil || (s.cfg.TrustProxyHeaders && r.Header.Get("X-Forwarded-Proto") == "https") {
				scheme = "https"
			}
			return scheme + "://" + r.Host + r.URL.EscapedPath() // as sent (proxy.requestURL)
		}}
	px := proxy.New(proxy.Deps{Snapshot: s.Snapshot, Auth: boundedAuth{s.auth, s.cfg.Store.Timeout.D()}, Usage: s.usage, Ledger: s.ledger, Limiter: s.limiter,
		Tokens: &proxy.Tokens{Issuer: s.tokens, DPoP: s.dpop, Endpoint: s.guardToken(endpoint, al), Metadata: http.HandlerFunc(endpoint.ServeMetadata)}, Budgets: s.budgets, Breaker: s.breaker, Alerts: s.alerts, Log: s.log, Denied: s.denied, Observer: s.observer(), Clock: s.now}, proxy.Options{
		MaxBodyBytes: s.cfg.MaxBodyBytes, UpstreamTimeout: s.cfg.UpstreamTimeout.D(),
		StreamIdleTimeout: s.cfg.StreamIdleTimeout.D(), TrustProxyHeaders: s.cfg.TrustProxyHeaders, TrustedProxies: trustedProxies(s.cfg.TrustedProxies), DefaultMaxOutput: s.cfg.DefaultMaxOutputTokens,
		PolicyZone: s.cfg.PolicyTimeZone, ClientPrincipals: s.cfg.TLS.ClientPrincipals, AllowUnboundedCost: s.cfg.AllowUnboundedCost,
		Fields: proxy.FieldPolicy{Fields: s.cfg.Budgets.AllowFields, Betas: s.cfg.Budgets.AllowBetas, Versions: s.cfg.Budgets.AllowVersions},
		LagEnd: s.cfg.Ledger.LagEndRecords,
	})
	if s.ledger != nil {
		s.ledger.Calls = px.InFlight
		s.ledger.Linger = s.cfg.Ledger.BatchLinger.D()
		s.ledger.LagWait = s.cfg.Ledger.LagWait.D()
		s.ledger.MaxDeferredRefusals = s.cfg.Ledger.MaxDeferredRefusals
	}
	dataMux := http.NewServeMux()
	dataMux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	dataMux.HandleFunc("GET /readyz", s.readyz)
	dataMux.HandleFunc("GET /livez", s.livez)
	if ph := s.partnerHandler(); ph != nil {
		dataMux.Handle("POST "+audit.PartnerPath, ph)
	}
	dataMux.Handle("/", px)
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	s.data = &http.Server{Handler: dataMux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: errLog}
	adm := admin.New(admin.Deps{
		Store: s.db, Keyring: s.keyring, Verifier: s.verifier, ForgetPrincipal: s.auth.Forget, ForgetKey: s.auth.ForgetKey, Reload: s.Reload,
		Snapshot: func() admin.Snapshot { return adminSnapshot{s.Snapshot()} }, DevAdminKeyHash: devHash, Log: s.log,
		Spend: s.budgets.Statuses, ResetBreaker: s.breaker.Reset, Ledger: s.ledger, LogHandler: s.ledger.Handler(),
		PolicyZone: zoneOf(s.cfg.PolicyTimeZone), Guard: al.guard, Passwords: al.passwords, Throttle: al.throttle, Alerts: s.alerts,
		SessionTTL: s.cfg.SessionTTL.D(), RequireMFA: s.cfg.RequireMFA, RotateTokenKey: s.RotateTokenKey, RotateLedgerKey: s.RotateLedgerKey, KeyMaxAge: s.keyMaxAge, SSO: s.ssoVerifier(), WebAuthn: s.webAuthn, StepUpMaxAge: s.cfg.StepUpMaxAge.D(),
		Audit: s.audit,
	})
	s.admin = &http.Server{Handler: s.adminHandler(adm, al.throttle), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: errLog}
}

// trustedProxies parses the validated trusted_proxies list.
func trustedProxies(ss []string) []netip.Prefix {
	ps, _ := httpx.ParsePrefixes(ss) // config.Validate refused anything unparsable
	return ps
}
