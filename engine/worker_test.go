package engine_test

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
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

func TestTransformMemoryBombFailsItsRecordOnly(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's shadow memory counts against the workers' limit")
	}
	t.Parallel()
	s := transformSync(`
def transform(source_record, target_record, pq, target_id=None):
    if source_record["id"] == 2:
        x = ["boom"]
        for i in range(64):
            x = x + x
    return target_record
`)
	b := setupScript(t, s)
	opts := workerPoolOptions(t)
	opts.MemoryLimit = 128 << 20
	pool, err := scripting.NewPool(opts)
	require.NoError(t, err)
	t.Cleanup(func() { pool.Close() })
	b.eng = engine.New(b.db, engine.StaticProject(b.proj), engine.Options{
		Open:       only(b.target),
		ScriptPool: pool,
	})
	b.exec(`INSERT INTO crm.companies (id, name) SELECT g, 'C' || g FROM generate_series(1, 3) g`)
	res, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.NoError(t, err, "the run survives")
	assert.Equal(t, int64(2), res.Counts.Inserted, "the records around the bomb sync")
	assert.Equal(t, int64(1), res.Counts.Failed)
	msg := b.linkError("companies", "2")
	assert.Contains(t, msg, "ran out of memory")
	assert.Contains(t, msg, "source id 2")

	// The next run works with a fresh worker.
	b.exec(`INSERT INTO crm.companies (id, name) VALUES (4, 'C4')`)
	res, err = b.eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.NoError(t, err)
	assert.Equal(t, int64(1), res.Counts.Inserted)
}
