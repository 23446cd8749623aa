package proxy

import (
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// forStore returns rec with every string as any store can hold it: valid
// UTF-8, no NUL (PostgreSQL text refuses both), bounded as the ledger bounds
// the same fields. The strings come from callers (the model) and upstreams
// (error codes, request ids); without this a model name with "\u0000" in it
// made the usage record fail on PostgreSQL and be lost.
func forStore(rec usage.Record) usage.Record {
	for _, f := range []struct {
		p     *string
		bound string
	}{{&rec.ID, "request_id"}, {&rec.KeyID, "key_id"}, {&rec.PrincipalID, "principal_id"}, {&rec.TeamID, "team_id"},
		{&rec.Endpoint, "endpoint"}, {&rec.Model, "model"}, {&rec.Provider, "provider"}, {&rec.ErrorCode, "error_code"},
		{&rec.UpstreamRequestID, "upstream_request_id"}} {
		*f.p = storeString(*f.p, ledger.FieldBound(f.bound))
	}
	if len(rec.Reasons) > 0 {
		reasons := make([]string, 0, min(len(rec.Reasons), ledger.MaxReasons))
		for _, r := range rec.Reasons[:min(len(rec.Reasons), ledger.MaxReasons)] {
			reasons = append(reasons, storeString(r, ledger.FieldBound("reasons")))
		}
		rec.Reasons = reasons
	}
	return rec
}

func storeString(s string, n int) string {
	s, _ = ledger.Bound(s, n)
	s, _ = ledger.Bound(strings.ReplaceAll(s, "\x00", "\uFFFD"), n)
	return s
}

// recordPanic, deferred by a call's handler, closes an authenticated call's
// records when it panics (a bug, or http.ErrAbortHandler) before its end
// record was written, then lets the panic go on to the recovering middleware.
// Without it the start record stays open: recovery closes open calls only of
// a gateway that stopped, so on a live one it never would.
func (h *Handler) recordPanic(r *http.Request, rec *usage.Record, start time.Time, ended *bool, end *callEnd) {
	v := recover()
	if v == nil {
		return
	}
	if rec.KeyID != "" && !*ended {
		*ended = true
		rec.LatencyMillis = h.now().Sub(start).Milliseconds()
		rec.Status, rec.ErrorCode = http.StatusInternalServerError, "internal_error"
		h.endCall(r, rec, end)
	}
	panic(v)
}
