package admin

import (
	"errors"
	"net/http"
	"slices"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/sso"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

func (h *Handler) ssoReady() error {
	if h.d.SSO == nil {
		return httpx.Errorf(http.StatusNotFound, "oidc_not_configured", "OIDC login is not configured (oidc_login in the configuration file).")
	}
	return nil
}

// oidcInfo tells a client (gatehouse login --oidc) where to log in.
func (h *Handler) oidcInfo(w http.ResponseWriter, r *http.Request) error {
	if err := h.ssoReady(); err != nil {
		return err
	}
	c := h.d.SSO.Config()
	writeJSON(w, 200, map[string]any{"issuer": c.Issuer, "client_id": c.ClientID, "scopes": c.Scopes})
	return nil
}

// oidcLogin exchanges an ID token from the organisation's identity provider
// for a login session. The user is created on first login; its teams and roles
// are set from its groups at every login.
func (h *Handler) oidcLogin(w http.ResponseWriter, r *http.Request) error {
	if err := h.ssoReady(); err != nil {
		return err
	}
	var in struct {
		IDToken string `json:"id_token"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.IDToken == "" {
		return badRequest("id_token", "id_token is required: the ID token your identity provider issued to client %q", h.d.SSO.Config().ClientID)
	}
	id, err := h.d.SSO.Verify(r.Context(), in.IDToken)
	switch {
	case errors.Is(err, sso.ErrUnavailable):
		return httpx.Errorf(http.StatusServiceUnavailable, "idp_unavailable", "The identity provider cannot be reached; try again shortly.").WithCause(err)
	case errors.Is(err, sso.ErrNoAccess):
		return httpx.Errorf(http.StatusForbidden, "no_access", "None of your identity provider groups is mapped to a Gatehouse team; ask an administrator.")
	case err != nil:
		return httpx.Errorf(http.StatusUnauthorized, "invalid_login", "The ID token was refused: %s.", err)
	}
	if h.d.RequireMFA && id.MFAAt == nil {
		return httpx.Errorf(http.StatusForbidden, "mfa_required",
			"Multi-factor authentication is required, and the identity provider did not report one (amr claim); log in there with a second factor.")
	}
	teams := make([]string, 0, len(id.Teams))
	for _, name := range id.Teams {
		t, err := h.d.Store.Team(r.Context(), name)
		if err != nil {
			return httpx.Errorf(http.StatusConflict, "oidc_mapping", "Your groups map to team %q, which does not exist; ask an administrator.", name).WithCause(err)
		}
		teams = append(teams, t.ID)
	}
	slices.Sort(teams)
	p, err := h.d.Store.Principal(r.Context(), id.Username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if err := org.ValidateName(id.Username); err != nil {
			return httpx.Errorf(http.StatusForbidden, "invalid_login", "Your user name cannot be a Gatehouse name: %s.", err)
		}
		p = org.Principal{ID: vkey.NewID("prn"), Name: id.Username, Kind: org.KindUser, Teams: teams, Roles: id.Roles, CreatedAt: h.d.Now().UTC()}
		if err := p.Validate(); err != nil {
			return httpx.Errorf(http.StatusConflict, "oidc_mapping", "Your groups map to an invalid principal: %s.", err)
		}
		if err := h.d.Store.CreatePrincipal(r.Context(), p); err != nil {
			return err
		}
	case err != nil:
		return err
	case p.Kind != org.KindUser || p.Disabled:
		return httpx.Errorf(http.StatusForbidden, "invalid_login", "%q is not an enabled user in Gatehouse.", id.Username)
	default:
		have := slices.Sorted(slices.Values(p.Teams))
		if !slices.Equal(have, teams) || !slices.Equal(slices.Sorted(slices.Values(p.Roles)), id.Roles) {
			p.Teams, p.Roles = teams, id.Roles
			if err := p.Validate(); err != nil {
				return httpx.Errorf(http.StatusConflict, "oidc_mapping", "Your groups map to an invalid principal: %s.", err)
			}
			if p, err = h.d.Store.UpdatePrincipal(r.Context(), p, 0); err != nil {
				return err
			}
			h.d.ForgetPrincipal(p.ID)
		}
	}
	detail := "oidc"
	if id.MFAAt != nil {
		detail = "oidc+mfa"
	}
	return h.startSession(w, r, p.ID, id.MFAAt, detail)
}
