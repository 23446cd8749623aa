package metrics

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scrapeCollector reads budgets, the ledger and its verification at scrape time, each with a
// short deadline, so a slow store delays a scrape but never hangs it. A
// source that fails is left out of that scrape and counted in
// gatehouse_scrape_source_errors_total{source}.
type scrapeCollector struct {
	src Sources
	log *slog.Logger

	mu     sync.Mutex
	errors map[string]int64
}

var (
	budgetLabels   = []string{"budget", "scope", "scope_id", "period", "hard"}
	budgetSpent    = prometheus.NewDesc("gatehouse_budget_spent_usd", "Spend charged to a budget in its current period, in US dollars.", budgetLabels, nil)
	budgetReserved = prometheus.NewDesc("gatehouse_budget_reserved_usd", "Holds on a budget for calls in flight, in US dollars.", budgetLabels, nil)
	budgetLimit    = prometheus.NewDesc("gatehouse_budget_limit_usd", "A budget's limit per period, in US dollars.", budgetLabels, nil)
	budgetPeriod   = prometheus.NewDesc("gatehouse_budget_period_end_timestamp_seconds", "When a budget's current period ends (Unix time).", budgetLabels, nil)

	ledgerEntries    = prometheus.NewDesc("gatehouse_ledger_entries", "Records in the tamper-evident log.", nil, nil)
	ledgerCPEntries  = prometheus.NewDesc("gatehouse_ledger_checkpoint_entries", "Records covered by the latest signed checkpoint.", nil, nil)
	ledgerCPAge      = prometheus.NewDesc("gatehouse_ledger_checkpoint_age_seconds", "Seconds since this process last signed a checkpoint (absent until it has).", nil, nil)
	ledgerVerified   = prometheus.NewDesc("gatehouse_ledger_last_verification_timestamp_seconds", "When the stored log last passed verification against its signed checkpoint, by this or another replica (Unix time; absent until it has).", nil, nil)
	ledgerVerifyFail = prometheus.NewDesc("gatehouse_ledger_verification_failures_total", "Verifications of the log by this process that failed: the stored log does not match its checkpoint, or could not be read.", nil, nil)
	ledgerDeferred   = prometheus.NewDesc("gatehouse_ledger_deferred_records", "Records waiting in memory for the store to take them (end records, and summaries of refused calls) while it is unreachable.", nil, nil)
	ledgerAggregated = prometheus.NewDesc("gatehouse_ledger_aggregated_refusals_total", "Refused calls whose end records this process counted into summary records (call.summary) instead of keeping them, past ledger.max_deferred_refusals during a store outage.", nil, nil)
	exportLabels     = []string{"target"}
	exportBehind     = prometheus.NewDesc("gatehouse_ledger_export_behind_records", "Records in the log not yet delivered to an export target (file, webhook), as this process last saw.", exportLabels, nil)
	exportDelivered  = prometheus.NewDesc("gatehouse_ledger_export_delivered_records_total", "Records this process delivered to an export target.", exportLabels, nil)
	exportFailures   = prometheus.NewDesc("gatehouse_ledger_export_failures_total", "Failed deliveries (or store reads) of this process for an export target; each is retried with backoff.", exportLabels, nil)
	exportFailing    = prometheus.NewDesc("gatehouse_ledger_export_failing", "1 while an export target's last delivery by this process failed.", exportLabels, nil)
	exportHolding    = prometheus.NewDesc("gatehouse_ledger_export_holding", "1 while this process holds an export target's lease (delivers its records); replicas share the log and one holds it.", exportLabels, nil)
	exportLastOK     = prometheus.NewDesc("gatehouse_ledger_export_last_delivery_timestamp_seconds", "When this process last delivered to an export target (Unix time; absent until it has).", exportLabels, nil)
	exportPastEnd    = prometheus.NewDesc("gatehouse_ledger_export_cursor_past_end", "1 while an export target is stalled because its cursor is past the log's end (the store was restored from an older backup): nothing is exported to it until an operator resets the cursor (gatehouse ledger export-reset).", exportLabels, nil)
	sourceErrors     = prometheus.NewDesc("gatehouse_scrape_source_errors_total", "Scrapes that could not read a source (budgets, ledger, log_verification) from the store; its metrics were left out.", []string{"source"}, nil)
)

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{budgetSpent, budgetReserved, budgetLimit, budgetPeriod, ledgerEntries, ledgerCPEntries, ledgerCPAge, ledgerVerified, ledgerVerifyFail, ledgerDeferred, ledgerAggregated, exportBehind, exportDelivered, exportFailures, exportFailing, exportHolding, exportLastOK, exportPastEnd, sourceErrors} {
		ch <- d
	}
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer c.collectErrors(ch)
	if c.src.Budgets != nil {
		sts, err := c.src.Budgets(ctx)
		if err != nil {
			c.failed("budgets", err)
		}
		for _, s := range sts {
			lv := []string{s.ID, string(s.Scope), s.ScopeID, string(s.Period), strconv.FormatBool(s.Hard)}
			ch <- prometheus.MustNewConstMetric(budgetSpent, prometheus.GaugeValue, float64(s.Spent)/usd, lv...)
			ch <- prometheus.MustNewConstMetric(budgetReserved, prometheus.GaugeValue, float64(s.Reserved)/usd, lv...)
			ch <- prometheus.MustNewConstMetric(budgetLimit, prometheus.GaugeValue, float64(s.LimitMicros)/usd, lv...)
			if !s.PeriodEnd.IsZero() {
				ch <- prometheus.MustNewConstMetric(budgetPeriod, prometheus.GaugeValue, float64(s.PeriodEnd.Unix()), lv...)
			}
		}
	}
	if c.src.Export != nil {
		for _, st := range c.src.Export.Status() {
			ch <- prometheus.MustNewConstMetric(exportBehind, prometheus.GaugeValue, float64(st.Behind), st.Target)
			ch <- prometheus.MustNewConstMetric(exportDelivered, prometheus.CounterValue, float64(st.Delivered), st.Target)
			ch <- prometheus.MustNewConstMetric(exportFailures, prometheus.CounterValue, float64(st.Failures), st.Target)
			ch <- prometheus.MustNewConstMetric(exportFailing, prometheus.GaugeValue, b2f(st.Failing), st.Target)
			ch <- prometheus.MustNewConstMetric(exportHolding, prometheus.GaugeValue, b2f(st.Holding), st.Target)
			ch <- prometheus.MustNewConstMetric(exportPastEnd, prometheus.GaugeValue, b2f(st.PastEnd), st.Target)
			if !st.LastOK.IsZero() {
				ch <- prometheus.MustNewConstMetric(exportLastOK, prometheus.GaugeValue, float64(st.LastOK.UnixMilli())/1e3, st.Target)
			}
		}
	}
	if o, ok := c.src.Ledger.(outage); ok {
		// In memory: reported also (above all) while the store is away.
		ch <- prometheus.MustNewConstMetric(ledgerDeferred, prometheus.GaugeValue, float64(o.Deferred()))
		ch <- prometheus.MustNewConstMetric(ledgerAggregated, prometheus.CounterValue, float64(o.Aggregated()))
	}
	if c.src.Ledger != nil {
		if st, err := c.src.Ledger.Stats(ctx); err != nil {
			c.failed("ledger", err)
		} else {
			ch <- prometheus.MustNewConstMetric(ledgerEntries, prometheus.GaugeValue, float64(st.Size))
			ch <- prometheus.MustNewConstMetric(ledgerCPEntries, prometheus.GaugeValue, float64(st.CheckpointSize))
			if !st.CheckpointSigned.IsZero() {
				ch <- prometheus.MustNewConstMetric(ledgerCPAge, prometheus.GaugeValue, max(c.src.Now().Sub(st.CheckpointSigned).Seconds(), 0))
			}
		}
	}
	if c.src.Verification != nil {
		// The audit's verifier stored it: one verification, read here.
		if last, failures, err := c.src.Verification.Verified(ctx); err != nil {
			c.failed("log_verification", err)
		} else {
			if !last.IsZero() {
				ch <- prometheus.MustNewConstMetric(ledgerVerified, prometheus.GaugeValue, float64(last.UnixMilli())/1e3)
			}
			ch <- prometheus.MustNewConstMetric(ledgerVerifyFail, prometheus.CounterValue, float64(failures))
		}
	}
}

// outage is what a ledger.Log tells of a store outage, from memory.
type outage interface {
	Deferred() int
	Aggregated() int64
}

func (c *scrapeCollector) collectErrors(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range []string{"budgets", "ledger", "log_verification"} {
		ch <- prometheus.MustNewConstMetric(sourceErrors, prometheus.CounterValue, float64(c.errors[s]), s)
	}
}

func (c *scrapeCollector) failed(what string, err error) {
	c.mu.Lock()
	c.errors[what]++
	c.mu.Unlock()
	if c.log != nil {
		c.log.Warn("metrics: reading "+what+" failed; left out of this scrape", "err", err)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
