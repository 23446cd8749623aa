// Package pricing turns token usage into money. Money is integer micro-dollars
// (1 USD = 1,000,000 micros) everywhere; no floats. Prices are micros per million
// tokens, so a price of 2_500_000 is $2.50 per million tokens.
//
// A Table maps model names to prices by exact name or glob; the most specific
// entry wins (see glob.Specificity), so "gpt-4o-mini*" beats "gpt-4o*" for
// "gpt-4o-mini-2024-07-18". Operators override the shipped defaults per model.
package pricing

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/glob"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// Price is the price of one model (or model glob), in micros per million tokens.
type Price struct {
	Model       string    `json:"model"`
	Input       int64     `json:"input_micros_per_mtok"`
	CachedInput int64     `json:"cached_input_micros_per_mtok"`
	CacheWrite  int64     `json:"cache_write_micros_per_mtok"`
	Output      int64     `json:"output_micros_per_mtok"`
	MaxOutput   int64     `json:"max_output_tokens,omitempty"` // the model's output ceiling; 0: unknown
	Source      string    `json:"source"`                      // "default" or "override"
	UpdatedAt   time.Time `json:"updated_at,omitzero"`
}

// Validate checks that p names a model and has no negative price.
func (p Price) Validate() error {
	if strings.TrimSpace(p.Model) == "" {
		return fmt.Errorf("price: model is empty")
	}
	if p.Input < 0 || p.CachedInput < 0 || p.CacheWrite < 0 || p.Output < 0 || p.MaxOutput < 0 {
		return fmt.Errorf("price: %s: negative price", p.Model)
	}
	return nil
}

// Cost returns the cost of t at p in micros, rounded up: spend is never
// under-counted. It saturates instead of overflowing.
func (p Price) Cost(t usage.Tokens) int64 {
	plain := max(t.Input-t.CachedInput-t.CacheWrite, 0)
	var sum float64 // exact below 2^53 micro-token products; guards overflow only
	var total int64
	for _, part := range [][2]int64{{plain, p.Input}, {t.CachedInput, p.CachedInput}, {t.CacheWrite, p.CacheWrite}, {t.Output, p.Output}} {
		sum += float64(part[0]) * float64(part[1])
		total += part[0] * part[1]
	}
	if sum >= math.MaxInt64/2 {
		return math.MaxInt64 / 1_000_000
	}
	return (total + 999_999) / 1_000_000
}

// Table looks prices up. It is immutable; build a new one to change it.
type Table struct {
	entries []Price // most specific first
}

// NewTable returns a table of defaults overlaid with overrides (same Model: the
// override wins).
func NewTable(defaults, overrides []Price) *Table {
	byModel := make(map[string]Price, len(defaults)+len(overrides))
	for _, p := range defaults {
		p.Source = "default"
		byModel[p.Model] = p
	}
	for _, p := range overrides {
		p.Source = "override"
		byModel[p.Model] = p
	}
	t := &Table{}
	for _, p := range byModel {
		t.entries = append(t.entries, p)
	}
	slices.SortFunc(t.entries, func(a, b Price) int {
		if c := cmp.Compare(glob.Specificity(b.Model), glob.Specificity(a.Model)); c != 0 {
			return c
		}
		return strings.Compare(a.Model, b.Model)
	})
	return t
}

// Lookup returns the price of model.
func (t *Table) Lookup(model string) (Price, bool) {
	for _, p := range t.entries {
		if glob.Match(p.Model, model) {
			return p, true
		}
	}
	return Price{}, false
}

// All returns every entry, most specific first.
func (t *Table) All() []Price { return slices.Clone(t.entries) }

// FormatUSD renders micros as dollars, e.g. 1234567 → "$1.234567".
func FormatUSD(micros int64) string {
	sign := ""
	if micros < 0 {
		sign, micros = "-", -micros
	}
	s := fmt.Sprintf("%s$%d.%06d", sign, micros/1_000_000, micros%1_000_000)
	// Trim to cents at least, keep precision where it exists.
	s = strings.TrimRight(s, "0")
	if i := strings.IndexByte(s, '.'); len(s)-i-1 < 2 {
		s += strings.Repeat("0", 2-(len(s)-i-1))
	}
	return s
}

// ParseUSD reads "2.50", "$2.50" or "0.000125" into micros, exactly.
func ParseUSD(s string) (int64, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "$")
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" || len(frac) > 6 || strings.HasPrefix(whole, "-") {
		return 0, fmt.Errorf("amount %q: want dollars with at most 6 decimals", s)
	}
	if whole == "" {
		whole = "0"
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > math.MaxInt64/1_000_000-1 {
		return 0, fmt.Errorf("amount %q: want dollars with at most 6 decimals", s)
	}
	f := int64(0)
	if frac != "" {
		f, err = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
		if err != nil || f < 0 {
			return 0, fmt.Errorf("amount %q: want dollars with at most 6 decimals", s)
		}
	}
	return w*1_000_000 + f, nil
}
