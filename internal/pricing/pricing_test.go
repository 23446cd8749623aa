package pricing

import (
	"math"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// TestLookupExactIDs is issue #9, item 9: the shipped table matches exact
// ids only, so a -pro tier is never charged at its base model's price and an
// unknown id is unpriced.
func TestLookupExactIDs(t *testing.T) {
	tab := NewTable(Defaults(), nil)
	tests := []struct {
		model, entry  string // entry "": unpriced
		input, output float64
	}{
		{"o1", "o1", 15, 60},
		{"o1-pro", "o1-pro", 150, 600},
		{"o1-pro-2025-03-19", "o1-pro", 150, 600},
		{"o3", "o3", 2, 8},
		{"o3-pro", "o3-pro", 20, 80},
		{"gpt-5", "gpt-5", 1.25, 10},
		{"gpt-5-pro", "gpt-5-pro", 15, 120},
		{"gpt-5.1", "gpt-5.1", 1.25, 10},
		{"gpt-5.2-pro", "gpt-5.2-pro", 21, 168},
		{"gpt-4-turbo", "gpt-4-turbo", 10, 30},
		{"gpt-4-turbo-2024-04-09", "gpt-4-turbo", 10, 30},
		{"gpt-4.5-preview", "gpt-4.5-preview", 75, 150},
		{"gpt-4o-2024-08-06", "gpt-4o", 2.50, 10},
		{"gpt-4o-2024-05-13", "gpt-4o-2024-05-13", 5, 15},
		{"gpt-4o-mini-2024-07-18", "gpt-4o-mini", 0.15, 0.60},
		{"claude-opus-4-1-20250805", "claude-opus-4-1", 15, 75},
		{"claude-opus-4-5-20251101", "claude-opus-4-5", 5, 25},
		{"claude-sonnet-4-5-20250929", "claude-sonnet-4-5", 3, 15},
		{"claude-haiku-4-5-20251001", "claude-haiku-4-5", 1, 5},
		{"sim-small", "sim-small", 1, 4},
		// Not listed: unpriced, whatever they start with.
		{"gpt-4o-2099-01-01", "", 0, 0},
		{"o1-pro-max", "", 0, 0},
		{"gpt-5-turbo", "", 0, 0},
		{"claude-opus-4", "", 0, 0},
		{"gpt-4o-audio-preview", "", 0, 0},
		{"sim-anything", "", 0, 0},
		{"GPT-4O", "", 0, 0},
		{"gpt-4o ", "", 0, 0},
		{"llama3", "", 0, 0},
	}
	for _, tt := range tests {
		p, ok := tab.Lookup(tt.model)
		if ok != (tt.entry != "") || p.Model != tt.entry {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tt.model, p.Model, ok, tt.entry)
			continue
		}
		if ok && (p.Input != usd(tt.input) || p.Output != usd(tt.output) || p.Source != "default" || p.SourceURL == "" && p.Note == "") {
			t.Errorf("Lookup(%q) = %+v; want $%v / $%v per Mtok, default, with its source", tt.model, p, tt.input, tt.output)
		}
	}
}

func TestLookupOverrides(t *testing.T) {
	tab := NewTable(Defaults(), []Price{
		{Model: "gpt-4o", Input: 1, Output: 2},            // the canonical id: its snapshots follow
		{Model: "o1-pro-2025-03-19", Input: 3, Output: 4}, // one snapshot only
		{Model: "ft:gpt-4o*", Input: 5, Output: 6},        // operators may glob
		{Model: "ft:gpt-4o-mini*", Input: 7, Output: 8},   // the most specific glob wins
		{Model: "ft:gpt-4o-mini:acme", Input: 9},          // an exact entry beats any glob
		{Model: "claude-*", Input: 10},                    // an operator glob beats the defaults
	})
	tests := []struct {
		model  string
		input  int64
		source string
	}{
		{"gpt-4o", 1, "override"},
		{"gpt-4o-2024-11-20", 1, "override"},
		{"gpt-4o-2024-05-13", usd(5), "default"}, // its own entry, not an alias
		{"o1-pro", usd(150), "default"},
		{"o1-pro-2025-03-19", 3, "override"},
		{"ft:gpt-4o:acme", 5, "override"},
		{"ft:gpt-4o-mini:x", 7, "override"},
		{"ft:gpt-4o-mini:acme", 9, "override"},
		{"claude-haiku-4-5", 10, "override"},
		{"gpt-4o-mini", usd(0.15), "default"},
	}
	for _, tt := range tests {
		p, ok := tab.Lookup(tt.model)
		if !ok || p.Input != tt.input || p.Source != tt.source {
			t.Errorf("Lookup(%q) = %+v, %v; want input %d from %s", tt.model, p, ok, tt.input, tt.source)
		}
	}
	all := tab.All()
	if all[0].Source != "override" || all[len(all)-1].Source != "default" {
		t.Errorf("All: overrides first, then defaults; got %s … %s", all[0].Model, all[len(all)-1].Model)
	}
	for _, p := range all {
		if p.Model == "gpt-4o" && p.Source == "default" {
			t.Error("All lists a default that an override replaced")
		}
	}
}

func TestDefaults(t *testing.T) {
	seen := map[string]string{}
	for _, p := range Defaults() {
		if err := p.Validate(); err != nil {
			t.Error(err)
		}
		for _, id := range append([]string{p.Model}, p.Aliases...) {
			if strings.ContainsAny(id, "*?[]") {
				t.Errorf("default %q matches by glob; defaults are exact ids", id)
			}
			if other, dup := seen[id]; dup {
				t.Errorf("id %q in both %q and %q", id, other, p.Model)
			}
			seen[id] = p.Model
		}
		if !strings.HasPrefix(p.Model, "sim-") && (!strings.HasPrefix(p.SourceURL, "https://") || len(p.Checked) != len("2006-01-02")) {
			t.Errorf("default %q does not say where its price came from: %q %q", p.Model, p.SourceURL, p.Checked)
		}
		if p.Input == 0 || p.Output == 0 && !strings.HasPrefix(p.Model, "text-embedding") {
			t.Errorf("default %q has a zero price: %+v", p.Model, p)
		}
		if p.CachedInput == 0 && !strings.HasPrefix(p.Model, "text-embedding") {
			t.Errorf("default %q: cached input at $0 would charge cached tokens nothing", p.Model)
		}
	}
	p, _ := NewTable(Defaults(), nil).Lookup("gpt-4o")
	if p.Input != 2_500_000 || p.CachedInput != 1_250_000 || p.Output != 10_000_000 {
		t.Errorf("gpt-4o = %+v, want $2.50/$1.25/$10 per Mtok in micros", p)
	}
}

func TestValidate(t *testing.T) {
	for _, bad := range []Price{
		{Model: ""},
		{Model: "a b"},
		{Model: "a\x00"},
		{Model: "\xff"},
		{Model: strings.Repeat("m", MaxModelBytes+1)},
		{Model: "m", Input: -1},
		{Model: "m", Aliases: []string{"bad alias"}},
		{Model: "m", Input: 10, Output: 10, LongContext: Tier{Above: 0, Input: 20, Output: 20}},
		{Model: "m", Input: 10, Output: 10, LongContext: Tier{Above: 100, Input: 5, Output: 20}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", bad)
		}
	}
	ok := Price{Model: "ft:gpt-4o*", Input: 10, Output: 10, LongContext: Tier{Above: 100, Input: 10, Output: 20}}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
}

// TestLongContextCost: above the threshold every token of the request is
// charged at the tier; at the threshold, not.
func TestLongContextCost(t *testing.T) {
	sonnet, _ := NewTable(Defaults(), nil).Lookup("claude-sonnet-4-5-20250929")
	gpt54, _ := NewTable(Defaults(), nil).Lookup("gpt-5.4")
	haiku55, _ := NewTable(Defaults(), nil).Lookup("claude-haiku-5-5")
	tests := []struct {
		name string
		p    Price
		tok  usage.Tokens
		want int64
	}{
		{"sonnet at 200K", sonnet, usage.Tokens{Input: 200_000, Output: 1000}, 200_000*3 + 1000*15},
		{"sonnet at 200K+1", sonnet, usage.Tokens{Input: 200_001, Output: 1000}, 200_001*6 + 1000*22 + 500},
		{"sonnet over, cached", sonnet, usage.Tokens{Input: 300_000, CachedInput: 100_000, CacheWrite: 100_000, Output: 0},
			100_000*6 + 100_000*0.6 + 100_000*12},
		{"sonnet threshold counts cached input", sonnet, usage.Tokens{Input: 250_000, CachedInput: 240_000}, 10_000*6 + 240_000*0.6},
		{"gpt-5.4 at 272K", gpt54, usage.Tokens{Input: 272_000, Output: 10}, 272_000*2.5 + 10*15},
		{"gpt-5.4 over", gpt54, usage.Tokens{Input: 300_000, CachedInput: 100_000, Output: 10}, 200_000*5 + 100_000*0.5 + 10*22.5},
		{"haiku 5.5 under", haiku55, usage.Tokens{Input: 100_000, Output: 1000}, 100_000*0.1 + 1000*0.5},
		{"haiku 5.5 over", haiku55, usage.Tokens{Input: 100_001, Output: 1000}, 50_001 + 2500}, // 50,000.5 micros rounds up
	}
	for _, tt := range tests {
		if got := tt.p.Cost(tt.tok); got != tt.want {
			t.Errorf("%s: Cost(%+v) = %d, want %d", tt.name, tt.tok, got, tt.want)
		}
	}
}

// FuzzCeiling: whatever part of the input is cached or cache-writing, and
// whatever the tier, Cost never exceeds Ceiling of the same totals, and both
// grow with the tokens.
func FuzzCeiling(f *testing.F) {
	f.Add(int64(250_000), int64(100_000), int64(100_000), int64(1000))
	f.Add(int64(10), int64(0), int64(10), int64(0))
	ps := Defaults()
	f.Fuzz(func(t *testing.T, in, cached, write, out int64) {
		tok := usage.Tokens{Input: in % 5_000_000, CachedInput: cached % 5_000_000, CacheWrite: write % 5_000_000, Output: out % 1_000_000}.Clamp()
		for _, p := range ps {
			c, ceil := p.Cost(tok), p.Ceiling(tok.Input, tok.Output)
			if c > ceil {
				t.Fatalf("%s: Cost(%+v) = %d > Ceiling = %d", p.Model, tok, c, ceil)
			}
			if more := p.Ceiling(tok.Input+1, tok.Output+1); more < ceil {
				t.Fatalf("%s: Ceiling falls as tokens grow: %d then %d", p.Model, ceil, more)
			}
		}
	})
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
