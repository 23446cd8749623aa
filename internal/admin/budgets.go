package admin

import (
	"net/http"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// BudgetView is a budget with its current period's money, in micros and formatted.
type BudgetView struct {
	budget.Status
	Limit        string `json:"limit"`
	SpentText    string `json:"spent"`
	ReservedText string `json:"reserved"`
	RemainText   string `json:"remaining"`
}

func view(s budget.Status) BudgetView {
	return BudgetView{Status: s, Limit: pricing.FormatUSD(s.LimitMicros), SpentText: pricing.FormatUSD(s.Spent),
		ReservedText: pricing.FormatUSD(s.Reserved), RemainText: pricing.FormatUSD(s.Remaining)}
}

func (h *Handler) budgetRoutes() {
	m := h.mux
	m.HandleFunc("GET /v1/budgets", h.authed(h.listBudgets))
	m.HandleFunc("POST /v1/budgets", h.authed(h.createBudget))
	m.HandleFunc("GET /v1/budgets/{id}", h.authed(h.getBudget))
	m.HandleFunc("PATCH /v1/budgets/{id}", h.authed(h.patchBudget))
	m.HandleFunc("DELETE /v1/budgets/{id}", h.authed(h.deleteBudget))
	m.HandleFunc("GET /v1/spend", h.authed(h.spend))
}

func (h *Handler) statuses(r *http.Request, bs []budget.Budget) ([]BudgetView, error) {
	st, err := h.d.Spend(r.Context(), bs)
	if err != nil {
		return nil, err
	}
	out := make([]BudgetView, len(st))
	for i, s := range st {
		out[i] = view(s)
	}
	return out, nil
}

func (h *Handler) listBudgets(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	bs, err := h.d.Store.ListBudgets(r.Context())
	if err != nil {
		return err
	}
	out, err := h.statuses(r, bs)
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(out))
	return nil
}

type budgetInput struct {
	Scope       *budget.Scope  `json:"scope"`
	ScopeID     *string        `json:"scope_id"`
	Model       *string        `json:"model"`
	Period      *budget.Period `json:"period"`
	TimeZone    *string        `json:"time_zone"`
	LimitMicros *int64         `json:"limit_micros"`
	Hard        *bool          `json:"hard"`
	Clamp       *bool          `json:"clamp"`
	Thresholds  *[]int         `json:"thresholds"`
}

// resolveScope turns a principal or team name into its id and checks that a
// key exists.
func (h *Handler) resolveScope(r *http.Request, b *budget.Budget) error {
	switch b.Scope {
	case budget.ScopeKey:
		if _, err := h.d.Store.Key(r.Context(), b.ScopeID); err != nil {
			return badRequest("scope_id", "no key %q", b.ScopeID)
		}
	case budget.ScopePrincipal:
		p, err := h.d.Store.Principal(r.Context(), b.ScopeID)
		if err != nil {
			return badRequest("scope_id", "no principal %q", b.ScopeID)
		}
		b.ScopeID = p.ID
	case budget.ScopeTeam:
		t, err := h.d.Store.Team(r.Context(), b.ScopeID)
		if err != nil {
			return badRequest("scope_id", "no team %q", b.ScopeID)
		}
		b.ScopeID = t.ID
	}
	return nil
}

func (in budgetInput) apply(b *budget.Budget) {
	if in.Model != nil {
		b.Model = *in.Model
	}
	if in.TimeZone != nil {
		b.TimeZone = *in.TimeZone
	}
	if in.LimitMicros != nil {
		b.LimitMicros = *in.LimitMicros
	}
	if in.Hard != nil {
		b.Hard = *in.Hard
	}
	if in.Clamp != nil {
		b.Clamp = *in.Clamp
	}
	if in.Thresholds != nil {
		b.Thresholds = *in.Thresholds
	}
}

func (h *Handler) createBudget(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in budgetInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Scope == nil || in.Period == nil || in.LimitMicros == nil {
		return badRequest("", "scope, period and limit_micros are required")
	}
	b := budget.Budget{ID: vkey.NewID("bud"), Scope: *in.Scope, Period: *in.Period, Hard: true, CreatedAt: h.d.Now().UTC(), Version: 1}
	if in.ScopeID != nil {
		b.ScopeID = *in.ScopeID
	}
	in.apply(&b)
	if err := b.Validate(); err != nil {
		return badRequest("", "%s", err)
	}
	if err := h.resolveScope(r, &b); err != nil {
		return err
	}
	if err := h.d.Store.CreateBudget(r.Context(), b); err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Info("budget set", "budget_id", b.ID, "scope", b.Scope, "scope_id", b.ScopeID, "limit_micros", b.LimitMicros, "by", who.ID)
	out, err := h.statuses(r, []budget.Budget{b})
	if err != nil {
		return err
	}
	writeVersioned(w, http.StatusCreated, b.Version, out[0])
	return nil
}

func (h *Handler) getBudget(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	b, err := h.d.Store.Budget(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	out, err := h.statuses(r, []budget.Budget{b})
	if err != nil {
		return err
	}
	writeVersioned(w, 200, b.Version, out[0])
	return nil
}

func (h *Handler) patchBudget(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	v, err := ifMatch(r)
	if err != nil {
		return err
	}
	var in budgetInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Scope != nil || in.ScopeID != nil || in.Period != nil {
		return badRequest("", "scope and period cannot change; delete the budget and set a new one")
	}
	b, err := h.d.Store.Budget(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	in.apply(&b)
	if err := b.Validate(); err != nil {
		return badRequest("", "%s", err)
	}
	up, err := h.d.Store.UpdateBudget(r.Context(), b, v)
	if err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Info("budget changed", "budget_id", b.ID, "limit_micros", b.LimitMicros, "by", who.ID)
	out, err := h.statuses(r, []budget.Budget{up})
	if err != nil {
		return err
	}
	writeVersioned(w, 200, up.Version, out[0])
	return nil
}

func (h *Handler) deleteBudget(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	v, err := ifMatch(r)
	if err != nil {
		return err
	}
	if err := h.d.Store.DeleteBudget(r.Context(), r.PathValue("id"), v); err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	h.d.Log.Info("budget deleted", "budget_id", r.PathValue("id"), "by", who.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// spend lists the budgets that apply to a key, principal or team (or all),
// with their current period's money.
func (h *Handler) spend(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	q := r.URL.Query()
	bs, err := h.d.Store.ListBudgets(r.Context())
	if err != nil {
		return err
	}
	var match func(budget.Budget) bool
	switch {
	case q.Get("key") != "":
		k, err := h.d.Store.Key(r.Context(), q.Get("key"))
		if err != nil {
			return err
		}
		c := budget.Call{KeyID: k.ID, PrincipalID: k.PrincipalID, TeamID: k.TeamID}
		match = func(b budget.Budget) bool { return applyIgnoringModel(b, c) }
	case q.Get("principal") != "":
		p, err := h.d.Store.Principal(r.Context(), q.Get("principal"))
		if err != nil {
			return err
		}
		match = func(b budget.Budget) bool { return b.Scope == budget.ScopePrincipal && b.ScopeID == p.ID }
	case q.Get("team") != "":
		t, err := h.d.Store.Team(r.Context(), q.Get("team"))
		if err != nil {
			return err
		}
		match = func(b budget.Budget) bool { return b.Scope == budget.ScopeTeam && b.ScopeID == t.ID }
	default:
		match = func(budget.Budget) bool { return true }
	}
	var sel []budget.Budget
	for _, b := range bs {
		if match(b) {
			sel = append(sel, b)
		}
	}
	out, err := h.statuses(r, sel)
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(out))
	return nil
}

// applyIgnoringModel: does b cap calls of c, for some model?
func applyIgnoringModel(b budget.Budget, c budget.Call) bool {
	b.Model = ""
	return b.Applies(c)
}
