package scripting

import (
	"context"
	"flag"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// workerEnv makes the test binary a script worker: the process-isolation
// tests re-execute the test binary itself, as ferry re-executes ferry.
const workerEnv = "FERRY_TEST_SCRIPT_WORKER"

var update = flag.Bool("update", false, "rewrite golden files")

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		if err := ServeWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testPoolOptions re-executes the test binary as a worker.
func testPoolOptions(t testing.TB) PoolOptions {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	opts := PoolOptions{Command: exe, Args: []string{}, Env: append(os.Environ(), workerEnv+"=1")}
	if raceEnabled {
		opts.MemoryLimit = 64 << 30
	}
	return opts
}

func skipUnderRace(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's shadow memory counts against the worker's memory limit")
	}
}

func newTestPool(t testing.TB, opts PoolOptions) *Pool {
	t.Helper()
	base := testPoolOptions(t)
	base.Workers = opts.Workers
	if opts.MemoryLimit != 0 {
		base.MemoryLimit = opts.MemoryLimit
	}
	p, err := NewPool(base)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// sharedPool is one worker pool for the tests that do not kill workers on
// purpose, so the suite starts few processes.
var sharedPool = struct {
	once sync.Once
	pool *Pool
}{}

func isolations(t *testing.T) map[string]Options {
	sharedPool.once.Do(func() {
		opts := testPoolOptions(t)
		opts.Workers = 2
		p, err := NewPool(opts)
		require.NoError(t, err)
		sharedPool.pool = p
	})
	return map[string]Options{
		"none":    {Isolation: IsolationNone},
		"process": {Isolation: IsolationProcess, Pool: sharedPool.pool},
	}
}

func compile(t testing.TB, name, src string, opts Options) *Script {
	t.Helper()
	s, err := Compile(context.Background(), name, []byte(src), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}
