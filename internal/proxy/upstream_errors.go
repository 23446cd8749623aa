package proxy

import (
	"errors"
	"io"
	"net/http"
	"regexp"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
)

// statusOverloaded is Anthropic's "overloaded_error" status.
const statusOverloaded = 529

// upstreamError turns an upstream error response into the caller's error,
// keeping its meaning: request problems pass through with the upstream's
// scrubbed message (the upstream's own keys removed, ScrubKeys); 429 stays 429
// and an overloaded upstream stays 503, or 529 on Anthropic routes, with the
// upstream's retry hints (Retry-After, retry-after-ms, x-should-retry); other
// 5xx are 502; a rejected upstream credential is the operator's problem, not
// the caller's, and no retry of the caller's can fix it.
func upstreamError(up *provider.Upstream, ep provider.Endpoint, resp *http.Response, body []byte) error {
	ue := up.ParseError(resp.StatusCode, body)
	msg := ue.Message
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		e := httpx.Errorf(http.StatusBadGateway, "upstream_auth_failed",
			"The upstream provider rejected the gateway's credentials (status %d); an operator must check the provider's keys.", s).WithCause(ue)
		e.Header = http.Header{"X-Should-Retry": {"false"}}
		return e
	case s == http.StatusTooManyRequests:
		e := httpx.Errorf(http.StatusTooManyRequests, "upstream_rate_limited", "The upstream provider is rate limiting requests: %s", msg).WithCause(ue)
		e.Header = retryHints(resp.Header)
		return e
	case s == statusOverloaded && ep.Protocol == provider.TypeAnthropic:
		e := httpx.Errorf(statusOverloaded, "overloaded_error", "The upstream provider is overloaded: %s", msg).WithCause(ue)
		e.Header = retryHints(resp.Header)
		return e
	case s == http.StatusServiceUnavailable || s == statusOverloaded:
		e := httpx.Errorf(http.StatusServiceUnavailable, "upstream_overloaded", "The upstream provider is overloaded or unavailable: %s", msg).WithCause(ue)
		e.Header = retryHints(resp.Header)
		return e
	case s >= 500:
		return httpx.Errorf(http.StatusBadGateway, "upstream_error", "The upstream provider failed (status %d): %s", s, msg).WithCause(ue)
	}
	e := httpx.Errorf(resp.StatusCode, ue.Code, "%s", msg).WithParam(ue.Param)
	if ue.Type != "" {
		e.Type = ue.Type
	}
	return e.WithCause(ue)
}

var (
	retrySeconds = regexp.MustCompile(`^[0-9]{1,7}$`)
	retryMillis  = regexp.MustCompile(`^[0-9]{1,10}(\.[0-9]{1,6})?$`)
)

// retryHints copies the upstream's retry headers that are well-formed:
// Retry-After (seconds or an HTTP date), retry-after-ms (OpenAI's and
// Anthropic's SDKs prefer it) and x-should-retry. Anything else an upstream
// puts there is dropped rather than relayed.
func retryHints(h http.Header) http.Header {
	out := http.Header{}
	if v := h.Get("Retry-After"); retrySeconds.MatchString(v) {
		out.Set("Retry-After", v)
	} else if _, err := http.ParseTime(v); err == nil && len(v) < 64 {
		out.Set("Retry-After", v)
	}
	if v := h.Get("Retry-After-Ms"); retryMillis.MatchString(v) {
		out.Set("Retry-After-Ms", v)
	}
	if v := h.Get("X-Should-Retry"); v == "true" || v == "false" {
		out.Set("X-Should-Retry", v)
	}
	return out
}

// redirected turns an upstream redirect into a 502: redirects are never
// followed (provider.NoRedirects), and a 3xx is not an answer to relay.
func redirected(resp *http.Response) error {
	if resp.StatusCode < 300 || resp.StatusCode >= 400 {
		return nil
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	e := httpx.Errorf(http.StatusBadGateway, "upstream_redirect",
		"The upstream provider answered with a redirect (status %d), which the gateway does not follow; an operator must check the provider's base URL.", resp.StatusCode)
	e.Header = http.Header{"X-Should-Retry": {"false"}}
	return e
}

// noRetryCodes are refusals that an immediate retry cannot turn into a
// success although their status (429, 5xx) makes SDKs retry by default.
var noRetryCodes = map[string]bool{"insufficient_quota": true, "upstream_auth_failed": true, "upstream_redirect": true, "upstream_response_too_large": true}

// retryAdvice adds x-should-retry: false to refusals an SDK must not retry
// (the OpenAI and Anthropic SDKs honour it over the status code).
func retryAdvice(err error) {
	var e *httpx.Error
	if !errors.As(err, &e) || !noRetryCodes[e.Code] {
		return
	}
	if e.Header == nil {
		e.Header = http.Header{}
	}
	e.Header.Set("X-Should-Retry", "false")
}
