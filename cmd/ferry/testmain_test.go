package main

import (
	"context"
	"os"
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
	if raceEnabled {
		// The race detector's shadow memory counts against the workers'
		// limit: give them room.
		os.Setenv(memoryLimitEnv, "16384") //nolint:errcheck
	}
	os.Exit(m.Run())
}
