package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
)

func pricesCmd() *command {
	perM := func(m int64) string { return pricing.FormatUSD(m) }
	return &command{name: "prices", short: "Show and override model prices", sub: []*command{
		{name: "list", short: "The effective price table (USD per million tokens) and where each price came from", admin: true, json: true,
			long: "Shipped prices match exact model ids (and the dated snapshots each entry lists); operator overrides come first and may use globs.",
			run: fetch((*client.Client).Prices, tableOf([]string{"MODEL", "INPUT", "CACHED INPUT", "CACHE WRITE", "OUTPUT", "LONG CONTEXT", "SOURCE"}, "", func(p client.Price) []string {
				long := "-"
				if t := p.LongContext; t != nil {
					long = fmt.Sprintf(">%dK: %s/%s", t.Above/1000, perM(t.Input), perM(t.Output))
				}
				return []string{p.Model, perM(p.Input), perM(p.CachedInput), perM(p.CacheWrite), perM(p.Output), long, priceSource(p)}
			}))},
		{name: "show", args: "MODEL", short: "The price that applies to a model id, and where it came from", admin: true, json: true,
			long: "Exits with an error when the model is unpriced: a hard budget refuses such a model.",
			run: withArg("a model id", func(ctx context.Context, e *Env, o *opts, c *client.Client, model string) error {
				p, err := c.PriceOf(ctx, model)
				if err != nil {
					return err
				}
				return output(e, o, p, func(w io.Writer, p client.Price) { showPrice(w, model, p) })
			})},
		{name: "set", args: "MODEL", short: "Override the price of a model id or glob", admin: true, json: true,
			long: "Prices are US dollars per million tokens, e.g. --input 2.50 --output 10. MODEL is an exact id or, for operator entries only, a glob (ft:gpt-4o*); an override replaces a shipped entry and its dated snapshots, long-context tier included: give --long-above and the --long-* prices to keep one (a request with more input tokens than --long-above pays them for all its tokens).",
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "input", "0", "input price, $ per million tokens")
				o.str(fs, "cached-input", "0", "cached input price")
				o.str(fs, "cache-write", "0", "cache write price")
				o.str(fs, "output", "0", "output price")
				o.str(fs, "long-above", "0", "long-context threshold in input tokens (0: no tier)")
				o.str(fs, "long-input", "0", "long-context input price")
				o.str(fs, "long-cached-input", "0", "long-context cached input price")
				o.str(fs, "long-cache-write", "0", "long-context cache write price")
				o.str(fs, "long-output", "0", "long-context output price")
			},
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 1, "a model name or glob"); err != nil {
					return err
				}
				p := client.Price{Model: args[0]}
				var t client.PriceTier
				for flagName, dst := range map[string]*int64{"input": &p.Input, "cached-input": &p.CachedInput, "cache-write": &p.CacheWrite, "output": &p.Output,
					"long-input": &t.Input, "long-cached-input": &t.CachedInput, "long-cache-write": &t.CacheWrite, "long-output": &t.Output} {
					v, err := pricing.ParseUSD(o.S(flagName))
					if err != nil {
						return fmt.Errorf("--%s: %w", flagName, err)
					}
					*dst = v
				}
				above, err := strconv.ParseInt(o.S("long-above"), 10, 64)
				if err != nil || above < 0 {
					return fmt.Errorf("%w: --long-above: want a number of input tokens", ErrUsage)
				}
				if t.Above = above; t != (client.PriceTier{}) {
					p.LongContext = &t
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				out, err := c.SetPrice(ctx, p)
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, out)
				}
				fmt.Fprintf(e.Stdout, "Price of %s: input %s, cached %s, cache write %s, output %s per million tokens.\n",
					out.Model, perM(out.Input), perM(out.CachedInput), perM(out.CacheWrite), perM(out.Output))
				return nil
			}},
		{name: "delete", args: "MODEL", short: "Remove a price override", admin: true,
			run: withArg("a model name or glob", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				if err := c.DeletePrice(ctx, arg); err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Removed the price override of %s.\n", arg)
				return nil
			})},
	}}
}

// priceSource says where a price came from, in a word and a place.
func priceSource(p client.Price) string {
	switch {
	case p.Source == "override" && !p.UpdatedAt.IsZero():
		return "override, set " + p.UpdatedAt.UTC().Format("2006-01-02")
	case p.Source == "override":
		return "override"
	case p.SourceURL != "":
		return "list price read " + p.Checked + " at " + p.SourceURL
	}
	return p.Source
}

func showPrice(w io.Writer, model string, p client.Price) {
	perM := pricing.FormatUSD
	name := p.Model
	if name != model {
		name = model + " (priced as " + p.Model + ")"
	}
	fmt.Fprintf(w, "Model:         %s\n", name)
	if len(p.Aliases) > 0 {
		fmt.Fprintf(w, "Also:          %s\n", strings.Join(p.Aliases, ", "))
	}
	fmt.Fprintf(w, "Input:         %s per million tokens\n", perM(p.Input))
	fmt.Fprintf(w, "Cached input:  %s\n", perM(p.CachedInput))
	fmt.Fprintf(w, "Cache write:   %s\n", perM(p.CacheWrite))
	fmt.Fprintf(w, "Output:        %s\n", perM(p.Output))
	if p.MaxOutput > 0 {
		fmt.Fprintf(w, "Max output:    %d tokens\n", p.MaxOutput)
	}
	if t := p.LongContext; t != nil {
		fmt.Fprintf(w, "Long context:  over %d input tokens, the whole request at input %s, cached %s, cache write %s, output %s\n",
			t.Above, perM(t.Input), perM(t.CachedInput), perM(t.CacheWrite), perM(t.Output))
	}
	fmt.Fprintf(w, "Source:        %s\n", priceSource(p))
	if p.Note != "" {
		fmt.Fprintf(w, "Note:          %s\n", p.Note)
	}
}
