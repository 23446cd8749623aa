// Package pricing turns token usage into money. Money is integer micro-dollars
// (1 USD = 1,000,000 micros) everywhere; no floats. Prices are micros per million
// tokens, so a price of 2_500_000 is $2.50 per million tokens.
//
// A Table maps model ids to prices. The shipped defaults match exact ids only:
// each entry names its model and the dated snapshots (aliases) priced the
// same, so "o1-pro" is never charged at "o1" and an id the table does not list
// is unpriced (a hard budget refuses it). Operators override per model with
// exact ids, or with globs: an operator entry may say "ft:gpt-4o*", the
// defaults never do. Lookup order: operator entry for the id; operator entry
// for the default entry the id is an alias of; the most specific operator glob
// (see glob.Specificity); the default entry listing the id.
//
// A Price may carry a long-context tier (Anthropic's 1M-context Sonnet 4 and
// 4.5 above 200K input tokens, OpenAI's GPT-5.4 above 272K): when a request's
// input tokens (cached and cache-writing ones included) exceed the threshold,
// every token of the request is charged at the tier's prices.
package pricing

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse-gw/gatehouse/internal/glob"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// Price is the price of one model (or, for an operator entry, a model glob),
// in micros per million tokens.
type Price struct {
	Model string `json:"model"`
	// Aliases are other exact ids priced the same (dated snapshots such as
	// "gpt-4o-2024-08-06" of "gpt-4o"). Defaults only.
	Aliases     []string `json:"aliases,omitempty"`
	Input       int64    `json:"input_micros_per_mtok"`
	CachedInput int64    `json:"cached_input_micros_per_mtok"`
	CacheWrite  int64    `json:"cache_write_micros_per_mtok"`
	Output      int64    `json:"output_micros_per_mtok"`
	MaxOutput   int64    `json:"max_output_tokens,omitempty"` // the model's output ceiling; 0: unknown
	// LongContext, when its threshold is set, replaces the prices above for
	// a whole request whose input tokens exceed the threshold.
	LongContext Tier `json:"long_context,omitzero"`

	Source    string    `json:"source"`               // "default" or "override"
	SourceURL string    `json:"source_url,omitempty"` // where the list price was read (defaults)
	Checked   string    `json:"checked,omitempty"`    // the day it was read, YYYY-MM-DD
	Note      string    `json:"note,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Tier is a long-context price tier: a request with more than Above input
// tokens pays these prices for all of its tokens.
type Tier struct {
	Above       int64 `json:"above_input_tokens"`
	Input       int64 `json:"input_micros_per_mtok"`
	CachedInput int64 `json:"cached_input_micros_per_mtok"`
	CacheWrite  int64 `json:"cache_write_micros_per_mtok"`
	Output      int64 `json:"output_micros_per_mtok"`
}

// MaxModelBytes is the longest model id a price may name.
const MaxModelBytes = 256

// Validate checks that p names a model (printable UTF-8, no spaces, at most
// MaxModelBytes), has no negative price, and that a long-context tier costs
// at least the base prices (so that cost never falls as input grows).
func (p Price) Validate() error {
	if err := ValidModel(p.Model); err != nil {
		return err
	}
	for _, a := range p.Aliases {
		if err := ValidModel(a); err != nil {
			return fmt.Errorf("alias of %s: %w", p.Model, err)
		}
	}
	if p.Input < 0 || p.CachedInput < 0 || p.CacheWrite < 0 || p.Output < 0 || p.MaxOutput < 0 {
		return fmt.Errorf("price: %s: negative price", p.Model)
	}
	if t := p.LongContext; t != (Tier{}) {
		if t.Above <= 0 || t.Input < p.Input || t.CachedInput < p.CachedInput || t.CacheWrite < p.CacheWrite || t.Output < p.Output {
			return fmt.Errorf("price: %s: a long-context tier needs a positive threshold and prices no lower than the base prices", p.Model)
		}
	}
	return nil
}

// ValidModel checks a model id as a price may name it: printable UTF-8
// without spaces, at most MaxModelBytes.
func ValidModel(m string) error {
	switch {
	case m == "":
		return fmt.Errorf("price: model is empty")
	case len(m) > MaxModelBytes:
		return fmt.Errorf("price: model name longer than %d bytes", MaxModelBytes)
	case !utf8.ValidString(m) || strings.IndexFunc(m, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0:
		return fmt.Errorf("price: model %q: want printable UTF-8 without spaces", m)
	}
	return nil
}

// rates returns the prices that apply to a request with input tokens.
func (p Price) rates(input int64) (in, cached, write, out int64) {
	if t := p.LongContext; t.Above > 0 && input > t.Above {
		return t.Input, t.CachedInput, t.CacheWrite, t.Output
	}
	return p.Input, p.CachedInput, p.CacheWrite, p.Output
}

// Cost returns the cost of t at p in micros, rounded up: spend is never
// under-counted. The long-context tier applies when t.Input exceeds its
// threshold. It saturates instead of overflowing.
func (p Price) Cost(t usage.Tokens) int64 {
	in, cached, write, out := p.rates(t.Input)
	plain := max(t.Input-t.CachedInput-t.CacheWrite, 0)
	return cost([][2]int64{{plain, in}, {t.CachedInput, cached}, {t.CacheWrite, write}, {t.Output, out}})
}

// Ceiling returns the most a request with input and output tokens can cost at
// p, whatever part of its input turns out cached or cache-writing: every input
// token at the highest input-side price (a cache write costs more than plain
// input at Anthropic), in the tier the input reaches. Reservations use it.
func (p Price) Ceiling(input, output int64) int64 {
	in, cached, write, out := p.rates(input)
	return cost([][2]int64{{input, max(in, cached, write)}, {output, out}})
}

func cost(parts [][2]int64) int64 {
	var sum float64 // exact below 2^53 micro-token products; guards overflow only
	var total int64
	for _, part := range parts {
		n := max(part[0], 0)
		sum += float64(n) * float64(part[1])
		total += n * part[1]
	}
	if sum >= math.MaxInt64/2 {
		return math.MaxInt64 / 1_000_000
	}
	return (total + 999_999) / 1_000_000
}

// Table looks prices up. It is immutable; build a new one to change it.
type Table struct {
	defaults  map[string]Price  // by id and alias: exact only
	canonical map[string]string // alias → the default entry's model
	exact     map[string]Price  // operator entries without glob characters
	globs     []Price           // operator globs, most specific first
	all       []Price
}

// NewTable returns a table of defaults overlaid with overrides. Defaults are
// matched by exact id (their model or an alias), even if a name holds glob
// characters; overrides by exact id or glob.
func NewTable(defaults, overrides []Price) *Table {
	t := &Table{defaults: map[string]Price{}, canonical: map[string]string{}, exact: map[string]Price{}}
	for _, p := range defaults {
		p.Source = "default"
		t.defaults[p.Model] = p
		for _, a := range p.Aliases {
			t.defaults[a], t.canonical[a] = p, p.Model
		}
	}
	for _, p := range overrides {
		p.Source, p.Aliases, p.SourceURL, p.Checked = "override", nil, "", ""
		if strings.ContainsAny(p.Model, "*?") {
			t.globs = append(t.globs, p)
		} else {
			t.exact[p.Model] = p
		}
	}
	slices.SortFunc(t.globs, func(a, b Price) int {
		if c := cmp.Compare(glob.Specificity(b.Model), glob.Specificity(a.Model)); c != 0 {
			return c
		}
		return strings.Compare(a.Model, b.Model)
	})
	for _, p := range t.exact {
		t.all = append(t.all, p)
	}
	slices.SortFunc(t.all, func(a, b Price) int { return strings.Compare(a.Model, b.Model) })
	t.all = append(t.all, t.globs...)
	for _, p := range defaults {
		if _, overridden := t.exact[p.Model]; !overridden {
			p.Source = "default"
			t.all = append(t.all, p)
		}
	}
	return t
}

// Lookup returns the price of model, by the order in the package comment.
func (t *Table) Lookup(model string) (Price, bool) {
	if p, ok := t.exact[model]; ok {
		return p, true
	}
	if c, ok := t.canonical[model]; ok {
		if p, ok := t.exact[c]; ok {
			return p, true
		}
	}
	for _, p := range t.globs {
		if glob.Match(p.Model, model) {
			return p, true
		}
	}
	p, ok := t.defaults[model]
	return p, ok
}

// All returns every entry: the operator's first, then the defaults they do
// not replace.
func (t *Table) All() []Price { return slices.Clone(t.all) }

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
