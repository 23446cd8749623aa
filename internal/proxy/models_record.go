package proxy

import (
	"errors"
	"net/http"

	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// checkModelsScope checks an authenticated caller's scope for the models
// endpoints. A refusal after authentication leaves records, as on the
// generation endpoints: the end record (decision deny) and the usage record.
func (h *Handler) checkModelsScope(r *http.Request, c auth.Caller) error {
	err := h.checkScope(r, c, vkey.EndpointModels)
	if err == nil {
		return nil
	}
	rec := &usage.Record{ID: httpx.RequestID(r.Context()), Time: h.now().UTC(), Endpoint: vkey.EndpointModels,
		KeyID: c.Key.ID, PrincipalID: c.Principal.ID, TeamID: principalTeam(c.Key, c.Principal), Status: http.StatusForbidden}
	var he *httpx.Error
	if errors.As(err, &he) {
		rec.Status, rec.ErrorCode = he.Status, he.Code
	}
	h.endCall(r, rec, &callEnd{})
	return err
}

// modelsVerdict is how a models call ended, for its record.
type modelsVerdict struct {
	decision  string // allow or deny
	status    int
	errorCode string
	reasons   []string
}

func modelAllowed(status int, errorCode string) modelsVerdict {
	return modelsVerdict{decision: "allow", status: status, errorCode: errorCode}
}

// modelRefused: the model exists but the key's model scope or a policy
// refuses it; the caller is told 404 model_not_found.
func modelRefused(errorCode string, reasons []string) modelsVerdict {
	return modelsVerdict{decision: "deny", status: http.StatusNotFound, errorCode: errorCode, reasons: reasons}
}

// modelsOutcome writes the one record of a models call the key's endpoint
// scope admitted (the list, or one model: model is its id) before the
// answer is sent, then returns answer (nil: the caller answers): every
// authenticated call leaves a record (docs/ledger.md, rule 6). It is an end
// record with no start: nothing goes upstream, nothing is reserved or
// charged, so there is nothing to open or settle, and no usage record. If the
// log cannot take it the call fails closed (503), as a generation call does
// when its start record cannot be written.
//
// The record says what the caller got. While end records wait for the store
// (deferredEnds), the call is not served: its record says 503
// ledger_unavailable, and so does the answer. A record the log took but could
// not write yet (ledger.ErrDeferred: kept in memory and retried, or counted
// into a summary) will be written as it is, so the call is answered as it
// says; answering 503 then would leave "200" in the log for a call that got
// a 503.
func (h *Handler) modelsOutcome(r *http.Request, c auth.Caller, model string, v modelsVerdict, answer error) error {
	if h.ledger == nil {
		return answer
	}
	unavailable := httpx.Errorf(http.StatusServiceUnavailable, "ledger_unavailable",
		"The audit log cannot record this call, so it was not answered; try again shortly.")
	if h.deferredEnds() {
		v, answer = modelsVerdict{decision: "deny", status: http.StatusServiceUnavailable, errorCode: "ledger_unavailable"}, unavailable
	}
	end := ledger.Record{Kind: ledger.KindCallEnd, Time: h.now(), RequestID: httpx.RequestID(r.Context()), PrincipalID: c.Principal.ID, KeyID: c.Key.ID,
		TeamID: principalTeam(c.Key, c.Principal), Endpoint: vkey.EndpointModels, Model: model, Decision: v.decision, Reasons: v.reasons,
		Status: v.status, ErrorCode: v.errorCode, SourceIP: h.sourceAddr(r).String(), UserAgent: r.UserAgent()}
	// Nothing at stake (no start, hold or upstream call): during a long store
	// outage the record may be counted into a summary instead of kept.
	_, err := h.ledger.Append(r.Context(), ledger.Entry{Data: end.Marshal(), RequestID: end.RequestID, Closes: true, NothingAtStake: true})
	if err == nil || errors.Is(err, ledger.ErrDeferred) {
		return answer
	}
	return unavailable.WithCause(err)
}

// deferredEnds reports whether the log keeps end records in memory because
// the store did not take them (ledger.Log.Deferred): the store is unreachable.
func (h *Handler) deferredEnds() bool {
	d, ok := h.ledger.(interface{ Deferred() int })
	return ok && d.Deferred() > 0
}
