package proxy

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
)

func TestUpstreamErrorMapping(t *testing.T) {
	key := "plainUpstreamKey0123456789"
	up := provider.NewUpstream(provider.Provider{Name: "p", BaseURL: "http://x"}, []provider.APIKey{provider.APIKey(key)}, nil)
	hints := http.Header{"Retry-After": {"12"}, "Retry-After-Ms": {"11500.5"}, "X-Should-Retry": {"true"}}
	cases := []struct {
		name       string
		ep         provider.Endpoint
		status     int
		hdr        http.Header
		wantStatus int
		wantCode   string
		wantHints  bool
		noRetry    bool
	}{
		{"anthropic 529 stays", provider.Messages, 529, hints, 529, "overloaded_error", true, false},
		{"openai 529 is 503", provider.Chat, 529, hints, 503, "upstream_overloaded", true, false},
		{"503 stays", provider.Chat, 503, hints, 503, "upstream_overloaded", true, false},
		{"429 stays", provider.Messages, 429, hints, 429, "upstream_rate_limited", true, false},
		{"500 is 502", provider.Chat, 500, hints, 502, "upstream_error", false, false},
		{"401 is ours", provider.Chat, 401, hints, 502, "upstream_auth_failed", false, true},
		{"400 passes", provider.Chat, 400, hints, 400, "bad_param", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := `{"error":{"message":"echo ` + key + `","type":"invalid_request_error","code":"bad_param"}}`
			err := upstreamError(up, c.ep, &http.Response{StatusCode: c.status, Header: c.hdr}, []byte(body))
			var e *httpx.Error
			if !errors.As(err, &e) || e.Status != c.wantStatus || e.Code != c.wantCode {
				t.Fatalf("got %+v", err)
			}
			if got := e.Header.Get("Retry-After") == "12" && e.Header.Get("Retry-After-Ms") == "11500.5"; got != c.wantHints {
				t.Fatalf("hints %v", e.Header)
			}
			if c.noRetry != (e.Header.Get("X-Should-Retry") == "false") {
				t.Fatalf("x-should-retry %v", e.Header)
			}
			if strings.Contains(e.Message, key[:8]) || strings.Contains(e.Error(), key[:8]) {
				t.Fatalf("key in %q", e.Error())
			}
		})
	}
}

func TestRetryHintsDropMalformed(t *testing.T) {
	for _, v := range []string{"soon", "-1", "1e3", "12345678", "Mon, 02 Jan 2006 15:04:05 GMT\r\nX-Evil: 1"} {
		if h := retryHints(http.Header{"Retry-After": {v}}); h.Get("Retry-After") != "" {
			t.Fatalf("Retry-After %q relayed", v)
		}
	}
	for _, v := range []string{"0", "120", "Wed, 21 Oct 2026 07:28:00 GMT"} {
		if h := retryHints(http.Header{"Retry-After": {v}}); h.Get("Retry-After") != v {
			t.Fatalf("Retry-After %q dropped", v)
		}
	}
	if h := retryHints(http.Header{"X-Should-Retry": {"maybe"}, "Retry-After-Ms": {"NaN"}}); len(h) != 0 {
		t.Fatalf("relayed %v", h)
	}
}

func TestRetryAdvice(t *testing.T) {
	for code, want := range map[string]string{"insufficient_quota": "false", "rate_limit_exceeded": "", "upstream_redirect": "false", "policy_denied": ""} {
		e := httpx.Errorf(429, code, "x")
		retryAdvice(e)
		if got := e.Header.Get("X-Should-Retry"); got != want {
			t.Fatalf("%s: x-should-retry %q", code, got)
		}
	}
}

func TestEndpointOf(t *testing.T) {
	for path, want := range map[string]string{"/v1/chat/completions": "chat", "/v1/messages": "messages", "/v1/messages/count_tokens": "count_tokens",
		"/v1/models": "models", "/v1/models/gpt-4o": "models", "/v1/modelsX": "", "/admin": ""} {
		if got := endpointOf(path); got != want {
			t.Fatalf("%s: %q", path, got)
		}
	}
}
