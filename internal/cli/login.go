package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

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
With --oidc --browser it uses the browser instead: authorization code with PKCE,
redirected back to a listener on 127.0.0.1 that lives for this login only.

--step-up re-checks a TOTP code for the current session, for actions that
policies allow only after a recent second factor.`,
		flags: func(fs *flag.FlagSet, o *opts) {
			o.str(fs, "user", "", "user name or id")
			o.bool(fs, "password-stdin", "read the password from the first line of stdin")
			o.str(fs, "code", "", "the current TOTP code (when the user has TOTP)")
			o.bool(fs, "step-up", "re-check a TOTP code for the current session (GATEHOUSE_ADMIN_KEY)")
			o.bool(fs, "oidc", "log in through the organisation's identity provider (device flow)")
			o.bool(fs, "browser", "with --oidc: use the browser (authorization code with PKCE, RFC 8252 loopback redirect) instead of the device flow")
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
				return loginOIDC(ctx, e, client.New(o.addr, ""), o.B("browser"))
			}
			if !o.set("user") || !o.B("password-stdin") {
				return fmt.Errorf("%w: --user and --password-stdin (or --oidc) are required", ErrUsage)
			}
			pw, err := readSecret(e)
			if err != nil {
				return err
			}
			ls, err := client.New(o.addr, "").LoginSession(ctx, o.S("user"), pw, o.S("code"))
			if err != nil {
				return err
			}
			if ls.EnrollmentOnly {
				fmt.Fprintf(e.Stdout, "This gateway requires a second factor and %s has none yet: this session may only enrol one, until %s.\n\n"+
					"    export GATEHOUSE_ADMIN_KEY=%s\n    printf '%%s\\n' \"$PASSWORD\" | gatehouse users totp-enroll --password-stdin\n    gatehouse users totp-confirm CODE\n\n"+
					"then log in again with --code.\n", termSafe(o.S("user")), ls.ExpiresAt.Local().Format("2006-01-02 15:04"), ls.Session)
				return nil
			}
			fmt.Fprintf(e.Stdout, "Logged in until %s.\n\n    export GATEHOUSE_ADMIN_KEY=%s\n", ls.ExpiresAt.Local().Format("2006-01-02 15:04"), ls.Session)
			return nil
		}}
}

// loginOIDC runs the device flow against the identity provider the gateway
// names, then exchanges the ID token for a session.
func loginOIDC(ctx context.Context, e *Env, c *client.Client, browser bool) error {
	info, err := c.OIDCInfo(ctx)
	if err != nil {
		return err
	}
	p, err := oidc.NewProvider(ctx, info.Issuer)
	if err != nil {
		return fmt.Errorf("identity provider %s: %w", info.Issuer, err)
	}
	ep := p.Endpoint()
	conf := oauth2.Config{ClientID: info.ClientID, Endpoint: ep, Scopes: info.Scopes}
	var tok *oauth2.Token
	switch {
	case browser:
		tok, err = browserFlow(ctx, e, conf)
	case ep.DeviceAuthURL == "":
		return fmt.Errorf("identity provider %s offers no device flow (device_authorization_endpoint); use --browser", info.Issuer)
	default:
		tok, err = deviceFlow(ctx, e, conf)
	}
	if err != nil {
		return err
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

// deviceFlow runs the OAuth 2.0 device authorization grant (RFC 8628).
func deviceFlow(ctx context.Context, e *Env, conf oauth2.Config) (*oauth2.Token, error) {
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return nil, fmt.Errorf("identity provider: starting the device flow: %w", err)
	}
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(e.Stderr, "Open %s\n(code %s) and approve; waiting…\n", da.VerificationURIComplete, da.UserCode)
	} else {
		fmt.Fprintf(e.Stderr, "Open %s and enter the code %s; waiting…\n", da.VerificationURI, da.UserCode)
	}
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		return nil, fmt.Errorf("identity provider: %w", err)
	}
	return tok, nil
}

// browserFlow runs the authorization code grant with PKCE and a loopback
// redirect (RFC 8252): the provider sends the browser back to a listener on
// 127.0.0.1 that lives for this login only.
func browserFlow(ctx context.Context, e *Env, conf oauth2.Config) (*oauth2.Token, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	conf.RedirectURL = "http://" + ln.Addr().String() + "/callback"
	verifier, state := oauth2.GenerateVerifier(), rand.Text()
	type result struct {
		code string
		err  error
	}
	done := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var res result
		switch {
		case r.URL.Path != "/callback":
			http.NotFound(w, r)
			return
		case q.Get("state") != state:
			res.err = errors.New("identity provider: the callback's state does not match this login")
		case q.Get("error") != "":
			res.err = fmt.Errorf("identity provider: %s %s", q.Get("error"), q.Get("error_description"))
		default:
			res.code = q.Get("code")
		}
		if res.err != nil {
			http.Error(w, res.err.Error(), http.StatusBadRequest)
		} else {
			fmt.Fprintln(w, "Gatehouse: logged in. You can close this window.")
		}
		select {
		case done <- res:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
	fmt.Fprintf(e.Stderr, "Open this URL to log in (waiting up to 5 minutes):\n\n    %s\n\n", authURL)
	if e.OpenBrowser != nil {
		if err := e.OpenBrowser(authURL); err != nil {
			fmt.Fprintf(e.Stderr, "Could not open a browser (%v); open the URL yourself.\n", err)
		}
	}
	wait, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	select {
	case res := <-done:
		if res.err != nil {
			return nil, res.err
		}
		tok, err := conf.Exchange(ctx, res.code, oauth2.VerifierOption(verifier))
		if err != nil {
			return nil, fmt.Errorf("identity provider: %w", err)
		}
		return tok, nil
	case <-wait.Done():
		return nil, errors.New("identity provider: no login within 5 minutes")
	}
}

func usersCmd() *command {
	return &command{name: "users", short: "Passwords, second factors and lockouts of users", sub: append([]*command{
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
			run: withArg("a user name or id", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				if err := c.EndSessions(ctx, arg); err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Ended every session of %s.\n", arg)
				return nil
			})},
		{name: "totp-enroll", short: "Start TOTP enrolment for your own user (from a login session)", admin: true,
			long: "Replacing TOTP needs the current code (--code) or a recovery code (--recovery-code); a user without a second factor enrols within minutes of logging in, or later with the password (--password-stdin).",
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "code", "", "the current TOTP code (replacing TOTP)")
				o.str(fs, "recovery-code", "", "a recovery code instead of --code")
				o.bool(fs, "password-stdin", "read your password from the first line of stdin (a user without a second factor, session older than the step-up window)")
			},
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				c, err := o.client(e)
				if err != nil {
					return err
				}
				proof := client.FactorProof{Code: o.S("code"), RecoveryCode: o.S("recovery-code")}
				if o.B("password-stdin") {
					if proof.Password, err = readSecret(e); err != nil {
						return err
					}
				}
				secret, url, err := c.EnrollTOTPWithProof(ctx, proof)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Add this to your authenticator app, then run 'gatehouse users totp-confirm CODE':\n\n    %s\n\n    secret: %s\n", url, secret)
				return nil
			}},
		{name: "totp-confirm", args: "CODE", short: "Confirm TOTP enrolment; prints recovery codes once", admin: true,
			run: withArg("the current code", func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
				codes, err := c.ConfirmTOTP(ctx, arg)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "TOTP is on. Recovery codes (each works once; shown once):\n\n    %s\n", strings.Join(codes, "\n    "))
				return nil
			})},
	}, lockoutCmds()...)}
}
