package ratelimit

import (
	"context"
	"errors"
	"net/http"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func limits(ls ...Limit) func() []Limit  { return func() []Limit { return ls } }
func call() Call                         { return Call{KeyID: "k", PrincipalID: "p", TeamID: "t"} }

// TestRPMHeaders: table of (advance, want allowed, remaining, reset, retry-after)
// with a fake clock, for a limit of 3 requests a minute.
func TestRPMHeaders(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := New(NewMemory(clk.now), limits(Limit{Scope: ScopeKey, ScopeID: "k", RPM: 3}))
	ctx := context.Background()
	steps := []struct {
		advance   time.Duration
		allowed   bool
		remaining string
		reset     string
		retry     string
	}{
		{0, true, "2", "20s", ""},
		{0, true, "1", "40s", ""},
		{0, true, "0", "1m0s", ""},
		{0, false, "0", "1m0s", "20"},              // full: the next unit fits in 20 s
		{5 * time.Second, false, "0", "55s", "15"}, // still 15 s to wait
		{15 * time.Second, true, "0", "1m0s", ""},  // one unit refilled
		{time.Minute, true, "2", "20s", ""},        // idle a minute: full again
	}
	for i, s := range steps {
		clk.advance(s.advance)
		tk, err := l.Admit(ctx, vkey.NewID("req"), call(), 0)
		var ref *Refusal
		switch {
		case s.allowed && err != nil:
			t.Fatalf("step %d: refused: %v", i, err)
		case !s.allowed && !errors.As(err, &ref):
			t.Fatalf("step %d: admitted, want refused", i)
		}
		h := ref.headersOr(tk)
		if got := h.Get("x-ratelimit-remaining-requests"); got != s.remaining {
			t.Errorf("step %d: remaining %q, want %q", i, got, s.remaining)
		}
		if got := h.Get("x-ratelimit-reset-requests"); got != s.reset {
			t.Errorf("step %d: reset %q, want %q", i, got, s.reset)
		}
		if got := h.Get("Retry-After"); got != s.retry {
			t.Errorf("step %d: Retry-After %q, want %q", i, got, s.retry)
		}
		if h.Get("x-ratelimit-limit-requests") != "3" {
			t.Errorf("step %d: limit header %q", i, h.Get("x-ratelimit-limit-requests"))
		}
	}
}

func (r *Refusal) headersOr(t *Ticket) http.Header {
	if r != nil {
		return r.Headers
	}
	return t.Headers
}

func TestTPMSettles(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := New(NewMemory(clk.now), limits(Limit{Scope: ScopeTeam, ScopeID: "t", TPM: 1000}))
	ctx := context.Background()
	tk, err := l.Admit(ctx, "r1", call(), 900)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Admit(ctx, "r2", call(), 200); err == nil {
		t.Fatal("admitted 200 tokens with 100 left")
	}
	tk.Settle(ctx, 100) // the call used far less than estimated: refund
	tk2, err := l.Admit(ctx, "r3", call(), 800)
	if err != nil {
		t.Fatalf("after settlement: %v", err)
	}
	if got := tk2.Headers.Get("x-ratelimit-remaining-tokens"); got != "100" {
		t.Fatalf("remaining tokens %q, want 100", got)
	}
}

func TestConcurrencyAndRollback(t *testing.T) {
	l := New(NewMemory(nil), limits(
		Limit{Scope: ScopeKey, ScopeID: "k", RPM: 100},
		Limit{Scope: ScopePrincipal, ScopeID: "p", Concurrent: 2}))
	ctx := context.Background()
	a, _ := l.Admit(ctx, "a", call(), 0)
	b, _ := l.Admit(ctx, "b", call(), 0)
	_, err := l.Admit(ctx, "c", call(), 0)
	var ref *Refusal
	if !errors.As(err, &ref) || ref.What != "concurrent requests" || ref.Headers.Get("Retry-After") != "1" {
		t.Fatalf("third concurrent call: %v", err)
	}
	// The refused call's request was given back: 98 remain, not 97.
	a.Release(ctx)
	d, err := l.Admit(ctx, "d", call(), 0)
	if err != nil || d.Headers.Get("x-ratelimit-remaining-requests") != "97" {
		t.Fatalf("after release: %v %v", err, d.Headers)
	}
	b.Release(ctx)
	d.Release(ctx)
	if tk, err := l.Admit(ctx, "e", Call{KeyID: "other"}, 0); tk != nil || err != nil {
		t.Fatal("a call no limit applies to got a ticket")
	}
}

func TestFormatReset(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 20 * time.Millisecond: "20ms", 1500 * time.Microsecond: "2ms", time.Second: "1s", 6 * time.Minute: "6m0s", 1234 * time.Millisecond: "1.234s"} {
		if got := FormatReset(d); got != want {
			t.Errorf("FormatReset(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestRedisShared: two limiters on one Redis share one limit (two replicas).
func TestRedisShared(t *testing.T) {
	url := os.Getenv("GATEHOUSE_TEST_REDIS_URL")
	if url == "" {
		t.Skip("GATEHOUSE_TEST_REDIS_URL not set; skipping Redis test")
	}
	ctx := context.Background()
	r, err := OpenRedis(ctx, url, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	prefix := "gatehouse-test:" + vkey.NewID("t") + ":"
	lim := limits(Limit{Scope: ScopeKey, ScopeID: "k", RPM: 5, Concurrent: 3})
	a, b := New(r.WithPrefix(prefix), lim), New(r.WithPrefix(prefix), lim)
	admitted := 0
	var held []*Ticket
	for i := range 10 {
		l := a
		if i%2 == 1 {
			l = b
		}
		tk, err := l.Admit(ctx, vkey.NewID("req"), call(), 0)
		if err == nil {
			admitted++
			held = append(held, tk)
		}
	}
	if admitted != 3 {
		t.Fatalf("admitted %d across two limiters, want 3 (the concurrency limit)", admitted)
	}
	for _, tk := range held {
		tk.Release(ctx)
	}
	for range 2 {
		if tk, err := a.Admit(ctx, vkey.NewID("req"), call(), 0); err != nil {
			t.Fatalf("after release: %v", err)
		} else {
			tk.Release(ctx)
		}
	}
	if _, err := b.Admit(ctx, vkey.NewID("req"), call(), 0); err == nil {
		t.Fatal("a sixth request in a minute was admitted across two limiters")
	}
}

// A limit too large for GCRA's nanosecond spacing once panicked the data plane
// with an integer division by zero (found by make bench-http, which sets huge
// limits so that they are checked but never refuse).
func TestHugeLimits(t *testing.T) {
	if err := (Limit{Scope: ScopeKey, ScopeID: "k", TPM: MaxPerMinute + 1}).Validate(); err == nil {
		t.Error("Validate accepted a TPM above MaxPerMinute")
	}
	if err := (Limit{Scope: ScopeKey, ScopeID: "k", RPM: MaxPerMinute}).Validate(); err != nil {
		t.Errorf("Validate refused RPM = MaxPerMinute: %v", err)
	}
	m := NewMemory(nil)
	for _, perMinute := range []int64{MaxPerMinute, 100_000_000_000, 1 << 62} {
		res, err := m.Take(context.Background(), "k", perMinute, 1000)
		if err != nil || !res.Allowed {
			t.Errorf("Take(perMinute=%d) = %+v, %v; want allowed", perMinute, res, err)
		}
		if err := m.Give(context.Background(), "k", perMinute, 1000); err != nil {
			t.Errorf("Give(perMinute=%d): %v", perMinute, err)
		}
	}
}

// TestHeadersStayApart: the x-ratelimit-* values share one backing array;
// appending to one (a proxy adding a value, Retry-After on a refusal) must
// not change another.
func TestHeadersStayApart(t *testing.T) {
	h := headers(headerState{set: true, limit: 1000, remaining: 999, reset: time.Second},
		headerState{set: true, limit: 5000, remaining: 4000, reset: 2 * time.Second})
	want := http.Header{"X-Ratelimit-Limit-Requests": {"1000"}, "X-Ratelimit-Remaining-Requests": {"999"}, "X-Ratelimit-Reset-Requests": {"1s"},
		"X-Ratelimit-Limit-Tokens": {"5000"}, "X-Ratelimit-Remaining-Tokens": {"4000"}, "X-Ratelimit-Reset-Tokens": {"2s"}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("headers %v, want %v", h, want)
	}
	for k := range want {
		h.Add(k, "extra")
	}
	for k, v := range want {
		if got := h[k]; len(got) != 2 || got[0] != v[0] || got[1] != "extra" {
			t.Fatalf("%s: %q after appending to every header, want [%s extra]", k, got, v[0])
		}
	}
}
