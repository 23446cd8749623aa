package admin

import (
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// adminAction maps an admin request to the Cedar action and area it is.
func adminAction(r *http.Request) (action, area string) {
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	parts := strings.Split(path, "/")
	area = parts[0]
	if area == "spend" {
		area = "budgets"
	}
	switch {
	case r.Method == http.MethodGet:
		return area + ".read", area
	case area == "keys" && strings.HasSuffix(path, "/revoke"), area == "keys" && path == "keys/leaked":
		return "keys.revoke", area
	case area == "findings" || area == "reviews":
		return auditAction(area, parts), area
	case area == "keys" && strings.HasSuffix(path, "/reinstate"):
		return "keys.reinstate", area
	case area == "keys" && strings.HasSuffix(path, "/rotate"):
		return "keys.rotate", area
	case area == "log" && r.Method == http.MethodPost:
		return "log.rotate", area
	case area == "tokens" && strings.HasSuffix(path, "/rotate-signing-key"):
		return "keys.rotate", "keys"
	case area == "tokens":
		return "keys.revoke", "keys"
	case area == "providers" && len(parts) >= 3 && parts[2] == "keys":
		return "providers.update", area
	case area == "policies" && len(parts) >= 2 && (parts[1] == "validate" || parts[1] == "whatif"):
		return "policies.read", area
	case area == "policies" && len(parts) >= 2 && parts[1] == "rollback":
		return "policies.rollback", area
	case area == "policies" && r.Method == http.MethodPut:
		return "policies.apply", area
	case area == "principals" && strings.HasSuffix(path, "/reset-factors"):
		return "principals.reset_factors", area
	case area == "principals" && strings.HasSuffix(path, "/lockouts"), area == "lockouts" && r.Method == http.MethodDelete:
		return "principals.unlock", "principals"
	case area == "principals" && strings.HasSuffix(path, "/password") && r.Method == http.MethodPut:
		// Sensitive: a password an administrator sets is a credential the
		// caller knows; for a user without a second factor it is a login,
		// then a first factor and a step-up (an admin key minting itself a
		// step-up-capable session).
		return "principals.set_password", area
	case area == "principals" && (strings.HasSuffix(path, "/sessions") || strings.HasSuffix(path, "/password")):
		return "principals.update", area
	case r.Method == http.MethodDelete:
		return area + ".delete", area
	case r.Method == http.MethodPatch || r.Method == http.MethodPut:
		return area + ".update", area
	}
	return area + ".create", area
}

// authorize decides an admin request for the admin key's principal.
func (h *Handler) authorize(r *http.Request, who vkey.Key) error {
	action, area := adminAction(r)
	return h.authorizeAction(r, who, action, area)
}

// authorizeAction decides one admin action for the caller's principal.
func (h *Handler) authorizeAction(r *http.Request, who vkey.Key, action, area string) error {
	set := h.d.Snapshot().Policies()
	if set == nil {
		return nil
	}
	p, err := h.d.Store.Principal(r.Context(), who.PrincipalID)
	if err != nil {
		return httpx.Errorf(http.StatusForbidden, "policy_denied", "The admin key's principal cannot be found.").WithCause(err)
	}
	if p.Disabled {
		return httpx.Errorf(http.StatusForbidden, "principal_disabled", "The owner of this admin key is disabled.")
	}
	var src netip.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		src = ap.Addr()
	}
	age := mfaAge(r.Context())
	d := set.DecideAdmin(policy.AdminCall{Principal: policy.FromOrg(p), Action: action, Area: area, SourceIP: src, Time: h.d.Now().In(h.zone()), MFAAgeSeconds: age})
	if d.Allow {
		return nil
	}
	if slices.Contains(d.Reasons, policy.StepUpID) {
		return httpx.Errorf(http.StatusForbidden, "step_up_required",
			"%s needs a second factor within the last %s (step_up_max_age). Step up: gatehouse login --step-up --code CODE (POST /v1/auth/step-up), or log in again with a passkey or through your identity provider. Admin keys cannot step up: use a user's session.",
			action, h.d.StepUpMaxAge)
	}
	msg := "No policy permits " + action + " (default deny)."
	if len(d.Reasons) > 0 {
		msg = "Denied by policy " + strings.Join(d.Reasons, ", ") + "."
	}
	if age < 0 || age > 300 {
		msg += " If it needs a recent second factor, step up: gatehouse login --step-up (POST /v1/auth/step-up)."
	}
	return httpx.Errorf(http.StatusForbidden, "policy_denied", "%s", msg)
}

func (h *Handler) zone() *time.Location {
	if h.d.PolicyZone != nil {
		return h.d.PolicyZone
	}
	return time.UTC
}

func (h *Handler) policyRoutes() {
	m := h.mux
	m.HandleFunc("GET /v1/policies", h.authed(h.getPolicies))
	m.HandleFunc("PUT /v1/policies", h.authed(h.applyPolicies))
	m.HandleFunc("GET /v1/policies/history", h.authed(h.policyHistory))
	m.HandleFunc("POST /v1/policies/validate", h.authed(h.validatePolicies))
	m.HandleFunc("POST /v1/policies/rollback", h.authed(h.rollbackPolicies))
	m.HandleFunc("POST /v1/policies/whatif", h.authed(h.whatIf))
	m.HandleFunc("GET /v1/policies/schema", h.authed(func(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(policy.Schema())
		return nil
	}))
}

type policyFiles struct {
	Files map[string]string `json:"files"`
	Note  string            `json:"note"`
}

func compileOr400(files map[string]string) (*policy.Set, error) {
	set, err := policy.Compile(files)
	var probs policy.Problems
	if errors.As(err, &probs) {
		e := httpx.Errorf(http.StatusBadRequest, "invalid_policy", "The policies do not validate against the schema:\n%s", probs.Error())
		return nil, e
	}
	return set, err
}

func (h *Handler) getPolicies(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	v, err := h.d.Store.PolicyVersion(r.Context(), 0)
	if err != nil {
		v = policy.Version{Version: 0, Files: policy.Defaults(), Note: "the shipped defaults"}
	}
	writeJSON(w, 200, v)
	return nil
}

func (h *Handler) validatePolicies(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	var in policyFiles
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if _, err := compileOr400(in.Files); err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"valid": true})
	return nil
}

func (h *Handler) applyPolicies(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in policyFiles
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if _, err := compileOr400(in.Files); err != nil {
		return err
	}
	v, err := h.d.Store.SavePolicies(r.Context(), in.Files, who.ID, in.Note)
	if err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Warn("policies applied", "version", v.Version, "by", who.ID)
	writeJSON(w, 200, v)
	return nil
}

func (h *Handler) policyHistory(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	vs, err := h.d.Store.PolicyHistory(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(vs))
	return nil
}

// rollbackPolicies applies an earlier version again, as a new version (the
// history keeps every step).
func (h *Handler) rollbackPolicies(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Version int64 `json:"version"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	cur, err := h.d.Store.PolicyVersion(r.Context(), 0)
	if err != nil {
		return badRequest("version", "there is no applied policy version to roll back from")
	}
	target := in.Version
	if target == 0 {
		target = cur.Version - 1
	}
	files := policy.Defaults()
	if target > 0 {
		old, err := h.d.Store.PolicyVersion(r.Context(), target)
		if err != nil {
			return badRequest("version", "no policy version %d", target)
		}
		files = old.Files
	}
	if _, err := compileOr400(files); err != nil {
		return err
	}
	v, err := h.d.Store.SavePolicies(r.Context(), files, who.ID, "rollback to version "+itoa(target))
	if err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Warn("policies rolled back", "to", target, "version", v.Version, "by", who.ID)
	writeJSON(w, 200, v)
	return nil
}

func itoa(n int64) string {
	if n == 0 {
		return "0 (the shipped defaults)"
	}
	return strconv.FormatInt(n, 10)
}

// WhatIfChange is a group of recorded calls whose decision would change.
type WhatIfChange struct {
	Principal string   `json:"principal_id"`
	From      string   `json:"from"` // allow or deny
	To        string   `json:"to"`
	Reasons   []string `json:"reasons"` // the candidate's deciding policies
	Calls     int      `json:"calls"`
	Example   string   `json:"example_request_id"`
}

// whatIf replays recorded calls against candidate policies and reports which
// decisions would change, grouped by principal and deciding policy.
func (h *Handler) whatIf(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	var in struct {
		Files map[string]string `json:"files"`
		Since string            `json:"since"`
		Limit int               `json:"limit"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	cand, err := compileOr400(in.Files)
	if err != nil {
		return err
	}
	since := h.d.Now().Add(-7 * 24 * time.Hour)
	if in.Since != "" {
		if since, err = parseTime("since", in.Since); err != nil {
			return err
		}
	}
	limit := in.Limit
	if limit <= 0 || limit > 10_000 {
		limit = 10_000
	}
	recs, err := h.d.Store.ListUsage(r.Context(), usage.Query{Since: since, Limit: limit})
	if err != nil {
		return err
	}
	cur := h.d.Snapshot().Policies()
	groups := map[string]*WhatIfChange{}
	principals := map[string]policy.Principal{}
	replayed := 0
	for _, rec := range recs {
		p, ok := principals[rec.PrincipalID]
		if !ok {
			op, err := h.d.Store.Principal(r.Context(), rec.PrincipalID)
			if err != nil {
				continue
			}
			p = policy.FromOrg(op)
			principals[rec.PrincipalID] = p
		}
		call := policy.Call{Principal: p, Action: rec.Endpoint, Model: rec.Model, Provider: rec.Provider, Stream: rec.Stream,
			InputTokens: rec.Input, EstimatedCostMicros: rec.CostMicros, BudgetRemaining: -1, Time: rec.Time.In(h.zone()), MFAAgeSeconds: -1}
		before, after := cur.Decide(call), cand.Decide(call)
		replayed++
		if before.Allow == after.Allow {
			continue
		}
		from, to := word(before.Allow), word(after.Allow)
		key := rec.PrincipalID + "|" + from + "|" + strings.Join(after.Reasons, ",")
		g := groups[key]
		if g == nil {
			g = &WhatIfChange{Principal: rec.PrincipalID, From: from, To: to, Reasons: after.Reasons, Example: rec.ID}
			groups[key] = g
		}
		g.Calls++
	}
	out := make([]WhatIfChange, 0, len(groups))
	for _, g := range groups {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Calls > out[j].Calls })
	writeJSON(w, 200, map[string]any{"replayed": replayed, "since": since, "changes": out})
	return nil
}

func word(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}
