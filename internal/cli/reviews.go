package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/admin"
)

func reviewsCmd() *command {
	return &command{name: "reviews", short: "Access reviews: reviewers confirm who keeps access",
		long: `An access-review campaign has one item per key and per team membership and
admin role in its scope, each assigned to reviewers (the team's admins by
default). Reviewers keep, revoke or reduce each item, with a reason; decisions
take effect at once and are ledger records. Nobody reviews their own access.
Items left undecided at the due date are escalated (alert), or revoked when the
campaign was started with --on-overdue revoke.`,
		sub: []*command{
			{name: "start", short: "Open a campaign", admin: true, json: true,
				flags: func(fs *flag.FlagSet, o *opts) {
					o.str(fs, "scope", "org", "org or team:NAME")
					o.str(fs, "reviewer", "", "the one reviewer of every item (default: the team's admins)")
					o.str(fs, "due", "7d", "how long reviewers have, e.g. 7d")
					o.str(fs, "on-overdue", "escalate", "escalate or revoke undecided items at the due date")
				},
				run: fetchWith(func(ctx context.Context, c *client.Client, o *opts) (client.Review, error) {
					return c.StartReview(ctx, client.ReviewInput{Scope: o.S("scope"), Reviewer: o.S("reviewer"), Due: o.S("due"), OnOverdue: o.S("on-overdue")})
				}, func(w io.Writer, r client.Review) {
					fmt.Fprintf(w, "Campaign %s (%s): %d items, due %s; undecided items are %s then.\n\n", r.Campaign.ID, r.Campaign.Scope,
						len(r.Items), r.Campaign.Due.Local().Format(time.RFC3339), map[string]string{"revoke": "revoked", "escalate": "escalated"}[r.Campaign.OnOverdue])
					printItems(w, r.Items)
				})},
			{name: "list", args: "[CAMPAIGN_ID]", short: "List campaigns, or one campaign's items", admin: true, json: true,
				run: func(ctx context.Context, e *Env, o *opts, args []string) error {
					c, err := o.client(e)
					if err != nil {
						return err
					}
					if len(args) == 1 {
						r, err := c.Review(ctx, args[0])
						if err != nil {
							return err
						}
						return output(e, o, r, func(w io.Writer, r client.Review) { printItems(w, r.Items) })
					}
					if err := nargs(args, 0, "at most a campaign id"); err != nil {
						return err
					}
					cs, err := c.ListReviews(ctx)
					if err != nil {
						return err
					}
					return output(e, o, cs, tableOf([]string{"ID", "SCOPE", "STATE", "DUE", "DECIDED", "REVOKED", "ESCALATED"}, "", func(x client.Campaign) []string {
						return []string{x.ID, x.Scope, x.State, x.Due.Local().Format("2006-01-02 15:04"),
							fmt.Sprintf("%d/%d", x.Counts.Decided, x.Counts.Total), strconv.Itoa(x.Counts.Revoked), strconv.Itoa(x.Counts.Escalated)}
					}))
				}},
			{name: "decide", args: "ITEM_ID (--keep | --revoke | --reduce) --reason TEXT", short: "Decide an item; it takes effect at once", admin: true, json: true,
				flags: func(fs *flag.FlagSet, o *opts) {
					o.bool(fs, "keep", "the access stays")
					o.bool(fs, "revoke", "revoke the key, or remove the membership or role")
					o.bool(fs, "reduce", "narrow a key: --models, --endpoints, --expires-in")
					o.str(fs, "reason", "", "why (required)")
					o.strs(fs, "models", "reduce: the model patterns the key keeps")
					o.strs(fs, "endpoints", "reduce: the endpoints the key keeps")
					o.str(fs, "expires-in", "", "reduce: expire the key after this long, e.g. 30d")
				},
				run: withArg("an item id", func(ctx context.Context, e *Env, o *opts, c *client.Client, id string) error {
					d := client.Decision{Reason: o.S("reason")}
					n := 0
					for _, v := range []string{"keep", "revoke", "reduce"} {
						if o.B(v) {
							d.Decision = v
							n++
						}
					}
					if n != 1 {
						return fmt.Errorf("%w: give one of --keep, --revoke, --reduce", ErrUsage)
					}
					if d.Reason == "" {
						return fmt.Errorf("%w: --reason is required", ErrUsage)
					}
					d.Models, d.Endpoints = o.L("models"), o.L("endpoints")
					if s := o.S("expires-in"); s != "" {
						span, err := admin.ParseSpan(s)
						if err != nil {
							return fmt.Errorf("%w: --expires-in %v", ErrUsage, err)
						}
						exp := time.Now().Add(span).UTC()
						d.ExpiresAt = &exp
					}
					it, err := c.DecideReview(ctx, id, d)
					if err != nil {
						return err
					}
					return output(e, o, it, func(w io.Writer, it client.ReviewItem) {
						fmt.Fprintf(w, "%s: %s (%s).\n", it.Title, it.Decision, it.Reason)
					})
				})},
			{name: "close", args: "CAMPAIGN_ID", short: "Close a campaign and print its report", admin: true, json: true,
				run: fetchArg("a campaign id", (*client.Client).CloseReview, func(w io.Writer, r client.Review) {
					x := r.Campaign.Counts
					fmt.Fprintf(w, "Campaign %s (%s) closed: %d of %d decided; %d kept, %d revoked, %d reduced, %d escalated.\n\n",
						r.Campaign.ID, r.Campaign.Scope, x.Decided, x.Total, x.Kept, x.Revoked, x.Reduced, x.Escalated)
					printItems(w, r.Items)
				})},
		}}
}

// printItems prints a campaign's items as a table.
var printItems = tableOf([]string{"ITEM", "KIND", "ACCESS", "REVIEWERS", "DECISION", "BY", "REASON"}, "", func(it client.ReviewItem) []string {
	dec := orDash(it.Decision)
	if it.Escalated && it.Decision == "" {
		dec = "escalated"
	}
	return []string{it.ID, it.Kind, it.Title, strings.Join(it.Reviewers, ","), dec, orDash(it.DecidedBy), it.Reason}
})
