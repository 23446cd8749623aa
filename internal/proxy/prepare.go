package proxy

import (
	"errors"
	"net/http"

	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// prepared is what the front half of the request path established about a
// call: who calls, what they asked (the one reading of the body), where it
// goes and at what price, and the rate-limit ticket it was admitted with.
type prepared struct {
	caller auth.Caller
	body   []byte
	call   Call
	up     *provider.Upstream
	price  pricing.Price
	priced bool
	// ticket is nil when no limiter is configured. The caller owns it from
	// here: it must Release it and Settle it with the tokens the call used.
	ticket *ratelimit.Ticket
}

// route says how a route goes through the front half.
type route struct {
	// action is the endpoint the key's scope must allow and the policy
	// action asked about (count_tokens is scoped and decided as messages).
	action string
	// free marks a call that spends nothing: the policy is asked with no
	// output cap and no cost, and the limiter counts one request, no tokens.
	free bool
}

// prepare runs the front half of the request path, DESIGN.md §3 steps 2 to
// 5: authenticate, check the key's scope, read and parse the body once, route
// the model, ask the policies, and apply the rate limits. It stops before the
// budget reservation. The record is filled in as each fact is learned, so a
// refusal at any step is recorded with all that was known by then.
//
// Every route that reaches an upstream goes through here, so no route can
// skip a step or check it differently.
func (h *Handler) prepare(w http.ResponseWriter, r *http.Request, ep provider.Endpoint, rt route, rec *usage.Record) (prepared, error) {
	snap := h.snapshot()
	var p prepared
	var err error

	p.caller, err = h.authenticate(r)
	if err != nil {
		return p, err
	}
	rec.KeyID, rec.PrincipalID, rec.TeamID = p.caller.Key.ID, p.caller.Principal.ID, principalTeam(p.caller.Key, p.caller.Principal)
	if err := h.checkScope(r, p.caller, rt.action); err != nil {
		return p, err
	}

	if p.body, err = readBody(w, r, h.opt.MaxBodyBytes); err != nil {
		return p, err
	}
	if p.call, err = ParseCall(ep, p.body); err != nil {
		return p, err
	}
	if ep.Protocol == provider.TypeAnthropic {
		p.call.Betas = append(headerBetas(r.Header), p.call.Betas...)
		p.call.Version = r.Header.Get("Anthropic-Version")
	}
	rec.Model, rec.Stream = p.call.Model, p.call.Stream
	if !p.caller.Key.Scope.AllowsModel(p.call.Model) {
		return p, httpx.Errorf(http.StatusForbidden, "model_not_allowed", "This API key may not use the model '%s'.", p.call.Model).WithParam("model")
	}

	p.up, err = snap.Router.Route(p.call.Model, ep.Protocol)
	switch {
	case errors.Is(err, provider.ErrWrongProtocol):
		other := "/v1/messages (Anthropic API)"
		if ep.Protocol == provider.TypeAnthropic {
			other = "the OpenAI-compatible endpoints"
		}
		return p, httpx.Errorf(http.StatusBadRequest, "wrong_api", "The model '%s' is served through %s.", p.call.Model, other).WithParam("model")
	case err != nil:
		return p, httpx.Errorf(http.StatusNotFound, "model_not_found", "The model '%s' does not exist or no provider serves it.", p.call.Model).WithParam("model")
	}
	rec.Provider = p.up.Name
	p.price, p.priced = snap.Prices.Lookup(p.call.Model)
	rec.Priced = p.priced

	// Policy: both the key's scope (above) and a policy must allow.
	asked, worstCost, limited, limitedBody := p.call, int64(0), p.call, p.body
	if rt.free {
		asked, limited, limitedBody = Call{Model: p.call.Model}, Call{}, nil
	} else {
		capOut, _ := h.maxOutput(ep, p.call, p.price)
		worstCost = worstOf(ep, p.call, p.body, p.price, capOut).cost
	}
	ob := observationOf(r.Context())
	_, endPolicy := ob.phase(r.Context(), PhasePolicy)
	pd := h.decide(r, p.caller, snap, rt.action, p.call.Model, p.up.Name, asked, worstCost)
	rec.Reasons = pd.Reasons
	endPolicy.done(nil)
	if !pd.Allow {
		return p, policyDenied(pd)
	}

	// Rate limits: one request, and the call's tokens (estimated now, settled
	// to the actual count after).
	if p.ticket, err = h.admit(r, rec.ID, p.caller.Key.ID, p.caller.Principal.ID, rec.TeamID, limited, limitedBody); err != nil {
		return p, err
	}
	if p.ticket != nil {
		for k, v := range p.ticket.Headers {
			w.Header()[k] = v
		}
	}
	return p, nil
}
