package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/scan"
)

// ErrLeaked makes scan exit with status 1 when it found keys, as linters do.
var ErrLeaked = errors.New("keys found")

type scanResult struct {
	scan.Match
	KeyID     string `json:"key_id,omitempty"`
	Live      *bool  `json:"live,omitempty"`
	Revoked   bool   `json:"revoked,omitempty"`
	FindingID string `json:"finding_id,omitempty"`
}

func scanCmd() *command {
	return &command{name: "scan", args: "PATH... | - | --git [DIR]", short: "Find leaked Gatehouse keys in files, stdin or git history", admin: true, json: true,
		long: `Finds Gatehouse keys (gk_…, gka_…) by prefix and checksum, so random strings
are not taken for keys. Prints file:line (commit:file:line with --git) and the
key's hint, never the key. With an admin key (GATEHOUSE_ADMIN_KEY) it asks the
gateway which key each one is and whether it is live; with --revoke it revokes
the live ones at once (each revocation is a ledger record and a high finding).
Exit status 1 when a key was found.

Examples:
  gatehouse scan .
  git diff --cached | gatehouse scan -
  gatehouse scan --git --revoke ~/src/app`,
		flags: func(fs *flag.FlagSet, o *opts) {
			o.bool(fs, "git", "scan every commit of the repository (default: the current directory)")
			o.bool(fs, "revoke", "revoke every live key found (needs an admin key)")
		},
		run: runScan}
}

func runScan(ctx context.Context, e *Env, o *opts, args []string) error {
	var found []scan.Match
	add := func(m scan.Match) { found = append(found, m) }
	switch {
	case o.B("git"):
		dir := "."
		if len(args) > 1 {
			return fmt.Errorf("%w: --git takes one repository", ErrUsage)
		}
		if len(args) == 1 {
			dir = args[0]
		}
		if err := scan.Git(ctx, dir, add); err != nil {
			return err
		}
	case len(args) == 0:
		return fmt.Errorf("%w: give paths, - for stdin, or --git", ErrUsage)
	default:
		if err := scan.Paths(args, e.Stdin, add); err != nil {
			return err
		}
	}
	if o.B("revoke") && o.adminKey == "" {
		return fmt.Errorf("%w: --revoke needs an admin key (GATEHOUSE_ADMIN_KEY)", ErrUsage)
	}
	out := make([]scanResult, len(found))
	for i, m := range found {
		out[i].Match = m
	}
	if len(found) > 0 && o.adminKey != "" {
		c, err := o.client(e)
		if err != nil {
			return err
		}
		secrets, sources := make([]string, len(found)), make([]string, len(found))
		for i, m := range found {
			secrets[i], sources[i] = m.Secret.Reveal(), "gatehouse scan: "+m.Where()
		}
		var res []client.LeakResult
		for from := 0; from < len(secrets); from += 1000 {
			to := min(from+1000, len(secrets))
			part, err := c.ReportLeaked(ctx, secrets[from:to], sources[from:to], o.B("revoke"))
			if err != nil {
				for _, m := range found { // what was found is worth showing even when the gateway cannot say more
					fmt.Fprintf(e.Stdout, "%s: %s key %s\n", m.Where(), m.Kind, m.Hint)
				}
				return fmt.Errorf("%d key(s) found; asking the gateway about them failed: %w", len(found), err)
			}
			res = append(res, part...)
		}
		for i, r := range res {
			live := r.Live
			out[i].KeyID, out[i].Live, out[i].Revoked, out[i].FindingID = r.KeyID, &live, r.Revoked, r.FindingID
		}
	}
	if o.json {
		if err := printJSON(e.Stdout, out); err != nil {
			return err
		}
	} else {
		for _, r := range out {
			line := fmt.Sprintf("%s: %s key %s", r.Where(), r.Kind, r.Hint)
			switch {
			case r.Live == nil:
			case r.KeyID == "":
				line += ": not a key of this gateway"
			case r.Revoked:
				line += fmt.Sprintf(": key %s, was live, REVOKED now (finding %s)", r.KeyID, r.FindingID)
			case *r.Live:
				line += fmt.Sprintf(": key %s, LIVE (revoke it: gatehouse scan --revoke, or gatehouse keys revoke %s)", r.KeyID, r.KeyID)
			default:
				line += fmt.Sprintf(": key %s, not live", r.KeyID)
			}
			fmt.Fprintln(e.Stdout, line)
		}
		if len(out) == 0 {
			fmt.Fprintln(e.Stdout, "No Gatehouse keys found.")
		}
	}
	if len(out) > 0 {
		return fmt.Errorf("%d Gatehouse %w", len(out), ErrLeaked)
	}
	return nil
}
