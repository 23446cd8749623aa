package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/gatehouse-gw/gatehouse/client"
)

// The one way a command prints data: --json prints the value as JSON, else
// text prints it for people. Both go through termSafe (printJSON; output for
// the whole text, not only tables), so strings a caller chose or stored
// (names, user agents, model ids, reasons, policy text) cannot drive the
// terminal.

// runFunc is a command's run function.
type runFunc = func(ctx context.Context, e *Env, o *opts, args []string) error

// output prints v as JSON with --json, else with text, escaped by termSafe
// (which keeps newlines and tabs, and leaves text a table escaped already as
// it is).
func output[T any](e *Env, o *opts, v T, text func(io.Writer, T)) error {
	if o.json {
		return printJSON(e.Stdout, v)
	}
	var b strings.Builder
	text(&b, v)
	_, err := io.WriteString(e.Stdout, termSafe(b.String()))
	return err
}

// fetch makes the run function of an admin command that takes no argument,
// gets one value from the admin API and prints it (output). get has the
// shape of a client method expression, e.g. (*client.Client).ListTeams.
func fetch[T any](get func(c *client.Client, ctx context.Context) (T, error), text func(io.Writer, T)) runFunc {
	return fetchWith(func(ctx context.Context, c *client.Client, _ *opts) (T, error) { return get(c, ctx) }, text)
}

// fetchWith is fetch for a command whose flags shape the request.
func fetchWith[T any](get func(ctx context.Context, c *client.Client, o *opts) (T, error), text func(io.Writer, T)) runFunc {
	return func(ctx context.Context, e *Env, o *opts, args []string) error {
		if err := nargs(args, 0, "no arguments"); err != nil {
			return err
		}
		c, err := o.client(e)
		if err != nil {
			return err
		}
		v, err := get(ctx, c, o)
		if err != nil {
			return err
		}
		return output(e, o, v, text)
	}
}

// fetchArg is fetch for a command that takes one argument, described by
// what. get has the shape of a client method expression, e.g.
// (*client.Client).Key.
func fetchArg[T any](what string, get func(c *client.Client, ctx context.Context, arg string) (T, error), text func(io.Writer, T)) runFunc {
	return withArg(what, func(ctx context.Context, e *Env, o *opts, c *client.Client, arg string) error {
		v, err := get(c, ctx, arg)
		if err != nil {
			return err
		}
		return output(e, o, v, text)
	})
}

// tableOf prints a list as a table: header, then one row a value. An empty
// list prints none instead, when it is not "".
func tableOf[T any](header []string, none string, row func(T) []string) func(io.Writer, []T) {
	return func(w io.Writer, vs []T) {
		if len(vs) == 0 && none != "" {
			fmt.Fprintln(w, none)
			return
		}
		rows := make([][]string, 0, len(vs))
		for _, v := range vs {
			rows = append(rows, row(v))
		}
		table(w, header, rows)
	}
}
