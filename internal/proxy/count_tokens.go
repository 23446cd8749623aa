package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// serveCountTokens serves POST /v1/messages/count_tokens (the Anthropic SDK's
// Messages.CountTokens). It is a call like any other — authenticated, scoped
// and policy-checked as "messages" for its model, rate-limited as a request,
// written ahead in the ledger and recorded — except that it spends nothing:
// Anthropic does not bill it, so no budget is reserved or charged and no
// tokens are counted against limits.
func (h *Handler) serveCountTokens(w http.ResponseWriter, r *http.Request, rec *usage.Record) error {
	ep := provider.CountTokens
	snap := h.snapshot()
	caller, err := h.authenticate(r)
	if err != nil {
		return err
	}
	rec.KeyID, rec.PrincipalID, rec.TeamID = caller.Key.ID, caller.Principal.ID, principalTeam(caller.Key, caller.Principal)
	if err := h.checkScope(r, caller, vkey.EndpointMessages); err != nil {
		return err
	}
	body, err := readBody(w, r, h.opt.MaxBodyBytes)
	if err != nil {
		return err
	}
	call, err := ParseCall(ep, body)
	if err != nil {
		return err
	}
	rec.Model = call.Model
	if !caller.Key.Scope.AllowsModel(call.Model) {
		return httpx.Errorf(http.StatusForbidden, "model_not_allowed", "This API key may not use the model '%s'.", call.Model).WithParam("model")
	}
	up, err := snap.Router.Route(call.Model, ep.Protocol)
	switch {
	case errors.Is(err, provider.ErrWrongProtocol):
		return httpx.Errorf(http.StatusBadRequest, "wrong_api", "The model '%s' is served through the OpenAI-compatible endpoints.", call.Model).WithParam("model")
	case err != nil:
		return httpx.Errorf(http.StatusNotFound, "model_not_found", "The model '%s' does not exist or no provider serves it.", call.Model).WithParam("model")
	}
	rec.Provider = up.Name
	_, rec.Priced = snap.Prices.Lookup(call.Model)

	pd := h.decide(r, caller, snap, vkey.EndpointMessages, call.Model, up.Name, Call{Model: call.Model}, 0)
	rec.Reasons = pd.Reasons
	if !pd.Allow {
		return policyDenied(pd)
	}
	ticket, err := h.admit(r, rec.ID, caller.Key.ID, caller.Principal.ID, rec.TeamID, Call{}, nil) // one request, no tokens
	if err != nil {
		return err
	}
	if ticket != nil {
		defer ticket.Release(r.Context())
		defer ticket.Settle(context.WithoutCancel(r.Context()), 0)
		for k, v := range ticket.Headers {
			w.Header()[k] = v
		}
	}
	if err := h.writeStart(r, rec, body, nil); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(r.Context(), h.opt.UpstreamTimeout)
	defer cancel()
	var sent bool // count_tokens spends nothing, so whether it was sent changes no charge
	resp, err := h.roundTrip(r.WithContext(ctx), up, ep, body, &sent)
	if err != nil {
		return h.upstreamFailure(r, err)
	}
	defer resp.Body.Close()
	rec.UpstreamRequestID = firstHeader(resp.Header, "request-id", "x-request-id")
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return upstreamError(up, ep, resp, b)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20+1))
	if err != nil {
		return httpx.Errorf(http.StatusBadGateway, "upstream_error", "The upstream response could not be read.").WithCause(err)
	}
	if len(b) > 1<<20 {
		return httpx.Errorf(http.StatusBadGateway, "upstream_response_too_large", "The upstream response exceeded the gateway's limit.")
	}
	copyResponseHeaders(w, resp)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(resp.StatusCode)
	rec.Status = resp.StatusCode
	if _, err := w.Write(b); err != nil {
		rec.Status, rec.ErrorCode = statusClientClosed, "client_closed"
	}
	return nil
}
