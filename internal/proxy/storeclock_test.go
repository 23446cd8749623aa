package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/provider/providertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// TestUnknownStoreClockFailsClosed: when the store's clock is not known
// (here: stale), a call under a hard day budget gets 503
// budget_unavailable in its provider's error shape and never reaches the
// upstream; under a lifetime budget the same call goes through.
func TestUnknownStoreClockFailsClosed(t *testing.T) {
	for _, period := range []budget.Period{budget.Day, budget.Lifetime} {
		t.Run(string(period), func(t *testing.T) {
			db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gh.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			b := budget.Budget{ID: "bud_key", Scope: budget.ScopeKey, ScopeID: "key_1", Period: period, LimitMicros: 1_000_000_000, Hard: true}
			if err := b.Validate(); err != nil {
				t.Fatal(err)
			}
			bl := budget.NewLedger(db, "gw.1", func() []budget.Budget { return []budget.Budget{b} }, nil, slog.New(slog.DiscardHandler))
			bl.StoreClock = func() (time.Time, time.Duration, error) {
				return time.Time{}, 0, fmt.Errorf("the store's clock was read too long ago")
			}
			fake := providertest.New(t, "sk-x")
			pol, err := policy.Compile(policy.Defaults())
			if err != nil {
				t.Fatal(err)
			}
			oai := provider.NewUpstream(provider.Provider{Name: "o", Type: provider.TypeOpenAI, BaseURL: fake.OpenAIBaseURL(), Models: []string{"gpt-4o"}},
				[]provider.APIKey{"sk-x"}, http.DefaultClient)
			ant := provider.NewUpstream(provider.Provider{Name: "a", Type: provider.TypeAnthropic, BaseURL: fake.URL, Models: []string{"claude-opus-4-5"}},
				[]provider.APIKey{"sk-x"}, http.DefaultClient)
			snap := &config.Snapshot{Router: provider.NewRouter([]*provider.Upstream{oai, ant}, nil), Prices: pricing.NewTable(pricing.Defaults(), nil), Policies: pol}
			h := New(Deps{Budgets: bl, Snapshot: func() *config.Snapshot { return snap }, Auth: oneCaller{}, Log: slog.New(slog.DiscardHandler)}, Options{})

			w := chat(h, "gk_test")
			req := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(`{"model":"claude-opus-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("x-api-key", "gk_test")
			wa := httptest.NewRecorder()
			h.ServeHTTP(wa, req)
			if period == budget.Lifetime {
				if w.Code != http.StatusOK {
					t.Fatalf("lifetime budget, store clock unknown: status %d: %s", w.Code, w.Body)
				}
				return
			}
			var oe struct {
				Error struct{ Type, Code, Message string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &oe); err != nil || w.Code != http.StatusServiceUnavailable || oe.Error.Code != "budget_unavailable" {
				t.Fatalf("OpenAI route: status %d, body %s; want 503 budget_unavailable in OpenAI's shape", w.Code, w.Body)
			}
			var ae struct {
				Type  string
				Error struct{ Type, Message string }
			}
			if err := json.Unmarshal(wa.Body.Bytes(), &ae); err != nil || wa.Code != http.StatusServiceUnavailable || ae.Type != "error" || ae.Error.Type == "" {
				t.Fatalf("Anthropic route: status %d, body %s; want 503 in Anthropic's shape", wa.Code, wa.Body)
			}
			if strings.Contains(w.Body.String(), "too long ago") {
				t.Fatalf("the cause reached the caller: %s", w.Body)
			}
		})
	}
}
