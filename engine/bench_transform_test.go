package engine_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/enginetest"
	"github.com/ferry-sync/ferry/scripting"
)

// benchTransform builds a nested dict from a few columns, as the spec's
// example does: every record crosses into Starlark and back.
const benchTransform = `
def transform(source_record, target_record, pq, target_id=None):
    target_record["address"] = {"city": source_record["city"], "vat": source_record["vat"]}
    if target_id:
        target_record["id"] = target_id
    return target_record
`

// BenchmarkFullSync100kTransform is BenchmarkFullSync100k with a transform,
// in a worker process (the default) and in-process. The aim: within 20% of
// the run without a transform.
func BenchmarkFullSync100kTransform(b *testing.B) {
	const rows = 100_000
	for _, isolation := range []scripting.Isolation{scripting.IsolationProcess, scripting.IsolationNone} {
		b.Run(string(isolation), func(b *testing.B) {
			s := benchSync()
			s.Transform = "bench.star"
			s.TransformSource = []byte(benchTransform)
			bb := setupBench(b, rows, &enginetest.Discard{}, s)
			opts := engine.Options{
				Open:            only(&enginetest.Discard{}),
				ScriptIsolation: isolation,
			}
			if isolation == scripting.IsolationProcess {
				pool, err := scripting.NewPool(workerPoolOptions(b))
				require.NoError(b, err)
				b.Cleanup(func() { pool.Close() })
				opts.ScriptPool = pool
			}
			bb.eng = engine.New(bb.db, engine.StaticProject(bb.proj), opts)
			measureFullSyncs(b, bb, rows)
		})
	}
}
