package breaker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
)

type recorder struct {
	suspended map[string]string
	alerts    []alert.Alert
}

func (r *recorder) Send(a alert.Alert) { r.alerts = append(r.alerts, a) }

func setup(cfg Config) (*Breaker, *recorder, *time.Time) {
	r := &recorder{suspended: map[string]string{}}
	b := New(cfg, func(_ context.Context, id, reason string) (bool, error) {
		first := r.suspended[id] == ""
		if first {
			r.suspended[id] = reason
		}
		return first, nil
	}, r, slog.New(slog.DiscardHandler))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.SetClock(func() time.Time { return now })
	return b, r, &now
}

func TestCeiling(t *testing.T) {
	b, r, now := setup(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000})
	ctx := context.Background()
	for i := range 10 {
		if b.Observe(ctx, "k", 100) {
			t.Fatalf("tripped at %d micros, not over 1000", (i+1)*100)
		}
		*now = now.Add(10 * time.Second)
	}
	if !b.Observe(ctx, "k", 1) {
		t.Fatal("did not trip over the ceiling")
	}
	if r.suspended["k"] == "" || len(r.alerts) != 1 || r.alerts[0].Kind != "breaker_tripped" {
		t.Fatalf("suspended %v, alerts %v", r.suspended, r.alerts)
	}
	if b.Observe(ctx, "k", 1000) || len(r.alerts) != 1 {
		t.Fatal("tripped twice")
	}
	// Spend spread beyond the window does not trip.
	*now = now.Add(time.Hour)
	for range 30 {
		if b.Observe(ctx, "other", 300) {
			t.Fatal("spread spend tripped the breaker")
		}
		*now = now.Add(2 * time.Minute)
	}
}

func TestBaseline(t *testing.T) {
	b, r, now := setup(Config{Enabled: true, Window: 5 * time.Minute, BaselineMultiple: 10, MinSpendMicros: 500})
	ctx := context.Background()
	// An hour of steady spend: 100 micros every 30 s, 1000 a window.
	for range 120 {
		if b.Observe(ctx, "k", 100) {
			t.Fatal("steady spend tripped the breaker")
		}
		*now = now.Add(30 * time.Second)
	}
	// A burst of 20× the usual rate trips within the window.
	tripped := false
	for range 100 {
		if b.Observe(ctx, "k", 500) {
			tripped = true
			break
		}
		*now = now.Add(time.Second)
	}
	if !tripped || r.suspended["k"] == "" {
		t.Fatal("a burst far over the baseline did not trip")
	}
}

func TestDisabled(t *testing.T) {
	b, _, _ := setup(Config{Enabled: false, CeilingMicros: 1})
	if b.Observe(context.Background(), "k", 1_000_000) {
		t.Fatal("a disabled breaker tripped")
	}
}
