// Command gatehouse is the Gatehouse gateway and its command line, in one
// binary. See 'gatehouse --help'.
package main

import (
	"context"
	"os"

	"github.com/gatehouse-gw/gatehouse/internal/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], &cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}))
}
