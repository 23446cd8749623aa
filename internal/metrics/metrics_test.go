package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// Scrape fetches url with an optional bearer token and parses the text
// exposition format with Prometheus's own parser.
func Scrape(t testing.TB, url, token string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape: not the Prometheus text format: %v", err)
	}
	return fams
}

// value returns the value of the series of family name whose labels include
// want; ok is false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func mustValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string, expect float64) {
	t.Helper()
	got, ok := value(fams, name, want)
	if !ok {
		t.Fatalf("%s%v: no such series", name, want)
	}
	if got != expect {
		t.Fatalf("%s%v = %v, want %v", name, want, got, expect)
	}
}

func call(m *Metrics, rec usage.Record, o proxy.Outcome) {
	r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	_, c := m.Begin(r, rec.Endpoint)
	c.End(r.Context(), &rec, o)
}

func TestCallsAreCounted(t *testing.T) {
	m := New(Options{}, Sources{}, nil)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	ok := usage.Record{Endpoint: "chat", Model: "gpt-4o", Provider: "openai-main", Status: 200, KeyID: "key_1", Stream: true,
		Tokens: usage.Tokens{Input: 100, CachedInput: 40, Output: 20}, CostMicros: 1_500_000}
	call(m, ok, proxy.Outcome{Duration: 3 * time.Second, Upstream: 2900 * time.Millisecond, FirstToken: 400 * time.Millisecond, HeldMicros: 2_000_000})
	call(m, ok, proxy.Outcome{Duration: time.Second, Upstream: 900 * time.Millisecond, Tripped: true})
	call(m, usage.Record{Endpoint: "chat", Status: 401, ErrorCode: "invalid_api_key"}, proxy.Outcome{Duration: time.Millisecond})
	call(m, usage.Record{Endpoint: "chat", Status: 401, ErrorCode: "key_revoked"}, proxy.Outcome{Duration: time.Millisecond})
	call(m, usage.Record{Endpoint: "chat", Model: "gpt-4o", Provider: "openai-main", KeyID: "key_1", Status: 403, ErrorCode: "policy_denied", Reasons: []string{"no-nights", "no-o3"}}, proxy.Outcome{})
	call(m, usage.Record{Endpoint: "chat", Model: "gpt-4o", Provider: "openai-main", KeyID: "key_1", Status: 403, ErrorCode: "policy_denied"}, proxy.Outcome{})
	call(m, usage.Record{Endpoint: "messages", Model: "claude-x", Provider: "anth", KeyID: "key_1", Status: 429, ErrorCode: "rate_limit_exceeded"}, proxy.Outcome{})
	call(m, usage.Record{Endpoint: "messages", Model: "claude-x", Provider: "anth", KeyID: "key_1", Status: 429, ErrorCode: "insufficient_quota"}, proxy.Outcome{})
	call(m, usage.Record{Endpoint: "chat", Model: "gpt-4o", Provider: "openai-main", KeyID: "key_1", Status: 503, ErrorCode: "ledger_unavailable"}, proxy.Outcome{})
	call(m, usage.Record{Endpoint: "chat", Status: 503, ErrorCode: "auth_unavailable"}, proxy.Outcome{})
	m.ObserveLedgerAppend(3*time.Millisecond, nil)
	m.ObserveLedgerAppend(time.Second, errors.New("down"))

	f := Scrape(t, srv.URL, "")
	mustValue(t, f, "gatehouse_requests_total", map[string]string{"endpoint": "chat", "model": "gpt-4o", "provider": "openai-main", "status": "200"}, 2)
	mustValue(t, f, "gatehouse_requests_total", map[string]string{"endpoint": "chat", "model": "", "provider": "", "status": "401"}, 2)
	mustValue(t, f, "gatehouse_tokens_total", map[string]string{"model": "gpt-4o", "type": "input"}, 200)
	mustValue(t, f, "gatehouse_tokens_total", map[string]string{"model": "gpt-4o", "type": "output"}, 40)
	mustValue(t, f, "gatehouse_tokens_total", map[string]string{"model": "gpt-4o", "type": "cached_input"}, 80)
	mustValue(t, f, "gatehouse_cost_usd_total", map[string]string{"model": "gpt-4o"}, 3)
	mustValue(t, f, "gatehouse_budget_held_usd_total", map[string]string{"endpoint": "chat"}, 2)
	mustValue(t, f, "gatehouse_upstream_duration_seconds", map[string]string{"provider": "openai-main"}, 2)
	mustValue(t, f, "gatehouse_time_to_first_token_seconds", map[string]string{"model": "gpt-4o"}, 1)
	mustValue(t, f, "gatehouse_request_duration_seconds", map[string]string{"endpoint": "chat", "stream": "true"}, 2)
	mustValue(t, f, "gatehouse_breaker_trips_total", nil, 1)
	mustValue(t, f, "gatehouse_auth_failures_total", map[string]string{"reason": "invalid_api_key"}, 1)
	mustValue(t, f, "gatehouse_auth_failures_total", map[string]string{"reason": "key_revoked"}, 1)
	mustValue(t, f, "gatehouse_policy_denials_total", map[string]string{"policy": "no-nights"}, 1)
	mustValue(t, f, "gatehouse_policy_denials_total", map[string]string{"policy": "no-o3"}, 1)
	mustValue(t, f, "gatehouse_policy_denials_total", map[string]string{"policy": "default_deny"}, 1)
	mustValue(t, f, "gatehouse_rate_limit_denials_total", map[string]string{"endpoint": "messages"}, 1)
	mustValue(t, f, "gatehouse_budget_denials_total", map[string]string{"endpoint": "messages"}, 1)
	mustValue(t, f, "gatehouse_store_errors_total", map[string]string{"component": "ledger"}, 1)
	mustValue(t, f, "gatehouse_store_errors_total", map[string]string{"component": "auth"}, 1)
	mustValue(t, f, "gatehouse_ledger_append_duration_seconds", map[string]string{"result": "error"}, 1)

	// The gateway's own time is the whole call minus the upstream's part:
	// 100ms + 100ms for the two calls that went upstream.
	g := f["gatehouse_gateway_duration_seconds"].Metric[0].Histogram
	if got := g.GetSampleSum(); got < 0.2 || got > 0.2+0.01 { // plus the refusals' milliseconds
		t.Fatalf("gateway time sum = %v, want 0.2s plus the refusals' few ms", got)
	}
	if _, ok := f["gatehouse_key_requests_total"]; ok {
		t.Fatal("per-key series exist although per-key labels are off")
	}
}

func TestPerKeyLabels(t *testing.T) {
	m := New(Options{PerKeyLabels: true}, Sources{}, nil)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	call(m, usage.Record{Endpoint: "chat", Model: "m", Provider: "p", KeyID: "key_a", Status: 200, CostMicros: 250_000}, proxy.Outcome{})
	f := Scrape(t, srv.URL, "")
	mustValue(t, f, "gatehouse_key_requests_total", map[string]string{"key_id": "key_a", "status": "200"}, 1)
	mustValue(t, f, "gatehouse_key_cost_usd_total", map[string]string{"key_id": "key_a"}, 0.25)
}

// TestCardinalityIsBounded: a caller flooding distinct model names, and a
// policy set with many ids, cannot grow the series count past the bound.
func TestCardinalityIsBounded(t *testing.T) {
	m := New(Options{MaxLabelValues: 10}, Sources{}, nil)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	for i := range 1000 {
		model := fmt.Sprintf("attacker-model-%d", i)
		// Unrouted (no provider): the model label is empty whatever was sent.
		call(m, usage.Record{Endpoint: "chat", Model: model, KeyID: "k", Status: 404, ErrorCode: "model_not_found"}, proxy.Outcome{})
		// Routed by a wildcard: bounded by MaxLabelValues, then "other".
		call(m, usage.Record{Endpoint: "chat", Model: model, Provider: "p", KeyID: "k", Status: 200, Tokens: usage.Tokens{Input: 1, Output: 1}}, proxy.Outcome{FirstToken: time.Millisecond})
		call(m, usage.Record{Endpoint: "chat", Model: "m", Provider: "p", KeyID: "k", Status: 403, ErrorCode: "policy_denied", Reasons: []string{fmt.Sprintf("policy%d", i)}}, proxy.Outcome{})
		call(m, usage.Record{Endpoint: "chat", Status: 401, ErrorCode: fmt.Sprintf("code%d", i)}, proxy.Outcome{})
	}
	f := Scrape(t, srv.URL, "")
	for name, bound := range map[string]int{
		"gatehouse_requests_total":              10 + 4, // ten models and other, 404, 401, the policy refusals' "m"
		"gatehouse_tokens_total":                2 * 11,
		"gatehouse_time_to_first_token_seconds": 11,
		"gatehouse_policy_denials_total":        11,
		"gatehouse_auth_failures_total":         11,
	} {
		if n := len(f[name].GetMetric()); n > bound {
			t.Errorf("%s has %d series after a flood of distinct values; bound %d", name, n, bound)
		}
	}
	mustValue(t, f, "gatehouse_requests_total", map[string]string{"model": "other", "status": "200"}, 1000-9) // "m" took one of the ten
	mustValue(t, f, "gatehouse_requests_total", map[string]string{"model": "", "status": "404"}, 1000)
}

func TestScrapeToken(t *testing.T) {
	m := New(Options{Token: "scrape-token-0123456789"}, Sources{}, nil)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	for _, auth := range []string{"", "Bearer wrong", "Bearer scrape-token-012345678", "Bearer scrape-token-01234567890", "bearer scrape-token-0123456789x", "Basic c2NyYXBl"} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d, want 401", auth, resp.StatusCode)
		}
	}
	if f := Scrape(t, srv.URL, "scrape-token-0123456789"); f["go_goroutines"] == nil {
		t.Fatal("with the token: no metrics")
	}
}

type fakeLedger struct {
	st  ledger.Stats
	err error
}

func (f fakeLedger) Stats(context.Context) (ledger.Stats, error) { return f.st, f.err }

type fakeVerification struct {
	last     time.Time
	failures int64
	err      error
}

func (f fakeVerification) Verified(context.Context) (time.Time, int64, error) {
	return f.last, f.failures, f.err
}

func TestScrapeTimeSources(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	b := budget.Budget{ID: "bud_1", Scope: budget.ScopeTeam, ScopeID: "team_1", Period: budget.Month, LimitMicros: 100_000_000, Hard: true}
	src := Sources{
		Now: func() time.Time { return now },
		Budgets: func(context.Context) ([]budget.Status, error) {
			return []budget.Status{{Budget: b, Spent: 42_500_000, Reserved: 7_000_000, PeriodEnd: now.Add(time.Hour)}}, nil
		},
		Ledger:       fakeLedger{st: ledger.Stats{Size: 120, CheckpointSize: 118, CheckpointSigned: now.Add(-90 * time.Second)}},
		Verification: fakeVerification{last: now.Add(-time.Hour), failures: 2},
	}
	srv := httptest.NewServer(New(Options{}, src, nil).Handler())
	defer srv.Close()
	f := Scrape(t, srv.URL, "")
	lv := map[string]string{"budget": "bud_1", "scope": "team", "scope_id": "team_1", "period": "month", "hard": "true"}
	mustValue(t, f, "gatehouse_budget_spent_usd", lv, 42.5)
	mustValue(t, f, "gatehouse_budget_reserved_usd", lv, 7)
	mustValue(t, f, "gatehouse_budget_limit_usd", lv, 100)
	mustValue(t, f, "gatehouse_budget_period_end_timestamp_seconds", lv, float64(now.Add(time.Hour).Unix()))
	mustValue(t, f, "gatehouse_ledger_entries", nil, 120)
	mustValue(t, f, "gatehouse_ledger_checkpoint_entries", nil, 118)
	mustValue(t, f, "gatehouse_ledger_checkpoint_age_seconds", nil, 90)
	mustValue(t, f, "gatehouse_ledger_last_verification_timestamp_seconds", nil, float64(now.Add(-time.Hour).Unix()))
	mustValue(t, f, "gatehouse_ledger_verification_failures_total", nil, 2)
}

// TestScrapeSurvivesFailingSources: a store that cannot answer leaves its
// metrics out and counts the failure; the scrape itself still succeeds.
func TestScrapeSurvivesFailingSources(t *testing.T) {
	src := Sources{
		Budgets:      func(context.Context) ([]budget.Status, error) { return nil, errors.New("store down") },
		Ledger:       fakeLedger{err: errors.New("store down")},
		Verification: fakeVerification{err: errors.New("store down")},
	}
	srv := httptest.NewServer(New(Options{}, src, nil).Handler())
	defer srv.Close()
	f := Scrape(t, srv.URL, "")
	if f["gatehouse_ledger_entries"] != nil || f["gatehouse_budget_spent_usd"] != nil || f["gatehouse_ledger_verification_failures_total"] != nil {
		t.Fatal("metrics from a failing source were exported")
	}
	mustValue(t, f, "gatehouse_scrape_source_errors_total", map[string]string{"source": "budgets"}, 1)
	mustValue(t, f, "gatehouse_scrape_source_errors_total", map[string]string{"source": "ledger"}, 1)
	mustValue(t, f, "gatehouse_scrape_source_errors_total", map[string]string{"source": "log_verification"}, 1)
	// Never seen yet: absent rather than a misleading zero.
	if f["gatehouse_ledger_checkpoint_age_seconds"] != nil {
		t.Fatal("checkpoint age exported without a checkpoint")
	}
}

// TestVerificationReadsTheStoredCheck: the verification metrics come from
// the audit's stored check, independently of the ledger's own stats: a ledger
// that cannot be read does not hide a failed verification, and a log never
// verified has no timestamp rather than a misleading zero.
func TestVerificationReadsTheStoredCheck(t *testing.T) {
	src := Sources{
		Ledger:       fakeLedger{err: errors.New("store down")},
		Verification: fakeVerification{failures: 3},
	}
	srv := httptest.NewServer(New(Options{}, src, nil).Handler())
	defer srv.Close()
	f := Scrape(t, srv.URL, "")
	mustValue(t, f, "gatehouse_ledger_verification_failures_total", nil, 3)
	if f["gatehouse_ledger_last_verification_timestamp_seconds"] != nil {
		t.Fatal("a verification time exported for a log never verified")
	}
}

// TestNamingConventions checks every gatehouse_ family against Prometheus's
// conventions: counters end in _total, histograms of time in _seconds, help
// text present.
func TestNamingConventions(t *testing.T) {
	m := New(Options{PerKeyLabels: true}, Sources{}, nil)
	call(m, usage.Record{Endpoint: "chat", Model: "m", Provider: "p", KeyID: "k", Status: 200, Stream: true, CostMicros: 1, Tokens: usage.Tokens{Input: 1, Output: 1}},
		proxy.Outcome{Duration: time.Second, Upstream: time.Second / 2, FirstToken: time.Millisecond, HeldMicros: 1})
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, "gatehouse_") {
			continue
		}
		n++
		if f.GetHelp() == "" {
			t.Errorf("%s: no help text", name)
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s does not end in _total", name)
			}
		case dto.MetricType_HISTOGRAM:
			if !strings.HasSuffix(name, "_seconds") {
				t.Errorf("histogram %s is not in seconds", name)
			}
		case dto.MetricType_GAUGE:
			if strings.HasSuffix(name, "_total") {
				t.Errorf("gauge %s ends in _total", name)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d gatehouse_ families gathered", n)
	}
}

// outageLedger is a ledger whose store is down, with records waiting in
// memory and refused calls counted into summaries.
type outageLedger struct{ fakeLedger }

func (outageLedger) Deferred() int     { return 1003 }
func (outageLedger) Aggregated() int64 { return 19_000 }

// TestOutageMetricsWithoutTheStore: what waits in memory for the store, and
// how many refused calls were counted into summaries, are reported while the
// store cannot answer.
func TestOutageMetricsWithoutTheStore(t *testing.T) {
	srv := httptest.NewServer(New(Options{}, Sources{Ledger: outageLedger{fakeLedger{err: errors.New("store down")}}}, nil).Handler())
	defer srv.Close()
	f := Scrape(t, srv.URL, "")
	mustValue(t, f, "gatehouse_ledger_deferred_records", nil, 1003)
	mustValue(t, f, "gatehouse_ledger_aggregated_refusals_total", nil, 19_000)
	mustValue(t, f, "gatehouse_scrape_source_errors_total", map[string]string{"source": "ledger"}, 1)
}
