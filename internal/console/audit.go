package console

// Findings and access reviews: the pages over the admin API's /v1/findings
// and /v1/reviews routes. Every action (run the rules, acknowledge, resolve,
// dismiss, start a review, decide an item, close a campaign) is the admin
// API's Cedar-decided action, called in process with the session; a finding's
// state change carries the version the page showed (If-Match), so a change
// made meanwhile by someone else is not overwritten but reported.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

type ifMatchKey struct{}

// withIfMatch makes the admin API call made with ctx carry If-Match: the
// version a page showed.
func withIfMatch(ctx context.Context, version string) context.Context {
	if _, err := strconv.ParseInt(version, 10, 64); err != nil {
		return ctx
	}
	return context.WithValue(ctx, ifMatchKey{}, `"`+version+`"`)
}

func (h *Handler) auditRoutes() {
	m := h.mux
	m.HandleFunc("GET /console/findings", h.authed(h.findings))
	m.HandleFunc("POST /console/findings/run", h.authed(h.runFindings))
	m.HandleFunc("GET /console/findings/{id}", h.authed(h.finding))
	m.HandleFunc("POST /console/findings/{id}/{verb}", h.authed(h.findingAction))
	m.HandleFunc("POST /console/reviews", h.authed(h.startReview))
	m.HandleFunc("GET /console/reviews/{id}", h.authed(h.review))
	m.HandleFunc("POST /console/reviews/{id}/close", h.authed(h.closeReview))
	m.HandleFunc("POST /console/reviews/items/{id}/decide", h.authed(h.decideItem))
}

var (
	findingStates = []string{"open", "acknowledged", "resolved", "dismissed"}
	severities    = []string{"high", "medium", "low"}
)

// findings lists findings (filtered by state and severity; open by default)
// and the access-review campaigns.
func (h *Handler) findings(w http.ResponseWriter, r *http.Request, s *session) error {
	return h.findingsWith(w, r, s, 200, "")
}

func (h *Handler) findingsWith(w http.ResponseWriter, r *http.Request, s *session, status int, problem string) error {
	q := r.URL.Query()
	state, sev := q.Get("state"), q.Get("severity")
	if !q.Has("state") {
		state = "open"
	}
	if state != "" && state != "any" && !slices.Contains(findingStates, state) {
		state = "open"
	}
	if !slices.Contains(severities, sev) {
		sev = ""
	}
	api := url.Values{}
	if state != "" && state != "any" {
		api.Set("state", state)
	}
	if sev != "" {
		api.Set("severity", sev)
	}
	list, err := h.list(r, s, "/v1/findings?"+api.Encode())
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Code == "unknown_url" {
		h.render(w, 200, "findings.html", h.page(s, "findings", "Findings and reviews", obj{"Available": false}))
		return nil
	}
	if err != nil {
		return err
	}
	reviews, err := h.list(r, s, "/v1/reviews")
	if err != nil && !(errors.As(err, &ae) && ae.Status == http.StatusNotFound) {
		return err
	}
	p := h.page(s, "findings", "Findings and reviews", obj{"Available": true, "Findings": list, "Reviews": reviews,
		"State": state, "Severity": sev, "States": findingStates, "Severities": severities})
	p.Error = problem
	if problem == "" {
		p.Flash = r.URL.Query().Get("done")
		if !slices.Contains([]string{"The rules ran.", ""}, p.Flash) {
			p.Flash = ""
		}
	}
	h.render(w, status, "findings.html", p)
	return nil
}

func (h *Handler) runFindings(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := h.call(r.Context(), r, s, "POST", "/v1/findings/run", obj{}, nil); err != nil {
		return h.stepUpOr(w, r, s, err)
	}
	http.Redirect(w, r, "/console/findings?done="+url.QueryEscape("The rules ran."), http.StatusSeeOther)
	return nil
}

func (h *Handler) finding(w http.ResponseWriter, r *http.Request, s *session) error {
	return h.findingWith(w, r, s, r.PathValue("id"), 200, "")
}

func (h *Handler) findingWith(w http.ResponseWriter, r *http.Request, s *session, id string, status int, problem string) error {
	var f obj
	if err := h.call(r.Context(), r, s, "GET", "/v1/findings/"+url.PathEscape(id), nil, &f); err != nil {
		return err
	}
	p := h.page(s, "findings", "Finding", obj{"F": f})
	p.Error = problem
	h.render(w, status, "finding.html", p)
	return nil
}

// findingAction acknowledges, resolves or dismisses a finding with a reason.
func (h *Handler) findingAction(w http.ResponseWriter, r *http.Request, s *session) error {
	id, verb := r.PathValue("id"), r.PathValue("verb")
	if verb != "ack" && verb != "resolve" && verb != "dismiss" {
		return &apiError{Status: http.StatusNotFound, Message: "Unknown finding action " + verb + "."}
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		return h.findingWith(w, r, s, id, http.StatusBadRequest, "Say why: a reason is required, and it is recorded with the change.")
	}
	ctx := withIfMatch(r.Context(), r.PostFormValue("version"))
	err := h.call(ctx, r, s, "POST", "/v1/findings/"+url.PathEscape(id)+"/"+verb, obj{"reason": reason}, nil)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Code == "precondition_failed":
		return h.findingWith(w, r, s, id, http.StatusConflict, "Someone changed this finding since you opened it; nothing was done. Here it is as it is now.")
	case errors.As(err, &ae) && ae.Code != "step_up_required" && ae.Status < 500 && ae.Status != http.StatusNotFound:
		return h.findingWith(w, r, s, id, ae.Status, ae.Message)
	case err != nil:
		return h.stepUpOr(w, r, s, err)
	}
	http.Redirect(w, r, "/console/findings/"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}

func (h *Handler) startReview(w http.ResponseWriter, r *http.Request, s *session) error {
	in := obj{"scope": strings.TrimSpace(r.PostFormValue("scope"))}
	for _, k := range []string{"reviewer", "due", "on_overdue"} {
		if v := strings.TrimSpace(r.PostFormValue(k)); v != "" {
			in[k] = v
		}
	}
	var out struct {
		Campaign obj `json:"campaign"`
	}
	err := h.call(r.Context(), r, s, "POST", "/v1/reviews", in, &out)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Code != "step_up_required" && ae.Status < 500 && ae.Status != http.StatusNotFound:
		return h.findingsWith(w, r, s, ae.Status, "The review was not started: "+ae.Message)
	case err != nil:
		return h.stepUpOr(w, r, s, err)
	}
	http.Redirect(w, r, "/console/reviews/"+url.PathEscape(str(out.Campaign["id"])), http.StatusSeeOther)
	return nil
}

func str(v any) string {
	if v == nil {
		return ""
	}
	s, _ := v.(string)
	return s
}

func (h *Handler) review(w http.ResponseWriter, r *http.Request, s *session) error {
	return h.reviewWith(w, r, s, r.PathValue("id"), 200, "")
}

func (h *Handler) reviewWith(w http.ResponseWriter, r *http.Request, s *session, id string, status int, problem string) error {
	var rv struct {
		Campaign obj   `json:"campaign"`
		Items    []obj `json:"items"`
	}
	if err := h.call(r.Context(), r, s, "GET", "/v1/reviews/"+url.PathEscape(id), nil, &rv); err != nil {
		return err
	}
	p := h.page(s, "findings", "Access review", obj{"Campaign": rv.Campaign, "Items": rv.Items})
	p.Error = problem
	h.render(w, status, "review.html", p)
	return nil
}

// decideItem keeps, revokes or reduces the access of a review item.
func (h *Handler) decideItem(w http.ResponseWriter, r *http.Request, s *session) error {
	item, campaign := r.PathValue("id"), r.PostFormValue("campaign")
	decision, reason := r.PostFormValue("decision"), strings.TrimSpace(r.PostFormValue("reason"))
	back := func(status int, msg string) error {
		if campaign == "" {
			return &apiError{Status: status, Message: msg}
		}
		return h.reviewWith(w, r, s, campaign, status, msg)
	}
	if decision != "keep" && decision != "revoke" && decision != "reduce" {
		return back(http.StatusBadRequest, "Choose keep, revoke or reduce.")
	}
	if reason == "" {
		return back(http.StatusBadRequest, "Say why: a reason is required, and it is recorded with the decision.")
	}
	in := obj{"decision": decision, "reason": reason}
	if decision == "reduce" {
		in["models"], in["endpoints"] = splitList(r.PostFormValue("models")), splitList(r.PostFormValue("endpoints"))
	}
	err := h.call(r.Context(), r, s, "POST", "/v1/reviews/items/"+url.PathEscape(item)+"/decide", in, nil)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Code != "step_up_required" && ae.Status < 500 && ae.Status != http.StatusNotFound:
		return back(ae.Status, "Not decided: "+ae.Message)
	case err != nil:
		return h.stepUpOr(w, r, s, err)
	}
	if campaign == "" {
		http.Redirect(w, r, "/console/findings", http.StatusSeeOther)
		return nil
	}
	http.Redirect(w, r, "/console/reviews/"+url.PathEscape(campaign), http.StatusSeeOther)
	return nil
}

func (h *Handler) closeReview(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	err := h.call(r.Context(), r, s, "POST", "/v1/reviews/"+url.PathEscape(id)+"/close", obj{}, nil)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Code != "step_up_required" && ae.Status < 500 && ae.Status != http.StatusNotFound:
		return h.reviewWith(w, r, s, id, ae.Status, "Not closed: "+ae.Message)
	case err != nil:
		return h.stepUpOr(w, r, s, err)
	}
	http.Redirect(w, r, "/console/reviews/"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}
