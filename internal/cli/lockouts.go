package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/client"
)

// lockoutCmds are the users subcommands for attempt limits and factor resets.
func lockoutCmds() []*command {
	return []*command{
		{name: "lockouts", short: "List users, login names and source addresses that are locked or have failed attempts", admin: true, json: true,
			run: fetch((*client.Client).Lockouts, tableOf([]string{"SUBJECT", "STATE", "FAILURES", "LOCKS", "LAST SOURCE", "LAST USER AGENT"}, "", func(l client.Lockout) []string {
				state := "failures"
				if l.Locked {
					state = "LOCKED until " + fmtTime(l.LockedUntil)
				}
				return []string{l.Subject, state, strconv.Itoa(l.Failures), strconv.Itoa(l.Locks), orDash(l.LastSource), orDash(l.LastUserAgent)}
			}))},
		{name: "unlock", args: "USER", short: "Clear a user's lockouts (or, with --subject, one subject such as source:203.0.113.9)", admin: true, json: true,
			long: "Clears the attempt-limit counters of USER's password, TOTP and recovery codes, and of its login name.\nWith --subject and no USER, clears one subject from 'gatehouse users lockouts'.",
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "subject", "", "clear this one subject instead (e.g. source:203.0.113.9)")
			},
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if o.set("subject") == (len(args) == 1) || len(args) > 1 {
					return fmt.Errorf("%w: give a user name or id, or --subject", ErrUsage)
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				var n int64
				what := o.S("subject")
				if len(args) == 1 {
					what = args[0]
					n, err = c.UnlockUser(ctx, what)
				} else {
					n, err = c.ClearLockout(ctx, what)
				}
				if err != nil {
					return err
				}
				return output(e, o, map[string]any{"unlocked": what, "cleared": n}, func(w io.Writer, _ map[string]any) {
					fmt.Fprintf(w, "Unlocked %s (%d counters cleared).\n", what, n)
				})
			}},
		{name: "reset-factors", args: "USER", short: "Remove a user's TOTP, recovery codes and passkeys; ends the user's sessions", admin: true,
			run: withArg("a user name or id", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				if err := c.ResetFactors(ctx, arg); err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Second factors of %s removed and its sessions ended; the user enrols again after logging in with the password.\n", arg)
				return nil
			})},
	}
}
