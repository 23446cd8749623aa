package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// chatOnlyCaller is a key scoped to the chat endpoint.
type chatOnlyCaller struct{ oneCaller }

func (chatOnlyCaller) Authenticate(context.Context, string) (auth.Caller, error) {
	p := org.Principal{ID: "prn_1", Name: "agent", Roles: []string{"member"}}
	return auth.Caller{Key: vkey.Key{ID: "key_1", Kind: vkey.KindVirtual, PrincipalID: p.ID, CreatedAt: time.Now(),
		Scope: vkey.Scope{Endpoints: []string{vkey.EndpointChat}}}, Principal: p}, nil
}

// TestModelsScopeDenialLeavesRecords: an authenticated key refused the models
// endpoints (list and one model) leaves an end record (deny,
// endpoint_not_allowed) and a usage record, as a refused call does.
func TestModelsScopeDenialLeavesRecords(t *testing.T) {
	pol, err := policy.Compile(policy.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	up := provider.NewUpstream(provider.Provider{Name: "p", Type: provider.TypeOpenAI, BaseURL: "http://127.0.0.1:1", Models: []string{"gpt-4o"}},
		[]provider.APIKey{"sk-x"}, &http.Client{Transport: panicTransport{}})
	snap := &config.Snapshot{Router: provider.NewRouter([]*provider.Upstream{up}, nil), Prices: pricing.NewTable(pricing.Defaults(), nil), Policies: pol}
	led, rec := &memLedger{}, &memUsage{}
	h := New(Deps{Ledger: led, Snapshot: func() *config.Snapshot { return snap }, Auth: chatOnlyCaller{}, Usage: rec, Log: slog.New(slog.DiscardHandler)}, Options{})
	for i, path := range []string{"/v1/models", "/v1/models/gpt-4o"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer gk_test")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 403 {
			t.Fatalf("%s: status %d: %s", path, w.Code, w.Body)
		}
		if len(led.recs) != i+1 {
			t.Fatalf("%s: %d ledger records; want %d", path, len(led.recs), i+1)
		}
		end := led.recs[i]
		if end.Kind != ledger.KindCallEnd || end.Decision != "deny" || end.ErrorCode != "endpoint_not_allowed" || end.KeyID != "key_1" || end.Status != 403 || end.Endpoint != vkey.EndpointModels {
			t.Fatalf("%s: end record %+v", path, end)
		}
		if len(rec.recs) != i+1 || rec.recs[i].ErrorCode != "endpoint_not_allowed" {
			t.Fatalf("%s: usage records %+v", path, rec.recs)
		}
	}
}
