package proxy

import (
	"errors"
	"net/http"

	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
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
