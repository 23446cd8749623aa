package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/provider/providertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// budgetKind is the budget a test's key is under.
type budgetKind int

const (
	noBudget budgetKind = iota
	softBudget
	hardBudget
)

func (k budgetKind) String() string { return [...]string{"none", "soft", "hard"}[k] }

// shapeRig is a gateway with one OpenAI and one Anthropic upstream (both the
// simulator), the shipped prices, and the caller oneCaller under a budget of
// kind (real budget ledger on SQLite).
type shapeRig struct {
	h    *Handler
	fake *providertest.Server
	bl   *budget.Ledger
	b    budget.Budget
	rec  *memUsage
}

func newShapeRig(t *testing.T, kind budgetKind, opt Options, fakeURL ...string) *shapeRig {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	b := budget.Budget{ID: "bud_key", Scope: budget.ScopeKey, ScopeID: "key_1", Period: budget.Lifetime, LimitMicros: 100_000_000, Hard: kind == hardBudget}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	budgets := func() []budget.Budget { return []budget.Budget{b} }
	if kind == noBudget {
		budgets = func() []budget.Budget { return nil }
	}
	bl := budget.NewLedger(db, "gw.1", budgets, nil, slog.New(slog.DiscardHandler))
	fake := providertest.New(t, "")
	base := fake.URL
	if len(fakeURL) > 0 {
		base = fakeURL[0]
	}
	oa := provider.NewUpstream(provider.Provider{Name: "oa", Type: provider.TypeOpenAI, BaseURL: base + "/v1", Models: []string{"gpt-*", "text-embedding-*"}}, []provider.APIKey{"sk-x"}, http.DefaultClient)
	an := provider.NewUpstream(provider.Provider{Name: "an", Type: provider.TypeAnthropic, BaseURL: base, Models: []string{"claude-*"}}, []provider.APIKey{"sk-x"}, http.DefaultClient)
	pol, err := policy.Compile(policy.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	snap := &config.Snapshot{Router: provider.NewRouter([]*provider.Upstream{oa, an}, nil), Prices: pricing.NewTable(pricing.Defaults(), nil), Policies: pol}
	rec := &memUsage{}
	h := New(Deps{Budgets: bl, Snapshot: func() *config.Snapshot { return snap }, Auth: oneCaller{}, Usage: rec, Log: slog.New(slog.DiscardHandler)}, opt)
	return &shapeRig{h: h, fake: fake, bl: bl, b: b, rec: rec}
}

// send posts body to path with the headers given (name, value pairs).
func (r *shapeRig) send(path, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer gk_test")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req)
	return w
}

// shapeEndpoints are the endpoints with a minimal valid body (a JSON object
// without its closing brace, so a field can be added) and a model.
var shapeEndpoints = []struct {
	ep   provider.Endpoint
	path string
	base string
}{
	{provider.Chat, "/v1/chat/completions", `{"model":"gpt-4o","max_tokens":5,"service_tier":"default","messages":[{"role":"user","content":"hi"}]`},
	{provider.Completions, "/v1/completions", `{"model":"gpt-3.5-turbo-instruct","max_tokens":5,"prompt":"hi"`},
	{provider.Embeddings, "/v1/embeddings", `{"model":"text-embedding-3-small","input":"hi"`},
	{provider.Responses, "/v1/responses", `{"model":"gpt-4o","max_output_tokens":5,"service_tier":"default","input":"hi"`},
	{provider.Messages, "/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]`},
}

// TestEveryKnownFieldPassesUnderAHardBudget: a key under a hard budget may
// send every documented top-level field of each endpoint (here as null,
// which every reading of the gateway accepts): the call reaches the upstream.
func TestEveryKnownFieldPassesUnderAHardBudget(t *testing.T) {
	rig := newShapeRig(t, hardBudget, Options{})
	for _, se := range shapeEndpoints {
		for _, f := range KnownFields(se.ep) {
			if strings.Contains(se.base, `"`+f+`"`) {
				continue
			}
			before := len(rig.fake.Requests())
			w := rig.send(se.path, se.base+`,"`+f+`":null}`)
			if strings.Contains(w.Body.String(), "unsupported_field_under_hard_budget") || len(rig.fake.Requests()) == before {
				t.Errorf("%s: known field %q refused under a hard budget: %d %s", se.ep.Name, f, w.Code, w.Body)
			}
		}
	}
	if !slices.Equal(slices.Sorted(func(yield func(string) bool) {
		for k := range knownFields {
			if !yield(k) {
				return
			}
		}
	}), slices.Sorted(slices.Values(config.FieldEndpoints))) {
		t.Errorf("config.FieldEndpoints %v and the known fields' endpoints differ", config.FieldEndpoints)
	}
}

// TestUnknownFieldRefusedOnlyUnderAHardBudget: a top-level field the gateway
// does not know is refused under a hard budget with a 400 in the provider's
// error format naming the field, before anything goes upstream; under a soft
// budget or none it passes as before. Names are judged as the upstream reads
// them: JSON escapes decoded ("\u0073peed_boost" is speed_boost), case
// significant ("Temperature" is not temperature).
func TestUnknownFieldRefusedOnlyUnderAHardBudget(t *testing.T) {
	for _, field := range []struct{ raw, name string }{
		{`"priority_boost":true`, "priority_boost"},
		{`"\u0073peed_boost":2`, "speed_boost"},
		{`"Temperature":0.5`, "Temperature"},
		{`"temperature ":0.5`, "temperature "},
	} {
		for _, kind := range []budgetKind{noBudget, softBudget, hardBudget} {
			rig := newShapeRig(t, kind, Options{})
			for _, se := range shapeEndpoints {
				w := rig.send(se.path, se.base+","+field.raw+"}")
				reached := len(rig.fake.Requests()) > 0
				if kind != hardBudget {
					if !reached || strings.Contains(w.Body.String(), "unsupported_field") {
						t.Errorf("%s budget, %s, %s: not passed on: %d %s", kind, se.ep.Name, field.raw, w.Code, w.Body)
					}
					continue
				}
				if w.Code != http.StatusBadRequest || reached {
					t.Fatalf("hard budget, %s, %s: %d (upstream reached: %v) %s; want 400 before the upstream", se.ep.Name, field.raw, w.Code, reached, w.Body)
				}
				var e struct {
					Type  string `json:"type"`
					Error struct {
						Type, Message, Code string
						Param               *string
					} `json:"error"`
				}
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
					t.Fatal(err)
				}
				if e.Error.Type != "invalid_request_error" || !strings.Contains(e.Error.Message, "'"+field.name+"'") {
					t.Errorf("%s, %s: %s", se.ep.Name, field.raw, w.Body)
				}
				if se.ep.Protocol == provider.TypeAnthropic {
					if e.Type != "error" {
						t.Errorf("%s: not Anthropic's error shape: %s", se.ep.Name, w.Body)
					}
				} else if e.Error.Code != "unsupported_field_under_hard_budget" || e.Error.Param == nil || *e.Error.Param != field.name {
					t.Errorf("%s, %s: code %q param %v: %s", se.ep.Name, field.raw, e.Error.Code, e.Error.Param, w.Body)
				}
			}
		}
	}
}

// TestOperatorAllowsFields: budgets.allow_fields adds fields per endpoint,
// and only for that endpoint.
func TestOperatorAllowsFields(t *testing.T) {
	rig := newShapeRig(t, hardBudget, Options{Fields: FieldPolicy{Fields: map[string][]string{"openai.chat": {"top_k"}}}})
	if w := rig.send("/v1/chat/completions", shapeEndpoints[0].base+`,"top_k":5}`); len(rig.fake.Requests()) != 1 {
		t.Fatalf("allowed field refused: %d %s", w.Code, w.Body)
	}
	if w := rig.send("/v1/responses", shapeEndpoints[3].base+`,"top_k":5}`); w.Code != 400 || len(rig.fake.Requests()) != 1 {
		t.Fatalf("a field allowed on chat passed on responses: %d %s", w.Code, w.Body)
	}
}

// TestAnthropicBetaHeaderGoverned: under a hard budget the anthropic-beta
// header's values (every header line, comma-separated) and the betas body
// field are judged alike: known betas pass, a long-context beta passes only
// for a model whose price carries a long-context tier (else unbounded_cost),
// unknown ones are refused unless the operator allows them. Under a soft
// budget the header passes unread, as before.
func TestAnthropicBetaHeaderGoverned(t *testing.T) {
	const sonnet = `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	const haiku = `{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	withBetas := func(body, betas string) string { return strings.TrimSuffix(body, "}") + `,"betas":` + betas + "}" }
	tests := []struct {
		name    string
		kind    budgetKind
		opt     Options
		body    string
		header  []string
		refused string // error code, "" when the call goes upstream
	}{
		{"known", hardBudget, Options{}, sonnet, []string{"anthropic-beta", "fast-mode-2026-02-01, interleaved-thinking-2025-05-14"}, ""},
		{"unknown", hardBudget, Options{}, sonnet, []string{"anthropic-beta", "priority-boost-2099-01-01"}, "unsupported_beta_under_hard_budget"},
		{"unknown after a known one", hardBudget, Options{}, sonnet, []string{"anthropic-beta", "fast-mode-2026-02-01,managed-agents-2026-04-01"}, "unsupported_beta_under_hard_budget"},
		{"unknown on a second header line", hardBudget, Options{}, sonnet, []string{"anthropic-beta", "fast-mode-2026-02-01", "anthropic-beta", "dreaming-2026-04-21"}, "unsupported_beta_under_hard_budget"},
		{"case variant", hardBudget, Options{}, sonnet, []string{"anthropic-beta", "Fast-Mode-2026-02-01"}, "unsupported_beta_under_hard_budget"},
		{"unknown in the body", hardBudget, Options{}, withBetas(sonnet, `["dreaming-2026-04-21"]`), nil, "unsupported_beta_under_hard_budget"},
		{"escaped unknown in the body", hardBudget, Options{}, withBetas(sonnet, `["\u0064reaming-2026-04-21"]`), nil, "unsupported_beta_under_hard_budget"},
		{"known in the body", hardBudget, Options{}, withBetas(sonnet, `["fast-mode-2026-02-01"]`), nil, ""},
		{"betas not strings", hardBudget, Options{}, withBetas(sonnet, `[1]`), nil, "invalid_type"},
		{"long context, tier priced", hardBudget, Options{}, sonnet, []string{"anthropic-beta", "context-1m-2025-08-07"}, ""},
		{"long context, no tier", hardBudget, Options{}, haiku, []string{"anthropic-beta", "context-1m-2025-08-07"}, "unbounded_cost"},
		{"long context, no tier, unbounded allowed", hardBudget, Options{AllowUnboundedCost: true}, haiku, []string{"anthropic-beta", "context-1m-2025-08-07"}, ""},
		{"operator allows", hardBudget, Options{Fields: FieldPolicy{Betas: []string{"managed-agents-2026-04-01"}}}, sonnet, []string{"anthropic-beta", "managed-agents-2026-04-01"}, ""},
		{"known version", hardBudget, Options{}, sonnet, []string{"anthropic-version", "2023-06-01"}, ""},
		{"unknown version", hardBudget, Options{}, sonnet, []string{"anthropic-version", "2099-01-01"}, "unsupported_version_under_hard_budget"},
		{"version the operator allows", hardBudget, Options{Fields: FieldPolicy{Versions: []string{"2099-01-01"}}}, sonnet, []string{"anthropic-version", "2099-01-01"}, ""},
		{"unknown version, soft budget", softBudget, Options{}, sonnet, []string{"anthropic-version", "2099-01-01"}, ""},
		{"soft budget", softBudget, Options{}, sonnet, []string{"anthropic-beta", "priority-boost-2099-01-01"}, ""},
		{"no budget", noBudget, Options{}, sonnet, []string{"anthropic-beta", "priority-boost-2099-01-01"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newShapeRig(t, tt.kind, tt.opt)
			w := rig.send("/v1/messages", tt.body, tt.header...)
			reached := len(rig.fake.Requests()) > 0
			switch {
			case tt.refused == "" && !reached:
				t.Fatalf("refused: %d %s", w.Code, w.Body)
			case tt.refused != "" && (reached || w.Code != 400):
				t.Fatalf("%d (upstream reached: %v) %s; want 400 %s", w.Code, reached, w.Body, tt.refused)
			case tt.refused != "" && !strings.Contains(w.Body.String(), `"type":"error"`):
				t.Fatalf("not Anthropic's error shape: %s", w.Body)
			}
			if len(tt.header) == 0 || !strings.HasPrefix(tt.refused, "unsupported_") {
				return
			}
			named := tt.header[len(tt.header)-1]
			named = strings.TrimSpace(named[strings.LastIndex(named, ",")+1:])
			if !strings.Contains(w.Body.String(), "'"+named+"'") {
				t.Fatalf("the refusal does not name the beta or version: %s", w.Body)
			}
		})
	}
}

// TestBillingShapesUnbounded: request shapes that switch on a fee or a
// multiplier the price table does not carry are unbounded (refused under a
// hard budget), read structurally (escapes decoded), and the harmless forms
// of the same fields are not.
func TestBillingShapesUnbounded(t *testing.T) {
	const user = `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		ep        provider.Endpoint
		body      string
		unbounded bool
	}{
		{provider.Chat, `{"model":"m","max_tokens":5,"service_tier":"fast",` + user + `}`, true},
		{provider.Responses, `{"model":"m","input":"x","service_tier":"turbo"}`, true},
		{provider.Chat, `{"model":"m","max_tokens":5,"service_tier":"flex",` + user + `}`, false},
		{provider.Chat, `{"model":"m","max_tokens":5,"web_search_options":{},` + user + `}`, true},
		{provider.Chat, `{"model":"m","max_tokens":5,"audio":{"voice":"alloy","format":"mp3"},` + user + `}`, true},
		{provider.Responses, `{"model":"m","input":"x","tools":[{"type":"code_interpreter","container":{"type":"auto"}}]}`, true},
		{provider.Responses, `{"model":"m","input":"x","tools":[{"type":"file_search","vector_store_ids":["vs_1"]}]}`, true},
		{provider.Responses, `{"model":"m","input":"x","tools":[{"type":"computer_use_preview"}]}`, true},
		{provider.Responses, `{"model":"m","input":"x","tools":[{"type":"\u0077eb_search"}]}`, true},
		{provider.Messages, `{"model":"m","max_tokens":5,"tools":[{"type":"web_search_20250305","name":"web_search"}],` + user + `}`, true},
		{provider.Messages, `{"model":"m","max_tokens":5,"tools":[{"type":"web_fetch_20250910","name":"web_fetch"}],` + user + `}`, true},
		{provider.Messages, `{"model":"m","max_tokens":5,"tools":[{"type":"code_execution_20250825","name":"code_execution"}],` + user + `}`, true},
		{provider.Messages, `{"model":"m","max_tokens":5,"tools":[{"type":"bash_20250124","name":"bash"}],` + user + `}`, false},
		{provider.Messages, `{"model":"m","max_tokens":5,"fallbacks":"default",` + user + `}`, true},
		{provider.Messages, `{"model":"m","max_tokens":5,"fallbacks":[{"model":"claude-opus-4-1"}],` + user + `}`, true},
		{provider.Messages, `{"model":"m","max_tokens":5,"fallbacks":[],` + user + `}`, false},
		{provider.Messages, `{"model":"m","max_tokens":5,"thread":{"type":"continue","previous_message_id":"msg_1"},` + user + `}`, true},
		{provider.Messages, `{"model":"m","max_tokens":5,"thread":{"type":"create"},` + user + `}`, false},
		{provider.Messages, `{"model":"m","max_tokens":5,"\u0073peed":"fast",` + user + `}`, true},
		{provider.Messages, `{"model":"m","max_tokens":5,"inference_geo":"us",` + user + `}`, true},
	}
	for _, tt := range tests {
		c, err := ParseCall(tt.ep, []byte(tt.body))
		if err != nil {
			t.Errorf("%s: %v", tt.body, err)
			continue
		}
		if got := len(c.Shape.Unbounded) > 0; got != tt.unbounded {
			t.Errorf("%s: unbounded %v (%v), want %v", tt.body, got, c.Shape.Unbounded, tt.unbounded)
		}
	}
	// Case variants of the new billing fields are refused for every caller.
	for _, body := range []string{`{"model":"m","max_tokens":5,"Fallbacks":"default",` + user + `}`, `{"model":"m","max_tokens":5,"THREAD":{},` + user + `}`, `{"model":"m","max_tokens":5,"Cache_Control":{"type":"ephemeral","ttl":"1h"},` + user + `}`} {
		var he *httpx.Error
		if _, err := ParseCall(provider.Messages, []byte(body)); !errors.As(err, &he) || he.Code != "ambiguous_field" {
			t.Errorf("%s: %v, want ambiguous_field", body, err)
		}
	}
}
