package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// benchBody is a chat body of about size bytes: a conversation of messages.
func benchBody(size int) []byte {
	var msgs []string
	for n := 0; n < size; n += 240 {
		msgs = append(msgs, fmt.Sprintf(`{"role":"user","content":[{"type":"text","text":%q}]}`, strings.Repeat("budgets hold ", 16)))
	}
	return []byte(`{"model":"gpt-4o","max_tokens":100,"stream":true,"messages":[` + strings.Join(msgs, ",") + `]}`)
}

// BenchmarkParseCall measures the strict reading with the structured walk
// (go test -bench ParseCall ./internal/proxy/).
func BenchmarkParseCall(b *testing.B) {
	for _, size := range []int{2 << 10, 1 << 20} {
		body := benchBody(size)
		b.Run(fmt.Sprintf("strict-%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := ParseCall(provider.Chat, body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("encoding-json-struct-%dKiB", size>>10), func(b *testing.B) { // what the gateway did before
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				var raw struct {
					Model     json.RawMessage `json:"model"`
					Stream    *bool           `json:"stream"`
					MaxTokens *int64          `json:"max_tokens"`
				}
				if err := json.Unmarshal(body, &raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// cannedUpstream answers every request in memory with a small chat
// completion, as httpbench's mock does: BenchmarkServeCall measures the
// handler, not sockets.
type cannedUpstream struct{}

var cannedAnswer = []byte(`{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog again."},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":12,"completion_tokens":16,"total_tokens":28}}`)

func (cannedUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		ContentLength: int64(len(cannedAnswer)), Body: io.NopCloser(bytes.NewReader(cannedAnswer)), Request: r}, nil
}

// nopLedger is a sequencer that accepts every entry without storing it:
// as with ledger.Log, usage rows ride the end entry, which lags.
type nopLedger struct{}

func (nopLedger) Append(_ context.Context, e ledger.Entry) (int64, error) {
	if e.Done != nil {
		e.Done(nil)
	}
	return 0, nil
}
func (nopLedger) CarriesCalls() bool { return true }
func (l nopLedger) Enqueue(ctx context.Context, e ledger.Entry) error {
	_, err := l.Append(ctx, e)
	return err
}

// nopObserver observes nothing, at no cost of its own: the server always
// has an observer (metrics), so the handler's observing is measured too.
type nopObserver struct{}

func (nopObserver) Begin(r *http.Request, _ string) (context.Context, CallObserver) {
	return r.Context(), nopObserver{}
}
func (nopObserver) Phase(ctx context.Context, _ string) (context.Context, func(error)) {
	return ctx, func(error) {}
}
func (nopObserver) Inject(context.Context, http.Header)         {}
func (nopObserver) End(context.Context, *usage.Record, Outcome) {}

type nopUsage struct{}

func (nopUsage) Record(context.Context, usage.Record) error { return nil }

// BenchmarkServeCall measures the request path itself: one small chat call
// through the handler with the default Cedar policies, a rate limit, an
// observer that keeps nothing, a sequencer that keeps nothing (the end entry lagging, the default) and an
// upstream answering from memory, so its B/op and allocs/op are the
// handler's own (go test -bench ServeCall -benchmem ./internal/proxy/).
// "budgets" adds hard budgets at key, principal and organisation, admitted
// in memory (an SQLite store only loads their counters once).
func BenchmarkServeCall(b *testing.B) {
	b.Run("no-budgets", func(b *testing.B) { benchServeCall(b, false) })
	b.Run("budgets", func(b *testing.B) { benchServeCall(b, true) })
}

func benchServeCall(b *testing.B, budgets bool) {
	pol, err := policy.Compile(policy.Defaults())
	if err != nil {
		b.Fatal(err)
	}
	up := provider.NewUpstream(provider.Provider{Name: "p", Type: provider.TypeOpenAI, BaseURL: "http://upstream.test/v1", Models: []string{"gpt-4o"}},
		[]provider.APIKey{"sk-x"}, &http.Client{Transport: cannedUpstream{}})
	snap := &config.Snapshot{Router: provider.NewRouter([]*provider.Upstream{up}, nil), Prices: pricing.NewTable(pricing.Defaults(), nil), Policies: pol}
	lim := ratelimit.New(ratelimit.NewMemory(time.Now), func() []ratelimit.Limit {
		return []ratelimit.Limit{{ID: "lim_1", Scope: ratelimit.ScopeKey, ScopeID: "key_1", RPM: 1 << 40, TPM: 1 << 40}}
	})
	d := Deps{Ledger: nopLedger{}, Limiter: lim, Snapshot: func() *config.Snapshot { return snap }, Auth: oneCaller{}, Usage: nopUsage{},
		Observer: nopObserver{}, Log: slog.New(slog.DiscardHandler)}
	if budgets {
		db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "gh.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		var bs []budget.Budget
		for _, s := range []struct {
			scope budget.Scope
			id    string
		}{{budget.ScopeKey, "key_1"}, {budget.ScopePrincipal, "prn_1"}, {budget.ScopeOrg, ""}} {
			bs = append(bs, budget.Budget{ID: "bud_" + string(s.scope), Scope: s.scope, ScopeID: s.id, Period: budget.Day, LimitMicros: 1 << 60, Hard: true})
		}
		d.Budgets = budget.NewLedger(db, "gw.1", func() []budget.Budget { return bs }, nil, slog.New(slog.DiscardHandler))
	}
	h := New(d, Options{LagEnd: true})
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"Say something short about foxes."}],"max_tokens":16}`)
	do := func() {
		req := httptest.NewRequest("POST", "/v1/chat/completions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer gk_test")
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	do()
	b.ReportAllocs()
	for b.Loop() {
		do()
	}
}
