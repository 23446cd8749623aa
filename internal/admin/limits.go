package admin

import (
	"net/http"

	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

func (h *Handler) limitRoutes() {
	h.mux.HandleFunc("GET /v1/limits", h.authed(h.listLimits))
	h.mux.HandleFunc("PUT /v1/limits", h.authed(h.setLimit))
	h.mux.HandleFunc("DELETE /v1/limits/{id}", h.authed(h.deleteLimit))
}

func (h *Handler) listLimits(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	ls, err := h.d.Store.ListLimits(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(ls))
	return nil
}

// setLimit creates or replaces the rate limits of one scope.
func (h *Handler) setLimit(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Scope      ratelimit.Scope `json:"scope"`
		ScopeID    string          `json:"scope_id"`
		RPM        int64           `json:"rpm"`
		TPM        int64           `json:"tpm"`
		Concurrent int64           `json:"concurrent"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	l := ratelimit.Limit{ID: vkey.NewID("lim"), Scope: in.Scope, ScopeID: in.ScopeID, RPM: in.RPM, TPM: in.TPM, Concurrent: in.Concurrent, CreatedAt: h.d.Now().UTC()}
	if err := l.Validate(); err != nil {
		return badRequest("", "%s", err)
	}
	switch l.Scope {
	case ratelimit.ScopeKey:
		if _, err := h.d.Store.Key(r.Context(), l.ScopeID); err != nil {
			return badRequest("scope_id", "no key %q", l.ScopeID)
		}
	case ratelimit.ScopePrincipal:
		p, err := h.d.Store.Principal(r.Context(), l.ScopeID)
		if err != nil {
			return badRequest("scope_id", "no principal %q", l.ScopeID)
		}
		l.ScopeID = p.ID
	case ratelimit.ScopeTeam:
		t, err := h.d.Store.Team(r.Context(), l.ScopeID)
		if err != nil {
			return badRequest("scope_id", "no team %q", l.ScopeID)
		}
		l.ScopeID = t.ID
	}
	out, err := h.d.Store.SetLimit(r.Context(), l)
	if err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Info("rate limit set", "scope", out.Scope, "scope_id", out.ScopeID, "rpm", out.RPM, "tpm", out.TPM, "concurrent", out.Concurrent, "by", who.ID)
	writeVersioned(w, 200, out.Version, out)
	return nil
}

func (h *Handler) deleteLimit(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	if err := h.d.Store.DeleteLimit(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Info("rate limit deleted", "limit_id", r.PathValue("id"), "by", who.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
