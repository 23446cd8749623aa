package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
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

// otherModelCaller is a key scoped to a model the snapshot does not route
// (o3), so gpt-4o is outside its scope.
type otherModelCaller struct{ oneCaller }

func (otherModelCaller) Authenticate(context.Context, string) (auth.Caller, error) {
	p := org.Principal{ID: "prn_1", Name: "agent", Roles: []string{"member"}}
	return auth.Caller{Key: vkey.Key{ID: "key_2", Kind: vkey.KindVirtual, PrincipalID: p.ID, CreatedAt: time.Now(),
		Scope: vkey.Scope{Models: []string{"o3"}}}, Principal: p}, nil
}

type downLedger struct{}

func (downLedger) Append(context.Context, ledger.Entry) (int64, error) {
	return 0, errors.New("ledger: disk full")
}

func modelsHandler(t *testing.T, led Ledger, a Authenticator, rec *memUsage, extra ...string) *Handler {
	t.Helper()
	files := policy.Defaults()
	for i, p := range extra {
		files["extra"+string(rune('a'+i))+".cedar"] = p
	}
	pol, err := policy.Compile(files)
	if err != nil {
		t.Fatal(err)
	}
	up := provider.NewUpstream(provider.Provider{Name: "p", Type: provider.TypeOpenAI, BaseURL: "http://127.0.0.1:1", Models: []string{"gpt-4o"}},
		[]provider.APIKey{"sk-x"}, &http.Client{Transport: panicTransport{}})
	snap := &config.Snapshot{Router: provider.NewRouter([]*provider.Upstream{up}, nil), Prices: pricing.NewTable(pricing.Defaults(), nil), Policies: pol}
	return New(Deps{Ledger: led, Snapshot: func() *config.Snapshot { return snap }, Auth: a, Usage: rec, Log: slog.New(slog.DiscardHandler)}, Options{})
}

// TestAllowedModelsCallsLeaveOneRecord: every authenticated models call
// leaves exactly one end record, written before the answer: allow for a list
// or a model the key may use (200) and for an unknown model (404), deny with
// the reason for a routed model the key's model scope refuses (answered 404
// like an unknown one). No usage record: nothing is charged.
func TestAllowedModelsCallsLeaveOneRecord(t *testing.T) {
	for _, tc := range []struct {
		name      string
		auth      Authenticator
		path      string
		status    int
		decision  string
		model     string
		errorCode string
	}{
		{"list", oneCaller{}, "/v1/models", 200, "allow", "", ""},
		{"one model", oneCaller{}, "/v1/models/gpt-4o", 200, "allow", "gpt-4o", ""},
		{"unknown model", oneCaller{}, "/v1/models/nope", 404, "allow", "nope", "model_not_found"},
		{"model outside the key's scope", otherModelCaller{}, "/v1/models/gpt-4o", 404, "deny", "gpt-4o", "model_not_allowed"},
		{"list with a narrow key", otherModelCaller{}, "/v1/models", 200, "allow", "", ""},
		{"model a policy forbids", oneCaller{}, "/v1/models/gpt-4o", 404, "deny", "gpt-4o", "policy_denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			led, rec := &memLedger{}, &memUsage{}
			var extra []string
			if tc.errorCode == "policy_denied" {
				extra = append(extra, `@id("no-gpt-4o") forbid (principal, action, resource == Model::"gpt-4o");`)
			}
			h := modelsHandler(t, led, tc.auth, rec, extra...)
			req := httptest.NewRequest("GET", tc.path, nil)
			req.Header.Set("Authorization", "Bearer gk_test")
			req.Header.Set("User-Agent", "probe/1")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if len(led.recs) != 1 {
				t.Fatalf("%d ledger records, want 1: %+v", len(led.recs), led.recs)
			}
			end := led.recs[0]
			if end.Kind != ledger.KindCallEnd || end.Decision != tc.decision || end.Status != tc.status || end.Endpoint != vkey.EndpointModels ||
				end.Model != tc.model || end.ErrorCode != tc.errorCode || end.KeyID == "" || end.PrincipalID != "prn_1" ||
				end.RequestID == "" || end.RequestID != w.Header().Get("X-Request-Id") || end.UserAgent != "probe/1" || end.SourceIP == "" || end.CostMicros != 0 {
				t.Fatalf("end record %+v", end)
			}
			if len(rec.recs) != 0 {
				t.Fatalf("usage records for a models call: %+v", rec.recs)
			}
			if tc.errorCode == "policy_denied" && !slices.Contains(end.Reasons, "no-gpt-4o") {
				t.Fatalf("the deny record names no policy: %+v", end.Reasons)
			}
		})
	}
}

// TestModelsLedgerDownFailsClosed: when the log cannot take the record, the
// models call is not answered (503 ledger_unavailable), list or model.
func TestModelsLedgerDownFailsClosed(t *testing.T) {
	h := modelsHandler(t, downLedger{}, oneCaller{}, &memUsage{})
	for _, path := range []string{"/v1/models", "/v1/models/gpt-4o", "/v1/models/nope"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer gk_test")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "ledger_unavailable") || strings.Contains(w.Body.String(), "gpt-4o\"") || strings.Contains(w.Body.String(), "disk full") {
			t.Fatalf("%s with the ledger down: %d %s", path, w.Code, w.Body)
		}
	}
}
