// Package proxy is the data plane: the request path of DESIGN.md §3 as one
// straight-line handler per call, each step a call into one domain package.
//
//  1. take the current snapshot (routes, prices);
//  2. authenticate the caller (virtual key → key, principal);
//  3. read the body once, strictly (body.go): JSON v2 semantics, no duplicate
//     name at any depth, valid UTF-8, no case or fold variant of a governed
//     field, the output cap as the endpoint's API defines it; every later
//     decision is made on this one reading, and what goes upstream is the
//     checked bytes or a re-serialisation of them that reads the same;
//  4. check the key's scope (endpoint, model, source address);
//  5. route the model to an upstream;
//     (steps 2 to 5, with the policy and rate limits of 6, are prepare.go:
//     one front half for every route, count_tokens included);
//  6. policy, rate limits, then the budget reservation of the worst case
//     (worstcase.go: a structured walk of the body, every multiplier, every
//     input kind; fields with no computable bound refused under a hard
//     budget, and so are top-level fields, Anthropic betas and API versions
//     the gateway does not know: fields.go), then the write-ahead ledger
//     record;
//  7. call the upstream, retrying on another key only before any byte reached
//     the caller and never once a request was written in full; stream SSE
//     through, flushing per event, metering as it goes (package provider
//     reads usage only when the upstream's JSON has one reading);
//  8. settle: charged ≥ billed. Usage reported: its cost at the service
//     tier the response reports (above the hold: charged anyway and flagged
//     over_reservation; a tier the gateway cannot price: the whole hold). Usage missing, or the
//     call ended early after the request left: the whole hold. The breaker
//     sees what was charged. Record usage, also when the caller disconnects.
//
// With a Sequencer ledger (ledger.Log) a call makes one durable write per
// phase: the budget hold is decided in memory (budget.Ledger.Admit) and
// made durable with the start record in the sequencer's batch; the
// settlement and the usage row ride the end record (optionally lagging:
// Options.LagEnd). Without one, holds, settlements and usage rows are
// written by their own packages. The end of a call refused before its start
// record was sent (no hold, no charge) is marked ledger.Entry.NothingAtStake:
// during a long store outage the log may count it into a summary record
// instead of keeping it in memory (docs/design/faults.md).
//
// Errors are rendered in the API's own shape (OpenAI's, or Anthropic's on
// /v1/messages) with the request id; causes are logged, never sent; no
// credential is logged or recorded.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/token"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Authenticator turns a credential into a caller.
type Authenticator interface {
	Authenticate(ctx context.Context, credential string) (auth.Caller, error)
	Principal(ctx context.Context, id string) (org.Principal, error)
	KeyByID(ctx context.Context, id string) (vkey.Key, error)
}

// Tokens verifies access tokens and DPoP proofs (package token).
type Tokens struct {
	Issuer   *token.Issuer
	DPoP     *token.DPoP
	Endpoint http.Handler // POST /v1/auth/token
	Metadata http.Handler // GET /.well-known/oauth-authorization-server (RFC 8414); may be nil
}

// Recorder stores usage records durably.
type Recorder interface {
	Record(ctx context.Context, r usage.Record) error
}

// Breaker watches spend velocity (package breaker).
type Breaker interface {
	Observe(ctx context.Context, keyID string, cost int64) bool
}

// Limiter applies rate limits (package ratelimit).
type Limiter interface {
	Admit(ctx context.Context, id string, c ratelimit.Call, tokens int64) (*ratelimit.Ticket, error)
}

// Ledger makes records durable (package ledger).
type Ledger interface {
	Append(ctx context.Context, e ledger.Entry) (int64, error)
}

// Sequencer is a Ledger whose store makes a call's hold durable with its
// start record, and its settlement and usage row with its end record
// (ledger.Log): one durable write per call phase. With a Ledger that is not
// one, holds are written by Budgets.Reserve and usage rows by the Recorder.
type Sequencer interface {
	Ledger
	CarriesCalls() bool
	Enqueue(ctx context.Context, e ledger.Entry) error
}

// Alerter tells operators (package alert).
type Alerter interface {
	Send(a alert.Alert)
}

// Deps are the Handler's collaborators; Limiter, Budgets, Breaker, Ledger and Alerts may be nil.
type Deps struct {
	Alerts   Alerter
	Ledger   Ledger
	Tokens   *Tokens
	Limiter  Limiter
	Snapshot func() *config.Snapshot
	Auth     Authenticator
	Usage    Recorder
	Budgets  Budgets
	Breaker  Breaker
	Log      *slog.Logger
	// Denied traces refused credentials in the ledger (package denylog); may be nil.
	Denied   DeniedRecorder
	Observer Observer // metrics and traces (observe.go); nil: none
	// Clock stamps calls (usage and ledger times, latency, key and MFA age,
	// the time policies see); nil is time.Now. The server passes its own
	// clock so end-to-end tests of time-based audit rules can drive it.
	Clock func() time.Time
}

// Options configures a Handler. Zero durations and sizes take the defaults.
type Options struct {
	MaxBodyBytes      int64         // default 16 MiB
	MaxResponseBytes  int64         // default 64 MiB (non-streaming upstream bodies)
	UpstreamTimeout   time.Duration // whole upstream call, default 10 min
	StreamIdleTimeout time.Duration // longest silence inside a stream, default 5 min
	TrustProxyHeaders bool          // take the source address from X-Forwarded-For
	DefaultMaxOutput  int64         // output ceiling for budgets when neither call nor price table gives one; default 32768
	PolicyZone        string        // time zone of the hour and weekday policies see; default UTC
	// AllowUnboundedCost lets keys under a hard budget use request fields
	// whose cost the gateway cannot bound (background, previous_response_id,
	// server-side tools, files, audio…); see docs/budgets.md. Default off.
	AllowUnboundedCost bool
	// Fields extends the top-level request fields and Anthropic betas a key
	// under a hard budget may send (fields.go; budgets.allow_fields and
	// budgets.allow_betas in the configuration).
	Fields FieldPolicy
	// ClientPrincipals maps verified client-certificate identities (URI SAN,
	// DNS SAN or CN) to principal names or ids (mTLS).
	ClientPrincipals map[string]string
	// TrustedProxies are the proxies in front of the gateway: with
	// TrustProxyHeaders, see httpx.SourceAddr.
	TrustedProxies []netip.Prefix
	// LagEnd lets a call's end entry lag: the handler hands it to the
	// sequencer and returns without waiting for its commit (the hold is
	// durable and charged in full if the end is lost;
	// docs/design/one-write-per-phase.md). Off by default: the handler
	// waits, so that a call's usage row and settlement are visible once
	// its handler returned.
	LagEnd bool
}

// Handler serves the data plane.
type Handler struct {
	calls    atomic.Int64 // generation calls in progress (InFlight)
	snapshot func() *config.Snapshot
	auth     Authenticator
	rec      Recorder
	ledger   Ledger
	seq      Sequencer // the ledger, when it carries calls' holds, settlements and usage
	tokens   *Tokens
	limiter  Limiter
	budgets  Budgets
	breaker  Breaker
	alerts   Alerter
	observer Observer
	log      *slog.Logger
	opt      Options
	now      func() time.Time
	zone     *time.Location
	mux      *http.ServeMux
	served   http.Handler // mux behind httpx.Middleware, built once
	denied   DeniedRecorder
}

// New returns the data-plane handler.
func New(d Deps, opt Options) *Handler {
	if opt.MaxBodyBytes <= 0 {
		opt.MaxBodyBytes = 16 << 20
	}
	if opt.MaxResponseBytes <= 0 {
		opt.MaxResponseBytes = 64 << 20
	}
	if opt.UpstreamTimeout <= 0 {
		opt.UpstreamTimeout = 10 * time.Minute
	}
	if opt.StreamIdleTimeout <= 0 {
		opt.StreamIdleTimeout = 5 * time.Minute
	}
	if opt.DefaultMaxOutput <= 0 {
		opt.DefaultMaxOutput = 32768
	}
	h := &Handler{zone: time.UTC, snapshot: d.Snapshot, auth: d.Auth, rec: d.Usage, ledger: d.Ledger, tokens: d.Tokens, limiter: d.Limiter, budgets: d.Budgets, breaker: d.Breaker, alerts: d.Alerts, observer: d.Observer, log: d.Log, opt: opt, now: time.Now, mux: http.NewServeMux()}
	if sq, ok := d.Ledger.(Sequencer); ok && sq.CarriesCalls() {
		h.seq = sq
	}
	for _, ep := range []provider.Endpoint{provider.Chat, provider.Completions, provider.Embeddings, provider.Responses, provider.Messages, provider.CountTokens} {
		h.mux.HandleFunc("POST /v1"+strings.TrimPrefix(ep.Path, "/v1"), h.call(ep))
	}
	h.denied = d.Denied
	if d.Clock != nil {
		h.now = d.Clock
	}
	if z, err := time.LoadLocation(opt.PolicyZone); err == nil && opt.PolicyZone != "" {
		h.zone = z
	}
	if d.Tokens != nil {
		h.mux.Handle("POST /v1/auth/token", d.Tokens.Endpoint)
		if d.Tokens.Metadata != nil {
			h.mux.Handle("GET "+token.MetadataPath, d.Tokens.Metadata)
			h.mux.Handle("GET "+token.MetadataPath+"/{issuerPath...}", d.Tokens.Metadata)
		}
		h.mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "public, max-age=300")
			json.NewEncoder(w).Encode(d.Tokens.Issuer.JWKS())
		})
	}
	h.mux.HandleFunc("GET /v1/models", h.wrap(h.models))
	h.mux.HandleFunc("GET /v1/models/{model...}", h.wrap(h.model))
	h.mux.HandleFunc("/", h.wrap(h.notFound))
	h.served = httpx.Middleware(h.log, flavorOf, h.mux)
	return h
}

func flavorOf(r *http.Request) httpx.Flavor {
	if strings.HasPrefix(r.URL.Path, "/v1/messages") || r.Header.Get("Anthropic-Version") != "" {
		return httpx.Anthropic
	}
	return httpx.OpenAI
}

// InFlight reports how many generation calls are in progress: the
// sequencer's hint that more entries are coming (ledger.Log.Calls).
func (h *Handler) InFlight() int { return int(h.calls.Load()) }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.served.ServeHTTP(w, r)
}

func (h *Handler) wrap(fn func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			httpx.Render(w, r, h.log, flavorOf(r), err)
		}
	}
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) error {
	for _, p := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages"} {
		if r.URL.Path == p {
			e := httpx.Errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s %s is not supported; use POST", r.Method, r.URL.Path)
			e.Header = http.Header{"Allow": {"POST"}}
			return e
		}
	}
	return httpx.Errorf(http.StatusNotFound, "unknown_url", "Unknown request URL: %s %s", r.Method, r.URL.Path)
}

// credential returns the caller's credential and its scheme: Authorization:
// Bearer (a key or a token), Authorization: DPoP (a bound token), or x-api-key.
func credential(r *http.Request) (scheme, cred string) {
	if v := r.Header.Get("Authorization"); v != "" {
		s, rest, _ := strings.Cut(v, " ")
		switch {
		case strings.EqualFold(s, "Bearer"):
			return "Bearer", strings.TrimSpace(rest)
		case strings.EqualFold(s, "DPoP"):
			return "DPoP", strings.TrimSpace(rest)
		}
		return "", ""
	}
	return "Bearer", strings.TrimSpace(r.Header.Get("X-Api-Key"))
}

// requestURL is the absolute URL of r as the client addressed it (DPoP htu).
func (h *Handler) requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if h.opt.TrustProxyHeaders {
		if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
			scheme = p
		}
	}
	// The path as sent, escapes included: decoded, an escaped "?" would end
	// the path early and an escaped "/" would match an htu naming a "/".
	return scheme + "://" + r.Host + r.URL.EscapedPath()
}

// Keyless reports whether a caller's key id names no stored key: a client
// certificate ("mtls:…") or a workload identity ("wif:…") caller, which
// the breaker cannot suspend.
func Keyless(keyID string) bool {
	return strings.HasPrefix(keyID, "mtls:") || strings.HasPrefix(keyID, "wif:")
}

func looksLikeJWT(s string) bool { return strings.Count(s, ".") == 2 && !vkey.LooksLikeKey(s) }

// authenticateCert maps a verified client certificate to its principal (mTLS).
// The certificate is proof of possession in itself.
func (h *Handler) authenticateCert(r *http.Request) (auth.Caller, error) {
	cert := r.TLS.VerifiedChains[0][0]
	var ids []string
	for _, u := range cert.URIs {
		ids = append(ids, u.String())
	}
	ids = append(ids, cert.DNSNames...)
	ids = append(ids, cert.Subject.CommonName)
	for _, id := range ids {
		name, ok := h.opt.ClientPrincipals[id]
		if !ok {
			continue
		}
		p, err := h.auth.Principal(r.Context(), name)
		if err != nil {
			return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "unknown_certificate", "The client certificate maps to no principal.").WithCause(err)
		}
		if p.Disabled {
			return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "principal_disabled", "The owner of this certificate is disabled.")
		}
		team := ""
		if len(p.Teams) > 0 {
			team = p.Teams[0]
		}
		return auth.Caller{Key: vkey.Key{ID: "mtls:" + id, Kind: vkey.KindVirtual, PrincipalID: p.ID, TeamID: team, CreatedAt: cert.NotBefore},
			Principal: p, PoP: true}, nil
	}
	return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "unknown_certificate", "The client certificate is valid but maps to no principal (tls.client_principals).")
}

// authenticateToken verifies an access token, its DPoP binding, and that the
// key it was exchanged for still stands.
func (h *Handler) authenticateToken(r *http.Request, scheme, raw string) (auth.Caller, error) {
	claims, err := h.tokens.Issuer.Verify(raw)
	switch {
	case errors.Is(err, token.ErrExpired):
		return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "token_expired", "The access token has expired; get a new one from /v1/auth/token.")
	case errors.Is(err, token.ErrRevoked):
		return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "token_revoked", "The access token has been revoked.")
	case err != nil:
		return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "invalid_token", "The access token is not valid.").WithCause(err)
	}
	if claims.Cnf != nil {
		if scheme != "DPoP" {
			return auth.Caller{}, tokenChallenge(httpx.Errorf(http.StatusUnauthorized, "invalid_token", "This token is bound to a key: send it as Authorization: DPoP with a DPoP proof."), "DPoP")
		}
		jkt, err := h.tokens.DPoP.CheckFor(r.Header.Get("DPoP"), r.Method, h.requestURL(r), raw, claims.Cnf.JKT)
		if err != nil && !errors.Is(err, token.ErrOtherKey) {
			return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "invalid_dpop_proof", "The DPoP proof is not valid: %s.", strings.TrimPrefix(err.Error(), "dpop: invalid proof: "))
		}
		if err != nil || jkt != claims.Cnf.JKT {
			return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "invalid_dpop_proof", "The DPoP proof is signed by another key than the token is bound to.")
		}
	} else if scheme == "DPoP" {
		return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "invalid_token", "This token is not bound to a key; send it as Authorization: Bearer.")
	}
	p, err := h.auth.Principal(r.Context(), claims.Subject)
	if err != nil {
		return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "invalid_token", "The token's principal does not exist.").WithCause(err)
	}
	if p.Disabled {
		return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "principal_disabled", "The owner of this token is disabled.")
	}
	k := vkey.Key{ID: "wif:" + claims.Source, Kind: vkey.KindVirtual, PrincipalID: p.ID, TeamID: claims.Team, Scope: claims.Scope}
	if claims.IssuedAt != nil {
		k.CreatedAt = claims.IssuedAt.Time()
	}
	if claims.KeyID != "" {
		src, err := h.auth.KeyByID(r.Context(), claims.KeyID)
		if err != nil {
			return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "invalid_token", "The key this token was exchanged for no longer exists.").WithCause(err)
		}
		if err := src.State(h.now()); err != nil {
			return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "key_revoked", "The key this token was exchanged for is revoked, expired or suspended.").
				WithCause(&vkey.Denied{KeyID: src.ID, PrincipalID: src.PrincipalID, Err: err})
		}
		if src.MFARequired && claims.MFAAt == 0 {
			return auth.Caller{}, httpx.Errorf(http.StatusForbidden, "mfa_required", "This key's tokens need its owner's TOTP code at exchange.")
		}
		k = src
		// The key's current scope, narrowed to the endpoints the token was
		// issued for (the key's at the time, or fewer when the client asked).
		if len(claims.Scope.Endpoints) > 0 {
			var both []string
			for _, e := range claims.Scope.Endpoints {
				if src.Scope.AllowsEndpoint(e) {
					both = append(both, e)
				}
			}
			if len(both) == 0 { // an empty list would mean "every endpoint"
				return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "invalid_token", "The token's scope no longer overlaps its key's.")
			}
			k.Scope.Endpoints = both
		}
	}
	return auth.Caller{Key: k, Principal: p, MFAAt: claims.MFAAt, PoP: claims.Cnf != nil}, nil
}

// authenticateCredential maps every way a credential can fail to 401, and a
// store fault to 503: never "allowed" by accident.
func (h *Handler) authenticateCredential(r *http.Request) (_ auth.Caller, err error) {
	scheme, cred := credential(r)
	defer func() { err = tokenChallenge(err, scheme) }()
	if cred == "" && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return h.authenticateCert(r)
	}
	if cred != "" && h.tokens != nil && looksLikeJWT(cred) {
		return h.authenticateToken(r, scheme, cred)
	}
	if scheme == "DPoP" {
		return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "invalid_token", "Authorization: DPoP carries an access token.")
	}
	if cred == "" {
		return auth.Caller{}, httpx.Errorf(http.StatusUnauthorized, "missing_api_key",
			"You didn't provide an API key. Pass a Gatehouse key in the Authorization header (Bearer gk_...) or x-api-key.")
	}
	c, err := h.auth.Authenticate(r.Context(), cred)
	switch {
	case err == nil && c.Key.MFARequired:
		return c, httpx.Errorf(http.StatusForbidden, "mfa_required",
			"This key needs its owner's second factor: exchange it with a TOTP code at /v1/auth/token (grant_type=client_credentials, client_secret=<key>, totp=<code>) and call with the token.")
	case err == nil:
		return c, nil
	case errors.Is(err, vkey.ErrMalformed), errors.Is(err, vkey.ErrChecksum):
		return c, httpx.Errorf(http.StatusUnauthorized, "invalid_api_key", "Malformed API key: not a Gatehouse key, or mistyped.").WithCause(err)
	case errors.Is(err, vkey.ErrUnknown):
		return c, httpx.Errorf(http.StatusUnauthorized, "invalid_api_key", "Incorrect API key provided.").WithCause(err)
	case errors.Is(err, vkey.ErrRevoked):
		return c, httpx.Errorf(http.StatusUnauthorized, "key_revoked", "This API key has been revoked.").WithCause(err)
	case errors.Is(err, vkey.ErrSuspended):
		return c, httpx.Errorf(http.StatusForbidden, "key_suspended",
			"This API key is suspended: its spend rate tripped the spend-velocity breaker. An administrator must reinstate it.").WithCause(err)
	case errors.Is(err, vkey.ErrRotated):
		return c, httpx.Errorf(http.StatusUnauthorized, "key_rotated", "This API key was rotated and its grace period has ended; use the new key.").WithCause(err)
	case errors.Is(err, vkey.ErrExpired):
		return c, httpx.Errorf(http.StatusUnauthorized, "key_expired", "This API key has expired.").WithCause(err)
	case errors.Is(err, auth.ErrDisabled):
		return c, httpx.Errorf(http.StatusUnauthorized, "principal_disabled", "The owner of this API key is disabled.").WithCause(err)
	case errors.Is(err, store.ErrNotFound):
		return c, httpx.Errorf(http.StatusUnauthorized, "invalid_api_key", "Incorrect API key provided.").WithCause(err)
	}
	return c, httpx.Errorf(http.StatusServiceUnavailable, "auth_unavailable", "Authentication is unavailable; try again shortly.").WithCause(err)
}

// sourceAddr returns the caller's address: the connection's, or with
// TrustProxyHeaders the rightmost X-Forwarded-For entry that is not a trusted
// proxy (httpx.SourceAddr).
func (h *Handler) sourceAddr(r *http.Request) netip.Addr {
	return httpx.SourceAddr(r.RemoteAddr, r.Header, h.opt.TrustProxyHeaders, h.opt.TrustedProxies)
}

func (h *Handler) checkScope(r *http.Request, c auth.Caller, endpoint string) error {
	if !c.Key.Scope.AllowsEndpoint(endpoint) {
		return httpx.Errorf(http.StatusForbidden, "endpoint_not_allowed", "This API key may not use the %s endpoint.", endpoint)
	}
	if !c.Key.Scope.AllowsAddr(h.sourceAddr(r)) {
		return httpx.Errorf(http.StatusForbidden, "source_not_allowed", "This API key may not be used from your network address.")
	}
	return nil
}

func (h *Handler) models(w http.ResponseWriter, r *http.Request) error {
	c, err := h.authenticate(r)
	if err != nil {
		return err
	}
	if err := h.checkModelsScope(r, c); err != nil {
		return err
	}
	var ids []string
	snap := h.snapshot()
	for _, m := range snap.Router.Models(sim.Models) {
		if c.Key.Scope.AllowsModel(m.ID) && h.decide(r, c, snap, vkey.EndpointModels, m.ID, m.Provider, Call{}, 0).Allow {
			ids = append(ids, m.ID)
		}
	}
	if err := h.modelsOutcome(r, c, "", modelAllowed(http.StatusOK, ""), nil); err != nil {
		return err
	}
	writeModelList(w, r, ids)
	return nil
}

func (h *Handler) model(w http.ResponseWriter, r *http.Request) error {
	c, err := h.authenticate(r)
	if err != nil {
		return err
	}
	if err := h.checkModelsScope(r, c); err != nil {
		return err
	}
	id := r.PathValue("model")
	snap := h.snapshot()
	notFound := httpx.Errorf(http.StatusNotFound, "model_not_found", "The model '%s' does not exist or you do not have access to it.", id).WithParam("model")
	// A model the caller may not use is answered as unknown; the record says
	// why. One allowing route is enough (a model may be served by several).
	verdict := modelAllowed(http.StatusNotFound, "model_not_found")
	for _, m := range snap.Router.Models(sim.Models) {
		if m.ID != id {
			continue
		}
		if !c.Key.Scope.AllowsModel(id) {
			verdict = modelRefused("model_not_allowed", nil)
			continue
		}
		if d := h.decide(r, c, snap, vkey.EndpointModels, id, m.Provider, Call{}, 0); !d.Allow {
			verdict = modelRefused("policy_denied", d.Reasons)
			continue
		}
		if err := h.modelsOutcome(r, c, id, modelAllowed(http.StatusOK, ""), nil); err != nil {
			return err
		}
		writeModel(w, r, id)
		return nil
	}
	return h.modelsOutcome(r, c, id, verdict, notFound)
}

// principalTeam returns the team a call is attributed to: the key's team, or
// the principal's first team.
func principalTeam(k vkey.Key, p org.Principal) string {
	if k.TeamID != "" {
		return k.TeamID
	}
	if len(p.Teams) > 0 {
		return p.Teams[0]
	}
	return ""
}
