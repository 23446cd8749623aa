// Command gatehouse is the Gatehouse gateway and its command line, in one
// binary. See 'gatehouse --help'.
package main

import (
	"context"
	"os"

	"github.com/gatehouse-gw/gatehouse/internal/cli"
	"github.com/gatehouse-gw/gatehouse/internal/server"
)

// Package variables are initialised before main runs: the earliest point
// this package has to stop the heap profiler's sampling.
var _ = func() bool { server.SetMemProfileRate(os.Getenv); return true }()

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], &cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}))
}
