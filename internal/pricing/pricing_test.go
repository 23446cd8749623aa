package pricing

import (
	"math"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

func TestLookupMostSpecificWins(t *testing.T) {
	tab := NewTable(Defaults(), []Price{{Model: "gpt-4o", Input: 1, Output: 2}})
	tests := []struct {
		model, want string
		ok          bool
	}{
		{"gpt-4o", "gpt-4o", true}, // override, exact
		{"gpt-4o-2024-08-06", "gpt-4o*", true},
		{"gpt-4o-mini-2024-07-18", "gpt-4o-mini*", true},
		{"gpt-5-mini", "gpt-5-mini*", true},
		{"claude-sonnet-4-5-20250929", "claude-sonnet-4*", true},
		{"claude-opus-4-5", "claude-opus-4-5*", true},
		{"llama3", "", false},
	}
	for _, tt := range tests {
		p, ok := tab.Lookup(tt.model)
		if ok != tt.ok || p.Model != tt.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tt.model, p.Model, ok, tt.want, tt.ok)
		}
	}
	if p, _ := tab.Lookup("gpt-4o"); p.Source != "override" || p.Input != 1 {
		t.Errorf("override not applied: %+v", p)
	}
}

func TestDefaults(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Defaults() {
		if err := p.Validate(); err != nil {
			t.Error(err)
		}
		if seen[p.Model] {
			t.Errorf("duplicate default %q", p.Model)
		}
		seen[p.Model] = true
	}
	p, _ := NewTable(Defaults(), nil).Lookup("gpt-4o")
	if p.Input != 2_500_000 || p.CachedInput != 1_250_000 || p.Output != 10_000_000 {
		t.Errorf("gpt-4o = %+v, want $2.50/$1.25/$10 per Mtok in micros", p)
	}
}

func TestCost(t *testing.T) {
	p := Price{Input: 2_500_000, CachedInput: 1_250_000, CacheWrite: 3_000_000, Output: 10_000_000}
	tests := []struct {
		tok  usage.Tokens
		want int64
	}{
		{usage.Tokens{}, 0},
		{usage.Tokens{Input: 1_000_000}, 2_500_000},
		{usage.Tokens{Input: 1}, 3}, // 2.5 micros rounds up
		{usage.Tokens{Input: 1000, CachedInput: 400, Output: 100}, (600*2_500_000 + 400*1_250_000 + 100*10_000_000 + 999_999) / 1_000_000},
		{usage.Tokens{Input: 10, CacheWrite: 10}, 30},
		{usage.Tokens{Input: 5, CachedInput: 10}, 13}, // inconsistent upstream data: never negative
	}
	for _, tt := range tests {
		if got := p.Cost(tt.tok); got != tt.want {
			t.Errorf("Cost(%+v) = %d, want %d", tt.tok, got, tt.want)
		}
	}
	if got := p.Cost(usage.Tokens{Output: math.MaxInt64 / 2}); got <= 0 {
		t.Errorf("huge usage cost = %d, want saturation", got)
	}
}

func TestUSD(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{{"2.50", 2_500_000}, {"$10", 10_000_000}, {"0.000125", 125}, {".5", 500_000}} {
		if got, err := ParseUSD(tt.in); err != nil || got != tt.want {
			t.Errorf("ParseUSD(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "-1", "1.0000001", "abc", "1e3", "."} {
		if _, err := ParseUSD(bad); err == nil {
			t.Errorf("ParseUSD(%q) accepted", bad)
		}
	}
	for _, tt := range []struct {
		in   int64
		want string
	}{{2_500_000, "$2.50"}, {125, "$0.000125"}, {0, "$0.00"}, {10_000_000, "$10.00"}, {-1_500_000, "-$1.50"}} {
		if got := FormatUSD(tt.in); got != tt.want {
			t.Errorf("FormatUSD(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzParseUSD(f *testing.F) {
	f.Add("2.50")
	f.Add("$0.000001")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseUSD(s)
		if err != nil {
			return
		}
		if m < 0 {
			t.Fatalf("ParseUSD(%q) = %d < 0", s, m)
		}
		back, err := ParseUSD(FormatUSD(m))
		if err != nil || back != m {
			t.Fatalf("round trip %q → %d → %q → %d, %v", s, m, FormatUSD(m), back, err)
		}
	})
}
