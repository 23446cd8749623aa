package audit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
)

// Scheduled reports and findings runs read the injected clock: a tick before
// the schedule's time does nothing, one after it produces exactly one stored,
// announced report, and the findings run at each tick.
func TestSchedulesUseTheClock(t *testing.T) {
	db := openStore(t)
	clk := &clock{t: time.Date(2026, 11, 30, 5, 59, 0, 0, time.UTC)}
	seed(t, db, clk.Now().Add(-time.Hour))
	alerts := &recAlerts{}
	cfg := audit.DefaultConfig()
	cfg.Reports = []audit.Schedule{{Name: "daily-ops", Every: "daily", At: "06:00"}}
	e := audit.New(audit.Deps{Store: db, Alerts: alerts, Now: clk.Now, Config: cfg})
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	done := make(chan error, 1)
	go func() { done <- e.RunReports(ctx, tick) }()
	tick <- time.Time{} // 05:59: not yet
	clk.Add(2 * time.Minute)
	tick <- time.Time{} // 06:01: the 06:00 report
	tick <- time.Time{} // still 06:01: not twice
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rs, err := e.Reports(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Name != "daily-ops" || !rs[0].To.Equal(time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)) || !rs[0].From.Equal(rs[0].To.Add(-24*time.Hour)) {
		t.Fatalf("reports %+v", rs)
	}
	var announced int
	for _, a := range alerts.as {
		if a.Kind == "audit_report" && strings.Contains(a.Details["markdown"].(string), "# Gatehouse audit report: daily-ops") {
			announced++
		}
	}
	if announced != 1 {
		t.Errorf("%d report announcements", announced)
	}

	// Findings on a schedule: each tick is one run.
	ctx2, cancel2 := context.WithCancel(context.Background())
	tick2 := make(chan time.Time)
	done2 := make(chan error, 1)
	go func() { done2 <- e.RunEvery(ctx2, tick2) }()
	tick2 <- time.Time{}
	tick2 <- time.Time{} // the second send waits for the first run to finish
	cancel2()
	<-done2
	fs, _ := e.List(context.Background(), audit.Filter{Rule: "keys.no_hard_budget"})
	if len(fs) != 1 || fs[0].Occurrences < 1 {
		t.Fatalf("scheduled findings: %+v", fs)
	}
}
