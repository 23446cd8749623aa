package admin

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// auditRoutes serves findings and leaked-key reports (package audit).
func (h *Handler) auditRoutes() {
	if h.d.Audit == nil {
		return
	}
	m := h.mux
	m.HandleFunc("GET /v1/findings", h.authed(h.listFindings))
	m.HandleFunc("POST /v1/findings/run", h.authed(h.runFindings))
	m.HandleFunc("GET /v1/findings/{id}", h.authed(h.getFinding))
	for verb, st := range map[string]audit.State{"ack": audit.Acknowledged, "resolve": audit.Resolved, "dismiss": audit.Dismissed} {
		m.HandleFunc("POST /v1/findings/{id}/"+verb, h.authed(h.transitionFinding(st)))
	}
	m.HandleFunc("POST /v1/keys/leaked", h.authed(h.leakedKeys))
	h.reportRoutes()
}

// auditAction names the policy action of a write to findings or reviews:
// findings.run, findings.update (ack, resolve, dismiss), reviews.create,
// reviews.decide, reviews.close.
func auditAction(area string, parts []string) string {
	switch last := parts[len(parts)-1]; {
	case area == "findings" && last == "run":
		return "findings.run"
	case area == "findings":
		return "findings.update"
	case last == "decide" || last == "close":
		return "reviews." + last
	}
	return area + ".create"
}

func auditError(err error) error {
	switch {
	case errors.Is(err, audit.ErrNeedReason):
		return badRequest("reason", "A reason is required: say why.")
	case errors.Is(err, audit.ErrBadTransition):
		return httpx.Errorf(http.StatusConflict, "invalid_state", "%s", err.Error())
	}
	return err
}

func (h *Handler) listFindings(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	q := r.URL.Query()
	f := audit.Filter{Rule: q.Get("rule"), Subject: q.Get("subject"), Severity: audit.Severity(q.Get("severity"))}
	if s := q.Get("state"); s != "" {
		st, err := audit.ParseState(s)
		if err != nil {
			return badRequest("state", "%s", err)
		}
		f.State = st
	}
	switch f.Severity {
	case "", audit.Low, audit.Medium, audit.High:
	default:
		return badRequest("severity", "severity: want low, medium or high")
	}
	since, err := parseTime("since", q.Get("since"))
	if err != nil {
		return err
	}
	f.Since = since
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return badRequest("limit", "limit: want a positive number")
		}
		f.Limit = n
	}
	fs, err := h.d.Audit.List(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(fs))
	return nil
}

func (h *Handler) getFinding(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	f, err := h.d.Audit.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeVersioned(w, 200, f.Version, f)
	return nil
}

func (h *Handler) runFindings(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	res, err := h.d.Audit.Run(r.Context(), who.PrincipalID)
	if err != nil {
		return err
	}
	writeJSON(w, 200, res)
	return nil
}

func (h *Handler) transitionFinding(to audit.State) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
		v, err := ifMatch(r)
		if err != nil {
			return err
		}
		var in struct {
			Reason string `json:"reason"`
		}
		if err := decode(w, r, &in); err != nil {
			return err
		}
		f, err := h.d.Audit.Transition(r.Context(), r.PathValue("id"), to, who.PrincipalID, in.Reason, v)
		if err != nil {
			return auditError(err)
		}
		writeVersioned(w, 200, f.Version, f)
		return nil
	}
}

// leakedKeys takes secrets reported as leaked, hashes them, and answers
// which are Gatehouse keys and whether they were live; with "revoke" it
// revokes those at once. Secrets are never echoed or logged.
func (h *Handler) leakedKeys(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Secrets []string `json:"secrets"`
		Sources []string `json:"sources"` // optional, one per secret: where each was found
		Revoke  bool     `json:"revoke"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if len(in.Secrets) == 0 || len(in.Secrets) > 1000 {
		return badRequest("secrets", "secrets: want 1 to 1000 keys")
	}
	if len(in.Sources) != 0 && len(in.Sources) != len(in.Secrets) {
		return badRequest("sources", "sources: want one per secret, or none")
	}
	leaks := make([]audit.Leak, len(in.Secrets))
	for i, s := range in.Secrets {
		leaks[i].Secret = s
		if len(in.Sources) > 0 {
			leaks[i].Source = in.Sources[i]
		}
	}
	res, err := h.d.Audit.Leaked(r.Context(), leaks, in.Revoke, who.PrincipalID)
	if err != nil {
		return err
	}
	if in.Revoke {
		for _, x := range res {
			if x.Revoked {
				h.d.Verifier.Forget(x.KeyID)
				h.d.ForgetKey(x.KeyID)
			}
		}
	}
	writeJSON(w, 200, list(res))
	return nil
}
