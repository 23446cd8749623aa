package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
)

// Budgets reserves and settles money for calls (package budget).
type Budgets interface {
	Applies(c budget.Call) (any, hard bool)
	Reserve(ctx context.Context, id string, c budget.Call, amount int64) (*budget.Hold, error)
	// Admit decides in memory; the hold is made durable by the call's
	// start entry (used when the handler has a ledger).
	Admit(ctx context.Context, id string, c budget.Call, amount int64) (*budget.Hold, error)
}

// worstCase is the most a call can cost, with the token counts it assumes.
type worstCase struct {
	input, output int64 // tokens
	cost          int64 // micros
}

// maxOutput returns the output-token ceiling of a call, per generation: the
// request's own, or the model's from the price table, or the configured
// default.
func (h *Handler) maxOutput(ep provider.Endpoint, c Call, p pricing.Price) (n int64, fromRequest bool) {
	switch {
	case !ep.Output:
		return 0, false
	case c.MaxOutput != nil:
		return *c.MaxOutput, true
	case p.MaxOutput > 0:
		return p.MaxOutput, false
	}
	return h.opt.DefaultMaxOutput, false
}

// setMaxOutput rewrites the output cap of c's body to n: the cap fields the
// endpoint defines that the body has (chat may carry both of its fields, equal),
// or the endpoint's field when it has none. Every other member keeps the bytes
// that were read, and the result is read again to prove the upstream sees the
// call that was priced.
func setMaxOutput(ep provider.Endpoint, c Call, n int64) (Call, []byte, error) {
	fields := capFields(ep)
	var present []string
	for _, f := range fields {
		if v, ok := c.body.get(f); ok && !isNull(v) {
			present = append(present, f)
		}
	}
	if len(present) == 0 && len(fields) > 0 {
		f := fields[0]
		if ep.Name == provider.Chat.Name && !strings.HasPrefix(c.Model, "o") && !strings.HasPrefix(c.Model, "gpt-5") {
			f = "max_tokens" // what older models and OpenAI-compatible servers know
		}
		present = []string{f}
	}
	o := c.body
	for _, f := range present {
		o = o.set(f, jsontext.Value(strconv.FormatInt(n, 10)))
	}
	body := o.marshal()
	again, err := ParseCall(ep, body)
	if err != nil {
		return c, nil, err
	}
	if again.MaxOutput == nil || *again.MaxOutput != n || again.Model != c.Model || again.Stream != c.Stream ||
		again.Choices != c.Choices || again.Prompts != c.Prompts {
		return c, nil, fmt.Errorf("proxy: output cap rewrite changed the call")
	}
	return again, body, nil
}

// reserve holds the worst-case cost of the call at every budget that applies.
// It may lower the call's output cap (clamp budgets, or a hard budget on a call
// that set none) and then returns the rewritten body. Under a hard budget it
// refuses a model without a price and a call whose cost has no bound (Shape.
// Unbounded) unless the operator allows unbounded cost. With no budget
// applying it does nothing.
func (h *Handler) reserve(ctx context.Context, ep provider.Endpoint, c *Call, body []byte, bc budget.Call,
	price pricing.Price, priced bool, id string) (*budget.Hold, worstCase, []byte, error) {
	out, fromRequest := h.maxOutput(ep, *c, price)
	wc := worstOf(ep, *c, body, price, out)
	if h.budgets == nil {
		return nil, wc, body, nil
	}
	applies, hard := h.budgets.Applies(bc)
	if !applies {
		return nil, wc, body, nil
	}
	if hard && !priced {
		return nil, wc, body, httpx.Errorf(http.StatusForbidden, "model_unpriced",
			"The model '%s' has no price, so a hard budget cannot bound it; an operator must set one (gatehouse prices set).", c.Model).WithParam("model")
	}
	if hard {
		// Only the shapes the gateway knows: an unread field or beta is an
		// unpriced one (fields.go).
		if err := h.opt.Fields.checkFields(ep, *c); err != nil {
			return nil, wc, body, err
		}
		if ep.Protocol == provider.TypeAnthropic {
			if err := h.opt.Fields.checkVersion(c.Version); err != nil {
				return nil, wc, body, err
			}
			u, err := h.opt.Fields.checkBetas(c.Betas, price)
			if err != nil {
				return nil, wc, body, err
			}
			if u != "" {
				c.Shape.unbounded(u)
			}
		}
	}
	if hard && len(c.Shape.Unbounded) > 0 && !h.opt.AllowUnboundedCost {
		f := c.Shape.Unbounded[0]
		return nil, wc, body, httpx.Errorf(http.StatusBadRequest, "unbounded_cost",
			"The cost of '%s' has no bound the gateway can compute, so a key under a hard budget may not use it (an operator can allow it: allow_unbounded_cost).", f).WithParam(f)
	}
	rewrite := func(n int64) error {
		c2, b, err := setMaxOutput(ep, *c, n)
		if err != nil {
			return err
		}
		*c, body = c2, b
		wc = worstOf(ep, *c, body, price, n)
		return nil
	}
	if hard && ep.Output && !fromRequest {
		// Make the ceiling the reservation assumed binding upstream too.
		if err := rewrite(out); err != nil {
			return nil, wc, body, httpx.Errorf(http.StatusBadRequest, "invalid_json", "We could not parse the JSON body of your request.").WithCause(err)
		}
	}
	// A caller that hangs up must not cut the reservation's transaction short.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		var hold *budget.Hold
		var err error
		if h.seq != nil {
			hold, err = h.budgets.Admit(rctx, id, bc, wc.cost) // durable with the start record
		} else {
			hold, err = h.budgets.Reserve(rctx, id, bc, wc.cost)
		}
		var ref *budget.Refusal
		if errors.As(err, &ref) && ref.Budget.Clamp && ep.Output && c.MaxOutput != nil && attempt < 3 {
			cur := *c.MaxOutput
			n := affordableOutput(cur, ref.Remaining, func(n int64) int64 { return worstOf(ep, *c, body, price, n).cost })
			if n >= 1 && n < cur && rewrite(n) == nil {
				continue
			}
		}
		switch {
		case ref != nil:
			return nil, wc, body, insufficient(ref, wc.cost)
		case err != nil:
			return nil, wc, body, httpx.Errorf(http.StatusServiceUnavailable, "budget_unavailable",
				"Budgets cannot be checked right now; try again shortly.").WithCause(err)
		}
		return hold, wc, body, nil
	}
}

// affordableOutput is the largest output cap up to hi whose worst case (cost)
// fits remaining, or 0.
func affordableOutput(hi, remaining int64, cost func(int64) int64) int64 {
	lo := int64(0)
	if cost(0) > remaining {
		return 0
	}
	for lo < hi { // invariant: cost(lo) ≤ remaining
		mid := lo + (hi-lo+1)/2
		if cost(mid) <= remaining {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

func insufficient(r *budget.Refusal, needed int64) error {
	scope := string(r.Budget.Scope)
	if r.Budget.ScopeID != "" {
		scope += " " + r.Budget.ScopeID
	}
	model := ""
	if r.Budget.Model != "" {
		model = ", models " + r.Budget.Model
	}
	e := httpx.Errorf(http.StatusTooManyRequests, "insufficient_quota",
		"Budget %s (%s%s, %s, limit %s) has %s left; this call may cost up to %s.",
		r.Budget.ID, scope, model, r.Budget.Period, pricing.FormatUSD(r.Budget.LimitMicros), pricing.FormatUSD(r.Remaining), pricing.FormatUSD(needed))
	e.Type = "insufficient_quota"
	return e
}
