package cli

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/gatehouse-gw/gatehouse/client"
)

// readSecret reads one line from stdin (for --password-stdin).
func readSecret(e *Env) (string, error) {
	line, err := bufio.NewReader(e.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("reading the password from stdin: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func loginCmd() *command {
	return &command{name: "login", short: "Start an admin API session as a user (password + TOTP)", admin: true,
		long: `Logs in to the admin API as a user and prints a session token that works
wherever an admin key goes (export it as GATEHOUSE_ADMIN_KEY). Sessions expire
(session_ttl, 12h) and are ended by 'gatehouse logout' or a password change.

  printf '%s\n' "$PASSWORD" | gatehouse login --user alice --password-stdin --code 123456

--step-up re-checks a TOTP code for the current session, for actions that
policies allow only after a recent second factor.`,
		flags: func(fs *flag.FlagSet, o *opts) {
			o.str(fs, "user", "", "user name or id")
			o.bool(fs, "password-stdin", "read the password from the first line of stdin")
			o.str(fs, "code", "", "the current TOTP code (when the user has TOTP)")
			o.bool(fs, "step-up", "re-check a TOTP code for the current session (GATEHOUSE_ADMIN_KEY)")
		},
		run: func(ctx context.Context, e *Env, o *opts, args []string) error {
			if o.B("step-up") {
				c, err := o.client(e)
				if err != nil {
					return err
				}
				if err := c.StepUp(ctx, o.S("code")); err != nil {
					return err
				}
				fmt.Fprintln(e.Stdout, "Second factor checked; sensitive actions are open for a few minutes.")
				return nil
			}
			if !o.set("user") || !o.B("password-stdin") {
				return fmt.Errorf("%w: --user and --password-stdin are required", ErrUsage)
			}
			pw, err := readSecret(e)
			if err != nil {
				return err
			}
			session, exp, err := client.New(o.addr, "").Login(ctx, o.S("user"), pw, o.S("code"))
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "Logged in until %s.\n\n    export GATEHOUSE_ADMIN_KEY=%s\n", exp.Local().Format("2006-01-02 15:04"), session)
			return nil
		}}
}

func usersCmd() *command {
	return &command{name: "users", short: "Passwords and second factors of users", sub: []*command{
		{name: "password", args: "USER", short: "Set a user's password (ends the user's sessions)", admin: true,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.bool(fs, "password-stdin", "read the password from the first line of stdin (required)")
			},
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 1, "a user name or id"); err != nil {
					return err
				}
				if !o.B("password-stdin") {
					return fmt.Errorf("%w: --password-stdin is required (passwords never go in flags)", ErrUsage)
				}
				pw, err := readSecret(e)
				if err != nil {
					return err
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				if err := c.SetPassword(ctx, args[0], pw); err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Password of %s set; the user's sessions were ended.\n", args[0])
				return nil
			}},
		{name: "totp-enroll", short: "Start TOTP enrolment for your own user (from a login session)", admin: true,
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				c, err := o.client(e)
				if err != nil {
					return err
				}
				secret, url, err := c.EnrollTOTP(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Add this to your authenticator app, then run 'gatehouse users totp-confirm CODE':\n\n    %s\n\n    secret: %s\n", url, secret)
				return nil
			}},
		{name: "totp-confirm", args: "CODE", short: "Confirm TOTP enrolment; prints recovery codes once", admin: true,
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 1, "the current code"); err != nil {
					return err
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				codes, err := c.ConfirmTOTP(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "TOTP is on. Recovery codes (each works once; shown once):\n\n    %s\n", strings.Join(codes, "\n    "))
				return nil
			}},
	}}
}
