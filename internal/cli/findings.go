package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
)

func findingsCmd() *command {
	transition := func(verb, short string) *command {
		return &command{name: verb, args: "FINDING_ID --reason TEXT", short: short, admin: true, json: true,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "reason", "", "why (required; recorded in the finding's history and the ledger)")
			},
			run: withArg("a finding id", func(ctx context.Context, e *Env, o *opts, c *client.Client, id string) error {
				if o.S("reason") == "" {
					return fmt.Errorf("%w: --reason is required: say why", ErrUsage)
				}
				f, err := c.SetFindingState(ctx, id, verb, o.S("reason"))
				if err != nil {
					return err
				}
				return output(e, o, f, func(w io.Writer, f client.Finding) {
					fmt.Fprintf(w, "Finding %s is %s (by %s: %s).\n", f.ID, f.State, f.StateBy, f.StateReason)
				})
			})}
	}
	return &command{name: "findings", short: "Audit findings: run the rules, list, acknowledge, resolve, dismiss",
		long: `Findings are what the audit rules report: unused, never-expiring, old,
uncapped or unscoped keys; keys of disabled principals; admins and users
without a second factor; usage anomalies against each key's own baseline;
risky configuration; a log not verified recently. The gateway runs every rule
on a schedule (audit.interval); 'findings run' runs them now. A finding that
recurs is the same finding, updated. docs/audits.md explains every rule.`,
		sub: []*command{
			{name: "run", short: "Evaluate every rule now", admin: true, json: true,
				run: fetch((*client.Client).RunFindings, func(w io.Writer, res client.RunResult) {
					fmt.Fprintf(w, "%d rules: %d finding(s) opened, %d still there, %d resolved; %d open in all.\n",
						res.Rules, len(res.Opened), res.Updated, len(res.Resolved), res.Open+len(res.Opened))
				})},
			{name: "list", short: "List findings, most severe first", admin: true, json: true,
				flags: func(fs *flag.FlagSet, o *opts) {
					o.str(fs, "state", "open", "open, acknowledged, resolved, dismissed, or all")
					o.str(fs, "severity", "", "low, medium or high")
					o.str(fs, "rule", "", "one rule, e.g. keys.no_expiry")
					o.str(fs, "subject", "", "a key, principal, budget … id")
					o.str(fs, "since", "", "last seen since: 7d, 24h, a date or an RFC 3339 time")
				},
				run: fetchWith(func(ctx context.Context, c *client.Client, o *opts) ([]client.Finding, error) {
					f := client.FindingFilter{State: o.S("state"), Severity: o.S("severity"), Rule: o.S("rule"), Subject: o.S("subject")}
					if f.State == "all" {
						f.State = ""
					}
					var err error
					if f.Since, err = parseSince(o.S("since"), time.Now()); err != nil {
						return nil, fmt.Errorf("%w: --since %v", ErrUsage, err)
					}
					return c.ListFindings(ctx, f)
				}, printFindings)},
			{name: "show", args: "FINDING_ID", short: "Show a finding with its evidence and history", admin: true, json: true,
				run: fetchArg("a finding id", (*client.Client).Finding, showFinding)},
			transition("ack", "Acknowledge a finding (someone is on it)"),
			transition("resolve", "Resolve a finding (it was fixed)"),
			transition("dismiss", "Dismiss a finding as a false positive"),
		}}
}

// printFindings prints findings as a table, most severe first as listed.
var printFindings = tableOf([]string{"ID", "SEVERITY", "STATE", "RULE", "FINDING", "LAST SEEN"}, "No findings.", func(f client.Finding) []string {
	return []string{f.ID, f.Severity, f.State, f.Rule, f.Title, f.LastSeen.Local().Format("2006-01-02 15:04")}
})

func showFinding(w io.Writer, f client.Finding) {
	fmt.Fprintf(w, "%s  %s  %s\n%s\n\n", f.ID, strings.ToUpper(f.Severity), f.Rule, f.Title)
	fmt.Fprintf(w, "subject:     %s %s %s\n", f.Subject.Kind, f.Subject.ID, f.Subject.Name)
	fmt.Fprintf(w, "state:       %s (by %s at %s) %s\n", f.State, f.StateBy, f.StateAt.Local().Format(time.RFC3339), f.StateReason)
	fmt.Fprintf(w, "seen:        %d times, first %s, last %s\n", f.Occurrences, f.FirstSeen.Local().Format(time.RFC3339), f.LastSeen.Local().Format(time.RFC3339))
	fmt.Fprintf(w, "evidence:    %s\n", f.Evidence.Summary)
	for k, v := range f.Evidence.Values {
		fmt.Fprintf(w, "             %s = %d\n", k, v)
	}
	if len(f.Evidence.Items) > 0 {
		fmt.Fprintf(w, "             %s\n", strings.Join(f.Evidence.Items, ", "))
	}
	if len(f.Evidence.RequestIDs) > 0 {
		fmt.Fprintf(w, "requests:    %s\n", strings.Join(f.Evidence.RequestIDs, " "))
		fmt.Fprintf(w, "ledger:      %v (gatehouse audit show REQUEST_ID proves each)\n", f.Evidence.LedgerIndexes)
	}
	fmt.Fprintln(w, "\nhistory:")
	for _, h := range f.History {
		fmt.Fprintf(w, "  %s  %-12s by %s  %s  (ledger #%d)\n", h.At.Local().Format(time.RFC3339), h.State, h.By, h.Reason, h.LedgerIndex)
	}
}
