package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
)

func budgetRows(bs []client.Budget) [][]string {
	rows := [][]string{}
	for _, b := range bs {
		scope := b.Scope
		if b.ScopeID != "" {
			scope += ":" + b.ScopeID
		}
		kind := "hard"
		if !b.Hard {
			kind = "soft"
		} else if b.Clamp {
			kind = "hard,clamp"
		}
		rows = append(rows, []string{b.ID, scope, orDash(b.Model), b.Period, kind, pricing.FormatUSD(b.LimitMicros),
			pricing.FormatUSD(b.Spent), pricing.FormatUSD(b.Reserved), pricing.FormatUSD(b.Remaining)})
	}
	return rows
}

var budgetHeader = []string{"ID", "SCOPE", "MODEL", "PERIOD", "KIND", "LIMIT", "SPENT", "RESERVED", "REMAINING"}

func budgetsCmd() *command {
	return &command{name: "budgets", short: "Set money caps on keys, principals, teams or the organisation", sub: []*command{
		{name: "set", short: "Set a budget", admin: true, json: true,
			long: `Sets a money cap. Hard budgets (the default) refuse a call whose worst-case cost
could take spend past the limit (429 insufficient_quota), so spend never exceeds
them, however many calls race; with --clamp they lower the call's max_tokens to
what the budget can still pay for instead. Soft budgets (--soft) only alert.
Every budget alerts (log and webhook) when spend crosses its thresholds, once a
period. Periods are calendar day, ISO week or month in --tz (default UTC), or
lifetime.

Examples:
  gatehouse budgets set --key key_abc --limit 10.00 --period day
  gatehouse budgets set --team research --model 'claude-opus-*' --limit 500 --period month --clamp
  gatehouse budgets set --org --limit 20000 --period month --soft --thresholds 50,80,100`,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "key", "", "cap a key (id)")
				o.str(fs, "principal", "", "cap a principal (id or name)")
				o.str(fs, "team", "", "cap a team (id or name)")
				o.bool(fs, "org", "cap the whole organisation")
				o.str(fs, "model", "", "only calls to models matching this glob")
				o.str(fs, "limit", "", "limit in US dollars, e.g. 10.00 (required)")
				o.str(fs, "period", "", "day, week, month or lifetime (required)")
				o.str(fs, "tz", "UTC", "time zone of the period boundaries (IANA name)")
				o.bool(fs, "soft", "alert only; do not refuse calls")
				o.bool(fs, "clamp", "hard budgets: lower max_tokens to fit instead of refusing")
				o.strs(fs, "thresholds", "alert at these percentages (default 50,80,100)")
			},
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 0, "no arguments"); err != nil {
					return err
				}
				var scope, id string
				n := 0
				for _, s := range []string{"key", "principal", "team"} {
					if o.set(s) {
						scope, id = s, o.S(s)
						n++
					}
				}
				if o.B("org") {
					scope = "org"
					n++
				}
				if n != 1 {
					return fmt.Errorf("%w: give exactly one of --key, --principal, --team, --org", ErrUsage)
				}
				if !o.set("limit") || !o.set("period") {
					return fmt.Errorf("%w: --limit and --period are required", ErrUsage)
				}
				limit, err := pricing.ParseUSD(o.S("limit"))
				if err != nil {
					return fmt.Errorf("--limit: %w", err)
				}
				hard, clamp, period, tz, model := !o.B("soft"), o.B("clamp"), o.S("period"), o.S("tz"), o.S("model")
				in := client.BudgetInput{Scope: &scope, ScopeID: &id, Period: &period, TimeZone: &tz, LimitMicros: &limit, Hard: &hard, Clamp: &clamp, Model: &model}
				if ts := o.L("thresholds"); len(ts) > 0 {
					var th []int
					for _, t := range ts {
						v, err := strconv.Atoi(t)
						if err != nil {
							return fmt.Errorf("--thresholds: %q is not a whole percentage", t)
						}
						th = append(th, v)
					}
					in.Thresholds = &th
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				b, err := c.CreateBudget(ctx, in)
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, b)
				}
				table(e.Stdout, budgetHeader, budgetRows([]client.Budget{b}))
				return nil
			}},
		{name: "list", short: "List budgets with this period's spend", admin: true, json: true,
			run: fetch((*client.Client).ListBudgets, func(w io.Writer, bs []client.Budget) { table(w, budgetHeader, budgetRows(bs)) })},
		{name: "show", args: "ID", short: "Show a budget", admin: true, json: true,
			run: fetchArg("a budget id", (*client.Client).Budget, func(w io.Writer, b client.Budget) {
				table(w, budgetHeader, budgetRows([]client.Budget{b}))
				fmt.Fprintf(w, "\nPeriod: %s to %s (%s); alerts at %v%%\n", b.PeriodStart.Format("2006-01-02 15:04"), b.PeriodEnd.Format("2006-01-02 15:04"), b.TimeZone, b.Thresholds)
			})},
		{name: "delete", args: "ID", short: "Delete a budget", admin: true,
			run: withArg("a budget id", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				if err := c.DeleteBudget(ctx, arg, ""); err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Deleted budget %s.\n", arg)
				return nil
			})},
	}}
}

func spendCmd() *command {
	return &command{name: "spend", short: "Spent, reserved and remaining money of the budgets that apply", admin: true, json: true,
		flags: func(fs *flag.FlagSet, o *opts) {
			o.str(fs, "key", "", "budgets that cap this key (its own, its principal's, its team's, the organisation's)")
			o.str(fs, "principal", "", "budgets of this principal")
			o.str(fs, "team", "", "budgets of this team")
		},
		run: func(ctx context.Context, e *Env, o *opts, args []string) error {
			c, err := o.client(e)
			if err != nil {
				return err
			}
			bs, err := c.Spend(ctx, o.S("key"), o.S("principal"), o.S("team"))
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(e.Stdout, bs)
			}
			table(e.Stdout, budgetHeader, budgetRows(bs))
			return nil
		}}
}

func limitsCmd() *command {
	return &command{name: "limits", short: "Rate limits: requests and tokens per minute, concurrent requests", sub: []*command{
		{name: "set", short: "Set the rate limits of a key, principal or team", admin: true, json: true,
			long: `Sets (replacing any before) the rate limits of one scope. Calls over a limit get
429 rate_limit_exceeded with Retry-After and x-ratelimit-* headers. Limits are
kept per gateway process, or in Redis across replicas when redis_url is set.

Example:
  gatehouse limits set --key key_abc --rpm 60 --tpm 100000 --concurrent 4`,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "key", "", "limit a key (id)")
				o.str(fs, "principal", "", "limit a principal (id or name)")
				o.str(fs, "team", "", "limit a team (id or name)")
				o.str(fs, "rpm", "0", "requests per minute (0: none)")
				o.str(fs, "tpm", "0", "tokens per minute (0: none)")
				o.str(fs, "concurrent", "0", "requests in flight at once (0: none)")
			},
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				var l client.Limit
				n := 0
				for _, s := range []string{"key", "principal", "team"} {
					if o.set(s) {
						l.Scope, l.ScopeID = s, o.S(s)
						n++
					}
				}
				if n != 1 {
					return fmt.Errorf("%w: give exactly one of --key, --principal, --team", ErrUsage)
				}
				for name, dst := range map[string]*int64{"rpm": &l.RPM, "tpm": &l.TPM, "concurrent": &l.Concurrent} {
					v, err := strconv.ParseInt(o.S(name), 10, 64)
					if err != nil || v < 0 {
						return fmt.Errorf("--%s: want a whole number ≥ 0", name)
					}
					*dst = v
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				out, err := c.SetLimit(ctx, l)
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, out)
				}
				fmt.Fprintf(e.Stdout, "Limits of %s %s: %d rpm, %d tpm, %d concurrent (0 = none).\n", out.Scope, out.ScopeID, out.RPM, out.TPM, out.Concurrent)
				return nil
			}},
		{name: "list", short: "List rate limits", admin: true, json: true,
			run: fetch((*client.Client).ListLimits, tableOf([]string{"ID", "SCOPE", "RPM", "TPM", "CONCURRENT"}, "", func(l client.Limit) []string {
				return []string{l.ID, l.Scope + ":" + l.ScopeID, fmt.Sprint(l.RPM), fmt.Sprint(l.TPM), fmt.Sprint(l.Concurrent)}
			}))},
		{name: "delete", args: "ID", short: "Delete a scope's rate limits", admin: true,
			run: withArg("a limit id", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				if err := c.DeleteLimit(ctx, arg); err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Deleted limit %s.\n", arg)
				return nil
			})},
	}}
}
