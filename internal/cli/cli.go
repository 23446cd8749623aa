// Package cli is Gatehouse's command line: `gatehouse serve` runs the gateway,
// every other command talks to a running gateway's admin API through package
// client (GATEHOUSE_ADDR, GATEHOUSE_ADMIN_KEY). Commands that print data take
// --json for machine-readable output.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/gatehouse-gw/gatehouse/client"
)

// Env is what a command can touch of the outside world.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// OpenBrowser opens a URL for the user (login --oidc --browser); nil: the
	// URL is printed for the user to open.
	OpenBrowser func(url string) error
}

// command is one node of the command tree.
type command struct {
	name  string
	args  string // usage after the name, e.g. "ID"
	short string
	long  string
	flags func(fs *flag.FlagSet, o *opts)
	run   func(ctx context.Context, e *Env, o *opts, args []string) error
	sub   []*command
	admin bool // talks to the admin API: gets --addr and --admin-key
	json  bool // prints data: gets --json
}

// opts holds every flag value; each command binds the ones it uses.
type opts struct {
	addr, adminKey string
	json           bool
	v              map[string]*string
	b              map[string]*bool
	list           map[string]*listFlag
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func (o *opts) str(fs *flag.FlagSet, name, def, usage string) {
	o.v[name] = fs.String(name, def, usage)
}
func (o *opts) bool(fs *flag.FlagSet, name string, usage string) {
	o.b[name] = fs.Bool(name, false, usage)
}
func (o *opts) strs(fs *flag.FlagSet, name, usage string) {
	l := &listFlag{}
	o.list[name] = l
	fs.Var(l, name, usage)
}
func (o *opts) S(name string) string   { return *o.v[name] }
func (o *opts) B(name string) bool     { return *o.b[name] }
func (o *opts) L(name string) []string { return *o.list[name] }
func (o *opts) set(name string) bool   { return o.v[name] != nil && *o.v[name] != "" }

// ErrUsage marks a usage error: exit status 2.
var ErrUsage = errors.New("usage")

// Run runs the command line args (without the program name) and returns the
// exit status.
func Run(ctx context.Context, args []string, e *Env) int {
	err := dispatch(ctx, root(), []string{"gatehouse"}, args, e)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		if err != ErrUsage { // a message of its own; a bare ErrUsage was explained already
			fmt.Fprintf(e.Stderr, "gatehouse: %s (see --help)\n", strings.TrimPrefix(err.Error(), "usage: "))
		}
		return 2
	}
	fmt.Fprintln(e.Stderr, "gatehouse:", err)
	return 1
}

func dispatch(ctx context.Context, c *command, path, args []string, e *Env) error {
	if len(c.sub) > 0 {
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			printGroupHelp(e.Stdout, c, path)
			if len(args) == 0 {
				return ErrUsage
			}
			return nil
		}
		for _, s := range c.sub {
			if s.name == args[0] {
				return dispatch(ctx, s, append(path, s.name), args[1:], e)
			}
		}
		fmt.Fprintf(e.Stderr, "%s: unknown command %q\n\n", strings.Join(path, " "), args[0])
		printGroupHelp(e.Stderr, c, path)
		return ErrUsage
	}
	fs := flag.NewFlagSet(strings.Join(path, " "), flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	o := &opts{v: map[string]*string{}, b: map[string]*bool{}, list: map[string]*listFlag{}}
	if c.admin {
		fs.StringVar(&o.addr, "addr", envOr(e, "GATEHOUSE_ADDR", "http://127.0.0.1:8081"), "admin API address (env GATEHOUSE_ADDR)")
		fs.StringVar(&o.adminKey, "admin-key", "", "admin key (env GATEHOUSE_ADMIN_KEY; prefer the env var: flags show in ps)")
	}
	if c.json {
		fs.BoolVar(&o.json, "json", false, "print JSON")
	}
	if c.flags != nil {
		c.flags(fs, o)
	}
	fs.Usage = func() {
		w := e.Stderr
		fmt.Fprintf(w, "Usage: %s [flags] %s\n\n%s\n", strings.Join(path, " "), c.args, c.short)
		if c.long != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.long))
		}
		fmt.Fprintln(w, "\nFlags:")
		fs.PrintDefaults()
	}
	// Flags may come after positional arguments, as people type them.
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(e.Stdout)
				return err
			}
			return ErrUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if c.admin && o.adminKey == "" {
		o.adminKey = e.Getenv("GATEHOUSE_ADMIN_KEY")
	}
	return c.run(ctx, e, o, pos)
}

func envOr(e *Env, name, def string) string {
	if v := e.Getenv(name); v != "" {
		return v
	}
	return def
}

func printGroupHelp(w io.Writer, c *command, path []string) {
	fmt.Fprintf(w, "Usage: %s <command> [flags]\n\n", strings.Join(path, " "))
	if c.long != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(c.long))
	} else if c.short != "" {
		fmt.Fprintf(w, "%s\n\n", c.short)
	}
	fmt.Fprintln(w, "Commands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range c.sub {
		fmt.Fprintf(tw, "  %s\t%s\n", s.name, s.short)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags.\n", strings.Join(path, " "))
}

// withArg makes the run function of an admin command that takes one
// argument, described by what: it checks the arguments and builds the client.
func withArg(what string, fn func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error) func(context.Context, *Env, *opts, []string) error {
	return func(ctx context.Context, e *Env, o *opts, args []string) error {
		if err := nargs(args, 1, what); err != nil {
			return err
		}
		c, err := o.client(e)
		if err != nil {
			return err
		}
		return fn(ctx, e, o, c, args[0])
	}
}

func nargs(args []string, n int, what string) error {
	if len(args) != n {
		return fmt.Errorf("%w: want %s", ErrUsage, what)
	}
	return nil
}

func (o *opts) client(e *Env) (*client.Client, error) {
	if o.adminKey == "" {
		return nil, errors.New("no admin key: set GATEHOUSE_ADMIN_KEY (printed by the first `gatehouse serve`) or pass --admin-key")
	}
	return client.New(o.addr, o.adminKey), nil
}

func printJSON(w io.Writer, v any) error {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := io.WriteString(w, termSafe(b.String())) // the same JSON value, with no terminal controls
	return err
}

func table(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, termSafe(strings.Join(r, "\t")))
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func root() *command {
	return &command{
		name: "gatehouse",
		long: `Gatehouse is a governance gateway for AI APIs: callers get scoped, expiring,
revocable keys; provider keys stay inside; every call is metered.

Start it with 'gatehouse serve' (or 'gatehouse serve --dev' to try it in memory).
The other commands administer a running gateway through its admin API; set
GATEHOUSE_ADDR (default http://127.0.0.1:8081) and GATEHOUSE_ADMIN_KEY.`,
		sub: []*command{serveCmd(), loginCmd(), usersCmd(), keysCmd(), tokensCmd(), providersCmd(), teamsCmd(), principalsCmd(), usageCmd(), budgetsCmd(), spendCmd(), limitsCmd(), pricesCmd(), modelsCmd(), policyCmd(), auditCmd(), findingsCmd(), reviewsCmd(), scanCmd(), ledgerCmd(), kekCmd(), recoverCmd(), versionCmd()},
	}
}

// Version is set at build time with -ldflags "-X …/cli.Version=v1.2.3".
var Version = "dev"

func versionCmd() *command {
	return &command{name: "version", short: "Print the version", run: func(_ context.Context, e *Env, _ *opts, _ []string) error {
		fmt.Fprintln(e.Stdout, "gatehouse", Version)
		return nil
	}}
}
