package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() { os.Exit(run(os.Args[1:])) }

// run dispatches to a subcommand (processor, rawpipe, state, ingest,
// charts) or runs the suite.
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
	case len(args) > 0 && args[0] == "ingest":
		err = ingestCmd(ctx, args[1:])
	case len(args) > 0 && args[0] == "charts":
		err = chartsCmd(args[1:])
	default:
		lightenHarness()
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

// harnessGCPercent is the suite's own GOGC. The suite's process loads the
// input, paces the latency probe and reads every result, on the same two
// cores as the broker and the system under test; collecting garbage a
// quarter as often leaves more of them to the system it measures. The
// child processes it starts (onceflow, the raw pipe, Kafka Streams) keep
// their defaults: their environment is not changed.
const harnessGCPercent = 400

// lightenHarness sets the suite's GOGC unless the environment sets one.
func lightenHarness() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(harnessGCPercent)
	}
}
