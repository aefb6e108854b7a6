package engine_test

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/scripting"
)

// scriptWorkerEnv makes the test binary a script worker: the process
// isolation re-executes the test binary, as ferry re-executes ferry.
const scriptWorkerEnv = "FERRY_ENGINE_TEST_SCRIPT_WORKER"

// serveScriptWorker turns this process into a script worker when it was
// started as one; TestMain calls it first.
func serveScriptWorker() {
	if os.Getenv(scriptWorkerEnv) != "1" {
		return
	}
	if err := scripting.ServeWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(2)
	}
	os.Exit(0)
}

// workerPoolOptions starts workers from this test binary.
func workerPoolOptions(t testing.TB) scripting.PoolOptions {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	return scripting.PoolOptions{Command: exe, Args: []string{}, Env: append(os.Environ(), scriptWorkerEnv+"=1")}
}
