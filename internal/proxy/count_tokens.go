package proxy

import (
	"context"
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
	p, err := h.prepare(w, r, ep, route{action: vkey.EndpointMessages, free: true}, rec)
	if err != nil {
		return err
	}
	body, up := p.body, p.up
	if ticket := p.ticket; ticket != nil {
		defer ticket.Release(r.Context())
		defer ticket.Settle(context.WithoutCancel(r.Context()), 0)
	}
	if err := h.writeStart(r, rec, body, nil); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(r.Context(), h.opt.UpstreamTimeout)
	defer cancel()
	var sent bool // count_tokens spends nothing, so whether it was sent changes no charge
	resp, err := h.roundTrip(ctx, r, up, ep, body, &sent)
	if err != nil {
		return h.upstreamFailure(r, err)
	}
	defer resp.Body.Close()
	rec.UpstreamRequestID = firstHeader(resp.Header, "Request-Id", "X-Request-Id")
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
