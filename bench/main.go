package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(run(os.Args[1:])) }

// run dispatches to a subcommand (processor, rawpipe) or runs the suite.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(args) > 0 && args[0] == "processor":
		err = processorCmd(ctx, args[1:])
	case len(args) > 0 && args[0] == "rawpipe":
		err = rawpipeCmd(ctx, args[1:])
	case len(args) > 0 && args[0] == "state":
		err = stateCmd(ctx, args[1:])
	default:
		var cfg *suiteConfig
		cfg, err = parseSuiteFlags(args)
		if err == nil {
			err = runSuite(ctx, cfg)
		}
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
}
