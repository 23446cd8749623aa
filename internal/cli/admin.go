package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
)

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

// effectiveExpiry is when k stops working as the server computes it (the
// maximum key age included), or its own expiry from an older server.
func effectiveExpiry(k client.Key) *time.Time {
	if k.EffectiveExpiresAt != nil {
		return k.EffectiveExpiresAt
	}
	return k.ExpiresAt
}

func keyState(k client.Key) string {
	if k.State != "" { // the server's effective state: the maximum key age included
		return k.State
	}
	now := time.Now()
	switch {
	case k.RevokedAt != nil && !now.Before(*k.RevokedAt):
		return "revoked"
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return "expired"
	case k.SuspendedAt != nil:
		return "suspended"
	}
	return "active"
}

func keysCmd() *command {
	return &command{name: "keys", short: "Create, list, show and revoke keys", sub: []*command{
		{name: "create", short: "Create a key (its secret is printed once)", admin: true, json: true,
			long: `Creates a virtual key for a principal (or, with --admin, an admin key). The
secret is printed once and never again: store it where the caller can read it.

Example:
  gatehouse keys create --principal ci-bot --models 'gpt-4o*' --endpoints chat --expires-in 720h`,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "principal", "", "owner: principal id or name (required)")
				o.str(fs, "team", "", "team the key spends for (default: the principal's first team)")
				o.str(fs, "name", "", "a name to recognise the key by")
				o.strs(fs, "models", "allowed model globs, comma-separated or repeated (default: all)")
				o.strs(fs, "endpoints", "allowed endpoints: chat, completions, embeddings, responses, messages, models (default: all)")
				o.strs(fs, "cidrs", "allowed source address ranges, e.g. 10.0.0.0/8 (default: any)")
				o.str(fs, "expires-in", "", "lifetime, e.g. 720h (default: no expiry)")
				o.bool(fs, "admin", "create an admin key (gka_…) for the admin API")
				o.bool(fs, "mfa-required", "the key cannot call the API itself: its owner (a user) exchanges it with a TOTP code for a token")
			},
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 0, "no arguments"); err != nil {
					return err
				}
				if !o.set("principal") {
					return fmt.Errorf("%w: --principal is required", ErrUsage)
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				in := client.KeyInput{Name: o.S("name"), Principal: o.S("principal"), Team: o.S("team"), ExpiresIn: o.S("expires-in"),
					Scope: client.Scope{Models: o.L("models"), Endpoints: o.L("endpoints"), CIDRs: o.L("cidrs")}}
				if o.B("admin") {
					in.Kind = "admin"
				}
				in.MFARequired = o.B("mfa-required")
				k, err := c.CreateKey(ctx, in)
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, k)
				}
				fmt.Fprintf(e.Stdout, "Created key %s for %s (shown once):\n\n    %s\n\n", k.ID, o.S("principal"), k.Secret)
				return nil
			}},
		{name: "list", short: "List keys", admin: true, json: true,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "principal", "", "only keys of this principal")
				o.str(fs, "team", "", "only keys of this team")
				o.str(fs, "kind", "", "virtual or admin")
				o.bool(fs, "all", "include revoked keys")
			},
			run: fetchWith(func(ctx context.Context, c *client.Client, o *opts) ([]client.Key, error) {
				return c.ListKeys(ctx, client.KeyFilter{Principal: o.S("principal"), Team: o.S("team"), Kind: o.S("kind"), IncludeRevoked: o.B("all")})
			}, tableOf([]string{"ID", "KIND", "NAME", "HINT", "PRINCIPAL", "STATE", "EXPIRES", "LAST USED"}, "", func(k client.Key) []string {
				return []string{k.ID, k.Kind, orDash(k.Name), k.Hint, k.PrincipalID, keyState(k), fmtTime(effectiveExpiry(k)), fmtTime(k.LastUsedAt)}
			}))},
		{name: "show", args: "ID", short: "Show a key", admin: true, json: true,
			run: fetchArg("a key id", (*client.Client).Key, showKey)},
		{name: "rotate", args: "ID", short: "Give a key a new secret; the old one works for a grace period", admin: true, json: true,
			long: `Rotates a key: a new secret, printed once, and the old one keeps working until
the grace period ends (both show in 'keys show'), so callers switch without an
outage. Budgets, limits and usage stay with the key.

Example:
  gatehouse keys rotate key_abc --grace 24h`,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "grace", "24h", "how long the old secret keeps working (0 ends it now)")
			},
			run: withArg("a key id", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				k, err := c.RotateKey(ctx, arg, o.S("grace"))
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, k)
				}
				fmt.Fprintf(e.Stdout, "Rotated key %s. New secret (shown once):\n\n    %s\n\nThe old secret works until %s.\n", k.ID, k.Secret, fmtTime(k.PrevValidUntil))
				return nil
			})},
		{name: "reinstate", args: "ID", short: "Lift a spend-velocity breaker's suspension", admin: true, json: true,
			run: withArg("a key id", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				k, err := c.ReinstateKey(ctx, arg, "")
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, k)
				}
				fmt.Fprintf(e.Stdout, "Reinstated key %s.\n", k.ID)
				return nil
			})},
		{name: "revoke", args: "ID", short: "Revoke a key; it fails from the next request on", admin: true, json: true,
			run: withArg("a key id", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				k, err := c.RevokeKey(ctx, arg, "")
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, k)
				}
				fmt.Fprintf(e.Stdout, "Revoked key %s.\n", k.ID)
				return nil
			})},
	}}
}

func showKey(w io.Writer, k client.Key) {
	all := func(l []string) string {
		if len(l) == 0 {
			return "all"
		}
		return strings.Join(l, ", ")
	}
	fmt.Fprintf(w, "ID:          %s\nKind:        %s\nName:        %s\nHint:        %s\nPrincipal:   %s\nTeam:        %s\nState:       %s\n",
		k.ID, k.Kind, orDash(k.Name), k.Hint, k.PrincipalID, orDash(k.TeamID), keyState(k))
	fmt.Fprintf(w, "Models:      %s\nEndpoints:   %s\nSource:      %s\n", all(k.Scope.Models), all(k.Scope.Endpoints), all(k.Scope.CIDRs))
	fmt.Fprintf(w, "Created:     %s\nExpires:     %s\nRevoked:     %s\nLast used:   %s\n",
		fmtTime(&k.CreatedAt), fmtTime(effectiveExpiry(k)), fmtTime(k.RevokedAt), fmtTime(k.LastUsedAt))
	if k.SuspendedAt != nil {
		fmt.Fprintf(w, "Suspended:   %s (%s)\n", fmtTime(k.SuspendedAt), k.SuspendReason)
	}
	if k.RotatedAt != nil {
		fmt.Fprintf(w, "Rotated:     %s; previous secret %s valid until %s\n", fmtTime(k.RotatedAt), k.PrevHint, fmtTime(k.PrevValidUntil))
	}
}

func providersCmd() *command {
	return &command{name: "providers", short: "Connect upstream providers", sub: []*command{
		{name: "add", short: "Add a provider", admin: true, json: true,
			long: `Adds an upstream provider. Type openai covers OpenAI and every OpenAI-compatible
server (vLLM, Ollama, …); type anthropic is Anthropic's Messages API. Models
route to the provider by name or glob; the most specific pattern wins.

Upstream keys are stored encrypted and never shown again. Prefer --key-env so
the key does not end up in your shell history.

Examples:
  gatehouse providers add --name openai --type openai --models 'gpt-*,o*,text-embedding-*' --key-env OPENAI_API_KEY
  gatehouse providers add --name anthropic --type anthropic --models 'claude-*' --key-env ANTHROPIC_API_KEY
  gatehouse providers add --name local --type openai --base-url http://127.0.0.1:11434/v1 --models 'llama*'`,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "name", "", "provider name (required)")
				o.str(fs, "type", "", "openai or anthropic (required)")
				o.str(fs, "base-url", "", "API root (default: the provider's public API)")
				o.strs(fs, "models", "model names or globs routed to it (required)")
				o.strs(fs, "key-env", "read an upstream key from this environment variable (repeatable)")
				o.strs(fs, "key", "an upstream key (repeatable; visible in ps and history: prefer --key-env)")
			},
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 0, "no arguments"); err != nil {
					return err
				}
				keys := append([]string{}, o.L("key")...)
				for _, name := range o.L("key-env") {
					v := e.Getenv(name)
					if v == "" {
						return fmt.Errorf("--key-env %s: the variable is empty or unset", name)
					}
					keys = append(keys, v)
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				p, err := c.CreateProvider(ctx, client.ProviderInput{Name: o.S("name"), Type: o.S("type"), BaseURL: o.S("base-url"), Models: o.L("models"), Keys: keys})
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, p)
				}
				fmt.Fprintf(e.Stdout, "Added provider %s (%s, %s) with %d key(s), routing %s.\n", p.Name, p.Type, p.BaseURL, len(p.Keys), strings.Join(p.Models, ", "))
				return nil
			}},
		{name: "list", short: "List providers", admin: true, json: true,
			run: fetch((*client.Client).ListProviders, tableOf([]string{"ID", "NAME", "TYPE", "BASE URL", "MODELS", "KEYS"}, "", func(p client.Provider) []string {
				return []string{p.ID, p.Name, p.Type, p.BaseURL, strings.Join(p.Models, ","), fmt.Sprint(len(p.Keys))}
			}))},
		{name: "remove", args: "NAME", short: "Remove a provider and its keys", admin: true,
			run: withArg("a provider name or id", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				if err := c.DeleteProvider(ctx, arg, ""); err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Removed provider %s.\n", arg)
				return nil
			})},
	}}
}

func teamsCmd() *command {
	return &command{name: "teams", short: "Manage teams", sub: []*command{
		{name: "create", args: "NAME", short: "Create a team", admin: true, json: true,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "max-key-age", "", "no key of the team lives longer than this (e.g. 2160h) since its creation or rotation; the organisation's keys.max_age still applies")
			},
			run: withArg("a team name", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				in := client.TeamInput{Name: &arg}
				if age := o.S("max-key-age"); age != "" {
					in.MaxKeyAge = &age
				}
				t, err := c.CreateTeamWith(ctx, in)
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, t)
				}
				fmt.Fprintf(e.Stdout, "Created team %s (%s).\n", t.Name, t.ID)
				return nil
			})},
		{name: "list", short: "List teams", admin: true, json: true,
			run: fetch((*client.Client).ListTeams, tableOf([]string{"ID", "NAME", "MAX KEY AGE", "CREATED"}, "", func(t client.Team) []string {
				return []string{t.ID, t.Name, orDash(t.MaxKeyAge), fmtTime(&t.CreatedAt)}
			}))},
		{name: "set", args: "NAME", short: "Change a team's name or maximum key age", admin: true, json: true,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "name", "", "new name")
				o.str(fs, "max-key-age", "", "maximum key age such as 2160h; 0s clears it. Applies at once to the team's existing keys")
			},
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 1, "a team name or id"); err != nil {
					return err
				}
				var in client.TeamInput
				if v := o.S("name"); v != "" {
					in.Name = &v
				}
				if v := o.S("max-key-age"); v != "" {
					in.MaxKeyAge = &v
				}
				if in.Name == nil && in.MaxKeyAge == nil {
					return fmt.Errorf("%w: nothing to change: give --name or --max-key-age", ErrUsage)
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				t, err := c.UpdateTeam(ctx, args[0], in, "")
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, t)
				}
				age := t.MaxKeyAge
				if age == "" {
					age = "none (the organisation's limit applies)"
				}
				fmt.Fprintf(e.Stdout, "Team %s: maximum key age %s.\n", t.Name, age)
				return nil
			}},
		{name: "delete", args: "NAME", short: "Delete a team that has no members", admin: true,
			run: withArg("a team name or id", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				if err := c.DeleteTeam(ctx, arg, ""); err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Deleted team %s.\n", arg)
				return nil
			})},
	}}
}

func principalsCmd() *command {
	setDisabled := func(disabled bool) func(ctx context.Context, e *Env, o *opts, args []string) error {
		return func(ctx context.Context, e *Env, o *opts, args []string) error {
			if err := nargs(args, 1, "a principal name or id"); err != nil {
				return err
			}
			c, err := o.client(e)
			if err != nil {
				return err
			}
			_, etag, err := c.Principal(ctx, args[0])
			if err != nil {
				return err
			}
			p, err := c.UpdatePrincipal(ctx, args[0], client.PrincipalInput{Disabled: &disabled}, etag)
			if err != nil {
				return err
			}
			state := "Enabled"
			if p.Disabled {
				state = "Disabled"
			}
			fmt.Fprintf(e.Stdout, "%s principal %s.\n", state, p.Name)
			return nil
		}
	}
	return &command{name: "principals", short: "Manage users and service accounts", sub: []*command{
		{name: "create", args: "NAME", short: "Create a principal", admin: true, json: true,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.strs(fs, "team", "team name or id (required; repeatable)")
				o.str(fs, "kind", "service_account", "user or service_account")
				o.strs(fs, "role", "role (repeatable; default member)")
			},
			run: withArg("a principal name", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				name, kind, teams := arg, o.S("kind"), o.L("team")
				in := client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams}
				if roles := o.L("role"); len(roles) > 0 {
					in.Roles = &roles
				}
				p, err := c.CreatePrincipal(ctx, in)
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, p)
				}
				fmt.Fprintf(e.Stdout, "Created %s %s (%s).\n", p.Kind, p.Name, p.ID)
				return nil
			})},
		{name: "list", short: "List principals", admin: true, json: true,
			flags: func(fs *flag.FlagSet, o *opts) { o.str(fs, "team", "", "only members of this team") },
			run: fetchWith(func(ctx context.Context, c *client.Client, o *opts) ([]client.Principal, error) {
				return c.ListPrincipals(ctx, o.S("team"))
			}, tableOf([]string{"ID", "NAME", "KIND", "TEAMS", "ROLES", "STATE"}, "", func(p client.Principal) []string {
				state := "active"
				if p.Disabled {
					state = "disabled"
				}
				return []string{p.ID, p.Name, p.Kind, strings.Join(p.Teams, ","), strings.Join(p.Roles, ","), state}
			}))},
		{name: "show", args: "NAME", short: "Show a principal", admin: true, json: true,
			run: withArg("a principal name or id", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				p, _, err := c.Principal(ctx, arg)
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, p)
				}
				fmt.Fprintf(e.Stdout, "ID:        %s\nName:      %s\nKind:      %s\nTeams:     %s\nRoles:     %s\nDisabled:  %v\nCreated:   %s\n",
					p.ID, p.Name, p.Kind, strings.Join(p.Teams, ", "), strings.Join(p.Roles, ", "), p.Disabled, fmtTime(&p.CreatedAt))
				return nil
			})},
		{name: "disable", args: "NAME", short: "Disable a principal: its keys stop working", admin: true, run: setDisabled(true)},
		{name: "enable", args: "NAME", short: "Enable a disabled principal", admin: true, run: setDisabled(false)},
		{name: "delete", args: "NAME", short: "Delete a principal that owns no keys", admin: true,
			run: withArg("a principal name or id", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				if err := c.DeletePrincipal(ctx, arg, ""); err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Deleted principal %s.\n", arg)
				return nil
			})},
	}}
}

// parseSince reads "7d", "24h" (ago) or a date / RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if strings.HasSuffix(s, "d") {
		var n int
		if _, err := fmt.Sscanf(s, "%dd", &n); err == nil && n > 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want 7d, 24h, 2026-01-02 or an RFC 3339 time", s)
}

func usageCmd() *command {
	return &command{name: "usage", short: "Show usage and cost", admin: true, json: true,
		long: `Shows usage summed by key (or --group-by principal, team, model, day), or with
--records the individual calls, newest first. Cost is in US dollars, from the
price table; calls whose usage the upstream did not report are counted locally
and flagged "estimated".`,
		flags: func(fs *flag.FlagSet, o *opts) {
			o.str(fs, "key", "", "only this key id")
			o.str(fs, "principal", "", "only this principal")
			o.str(fs, "team", "", "only this team")
			o.str(fs, "model", "", "only this model")
			o.str(fs, "since", "", "from: 7d, 24h, 2026-01-02 or RFC 3339")
			o.str(fs, "until", "", "until: 2026-01-02 or RFC 3339")
			o.str(fs, "group-by", "key", "key, principal, team, model or day")
			o.bool(fs, "records", "list individual calls instead of sums")
			o.str(fs, "limit", "100", "with --records: at most this many")
		},
		run: func(ctx context.Context, e *Env, o *opts, args []string) error {
			if err := nargs(args, 0, "no arguments"); err != nil {
				return err
			}
			c, err := o.client(e)
			if err != nil {
				return err
			}
			now := time.Now()
			q := client.UsageQuery{Key: o.S("key"), Principal: o.S("principal"), Team: o.S("team"), Model: o.S("model")}
			if q.Since, err = parseSince(o.S("since"), now); err != nil {
				return fmt.Errorf("--since %w", err)
			}
			if q.Until, err = parseSince(o.S("until"), now); err != nil {
				return fmt.Errorf("--until %w", err)
			}
			if o.B("records") {
				fmt.Sscan(o.S("limit"), &q.Limit)
				recs, err := c.Usage(ctx, q)
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, recs)
				}
				rows := [][]string{}
				for _, r := range recs {
					est := ""
					if r.Estimated {
						est = " (est.)"
					}
					rows = append(rows, []string{r.Time.Local().Format("01-02 15:04:05"), r.RequestID, r.KeyID, r.Model, fmt.Sprint(r.Status),
						fmt.Sprint(r.InputTokens), fmt.Sprint(r.OutputTokens) + est, pricing.FormatUSD(r.CostMicros), fmt.Sprintf("%dms", r.LatencyMillis)})
				}
				table(e.Stdout, []string{"TIME", "REQUEST", "KEY", "MODEL", "STATUS", "IN", "OUT", "COST", "LATENCY"}, rows)
				return nil
			}
			sums, err := c.UsageSummary(ctx, q, o.S("group-by"))
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(e.Stdout, sums)
			}
			rows := [][]string{}
			var total int64
			for _, s := range sums {
				total += s.CostMicros
				rows = append(rows, []string{s.Group, fmt.Sprint(s.Requests), fmt.Sprint(s.InputTokens), fmt.Sprint(s.OutputTokens), s.Cost, fmt.Sprint(s.Estimated)})
			}
			table(e.Stdout, []string{strings.ToUpper(o.S("group-by")), "REQUESTS", "INPUT TOKENS", "OUTPUT TOKENS", "COST", "ESTIMATED"}, rows)
			fmt.Fprintf(e.Stdout, "\nTotal: %s\n", pricing.FormatUSD(total))
			return nil
		}}
}

func modelsCmd() *command {
	return &command{name: "models", short: "List routable models and their prices", admin: true, json: true,
		run: func(ctx context.Context, e *Env, o *opts, args []string) error {
			c, err := o.client(e)
			if err != nil {
				return err
			}
			ms, simulated, err := c.Models(ctx)
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(e.Stdout, map[string]any{"data": ms, "simulated": simulated})
			}
			rows := [][]string{}
			for _, m := range ms {
				in, out := "-", "-"
				if m.Price != nil {
					in, out = pricing.FormatUSD(m.Price.Input), pricing.FormatUSD(m.Price.Output)
				}
				rows = append(rows, []string{m.ID, m.Provider, in, out})
			}
			table(e.Stdout, []string{"MODEL", "PROVIDER", "INPUT $/MTOK", "OUTPUT $/MTOK"}, rows)
			if simulated {
				fmt.Fprintln(e.Stdout, "\nNo provider is configured: the simulated provider answers for every model name.")
			} else {
				fmt.Fprintln(e.Stdout, "\nModels routed by glob are not listed; see 'gatehouse providers list'.")
			}
			return nil
		}}
}

func tokensCmd() *command {
	return &command{name: "tokens", short: "Revoke short-lived access tokens", sub: []*command{
		{name: "revoke", short: "Revoke one token (--jti) or every token of a principal issued until now (--principal)", admin: true,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "jti", "", "the token's id (its jti claim)")
				o.str(fs, "principal", "", "a principal id or name: all its tokens issued until now")
			},
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if o.set("jti") == o.set("principal") {
					return fmt.Errorf("%w: give exactly one of --jti and --principal", ErrUsage)
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				if err := c.RevokeTokens(ctx, o.S("jti"), o.S("principal")); err != nil {
					return err
				}
				fmt.Fprintln(e.Stdout, "Revoked; it takes effect on the next request.")
				return nil
			}},
		{name: "rotate-signing-key", short: "Make a new token signing key current (the previous one verifies until the next rotation)", admin: true,
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				c, err := o.client(e)
				if err != nil {
					return err
				}
				var out struct {
					KID string `json:"kid"`
				}
				if _, err := c.DoJSON(ctx, "POST", "/v1/tokens/rotate-signing-key", map[string]string{}, &out); err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "New token signing key %s; tokens of the previous key keep working until the next rotation.\n", out.KID)
				return nil
			}},
	}}
}
