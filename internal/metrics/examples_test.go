package metrics

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// TestExamplesUseExportedMetrics: every metric the Grafana dashboard, the
// alert rules and docs/operations.md name is one the gateway exports, so a
// rename cannot silently blank a panel or an alert.
func TestExamplesUseExportedMetrics(t *testing.T) {
	src := Sources{
		Budgets: func(context.Context) ([]budget.Status, error) {
			return []budget.Status{{Budget: budget.Budget{ID: "b"}, PeriodEnd: time.Now()}}, nil
		},
		Ledger:       outageLedger{fakeLedger{st: ledger.Stats{CheckpointSigned: time.Now()}}},
		Verification: fakeVerification{last: time.Now()},
		Pool:         fakePool{},
		Export:       fakeExport{},
		Usage:        usage.NewWriter(nil, nil),
	}
	m := New(Options{PerKeyLabels: true}, src, nil)
	call(m, usage.Record{Endpoint: "chat", Model: "m", Provider: "p", KeyID: "k", Status: 200, Stream: true, CostMicros: 1, Tokens: usage.Tokens{Input: 1, Output: 1}},
		proxy.Outcome{Duration: time.Second, Upstream: time.Second / 2, FirstToken: time.Millisecond, HeldMicros: 1, Tripped: true})
	for _, code := range []string{"policy_denied", "rate_limit_exceeded", "insufficient_quota", "ledger_unavailable"} {
		call(m, usage.Record{Endpoint: "chat", KeyID: "k", Status: 403, ErrorCode: code}, proxy.Outcome{})
	}
	call(m, usage.Record{Endpoint: "chat", Status: 401, ErrorCode: "invalid_api_key"}, proxy.Outcome{})
	m.ObserveLedgerAppend(time.Millisecond, nil)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range fams {
		exported[f.GetName()] = true
	}
	// go_sql_* come from the pool collector, registered only with a database.
	for _, n := range []string{"go_sql_in_use_connections", "go_sql_max_open_connections", "go_sql_wait_count_total"} {
		exported[n] = true
	}
	names := regexp.MustCompile(`\b(gatehouse|go_sql)_[a-z_]+\b`)
	for _, file := range []string{"../../examples/grafana/gatehouse.json", "../../examples/grafana/alerts.yml", "../../docs/operations.md"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, name := range names.FindAllString(string(b), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if !exported[base] && !exported[name] {
				t.Errorf("%s names %s, which is not exported", file, name)
			}
			n++
		}
		if n == 0 {
			t.Errorf("%s names no metric", file)
		}
	}
}

type fakeExport struct{}

func (fakeExport) Status() []ledger.ExportStatus {
	return []ledger.ExportStatus{{Target: "webhook", Behind: 3, Failing: true, LastOK: time.Now(), PastEnd: true}}
}

type fakePool struct{}

func (fakePool) Refused() int64    { return 1 }
func (fakePool) Capped() bool      { return true }
func (fakePool) RoundTrips() int64 { return 42 }
