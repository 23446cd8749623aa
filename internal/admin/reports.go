package admin

import (
	"bytes"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// reportRoutes serves audit reports, access reviews and evidence bundles.
func (h *Handler) reportRoutes() {
	m := h.mux
	m.HandleFunc("POST /v1/reports", h.authed(h.createReport))
	m.HandleFunc("GET /v1/reports", h.authed(h.listReports))
	m.HandleFunc("GET /v1/reports/{id}", h.authed(h.getReport))
	m.HandleFunc("POST /v1/reviews", h.authed(h.startReview))
	m.HandleFunc("GET /v1/reviews", h.authed(h.listReviews))
	m.HandleFunc("GET /v1/reviews/{id}", h.authed(h.getReview))
	m.HandleFunc("POST /v1/reviews/{id}/close", h.authed(h.closeReview))
	m.HandleFunc("POST /v1/reviews/items/{id}/decide", h.authed(h.decideReview))
	m.HandleFunc("GET /v1/audit/evidence", h.authed(h.evidence))
}

// ParseSpan reads "7d", "12h" or "90m".
func ParseSpan(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d <= 0 || d > 3660 {
			return 0, errors.New("want a number of days such as 7d")
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errors.New("want a span such as 7d or 12h")
	}
	return d, nil
}

func (h *Handler) period(since, from, to string) (time.Time, time.Time, error) {
	end := h.d.Audit.Now().UTC()
	if to != "" {
		t, err := parseTime("to", to)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		end = t
	}
	if from != "" {
		t, err := parseTime("from", from)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		if !t.Before(end) {
			return time.Time{}, time.Time{}, badRequest("from", "from must be before to")
		}
		return t, end, nil
	}
	if since == "" {
		since = "7d"
	}
	d, err := ParseSpan(since)
	if err != nil {
		return time.Time{}, time.Time{}, badRequest("since", "since: %s", err)
	}
	return end.Add(-d), end, nil
}

func (h *Handler) createReport(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	var in struct {
		Name  string `json:"name"`
		Since string `json:"since"`
		From  string `json:"from"`
		To    string `json:"to"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	from, to, err := h.period(in.Since, in.From, in.To)
	if err != nil {
		return err
	}
	if in.Name == "" {
		in.Name = "on demand"
	}
	rep, err := h.d.Audit.Generate(r.Context(), in.Name, from, to, true)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, rep)
	return nil
}

func (h *Handler) listReports(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	rs, err := h.d.Audit.Reports(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(rs))
	return nil
}

// getReport returns a stored report as JSON, or rendered with
// ?format=md|html|csv.
func (h *Handler) getReport(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	rep, err := h.d.Audit.StoredReport(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		writeJSON(w, 200, rep)
	case "md":
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		w.Write(audit.Markdown(rep))
	case "html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		w.Write(audit.HTML(rep))
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Write(audit.CSV(rep))
	default:
		return badRequest("format", "format: want json, md, html or csv")
	}
	return nil
}

func reviewError(err error) error {
	switch {
	case errors.Is(err, audit.ErrSelfReview):
		return httpx.Errorf(http.StatusForbidden, "self_review", "Nobody reviews their own access; another reviewer must decide this item.")
	case errors.Is(err, audit.ErrNotReviewer):
		return httpx.Errorf(http.StatusForbidden, "not_reviewer", "You are not a reviewer of this item.")
	case errors.Is(err, audit.ErrDecided):
		return httpx.Errorf(http.StatusConflict, "already_decided", "The item is decided already.")
	case errors.Is(err, audit.ErrClosed):
		return httpx.Errorf(http.StatusConflict, "campaign_closed", "The campaign is closed.")
	case errors.Is(err, audit.ErrBadDecision):
		return badRequest("decision", "%s", strings.TrimPrefix(err.Error(), "audit: "))
	case errors.Is(err, audit.ErrNeedReason):
		return badRequest("reason", "A reason is required: say why.")
	}
	return err
}

type reviewOut struct {
	Campaign audit.Campaign `json:"campaign"`
	Items    []audit.Item   `json:"items"`
}

func (h *Handler) startReview(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Scope     string `json:"scope"`
		Reviewer  string `json:"reviewer"`
		Due       string `json:"due"`
		OnOverdue string `json:"on_overdue"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Due == "" {
		in.Due = "7d"
	}
	due, err := ParseSpan(in.Due)
	if err != nil {
		return badRequest("due", "due: %s", err)
	}
	if in.Scope == "" {
		in.Scope = "org"
	}
	c, items, err := h.d.Audit.StartReview(r.Context(), in.Scope, in.Reviewer, in.OnOverdue, who.PrincipalID, due)
	if err != nil {
		return reviewError(err)
	}
	writeJSON(w, http.StatusCreated, reviewOut{c, items})
	return nil
}

func (h *Handler) listReviews(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	cs, err := h.d.Audit.Campaigns(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(cs))
	return nil
}

func (h *Handler) getReview(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	c, items, err := h.d.Audit.ReviewState(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeVersioned(w, 200, c.Version, reviewOut{c, items})
	return nil
}

func (h *Handler) closeReview(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	c, items, err := h.d.Audit.CloseReview(r.Context(), r.PathValue("id"), who.PrincipalID)
	if err != nil {
		return reviewError(err)
	}
	writeJSON(w, 200, reviewOut{c, items})
	return nil
}

func (h *Handler) decideReview(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Decision  string     `json:"decision"`
		Reason    string     `json:"reason"`
		Models    []string   `json:"models"`
		Endpoints []string   `json:"endpoints"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	var red *audit.Reduction
	if in.Decision == "reduce" {
		red = &audit.Reduction{Models: in.Models, Endpoints: in.Endpoints, ExpiresAt: in.ExpiresAt}
	}
	p, err := h.d.Store.Principal(r.Context(), who.PrincipalID)
	if err != nil {
		return err
	}
	it, err := h.d.Audit.Decide(r.Context(), r.PathValue("id"), in.Decision, in.Reason, who.PrincipalID, slices.Contains(p.Roles, "admin"), red)
	if err != nil {
		return reviewError(err)
	}
	if it.Kind != "key" && in.Decision == "revoke" {
		h.d.ForgetPrincipal(it.Principal)
	}
	writeVersioned(w, 200, it.Version, it)
	return nil
}

// evidence streams the evidence bundle (zip) of a period.
func (h *Handler) evidence(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	q := r.URL.Query()
	since := q.Get("since")
	if since == "" && q.Get("from") == "" {
		since = "30d"
	}
	from, to, err := h.period(since, q.Get("from"), q.Get("to"))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := h.d.Audit.Evidence(r.Context(), from, to, who.PrincipalID, &buf); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="evidence.zip"`)
	w.Write(buf.Bytes())
	return nil
}
