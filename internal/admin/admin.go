// Package admin is the admin API: JSON over HTTP on the admin listener
// (127.0.0.1:8081 by default), described by the OpenAPI document it serves at
// /v1/openapi.json. Admin keys (gka_…) authenticate it.
//
// Every single resource carries a version, returned as a strong ETag; PATCH,
// DELETE and revoke honour If-Match and answer 412 when the resource moved on
// (optimistic concurrency, as Caddy's admin API does). Secrets appear exactly
// once: a created key's secret in the create response. Upstream keys are never
// returned at all.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/keyring"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/lockout"
	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/sso"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Store is what the admin API needs from storage.
type Store interface {
	budget.Store
	mfa.Store
	mfa.PasskeyStore
	RevokeToken(ctx context.Context, jti string, expires time.Time) error
	RevokeTokensBefore(ctx context.Context, principalID string, before time.Time) error
	policy.Store
	ratelimit.Store
	org.Store
	vkey.Store
	provider.Store
	usage.Store
	ListPrices(ctx context.Context) ([]pricing.Price, error)
	SetPrice(ctx context.Context, p pricing.Price) error
	DeletePrice(ctx context.Context, model string) error
	Ping(ctx context.Context) error
}

// Snapshot gives the admin API a view of routing, prices and policies.
type Snapshot interface {
	Policies() *policy.Set
	Prices() *pricing.Table
	Models() []provider.ModelInfo
	Simulated() bool
}

// Deps are the admin API's collaborators.
type Deps struct {
	Store    Store
	Keyring  *keyring.Keyring
	Verifier *vkey.Verifier
	// ForgetPrincipal drops cached principal state after a change.
	ForgetPrincipal func(id string)
	// ForgetKey drops key state cached by id (tokens exchanged for it check it).
	ForgetKey func(id string)
	// Reload rebuilds the request-path snapshot after routing or prices changed.
	Reload   func(ctx context.Context) error
	Snapshot func() Snapshot
	// Spend returns budgets with their current period's money.
	Spend func(ctx context.Context, bs []budget.Budget) ([]budget.Status, error)
	// ResetBreaker forgets a key's spend window once it is reinstated.
	ResetBreaker func(keyID string)
	// Ledger records every admin change; LogHandler serves the log under /log/.
	Ledger interface {
		Append(ctx context.Context, e ledger.Entry) (int64, error)
	}
	LogHandler http.Handler
	// PolicyZone is the time zone policies see (default UTC).
	PolicyZone *time.Location
	// SessionTTL is how long a login session lasts (default 12h).
	SessionTTL time.Duration
	// RequireMFA refuses logins of users without TOTP.
	RequireMFA bool
	// StepUpMaxAge is how recent a second factor sensitive actions need (0: no
	// built-in step-up); named in refusals.
	StepUpMaxAge time.Duration
	// WebAuthn runs passkey ceremonies; nil when passkeys are not configured.
	WebAuthn *webauthn.WebAuthn
	// SSO verifies ID tokens of the organisation's identity provider for OIDC
	// login; nil when it is not configured.
	SSO *sso.Verifier
	// KeyMaxAge returns the maximum age of a key of the team, which caps the
	// expiry of new keys (0: no limit). Nil: no limit.
	KeyMaxAge func(teamID string) time.Duration
	// RotateLedgerKey makes a new checkpoint signing key current.
	RotateLedgerKey func(ctx context.Context) (string, error)
	// RotateTokenKey makes a new token signing key current.
	RotateTokenKey func(ctx context.Context) (string, error)
	// Guard limits guesses of passwords and codes and records failures
	// (attempts.go); Passwords bounds argon2id's memory; Throttle limits
	// unauthenticated auth requests per source address; Alerts receives
	// factor-change alerts. Nil: no limits, default bound, no alerts.
	Guard     *Guard
	Passwords *mfa.Gate
	Throttle  *lockout.Throttle
	Alerts    interface{ Send(alert.Alert) }
	// Audit is the findings engine (findings, leaked keys, reports); nil: no audit routes.
	Audit *audit.Engine
	// DevAdminKeyHash, in dev mode, is the hash of a free-form admin key.
	DevAdminKeyHash string
	Log             *slog.Logger
	Now             func() time.Time
}

// Handler serves the admin API.
type Handler struct {
	d   Deps
	mux *routeMux
}

// New returns the admin API handler.
func New(d Deps) *Handler {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.ForgetPrincipal == nil {
		d.ForgetPrincipal = func(string) {}
	}
	if d.ForgetKey == nil {
		d.ForgetKey = func(string) {}
	}
	h := &Handler{d: d, mux: newRouteMux()}
	h.routes()
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httpx.Middleware(h.d.Log, func(*http.Request) httpx.Flavor { return httpx.OpenAI }, h.mux).ServeHTTP(w, r)
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, who vkey.Key) error

// authed wraps fn with admin-key authentication and error rendering, and
// records every successful change in the ledger.
func (h *Handler) authed(fn handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, err := h.authenticate(r)
		if se, ok := currentSession(r); err == nil && ok && h.enrolmentOnly(se) && !enrolmentRoutes[r.Pattern] {
			err = errEnrolmentOnly
		}
		sw := &statusRecorder{ResponseWriter: w}
		if err == nil && !strings.HasPrefix(r.URL.Path, "/v1/auth/") { // one's own session: not an admin action
			err = h.authorize(r, who)
		}
		if err == nil {
			err = fn(sw, r, who)
		}
		if err != nil {
			httpx.Render(w, r, h.d.Log, httpx.OpenAI, mapStoreError(err))
			return
		}
		if r.Method != http.MethodGet && h.d.Ledger != nil && sw.status < 300 {
			rec := ledger.Record{Kind: ledger.KindAdmin, Time: h.d.Now(), RequestID: httpx.RequestID(r.Context()), PrincipalID: who.PrincipalID,
				KeyID: who.ID, Action: r.Method + " " + r.Pattern, Target: targetOf(r, sw.target), Status: sw.status}
			if _, err := h.d.Ledger.Append(context.WithoutCancel(r.Context()), ledger.Entry{Data: rec.Marshal(), RequestID: rec.RequestID}); err != nil {
				h.d.Log.Error("ledger: an admin change was made but not recorded", "action", rec.Action, "target", rec.Target, "err", err)
			}
		}
	}
}

// targetOf names the resource an admin request changed: the path's id, or the
// id of what it created.
func targetOf(r *http.Request, created string) string {
	for _, k := range []string{"id", "model", "key"} {
		if v := r.PathValue(k); v != "" {
			if k == "key" {
				return r.PathValue("id") + "/" + v
			}
			return v
		}
	}
	return created
}

// statusRecorder remembers the status and the id of a created resource.
type statusRecorder struct {
	http.ResponseWriter
	status int
	target string
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if s.target == "" && s.status == http.StatusCreated {
		var v struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(b, &v) == nil {
			s.target = v.ID
		}
	}
	return s.ResponseWriter.Write(b)
}

func (h *Handler) open(fn func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			httpx.Render(w, r, h.d.Log, httpx.OpenAI, err)
		}
	}
}

func (h *Handler) authenticate(r *http.Request) (vkey.Key, error) {
	cred := r.Header.Get("x-api-key")
	if v := r.Header.Get("Authorization"); v != "" {
		if scheme, rest, _ := strings.Cut(v, " "); strings.EqualFold(scheme, "Bearer") {
			cred = strings.TrimSpace(rest)
		}
	}
	if cred == "" {
		return vkey.Key{}, httpx.Errorf(http.StatusUnauthorized, "missing_admin_key", "Admin API requests need an admin key: Authorization: Bearer gka_...")
	}
	var k vkey.Key
	var err error
	if strings.HasPrefix(cred, SessionPrefix) {
		var sr *http.Request
		k, sr, err = h.sessionCaller(r, cred)
		if err == nil {
			*r = *sr
		}
		return k, err
	}
	if !vkey.LooksLikeKey(cred) && h.d.DevAdminKeyHash != "" {
		hash := h.d.Verifier.Hasher().Hash(vkey.Secret(cred))
		if subtle.ConstantTimeCompare([]byte(hash), []byte(h.d.DevAdminKeyHash)) != 1 {
			return vkey.Key{}, httpx.Errorf(http.StatusUnauthorized, "invalid_admin_key", "Incorrect admin key provided.")
		}
		k, err = h.d.Verifier.VerifyHash(r.Context(), hash)
	} else {
		k, err = h.d.Verifier.Verify(r.Context(), cred, vkey.KindAdmin)
	}
	switch {
	case err == nil:
		return k, nil
	case errors.Is(err, vkey.ErrRevoked):
		return k, httpx.Errorf(http.StatusUnauthorized, "key_revoked", "This admin key has been revoked.")
	case errors.Is(err, vkey.ErrExpired), errors.Is(err, vkey.ErrRotated):
		return k, httpx.Errorf(http.StatusUnauthorized, "key_expired", "This admin key has expired or was rotated.")
	case errors.Is(err, vkey.ErrMalformed), errors.Is(err, vkey.ErrChecksum), errors.Is(err, vkey.ErrUnknown):
		return k, httpx.Errorf(http.StatusUnauthorized, "invalid_admin_key", "Incorrect admin key provided.")
	}
	return k, httpx.Errorf(http.StatusServiceUnavailable, "auth_unavailable", "Authentication is unavailable; try again shortly.").WithCause(err)
}

func mapStoreError(err error) error {
	var he *httpx.Error
	if errors.As(err, &he) {
		return err
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return httpx.Errorf(http.StatusNotFound, "not_found", "No such resource.").WithCause(err)
	case errors.Is(err, store.ErrConflict):
		return httpx.Errorf(http.StatusPreconditionFailed, "precondition_failed", "The resource changed since you read it (If-Match does not match); read it again.").WithCause(err)
	case errors.Is(err, store.ErrExists):
		return httpx.Errorf(http.StatusConflict, "already_exists", "A resource with that name already exists.").WithCause(err)
	case errors.Is(err, store.ErrInUse):
		return httpx.Errorf(http.StatusConflict, "in_use", "The resource is still in use.").WithCause(err)
	}
	return err
}

// decode reads a JSON body strictly: unknown fields are errors, so typos fail
// loudly instead of being ignored.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return httpx.Errorf(http.StatusBadRequest, "invalid_json", "Invalid request body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// ifMatch returns the version the caller expects, or store.AnyVersion.
func ifMatch(r *http.Request) (int64, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" || v == "*" {
		return store.AnyVersion, nil
	}
	n, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(v, "W/"), `"`), 10, 64)
	if err != nil || n <= 0 {
		return 0, httpx.Errorf(http.StatusBadRequest, "invalid_if_match", "If-Match must be an ETag returned by this API.")
	}
	return n, nil
}

func writeVersioned(w http.ResponseWriter, status int, version int64, v any) {
	w.Header().Set("ETag", etag(version))
	writeJSON(w, status, v)
}

func badRequest(param, format string, args ...any) error {
	return httpx.Errorf(http.StatusBadRequest, "invalid_value", format, args...).WithParam(param)
}

// list wraps items as {"data": [...]}.
func list[T any](items []T) map[string]any {
	if items == nil {
		items = []T{}
	}
	return map[string]any{"data": items}
}

func parseTime(param, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, badRequest(param, "%s: want RFC 3339 (2026-01-02T15:04:05Z) or a date (2026-01-02)", param)
}
