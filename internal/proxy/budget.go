package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// Budgets reserves and settles money for calls (package budget).
type Budgets interface {
	Applies(c budget.Call) (any, hard bool)
	Reserve(ctx context.Context, id string, c budget.Call, amount int64) (*budget.Hold, error)
}

// worstCase is the most a call can cost, with the token counts it assumes.
type worstCase struct {
	input, output int64 // tokens
	cost          int64 // micros
}

// imageTokens is what each image reference is assumed to cost: more than any
// current model charges for one image (OpenAI's largest tiling is about 1,500
// tokens; Anthropic's about 1,600).
const imageTokens = 3000

// InputUpperBound returns a count of input tokens never below the real one:
// every token of a BPE tokenizer covers at least one byte of text, and the JSON
// around the text (message framing included) is longer than the tokens a
// provider adds for it. Images referenced by URL are the exception, so each
// image part adds imageTokens.
func InputUpperBound(body []byte) int64 {
	n := int64(len(body)) + 16
	for _, marker := range [][]byte{[]byte(`"image_url"`), []byte(`"input_image"`), []byte(`"type":"image"`), []byte(`"type": "image"`)} {
		n += int64(bytes.Count(body, marker)) * imageTokens
	}
	return n
}

// maxOutput returns the output-token ceiling of a call: the request's own, or
// the model's from the price table, or the configured default.
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

// outputField returns the body member that caps output for ep and model.
func outputField(ep provider.Endpoint, model string, body []byte) string {
	switch ep {
	case provider.Responses:
		return "max_output_tokens"
	case provider.Chat:
		if bytes.Contains(body, []byte(`"max_completion_tokens"`)) || strings.HasPrefix(model, "o") || strings.HasPrefix(model, "gpt-5") {
			return "max_completion_tokens"
		}
	}
	return "max_tokens"
}

// setMaxOutput rewrites the output cap of body to n.
func setMaxOutput(ep provider.Endpoint, model string, body []byte, n int64) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	field := outputField(ep, model, body)
	for _, f := range []string{"max_tokens", "max_completion_tokens", "max_output_tokens"} {
		if _, ok := m[f]; ok && f != field {
			delete(m, f) // one cap only, so the upstream cannot pick a larger one
		}
	}
	m[field], _ = json.Marshal(n)
	return json.Marshal(m)
}

// reserve holds the worst-case cost of the call at every budget that applies.
// It may lower the call's output cap (clamp budgets, or a hard budget on a call
// that set none) and then returns the rewritten body. With no budget applying
// it does nothing.
func (h *Handler) reserve(ctx context.Context, ep provider.Endpoint, c *Call, body []byte, bc budget.Call,
	price pricing.Price, priced bool, id string) (*budget.Hold, worstCase, []byte, error) {
	var wc worstCase
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
	out, fromRequest := h.maxOutput(ep, *c, price)
	wc = worstCase{input: InputUpperBound(body), output: out}
	if hard && ep.Output && !fromRequest {
		// Make the ceiling the reservation assumed binding upstream too.
		b, err := setMaxOutput(ep, c.Model, body, out)
		if err != nil {
			return nil, wc, body, httpx.Errorf(http.StatusBadRequest, "invalid_json", "We could not parse the JSON body of your request.").WithCause(err)
		}
		body, c.MaxOutput = b, &out
	}
	for attempt := 0; ; attempt++ {
		wc.cost = price.Cost(usage.Tokens{Input: wc.input, Output: wc.output})
		hold, err := h.budgets.Reserve(ctx, id, bc, wc.cost)
		var ref *budget.Refusal
		if errors.As(err, &ref) && ref.Budget.Clamp && ep.Output && attempt < 3 {
			if n := affordableOutput(price, wc.input, ref.Remaining); n >= 1 && n < wc.output {
				b, err := setMaxOutput(ep, c.Model, body, n)
				if err == nil {
					body, wc.output, c.MaxOutput = b, n, &n
					continue
				}
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

// affordableOutput is the largest output cap whose worst case fits remaining.
func affordableOutput(p pricing.Price, input, remaining int64) int64 {
	if p.Output <= 0 {
		return 0
	}
	inCost := p.Cost(usage.Tokens{Input: input})
	if inCost >= remaining {
		return 0
	}
	n := (remaining - inCost) * 1_000_000 / p.Output
	for n > 0 && p.Cost(usage.Tokens{Input: input, Output: n}) > remaining {
		n--
	}
	return n
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
