package engine_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/enginetest"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

// The benchmarks measure whole runs, so run them once each:
//
//	go test -run '^$' -bench . -benchtime 1x ./engine/
//
// (make bench does). Each reports records/s and the peak memory the Go
// runtime held during the measured run.

const benchWarehouseSQL = `
CREATE SCHEMA crm;
CREATE TABLE crm.companies (
    id bigint PRIMARY KEY, name text, vat text, city text, employees integer,
    revenue numeric(14, 2), active boolean, founded date,
    _sdc_batched_at timestamptz NOT NULL);
`

func setupBench(b *testing.B, rows int, target connector.Target, s *project.Sync) *testBundle {
	b.Helper()
	db := dbtest.NewPool(b)
	ctx := context.Background()
	_, err := db.Exec(ctx, benchWarehouseSQL)
	require.NoError(b, err)
	_, err = db.Exec(ctx, `INSERT INTO crm.companies
		SELECT g, 'Company ' || g, 'BE0' || (400000000 + g), 'City ' || (g % 100), g % 5000,
		       (g * 7.25)::numeric(14, 2), g % 3 = 0, date '2000-01-01' + (g % 9000),
		       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
		FROM generate_series(1, $1) g`, rows)
	require.NoError(b, err)
	_, err = db.Exec(ctx, `CREATE INDEX ON crm.companies (_sdc_batched_at); ANALYZE crm.companies`)
	require.NoError(b, err)
	p, err := project.New(nil, map[string]project.Connection{"erp": testConnection}, s)
	require.NoError(b, err)
	eng := engine.New(db, engine.StaticProject(p), engine.Options{Open: only(target)})
	return &testBundle{db: db, eng: eng, proj: p}
}

func benchSync() *project.Sync {
	return &project.Sync{
		Name:   "companies",
		Source: project.Source{Table: "crm.companies"},
		Target: project.TargetRef{Connection: "erp", Object: "partners"},
		Mapping: []project.Field{
			{Source: "name", Target: "name"}, {Source: "vat", Target: "vat"}, {Source: "city", Target: "city"},
			{Source: "employees", Target: "employees"}, {Source: "revenue", Target: "revenue"},
			{Source: "active", Target: "active"}, {Source: "founded", Target: "founded"},
			{Value: []byte(`"CRM"`), Target: "origin"},
		},
	}
}

// peakMemory samples the memory the Go runtime holds from the OS while fn
// runs and returns the highest value in MB.
func peakMemory(fn func()) float64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if v := m.Sys - m.HeapReleased; v > peak.Load() {
			peak.Store(v)
		}
	}
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	fn()
	close(stop)
	wg.Wait()
	sample()
	return float64(peak.Load()) / (1 << 20)
}

func runOnce(b *testing.B, bb *testBundle, opts engine.RunOptions) *engine.RunResult {
	b.Helper()
	res, err := bb.eng.Run(context.Background(), "companies", opts)
	require.NoError(b, err)
	require.Zero(b, res.Counts.Failed)
	return res
}

func resetSync(b *testing.B, bb *testBundle) {
	b.Helper()
	_, err := bb.db.Exec(context.Background(), `DROP TABLE IF EXISTS link_tables.companies; DELETE FROM ferry.bookmarks`)
	require.NoError(b, err)
}

// BenchmarkFullSync100k: a first full sync of 100,000 rows into an
// in-process target with no latency: the engine's own overhead.
func BenchmarkFullSync100k(b *testing.B) {
	const rows = 100_000
	bb := setupBench(b, rows, &enginetest.Discard{}, benchSync())
	measureFullSyncs(b, bb, rows)
}

// measureFullSyncs runs b.N first full syncs of a rows-row scope (the link
// table and bookmark are dropped between them) and reports records/s and
// the peak memory.
func measureFullSyncs(b *testing.B, bb *testBundle, rows int) {
	b.Helper()
	var elapsed time.Duration
	var mb float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		resetSync(b, bb)
		runtime.GC()
		b.StartTimer()
		start := time.Now()
		mb = max(mb, peakMemory(func() {
			res := runOnce(b, bb, engine.RunOptions{})
			require.Equal(b, int64(rows), res.Counts.Inserted)
		}))
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(rows*b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(mb, "peak-MB")
}

// BenchmarkMillion measures the two runs that follow a full sync of a
// 1,000,000-row scope: one with nothing new, one where every row was
// re-stamped but none changed (they stay in the warehouse: no row is read).
func BenchmarkMillion(b *testing.B) {
	const rows = 1_000_000
	target := &enginetest.Discard{}
	bb := setupBench(b, rows, target, benchSync())
	synced := false
	// The later sub-benchmarks start from a synced scope, also when -bench
	// selects them alone.
	ensureSynced := func(b *testing.B) {
		if !synced {
			b.StopTimer()
			runOnce(b, bb, engine.RunOptions{})
			synced = true
			b.StartTimer()
		}
	}
	b.Run("full-sync", func(b *testing.B) {
		if b.N > 1 {
			b.Skip("a full sync happens once; run with -benchtime 1x")
		}
		start := time.Now()
		mb := peakMemory(func() {
			res := runOnce(b, bb, engine.RunOptions{})
			require.Equal(b, int64(rows), res.Counts.Inserted)
		})
		synced = true
		b.ReportMetric(rows/time.Since(start).Seconds(), "records/s")
		b.ReportMetric(mb, "peak-MB")
	})

	b.Run("nothing-new", func(b *testing.B) {
		ensureSynced(b)
		var mb float64
		for i := 0; i < b.N; i++ {
			writes := target.Writes()
			mb = max(mb, peakMemory(func() {
				res := runOnce(b, bb, engine.RunOptions{})
				require.Equal(b, writes, target.Writes(), "no target call")
				b.ReportMetric(float64(res.Counts.Read), "rows-read")
			}))
		}
		b.ReportMetric(mb, "peak-MB")
	})
	b.Run("all-restamped-none-changed", func(b *testing.B) {
		ensureSynced(b)
		var mb float64
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			_, err := bb.db.Exec(context.Background(), `UPDATE crm.companies SET _sdc_batched_at = _sdc_batched_at + interval '400 days'`)
			require.NoError(b, err)
			_, err = bb.db.Exec(context.Background(), `VACUUM ANALYZE crm.companies`)
			require.NoError(b, err)
			b.StartTimer()
			writes := target.Writes()
			mb = max(mb, peakMemory(func() {
				res := runOnce(b, bb, engine.RunOptions{})
				require.Zero(b, res.Counts.Read, "unchanged rows stay in the warehouse")
				require.Equal(b, writes, target.Writes(), "no target call")
				b.ReportMetric(float64(res.Counts.Read), "rows-read")
			}))
		}
		b.ReportMetric(mb, "peak-MB")
	})
	// The runs after that one: the re-stamped million is behind the
	// bookmark, in its window, and nothing is new.
	b.Run("after-restamp-nothing-new", func(b *testing.B) {
		ensureSynced(b)
		b.StopTimer()
		_, err := bb.db.Exec(context.Background(), `UPDATE crm.companies SET _sdc_batched_at = timestamptz '2027-06-01 00:00:00+00'`)
		require.NoError(b, err)
		_, err = bb.db.Exec(context.Background(), `VACUUM ANALYZE crm.companies`)
		require.NoError(b, err)
		runOnce(b, bb, engine.RunOptions{})
		b.StartTimer()
		for i := 0; i < b.N; i++ {
			writes := target.Writes()
			res := runOnce(b, bb, engine.RunOptions{})
			require.Equal(b, writes, target.Writes(), "no target call")
			require.True(b, res.WindowUnchanged, "only past the bookmark is read")
		}
	})
}

// BenchmarkSingleStampBatch: an ELT load stamps 100,000 rows with one
// _sdc_batched_at. After they synced, a run with nothing new must not
// cost a re-read of the whole batch (they are all inside the overlap
// window behind the bookmark, and tied on the stamp).
func BenchmarkSingleStampBatch(b *testing.B) {
	const rows = 100_000
	target := &enginetest.Discard{}
	bb := setupBench(b, rows, target, benchSync())
	_, err := bb.db.Exec(context.Background(), `UPDATE crm.companies SET _sdc_batched_at = timestamptz '2026-06-01 00:00:00+00'`)
	require.NoError(b, err)
	_, err = bb.db.Exec(context.Background(), `VACUUM ANALYZE crm.companies`)
	require.NoError(b, err)
	res := runOnce(b, bb, engine.RunOptions{})
	require.Equal(b, int64(rows), res.Counts.Inserted)
	b.ResetTimer()
	var read int64
	for i := 0; i < b.N; i++ {
		writes := target.Writes()
		res := runOnce(b, bb, engine.RunOptions{})
		require.Equal(b, writes, target.Writes(), "no target call")
		read += res.Counts.Read
	}
	b.ReportMetric(float64(read)/float64(b.N), "rows-read")
}
