package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/ferry-sync/ferry/scripting"
)

// TestMain lets the test binary serve as a script worker: the script pool
// re-executes the running executable with the worker subcommand, exactly as
// the ferry binary re-executes itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == scripting.WorkerCommand {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == cliCommand {
		// A test that needs a real ferry process (to stop, continue or kill
		// it) runs the test binary as the CLI.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[2:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if raceEnabled {
		// The race detector's shadow memory counts against the workers'
		// limit: give them room.
		os.Setenv(memoryLimitEnv, "16384") //nolint:errcheck
	}
	os.Exit(m.Run())
}

// cliCommand makes the test binary run as the ferry CLI (see ferryProcess).
const cliCommand = "__ferry-cli"
