package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/admin"
	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/lockout"
	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/token"
)

// authLimits are the attempt limits, the per-address throttle and the
// password-hashing bound, shared by the admin API and the token endpoint.
type authLimits struct {
	guard     *admin.Guard
	throttle  *lockout.Throttle
	passwords *mfa.Gate
}

func (s *Server) authLimits() authLimits {
	var rl ratelimit.Backend = ratelimit.NewMemory(nil) // per replica unless Redis is configured
	if s.redis != nil {
		rl = s.redis
	}
	l := s.cfg.Login
	return authLimits{
		guard: &admin.Guard{Limiter: &lockout.Limiter{Store: s.db, Credential: l.Credential(), Source: l.Source()},
			Ledger: s.ledger, TrustProxy: s.cfg.TrustProxyHeaders, TrustedProxies: trustedProxies(s.cfg.TrustedProxies), Log: s.log},
		throttle: &lockout.Throttle{PerMinute: l.SourceRequestsPerMinute, Take: func(ctx context.Context, key string, perMinute int64) (bool, time.Duration, error) {
			res, err := rl.Take(ctx, key, perMinute, 1)
			return res.Allowed, res.RetryAfter, err
		}},
		passwords: mfa.NewGate(l.PasswordHashMemoryMiB<<20, l.PasswordHashWait.D(), l.PasswordHashCPUPercent),
	}
}

type requestKey struct{}

// guardToken puts the token endpoint under the limits: the per-address
// throttle, the owner's TOTP counter for mfa_required keys and the address's
// failure counter for wrong client secrets.
func (s *Server) guardToken(e *token.Endpoint, al authLimits) http.Handler {
	keys := e.Keys
	e.Keys = guardedKeys{inner: keys, guard: al.guard}
	e.MFA = func(ctx context.Context, principalID, code string) error {
		r, ok := ctx.Value(requestKey{}).(*http.Request)
		if !ok { // not through guardToken's handler: refuse rather than check without limits
			return errors.New("server: a TOTP check outside the guarded token endpoint")
		}
		return al.guard.CheckSecondFactor(r, mfa.Checker{Store: s.db, Opener: s.keyring, Now: time.Now}, principalID, code, "")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, after := al.throttle.Allow(r.Context(), admin.SourceAddr(r, s.cfg.TrustProxyHeaders, trustedProxies(s.cfg.TrustedProxies))); !ok {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Retry-After", strconv.FormatInt(int64(after/time.Second), 10))
			w.WriteHeader(http.StatusTooManyRequests)
			json.NewEncoder(w).Encode(map[string]string{"error": "too_many_requests", "error_description": "too many token requests from this address; retry later"})
			return
		}
		e.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestKey{}, r)))
	})
}

// guardedKeys counts wrong client secrets against the caller's address (a
// wrong secret names no credential to count against).
type guardedKeys struct {
	inner token.KeyAuthenticator
	guard *admin.Guard
}

func (g guardedKeys) Authenticate(ctx context.Context, credential string) (auth.Caller, error) {
	r, _ := ctx.Value(requestKey{}).(*http.Request)
	if r == nil {
		return g.inner.Authenticate(ctx, credential)
	}
	if err := g.guard.CheckSource(r); err != nil {
		return auth.Caller{}, err
	}
	c, err := g.inner.Authenticate(ctx, credential)
	if err != nil {
		var he *httpx.Error
		if !(errors.As(err, &he) && he.Status >= 500) {
			g.guard.Failed(r, "", "client_secret")
		}
	}
	return c, err
}
