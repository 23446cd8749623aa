package admin

import (
	"context"
	_ "embed"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/token"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI document of the admin API.
func OpenAPI() []byte { return openAPI }

func (h *Handler) routes() {
	m := h.mux
	m.HandleFunc("GET /healthz", h.open(func(w http.ResponseWriter, r *http.Request) error {
		writeJSON(w, 200, map[string]string{"status": "ok"})
		return nil
	}))
	m.HandleFunc("GET /readyz", h.open(func(w http.ResponseWriter, r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), 800*time.Millisecond) // answers within a second
		defer cancel()
		if err := h.d.Store.Ping(ctx); err != nil {
			return httpx.Errorf(http.StatusServiceUnavailable, "store_unavailable", "The store is not reachable.").WithCause(err)
		}
		writeJSON(w, 200, map[string]string{"status": "ready"})
		return nil
	}))
	m.HandleFunc("GET /v1/openapi.json", h.open(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
		return nil
	}))

	m.HandleFunc("GET /v1/teams", h.authed(h.listTeams))
	m.HandleFunc("POST /v1/teams", h.authed(h.createTeam))
	m.HandleFunc("GET /v1/teams/{id}", h.authed(h.getTeam))
	m.HandleFunc("PATCH /v1/teams/{id}", h.authed(h.patchTeam))
	m.HandleFunc("DELETE /v1/teams/{id}", h.authed(h.deleteTeam))

	m.HandleFunc("GET /v1/principals", h.authed(h.listPrincipals))
	m.HandleFunc("POST /v1/principals", h.authed(h.createPrincipal))
	m.HandleFunc("GET /v1/principals/{id}", h.authed(h.getPrincipal))
	m.HandleFunc("PATCH /v1/principals/{id}", h.authed(h.patchPrincipal))
	m.HandleFunc("DELETE /v1/principals/{id}", h.authed(h.deletePrincipal))

	m.HandleFunc("GET /v1/keys", h.authed(h.listKeys))
	m.HandleFunc("POST /v1/keys", h.authed(h.createKey))
	m.HandleFunc("GET /v1/keys/{id}", h.authed(h.getKey))
	m.HandleFunc("POST /v1/keys/{id}/revoke", h.authed(h.revokeKey))
	m.HandleFunc("POST /v1/keys/{id}/reinstate", h.authed(h.reinstateKey))
	m.HandleFunc("POST /v1/keys/{id}/rotate", h.authed(h.rotateKey))
	m.HandleFunc("POST /v1/tokens/revoke", h.authed(h.revokeTokens))
	m.HandleFunc("POST /v1/log/rotate-key", h.authed(func(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
		if h.d.RotateLedgerKey == nil {
			return httpx.Errorf(http.StatusNotFound, "not_found", "The ledger is not configured.")
		}
		vk, err := h.d.RotateLedgerKey(r.Context())
		if err != nil {
			return err
		}
		h.d.Log.Warn("ledger checkpoint key rotated", "key", vk, "by", who.ID)
		writeJSON(w, 200, map[string]any{"verifier_key": vk, "note": "checkpoints are co-signed with the previous key until the next rotation"})
		return nil
	}))
	m.HandleFunc("POST /v1/tokens/rotate-signing-key", h.authed(func(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
		if h.d.RotateTokenKey == nil {
			return httpx.Errorf(http.StatusNotFound, "not_found", "Token signing is not configured.")
		}
		kid, err := h.d.RotateTokenKey(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, 200, map[string]any{"kid": kid, "note": "the previous key keeps verifying until the next rotation"})
		return nil
	}))

	m.HandleFunc("GET /v1/providers", h.authed(h.listProviders))
	m.HandleFunc("POST /v1/providers", h.authed(h.createProvider))
	m.HandleFunc("GET /v1/providers/{id}", h.authed(h.getProvider))
	m.HandleFunc("DELETE /v1/providers/{id}", h.authed(h.deleteProvider))
	m.HandleFunc("POST /v1/providers/{id}/keys", h.authed(h.addProviderKey))
	m.HandleFunc("DELETE /v1/providers/{id}/keys/{key}", h.authed(h.deleteProviderKey))

	m.HandleFunc("GET /v1/models", h.authed(h.listModels))
	m.HandleFunc("GET /v1/prices", h.authed(h.listPrices))
	m.HandleFunc("PUT /v1/prices/{model...}", h.authed(h.setPrice))
	m.HandleFunc("DELETE /v1/prices/{model...}", h.authed(h.deletePrice))

	m.HandleFunc("GET /v1/usage", h.authed(h.listUsage))
	m.HandleFunc("GET /v1/usage/summary", h.authed(h.summarizeUsage))

	h.budgetRoutes()
	h.limitRoutes()
	h.policyRoutes()
	h.loginRoutes()
	h.auditRoutes()
	if h.d.LogHandler != nil {
		m.Handle("GET /log/", h.d.LogHandler) // public to whoever reaches the admin listener: auditors verify without credentials
	}

	m.HandleFunc("/", h.open(func(w http.ResponseWriter, r *http.Request) error {
		return httpx.Errorf(http.StatusNotFound, "unknown_url", "Unknown admin API route: %s %s (see /v1/openapi.json)", r.Method, r.URL.Path)
	}))
}

// Teams.

func (h *Handler) listTeams(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	ts, err := h.d.Store.ListTeams(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(ts))
	return nil
}

func (h *Handler) createTeam(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	var in struct {
		Name      string  `json:"name"`
		MaxKeyAge org.Age `json:"max_key_age"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if err := org.ValidateName(in.Name); err != nil {
		return badRequest("name", "%s", err)
	}
	if err := checkKeyAge(in.MaxKeyAge); err != nil {
		return err
	}
	t := org.Team{ID: vkey.NewID("team"), Name: in.Name, MaxKeyAge: in.MaxKeyAge, CreatedAt: h.d.Now().UTC(), Version: 1}
	if err := h.d.Store.CreateTeam(r.Context(), t); err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	writeVersioned(w, http.StatusCreated, t.Version, t)
	return nil
}

// checkKeyAge refuses key ages that are not whole seconds (they are stored in
// seconds, and a fraction would silently vanish).
func checkKeyAge(a org.Age) error {
	if time.Duration(a)%time.Second != 0 {
		return badRequest("max_key_age", "max_key_age %s: want whole seconds, such as 2160h", time.Duration(a))
	}
	return nil
}

// patchTeam renames a team or sets its maximum key age ("0s" clears it). The
// age applies at once to the team's existing keys, counted from their creation
// or last rotation.
func (h *Handler) patchTeam(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	v, err := ifMatch(r)
	if err != nil {
		return err
	}
	var in struct {
		Name      *string  `json:"name"`
		MaxKeyAge *org.Age `json:"max_key_age"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	t, err := h.d.Store.Team(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if in.Name != nil {
		if err := org.ValidateName(*in.Name); err != nil {
			return badRequest("name", "%s", err)
		}
		t.Name = *in.Name
	}
	if in.MaxKeyAge != nil {
		if err := checkKeyAge(*in.MaxKeyAge); err != nil {
			return err
		}
		t.MaxKeyAge = *in.MaxKeyAge
	}
	up, err := h.d.Store.UpdateTeam(r.Context(), t, v)
	if err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	writeVersioned(w, 200, up.Version, up)
	return nil
}

func (h *Handler) getTeam(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	t, err := h.d.Store.Team(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeVersioned(w, 200, t.Version, t)
	return nil
}

func (h *Handler) deleteTeam(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	v, err := ifMatch(r)
	if err != nil {
		return err
	}
	t, err := h.d.Store.Team(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := h.d.Store.DeleteTeam(r.Context(), t.ID, v); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Principals.

func (h *Handler) listPrincipals(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	team := r.URL.Query().Get("team")
	if team != "" {
		t, err := h.d.Store.Team(r.Context(), team)
		if err != nil {
			return err
		}
		team = t.ID
	}
	ps, err := h.d.Store.ListPrincipals(r.Context(), team)
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(ps))
	return nil
}

type principalInput struct {
	Name     *string   `json:"name"`
	Kind     *org.Kind `json:"kind"`
	Teams    *[]string `json:"teams"`
	Roles    *[]string `json:"roles"`
	Disabled *bool     `json:"disabled"`
}

// resolveTeams accepts team ids or names and returns ids.
func (h *Handler) resolveTeams(r *http.Request, in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, t := range in {
		team, err := h.d.Store.Team(r.Context(), t)
		if err != nil {
			return nil, badRequest("teams", "no team %q", t)
		}
		if !slices.Contains(out, team.ID) {
			out = append(out, team.ID)
		}
	}
	return out, nil
}

func (h *Handler) createPrincipal(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	var in principalInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	p := org.Principal{ID: vkey.NewID("prn"), Kind: org.KindServiceAccount, Roles: []string{"member"}, CreatedAt: h.d.Now().UTC(), Version: 1}
	if in.Name != nil {
		p.Name = *in.Name
	}
	if in.Kind != nil {
		p.Kind = *in.Kind
	}
	if in.Roles != nil {
		p.Roles = *in.Roles
	}
	if in.Disabled != nil {
		p.Disabled = *in.Disabled
	}
	if in.Teams != nil {
		teams, err := h.resolveTeams(r, *in.Teams)
		if err != nil {
			return err
		}
		p.Teams = teams
	}
	if err := p.Validate(); err != nil {
		return badRequest("", "%s", err)
	}
	if err := h.d.Store.CreatePrincipal(r.Context(), p); err != nil {
		return err
	}
	writeVersioned(w, http.StatusCreated, p.Version, p)
	return nil
}

func (h *Handler) getPrincipal(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	p, err := h.d.Store.Principal(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeVersioned(w, 200, p.Version, p)
	return nil
}

func (h *Handler) patchPrincipal(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	v, err := ifMatch(r)
	if err != nil {
		return err
	}
	var in principalInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	p, err := h.d.Store.Principal(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if in.Kind != nil && *in.Kind != p.Kind {
		return badRequest("kind", "the kind of a principal cannot change")
	}
	if in.Name != nil {
		p.Name = *in.Name
	}
	if in.Roles != nil {
		p.Roles = *in.Roles
	}
	if in.Disabled != nil {
		p.Disabled = *in.Disabled
	}
	if in.Teams != nil {
		if p.Teams, err = h.resolveTeams(r, *in.Teams); err != nil {
			return err
		}
	}
	if err := p.Validate(); err != nil {
		return badRequest("", "%s", err)
	}
	up, err := h.d.Store.UpdatePrincipal(r.Context(), p, v)
	if err != nil {
		return err
	}
	h.d.ForgetPrincipal(up.ID)
	writeVersioned(w, 200, up.Version, up)
	return nil
}

func (h *Handler) deletePrincipal(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	v, err := ifMatch(r)
	if err != nil {
		return err
	}
	p, err := h.d.Store.Principal(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := h.d.Store.DeletePrincipal(r.Context(), p.ID, v); err != nil {
		return err
	}
	h.d.ForgetPrincipal(p.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Keys.

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	q := r.URL.Query()
	f := vkey.Filter{Kind: vkey.Kind(q.Get("kind")), IncludeRevoked: q.Get("include_revoked") == "true"}
	if p := q.Get("principal"); p != "" {
		pr, err := h.d.Store.Principal(r.Context(), p)
		if err != nil {
			return err
		}
		f.PrincipalID = pr.ID
	}
	if t := q.Get("team"); t != "" {
		team, err := h.d.Store.Team(r.Context(), t)
		if err != nil {
			return err
		}
		f.TeamID = team.ID
	}
	ks, err := h.d.Store.ListKeys(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(h.views(ks)))
	return nil
}

// CreatedKey is a key with its secret, returned once.
type CreatedKey struct {
	KeyView
	Secret string `json:"key"`
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Name        string     `json:"name"`
		Kind        vkey.Kind  `json:"kind"`
		Principal   string     `json:"principal"`
		Team        string     `json:"team"`
		Scope       vkey.Scope `json:"scope"`
		ExpiresAt   *time.Time `json:"expires_at"`
		ExpiresIn   string     `json:"expires_in"`
		MFARequired bool       `json:"mfa_required"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Kind == "" {
		in.Kind = vkey.KindVirtual
	}
	if in.Kind != vkey.KindVirtual && in.Kind != vkey.KindAdmin {
		return badRequest("kind", "kind %q: want %q or %q", in.Kind, vkey.KindVirtual, vkey.KindAdmin)
	}
	if in.Principal == "" {
		return badRequest("principal", "principal is required: the id or name of the key's owner")
	}
	p, err := h.d.Store.Principal(r.Context(), in.Principal)
	if err != nil {
		return badRequest("principal", "no principal %q", in.Principal)
	}
	if p.Disabled {
		return badRequest("principal", "principal %q is disabled", p.Name)
	}
	team := ""
	if in.Team != "" {
		t, err := h.d.Store.Team(r.Context(), in.Team)
		if err != nil {
			return badRequest("team", "no team %q", in.Team)
		}
		if !p.InTeam(t.ID) {
			return badRequest("team", "principal %q is not in team %q", p.Name, t.Name)
		}
		team = t.ID
	} else if len(p.Teams) > 0 {
		team = p.Teams[0]
	}
	if err := in.Scope.Validate(); err != nil {
		return badRequest("scope", "%s", err)
	}
	now := h.d.Now().UTC()
	exp := in.ExpiresAt
	if in.ExpiresIn != "" {
		d, err := time.ParseDuration(in.ExpiresIn)
		if err != nil || d <= 0 {
			return badRequest("expires_in", "expires_in %q: want a positive duration such as 720h", in.ExpiresIn)
		}
		t := now.Add(d)
		exp = &t
	}
	if exp != nil && !exp.After(now) {
		return badRequest("expires_at", "expires_at is in the past")
	}
	if h.d.KeyMaxAge != nil { // the organisation's and the team's maximum key age cap every key
		if age := h.d.KeyMaxAge(team); age > 0 {
			if limit := now.Add(age); exp == nil || exp.After(limit) {
				exp = &limit
			}
		}
	}
	if in.Name != "" && len(in.Name) > 128 {
		return badRequest("name", "name longer than 128 characters")
	}
	if in.Kind == vkey.KindAdmin { // creating an admin key is its own, sensitive, action
		if err := h.authorizeAction(r, who, "keys.create_admin", "keys"); err != nil {
			return err
		}
	}
	if in.MFARequired && p.Kind != org.KindUser {
		return badRequest("mfa_required", "only a user's key can require the owner's TOTP code")
	}
	secret := vkey.Generate(in.Kind)
	k := vkey.Key{ID: vkey.NewID("key"), Kind: in.Kind, Name: in.Name, Hash: h.d.Verifier.Hasher().Hash(secret), Hint: secret.Hint(),
		PrincipalID: p.ID, TeamID: team, Scope: in.Scope, ExpiresAt: exp, CreatedAt: now, MFARequired: in.MFARequired, Version: 1}
	if err := h.d.Store.CreateKey(r.Context(), k); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeVersioned(w, http.StatusCreated, k.Version, CreatedKey{KeyView: h.view(k), Secret: secret.Reveal()})
	return nil
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	k, err := h.d.Store.Key(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeVersioned(w, 200, k.Version, h.view(k))
	return nil
}

func (h *Handler) revokeKey(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	v, err := ifMatch(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	k, err := h.d.Store.RevokeKey(r.Context(), id, h.d.Now().UTC(), v)
	if err != nil {
		return err
	}
	h.d.Verifier.Forget(id)
	h.d.ForgetKey(id)
	h.d.Log.Info("key revoked", "key_id", id, "by", who.ID)
	writeVersioned(w, 200, k.Version, h.view(k))
	return nil
}

// rotateKey gives a key a new secret, shown once; the old one keeps working
// for the grace period (default 24h), so callers can switch without an outage.
func (h *Handler) rotateKey(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Grace string `json:"grace"`
	}
	if r.ContentLength != 0 {
		if err := decode(w, r, &in); err != nil {
			return err
		}
	}
	grace := 24 * time.Hour
	if in.Grace != "" {
		d, err := time.ParseDuration(in.Grace)
		if err != nil || d < 0 {
			return badRequest("grace", "grace %q: want a duration such as 24h (0 ends the old secret now)", in.Grace)
		}
		grace = d
	}
	v, err := ifMatch(r)
	if err != nil {
		return err
	}
	k, err := h.d.Store.Key(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	secret := vkey.Generate(k.Kind)
	now := h.d.Now().UTC()
	k, err = h.d.Store.RotateKey(r.Context(), k.ID, h.d.Verifier.Hasher().Hash(secret), secret.Hint(), now, now.Add(grace), v)
	if err != nil {
		return err
	}
	h.d.Verifier.Forget(k.ID)
	h.d.ForgetKey(k.ID) // its tokens read it by id: they see the new version at once
	h.d.Log.Warn("key rotated", "key_id", k.ID, "grace", grace.String(), "by", who.ID)
	w.Header().Set("Cache-Control", "no-store")
	writeVersioned(w, http.StatusOK, k.Version, CreatedKey{KeyView: h.view(k), Secret: secret.Reveal()})
	return nil
}

// revokeTokens revokes one access token (by its jti) or every token of a
// principal issued until now; it takes effect on the next request here and
// within config_poll_interval on other replicas.
func (h *Handler) revokeTokens(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		JTI       string `json:"jti"`
		Principal string `json:"principal"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	now := h.d.Now().UTC()
	switch {
	case (in.JTI == "") == (in.Principal == ""):
		return badRequest("", "give exactly one of jti and principal")
	case in.JTI != "":
		// Kept as long as any token can live: a token issued before
		// tokens.ttl was lowered still carries its longer exp.
		if err := h.d.Store.RevokeToken(r.Context(), in.JTI, now.Add(token.MaxTTL+time.Minute)); err != nil {
			return err
		}
	default:
		p, err := h.d.Store.Principal(r.Context(), in.Principal)
		if err != nil {
			return badRequest("principal", "no principal %q", in.Principal)
		}
		in.Principal = p.ID
		if err := h.d.Store.RevokeTokensBefore(r.Context(), p.ID, now); err != nil {
			return err
		}
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Warn("tokens revoked", "jti", in.JTI, "principal", in.Principal, "by", who.ID)
	writeJSON(w, 200, map[string]any{"revoked": true, "jti": in.JTI, "principal_id": in.Principal, "at": now})
	return nil
}

// reinstateKey lifts a breaker's suspension. (Issue #6 adds fresh MFA here.)
func (h *Handler) reinstateKey(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	v, err := ifMatch(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	// The suspension lifted is recorded before its reinstatement: the
	// breaker's own record is missing when its write committed but its
	// answer was lost (or the process stopped between the two), and its
	// retry then only finds the key reinstated. One record per suspension
	// (ledger.BreakerTrip): a duplicate is dropped by the store. Before
	// the breaker's reset, so as not to widen the gap between it and the
	// reinstatement.
	if h.d.Ledger != nil {
		if cur, err := h.d.Store.Key(r.Context(), id); err == nil && cur.SuspendedAt != nil {
			if _, err := h.d.Ledger.Append(context.WithoutCancel(r.Context()), ledger.BreakerTrip(id, cur.SuspendReason, *cur.SuspendedAt)); err != nil &&
				!errors.Is(err, ledger.ErrAlreadyClosed) && !errors.Is(err, ledger.ErrDeferred) {
				h.d.Log.Error("ledger: the suspension a reinstatement lifts was not recorded", "key_id", id, "err", err)
			}
		}
	}
	// The breaker's windows first, while the key is still suspended: after
	// the reinstatement a flush on any replica would judge the key on the
	// spend that suspended it, and suspend it again.
	if h.d.ResetBreaker != nil {
		h.d.ResetBreaker(id)
	}
	k, err := h.d.Store.ReinstateKey(r.Context(), id, v)
	if err != nil {
		return err
	}
	h.d.Verifier.Forget(id)
	h.d.ForgetKey(id) // its tokens read it by id: they work on their next call too
	h.d.Log.Warn("key reinstated", "key_id", id, "by", who.ID)
	writeVersioned(w, 200, k.Version, h.view(k))
	return nil
}

// Providers.

func (h *Handler) listProviders(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	ps, err := h.d.Store.ListProviders(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(ps))
	return nil
}

func (h *Handler) sealKey(secret string, now time.Time) (provider.UpstreamKey, error) {
	if strings.TrimSpace(secret) == "" {
		return provider.UpstreamKey{}, badRequest("keys", "an upstream key is empty")
	}
	id := vkey.NewID("upk")
	sealed, err := h.d.Keyring.Seal([]byte(secret), provider.SealAAD(id))
	if err != nil {
		return provider.UpstreamKey{}, err
	}
	return provider.UpstreamKey{ID: id, Sealed: sealed, CreatedAt: now}, nil
}

func (h *Handler) createProvider(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Name    string        `json:"name"`
		Type    provider.Type `json:"type"`
		BaseURL string        `json:"base_url"`
		Models  []string      `json:"models"`
		Keys    []string      `json:"keys"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.BaseURL == "" {
		in.BaseURL = provider.DefaultBaseURL(in.Type)
	}
	now := h.d.Now().UTC()
	p := provider.Provider{ID: vkey.NewID("prv"), Name: in.Name, Type: in.Type, BaseURL: in.BaseURL, Models: in.Models, CreatedAt: now, Version: 1}
	if err := p.Validate(); err != nil {
		return badRequest("", "%s", err)
	}
	for _, s := range in.Keys {
		k, err := h.sealKey(s, now)
		if err != nil {
			return err
		}
		p.Keys = append(p.Keys, k)
	}
	if err := h.d.Store.CreateProvider(r.Context(), p); err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Info("provider added", "provider", p.Name, "type", p.Type, "keys", len(p.Keys), "by", who.ID)
	if p.Keys == nil {
		p.Keys = []provider.UpstreamKey{}
	}
	writeVersioned(w, http.StatusCreated, p.Version, p)
	return nil
}

func (h *Handler) getProvider(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	p, err := h.d.Store.Provider(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeVersioned(w, 200, p.Version, p)
	return nil
}

func (h *Handler) deleteProvider(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	v, err := ifMatch(r)
	if err != nil {
		return err
	}
	p, err := h.d.Store.Provider(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := h.d.Store.DeleteProvider(r.Context(), p.ID, v); err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Info("provider removed", "provider", p.Name, "by", who.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) addProviderKey(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Key string `json:"key"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	p, err := h.d.Store.Provider(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	k, err := h.sealKey(in.Key, h.d.Now().UTC())
	if err != nil {
		return err
	}
	if err := h.d.Store.AddProviderKey(r.Context(), p.ID, k); err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Info("upstream key added", "provider", p.Name, "upstream_key_id", k.ID, "by", who.ID)
	writeJSON(w, http.StatusCreated, k)
	return nil
}

func (h *Handler) deleteProviderKey(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	p, err := h.d.Store.Provider(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := h.d.Store.DeleteProviderKey(r.Context(), p.ID, r.PathValue("key")); err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Info("upstream key removed", "provider", p.Name, "upstream_key_id", r.PathValue("key"), "by", who.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Models and prices.

// ModelView is a routable model with its price.
type ModelView struct {
	ID       string         `json:"id"`
	Provider string         `json:"provider"`
	Price    *pricing.Price `json:"price,omitempty"`
}

func (h *Handler) listModels(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	snap := h.d.Snapshot()
	out := []ModelView{}
	for _, m := range snap.Models() {
		mv := ModelView{ID: m.ID, Provider: m.Provider}
		if p, ok := snap.Prices().Lookup(m.ID); ok {
			mv.Price = &p
		}
		out = append(out, mv)
	}
	ps, err := h.d.Store.ListProviders(r.Context())
	if err != nil {
		return err
	}
	routes := []map[string]any{}
	for _, p := range ps {
		for _, m := range p.Models {
			routes = append(routes, map[string]any{"pattern": m, "provider": p.Name, "type": p.Type})
		}
	}
	writeJSON(w, 200, map[string]any{"data": out, "routes": routes, "simulated": snap.Simulated()})
	return nil
}

func (h *Handler) listPrices(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	all := h.d.Snapshot().Prices().All()
	if m := r.URL.Query().Get("model"); m != "" {
		p, ok := h.d.Snapshot().Prices().Lookup(m)
		if !ok {
			return httpx.Errorf(http.StatusNotFound, "not_found", "No price matches model %q.", m)
		}
		all = []pricing.Price{p}
	}
	writeJSON(w, 200, list(all))
	return nil
}

func (h *Handler) setPrice(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Input       int64        `json:"input_micros_per_mtok"`
		CachedInput int64        `json:"cached_input_micros_per_mtok"`
		CacheWrite  int64        `json:"cache_write_micros_per_mtok"`
		Output      int64        `json:"output_micros_per_mtok"`
		MaxOutput   int64        `json:"max_output_tokens"`
		LongContext pricing.Tier `json:"long_context"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	p := pricing.Price{Model: r.PathValue("model"), Input: in.Input, CachedInput: in.CachedInput, CacheWrite: in.CacheWrite, Output: in.Output, MaxOutput: in.MaxOutput,
		LongContext: in.LongContext}
	if err := p.Validate(); err != nil {
		return badRequest("", "%s", err)
	}
	if err := h.d.Store.SetPrice(r.Context(), p); err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Info("price set", "model", p.Model, "by", who.ID)
	p.Source = "override"
	writeJSON(w, 200, p)
	return nil
}

func (h *Handler) deletePrice(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	if pricing.ValidModel(r.PathValue("model")) != nil { // no override can have that name
		return httpx.Errorf(http.StatusNotFound, "not_found", "No price override for that model.")
	}
	if err := h.d.Store.DeletePrice(r.Context(), r.PathValue("model")); err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Info("price override removed", "model", r.PathValue("model"), "by", who.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Usage.

func (h *Handler) usageQuery(r *http.Request) (usage.Query, error) {
	q := r.URL.Query()
	uq := usage.Query{KeyID: q.Get("key"), Model: q.Get("model")}
	var err error
	if uq.Since, err = parseTime("since", q.Get("since")); err != nil {
		return uq, err
	}
	if uq.Until, err = parseTime("until", q.Get("until")); err != nil {
		return uq, err
	}
	if l := q.Get("limit"); l != "" {
		if uq.Limit, err = strconv.Atoi(l); err != nil || uq.Limit <= 0 {
			return uq, badRequest("limit", "limit must be a positive number")
		}
	}
	if p := q.Get("principal"); p != "" {
		pr, err := h.d.Store.Principal(r.Context(), p)
		if err != nil {
			return uq, err
		}
		uq.PrincipalID = pr.ID
	}
	if t := q.Get("team"); t != "" {
		team, err := h.d.Store.Team(r.Context(), t)
		if err != nil {
			return uq, err
		}
		uq.TeamID = team.ID
	}
	return uq, nil
}

func (h *Handler) listUsage(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	q, err := h.usageQuery(r)
	if err != nil {
		return err
	}
	recs, err := h.d.Store.ListUsage(r.Context(), q)
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(recs))
	return nil
}

// SummaryView is a usage summary with the cost formatted for people.
type SummaryView struct {
	usage.Summary
	Cost string `json:"cost"`
}

func (h *Handler) summarizeUsage(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	q, err := h.usageQuery(r)
	if err != nil {
		return err
	}
	by := usage.GroupBy(r.URL.Query().Get("group_by"))
	if by == "" {
		by = usage.ByKey
	}
	if !slices.Contains([]usage.GroupBy{usage.ByKey, usage.ByPrincipal, usage.ByTeam, usage.ByModel, usage.ByDay}, by) {
		return badRequest("group_by", "group_by %q: want key, principal, team, model or day", by)
	}
	sums, err := h.d.Store.SummarizeUsage(r.Context(), q, by)
	if err != nil {
		return err
	}
	out := make([]SummaryView, len(sums))
	for i, s := range sums {
		out[i] = SummaryView{Summary: s, Cost: pricing.FormatUSD(s.CostMicros)}
	}
	writeJSON(w, 200, map[string]any{"data": out, "group_by": by})
	return nil
}
