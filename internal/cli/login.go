package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

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

With --oidc, logs in through the organisation's identity provider (oidc_login
in the gateway's configuration) with the OAuth 2.0 device flow (RFC 8628): it
prints a URL and a code to enter there, waits for you to approve, and exchanges
the provider's ID token for a session. Your groups decide your teams and roles.

--step-up re-checks a TOTP code for the current session, for actions that
policies allow only after a recent second factor.`,
		flags: func(fs *flag.FlagSet, o *opts) {
			o.str(fs, "user", "", "user name or id")
			o.bool(fs, "password-stdin", "read the password from the first line of stdin")
			o.str(fs, "code", "", "the current TOTP code (when the user has TOTP)")
			o.bool(fs, "step-up", "re-check a TOTP code for the current session (GATEHOUSE_ADMIN_KEY)")
			o.bool(fs, "oidc", "log in through the organisation's identity provider (device flow)")
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
			if o.B("oidc") {
				return loginOIDC(ctx, e, client.New(o.addr, ""))
			}
			if !o.set("user") || !o.B("password-stdin") {
				return fmt.Errorf("%w: --user and --password-stdin (or --oidc) are required", ErrUsage)
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

// loginOIDC runs the device flow against the identity provider the gateway
// names, then exchanges the ID token for a session.
func loginOIDC(ctx context.Context, e *Env, c *client.Client) error {
	info, err := c.OIDCInfo(ctx)
	if err != nil {
		return err
	}
	p, err := oidc.NewProvider(ctx, info.Issuer)
	if err != nil {
		return fmt.Errorf("identity provider %s: %w", info.Issuer, err)
	}
	ep := p.Endpoint()
	if ep.DeviceAuthURL == "" {
		return fmt.Errorf("identity provider %s offers no device flow (device_authorization_endpoint); log in with a password instead", info.Issuer)
	}
	conf := oauth2.Config{ClientID: info.ClientID, Endpoint: ep, Scopes: info.Scopes}
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return fmt.Errorf("identity provider: starting the device flow: %w", err)
	}
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(e.Stderr, "Open %s\n(code %s) and approve; waiting…\n", da.VerificationURIComplete, da.UserCode)
	} else {
		fmt.Fprintf(e.Stderr, "Open %s and enter the code %s; waiting…\n", da.VerificationURI, da.UserCode)
	}
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		return fmt.Errorf("identity provider: %w", err)
	}
	idToken, _ := tok.Extra("id_token").(string)
	if idToken == "" {
		return errors.New("identity provider: the token response carries no id_token (is the openid scope allowed for this client?)")
	}
	session, exp, err := c.LoginOIDC(ctx, idToken)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "Logged in until %s.\n\n    export GATEHOUSE_ADMIN_KEY=%s\n", exp.Local().Format("2006-01-02 15:04"), session)
	return nil
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
		{name: "logout", args: "USER", short: "End every login session of a user (password, factors and keys stay)", admin: true,
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 1, "a user name or id"); err != nil {
					return err
				}
				c, err := o.client(e)
				if err != nil {
					return err
				}
				if err := c.EndSessions(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Ended every session of %s.\n", args[0])
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
