package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// readPolicyDir reads every *.cedar file of dir.
func readPolicyDir(dir string) (map[string]string, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.cedar"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no .cedar files in %s", dir)
	}
	files := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		files[filepath.Base(n)] = string(b)
	}
	return files, nil
}

func compileDir(e *Env, dir string) (*policy.Set, map[string]string, error) {
	files, err := readPolicyDir(dir)
	if err != nil {
		return nil, nil, err
	}
	set, err := policy.Compile(files)
	var probs policy.Problems
	if errors.As(err, &probs) {
		for _, p := range probs {
			fmt.Fprintf(e.Stderr, "%s\n", strings.Replace(p.String(), p.File, filepath.Join(dir, p.File), 1))
		}
		return nil, nil, fmt.Errorf("%d problem(s) in %s", len(probs), dir)
	}
	return set, files, err
}

// Case is one policy test case (cases.yaml).
type Case struct {
	Name      string `yaml:"name"`
	Principal struct {
		ID    string   `yaml:"id"`
		Kind  string   `yaml:"kind"`
		Roles []string `yaml:"roles"`
		Teams []string `yaml:"teams"`
	} `yaml:"principal"`
	Action   string `yaml:"action"`
	Resource string `yaml:"resource"` // the model (data plane) or area (admin)
	Provider string `yaml:"provider"`
	Context  struct {
		EstimatedCostMicros int64  `yaml:"estimated_cost_micros"`
		MaxTokens           int64  `yaml:"max_tokens"`
		Stream              bool   `yaml:"stream"`
		SourceIP            string `yaml:"source_ip"`
		Time                string `yaml:"time"`
		MFAAgeSeconds       *int64 `yaml:"mfa_age_seconds"`
		KeyAgeDays          int64  `yaml:"key_age_days"`
	} `yaml:"context"`
	Expect  string   `yaml:"expect"` // allow or deny
	Reasons []string `yaml:"reasons"`
}

func runCase(set *policy.Set, c Case) (policy.Decision, error) {
	kind := org.KindServiceAccount
	if c.Principal.Kind == "user" {
		kind = org.KindUser
	}
	p := policy.Principal{ID: c.Principal.ID, Kind: kind, Roles: c.Principal.Roles, Teams: c.Principal.Teams}
	if p.ID == "" {
		p.ID = "prn_test"
	}
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC) // a Monday, 10:00
	if c.Context.Time != "" {
		t, err := time.Parse(time.RFC3339, c.Context.Time)
		if err != nil {
			return policy.Decision{}, fmt.Errorf("context.time %q: want RFC 3339", c.Context.Time)
		}
		at = t
	}
	var ip netip.Addr
	if c.Context.SourceIP != "" {
		a, err := netip.ParseAddr(c.Context.SourceIP)
		if err != nil {
			return policy.Decision{}, fmt.Errorf("context.source_ip %q", c.Context.SourceIP)
		}
		ip = a
	}
	mfa := int64(-1)
	if c.Context.MFAAgeSeconds != nil {
		mfa = *c.Context.MFAAgeSeconds
	}
	if strings.Contains(c.Action, ".") {
		return set.DecideAdmin(policy.AdminCall{Principal: p, Action: c.Action, Area: c.Resource, SourceIP: ip, Time: at, MFAAgeSeconds: mfa}), nil
	}
	return set.Decide(policy.Call{Principal: p, Action: c.Action, Model: c.Resource, Provider: c.Provider, Stream: c.Context.Stream,
		MaxTokens: c.Context.MaxTokens, EstimatedCostMicros: c.Context.EstimatedCostMicros, BudgetRemaining: -1, SourceIP: ip, Time: at,
		KeyAgeDays: c.Context.KeyAgeDays, MFAAgeSeconds: mfa}), nil
}

func policyCmd() *command {
	return &command{name: "policy", short: "Validate, test, apply and roll back Cedar policies", sub: []*command{
		{name: "validate", args: "DIR", short: "Validate the .cedar files of DIR against the schema (no server needed)",
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 1, "a directory of .cedar files"); err != nil {
					return err
				}
				if _, files, err := compileDir(e, args[0]); err != nil {
					return err
				} else {
					fmt.Fprintf(e.Stdout, "OK: %d file(s) validate against the schema.\n", len(files))
				}
				return nil
			}},
		{name: "test", args: "DIR", short: "Run test cases against the policies of DIR (no server needed)",
			long: `Each case in the YAML file names a principal, an action (chat, completions,
embeddings, responses, messages, models, or an admin action such as keys.create),
a resource (the model, or the admin area), a context, and the expected decision
and deciding policies:

  - name: interns may not use Opus
    principal: {kind: service_account, roles: [member, intern]}
    action: chat
    resource: claude-opus-4-1
    provider: anthropic
    context: {estimated_cost_micros: 1000, source_ip: 10.0.0.1}
    expect: deny
    reasons: [no-opus-for-interns]`,
			flags: func(fs *flag.FlagSet, o *opts) { o.str(fs, "cases", "cases.yaml", "the test cases") },
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 1, "a directory of .cedar files"); err != nil {
					return err
				}
				set, _, err := compileDir(e, args[0])
				if err != nil {
					return err
				}
				b, err := os.ReadFile(o.S("cases"))
				if err != nil {
					return err
				}
				var cases []Case
				dec := yaml.NewDecoder(strings.NewReader(string(b)))
				dec.KnownFields(true)
				if err := dec.Decode(&cases); err != nil {
					return fmt.Errorf("%s: %w", o.S("cases"), err)
				}
				failed := 0
				for i, c := range cases {
					d, err := runCase(set, c)
					if err != nil {
						return fmt.Errorf("case %d (%s): %w", i+1, c.Name, err)
					}
					got := "deny"
					if d.Allow {
						got = "allow"
					}
					ok := got == c.Expect && (c.Reasons == nil || slices.Equal(c.Reasons, d.Reasons))
					mark := "ok  "
					if !ok {
						mark, failed = "FAIL", failed+1
					}
					fmt.Fprintf(e.Stdout, "%s %-40s %s by %v", mark, c.Name, got, d.Reasons)
					if !ok {
						fmt.Fprintf(e.Stdout, " (want %s by %v)", c.Expect, c.Reasons)
					}
					fmt.Fprintln(e.Stdout)
				}
				fmt.Fprintf(e.Stdout, "\n%d passed, %d failed\n", len(cases)-failed, failed)
				if failed > 0 {
					return fmt.Errorf("%d case(s) failed", failed)
				}
				return nil
			}},
		{name: "apply", args: "DIR", short: "Make the policies of DIR the set in force (atomic, audited)", admin: true, json: true,
			flags: func(fs *flag.FlagSet, o *opts) { o.str(fs, "note", "", "why, for the history") },
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 1, "a directory of .cedar files"); err != nil {
					return err
				}
				_, files, err := compileDir(e, args[0])
				if err != nil {
					return err
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				v, err := c.ApplyPolicies(ctx, files, o.S("note"))
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, v)
				}
				fmt.Fprintf(e.Stdout, "Applied policy version %d; it decides from the next request on.\n", v.Version)
				return nil
			}},
		{name: "show", short: "Print the policies in force", admin: true, json: true,
			run: fetch((*client.Client).Policies, func(w io.Writer, v client.PolicyVersion) {
				fmt.Fprintf(w, "# policy version %d (%s)\n", v.Version, orDash(v.Note))
				names := make([]string, 0, len(v.Files))
				for n := range v.Files {
					names = append(names, n)
				}
				slices.Sort(names)
				for _, n := range names {
					fmt.Fprintf(w, "\n# --- %s ---\n%s", n, v.Files[n])
				}
			})},
		{name: "history", short: "List applied policy versions", admin: true, json: true,
			run: fetch((*client.Client).PolicyHistory, tableOf([]string{"VERSION", "APPLIED", "BY", "NOTE"}, "", func(v client.PolicyVersion) []string {
				return []string{fmt.Sprint(v.Version), fmtTime(&v.CreatedAt), v.CreatedBy, orDash(v.Note)}
			}))},
		{name: "rollback", args: "[VERSION]", short: "Apply an earlier version again (default: the one before)", admin: true, json: true,
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				var target int64
				if len(args) == 1 {
					if _, err := fmt.Sscan(args[0], &target); err != nil {
						return fmt.Errorf("%w: VERSION must be a number", ErrUsage)
					}
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				v, err := c.RollbackPolicies(ctx, target)
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, v)
				}
				fmt.Fprintf(e.Stdout, "Rolled back: version %d is in force (%s).\n", v.Version, v.Note)
				return nil
			}},
		{name: "whatif", args: "DIR", short: "Replay recorded calls against candidate policies, before applying them", admin: true, json: true,
			flags: func(fs *flag.FlagSet, o *opts) { o.str(fs, "since", "7d", "replay calls since: 7d, 24h or a date") },
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 1, "a directory of .cedar files"); err != nil {
					return err
				}
				_, files, err := compileDir(e, args[0])
				if err != nil {
					return err
				}
				since, err := parseSince(o.S("since"), time.Now())
				if err != nil {
					return fmt.Errorf("--since %w", err)
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				n, changes, err := c.WhatIf(ctx, files, since)
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(e.Stdout, map[string]any{"replayed": n, "changes": changes})
				}
				rows := [][]string{}
				for _, ch := range changes {
					rows = append(rows, []string{ch.Principal, ch.From + " → " + ch.To, strings.Join(ch.Reasons, ","), fmt.Sprint(ch.Calls), ch.Example})
				}
				fmt.Fprintf(e.Stdout, "Replayed %d recorded calls; %d group(s) would change.\n\n", n, len(changes))
				table(e.Stdout, []string{"PRINCIPAL", "CHANGE", "DECIDED BY", "CALLS", "EXAMPLE"}, rows)
				return nil
			}},
	}}
}
