package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/denylog"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// DeniedRecorder traces refused credentials (package denylog).
type DeniedRecorder interface {
	Observe(ctx context.Context, e denylog.Event)
}

// deniedCodes are the refusals that leave a trace: a credential that was
// good once (revoked, expired, suspended, rotated out, owner disabled) or
// that matches nothing. Missing credentials and DPoP mistakes do not.
var deniedCodes = map[string]bool{
	"key_revoked": true, "key_expired": true, "key_suspended": true, "key_rotated": true, "principal_disabled": true,
	"invalid_api_key": true, "token_revoked": true, "token_expired": true,
}

// authenticate authenticates the caller (authenticateCredential) and leaves a
// trace of a refused credential: per key when the refusal names one
// (vkey.Denied), else in the bucket of its reason.
func (h *Handler) authenticate(r *http.Request) (auth.Caller, error) {
	c, err := h.authenticateCredential(r)
	if err != nil && h.denied != nil {
		h.traceDenied(r, err)
	}
	return c, err
}

func (h *Handler) traceDenied(r *http.Request, err error) {
	var he *httpx.Error
	if !errors.As(err, &he) || !deniedCodes[he.Code] {
		return
	}
	e := denylog.Event{Time: h.now(), RequestID: httpx.RequestID(r.Context()), Reason: he.Code, Status: he.Status,
		Endpoint: endpointOf(r.URL.Path), SourceIP: h.sourceAddr(r).String(), UserAgent: r.UserAgent()}
	var d *vkey.Denied
	if errors.As(err, &d) {
		e.KeyID, e.PrincipalID = d.KeyID, d.PrincipalID
	}
	h.denied.Observe(r.Context(), e)
}

// endpointOf names the data-plane endpoint of a path as key scopes do.
func endpointOf(path string) string {
	switch path {
	case "/v1/chat/completions":
		return vkey.EndpointChat
	case "/v1/completions":
		return vkey.EndpointCompletions
	case "/v1/embeddings":
		return vkey.EndpointEmbeddings
	case "/v1/responses":
		return vkey.EndpointResponses
	case "/v1/messages":
		return vkey.EndpointMessages
	case "/v1/messages/count_tokens":
		return "count_tokens"
	}
	if path == "/v1/models" || strings.HasPrefix(path, "/v1/models/") {
		return vkey.EndpointModels
	}
	return ""
}
