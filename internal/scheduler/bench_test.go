package scheduler_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/enginetest"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/runqueue"
	"github.com/ferry-sync/ferry/internal/scheduler"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

// The scheduler's benchmarks measure one scenario each, once, in real time
// (schedules tick on the wall clock):
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 30m ./internal/scheduler/
//
// (make bench does). Targets are in-process (enginetest.Memory): what is
// measured is the scheduler, the queue, the engine and the warehouse.

// benchWarehouse is a warehouse whose pool fits replicas replicas.
func benchWarehouse(b *testing.B, replicas int) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(dbtest.NewURL(b))
	require.NoError(b, err)
	cfg.MaxConns = int32(replicas) * runqueue.PoolSize(benchWorkers)
	db, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(b, err)
	b.Cleanup(db.Close)
	_, err = db.Exec(context.Background(), `CREATE SCHEMA crm;
CREATE TABLE crm.companies (id int PRIMARY KEY, name text, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
INSERT INTO crm.companies VALUES (1, 'Acme'), (2, 'Globex'), (3, 'Initech');`)
	require.NoError(b, err)
	return db
}

const benchWorkers = 4

func benchProject(b *testing.B, n int, sched *project.Schedule) *projects {
	var syncs []*project.Sync
	for i := 1; i <= n; i++ {
		syncs = append(syncs, &project.Sync{
			Name:     fmt.Sprintf("s%04d", i),
			Source:   project.Source{Table: "crm.companies"},
			Target:   project.TargetRef{Connection: "erp", Object: fmt.Sprintf("o%04d", i)},
			Mapping:  []project.Field{{Source: "name", Target: "name"}},
			Schedule: sched,
		})
	}
	p, err := project.New(nil, map[string]project.Connection{"erp": {Kind: "memory"}}, syncs...)
	require.NoError(b, err)
	return &projects{p: p}
}

type benchReplica struct {
	eng   *engine.Engine
	queue *runqueue.Queue
	sched *scheduler.Scheduler
}

func startBenchReplica(b *testing.B, db *pgxpool.Pool, ps *projects, name string, schedule bool) *benchReplica {
	ctx := context.Background()
	target := enginetest.NewMemory()
	eng := engine.New(db, ps, engine.Options{Open: func(context.Context, project.Connection) (connector.Target, error) { return target, nil }})
	q, err := runqueue.New(runqueue.Options{DB: db, Engine: eng, Replica: name, Workers: benchWorkers})
	require.NoError(b, err)
	require.NoError(b, q.Start(ctx))
	r := &benchReplica{eng: eng, queue: q}
	if schedule {
		r.sched, err = scheduler.New(scheduler.Options{DB: db, Project: ps.Project, Queue: q})
		require.NoError(b, err)
		require.NoError(b, r.sched.Start(ctx))
	}
	b.Cleanup(func() {
		if r.sched != nil {
			_ = r.sched.Stop()
		}
		_ = q.Stop(context.Background())
	})
	return r
}

// firstRuns runs every sync once, so that the measured runs have nothing
// new (link tables and bookmarks in place).
func firstRuns(b *testing.B, r *benchReplica, ps *projects) {
	ctx := context.Background()
	p, _ := ps.Project(ctx)
	for _, s := range p.Syncs {
		res, err := r.eng.Run(ctx, s.Name, engine.RunOptions{})
		require.NoError(b, err)
		require.Equal(b, int64(3), res.Counts.Inserted)
	}
}

// cpuTime is the CPU this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssMB is this process's resident memory now.
func rssMB() float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

// delays are the tick-to-start delays (ms) of the scheduled runs since id.
func delays(b *testing.B, db *pgxpool.Pool, afterID int64) latencies {
	rows, err := db.Query(context.Background(), `SELECT extract(epoch FROM started_at - tick) * 1000 FROM ferry.runs
		WHERE id > $1 AND triggered_by = 'schedule' ORDER BY 1`, afterID)
	require.NoError(b, err)
	defer rows.Close()
	var l latencies
	for rows.Next() {
		var ms float64
		require.NoError(b, rows.Scan(&ms))
		l = append(l, ms)
	}
	require.NoError(b, rows.Err())
	return l
}

type latencies []float64

func (l latencies) p(q int) float64 {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, len(l)*q/100)]
}

func maxRunID(b *testing.B, db *pgxpool.Pool) int64 {
	var id int64
	require.NoError(b, db.QueryRow(context.Background(), `SELECT coalesce(max(id), 0) FROM ferry.runs`).Scan(&id))
	return id
}

// BenchmarkScheduledSyncs: 100 syncs on one-minute schedules, nothing new.
// One replica for two minutes (its CPU and memory: the cost of an idle
// server), then a second replica joins for two more: the tick-to-start
// delay across both.
func BenchmarkScheduledSyncs(b *testing.B) {
	const syncs = 100
	db := benchWarehouse(b, 2)
	ps := benchProject(b, syncs, &project.Schedule{Every: project.Duration{Duration: time.Minute}})
	one := startBenchReplica(b, db, ps, "one", false)
	firstRuns(b, one, ps)
	runtime.GC()

	// Start the scheduler right after a minute boundary, so that the two
	// measured minutes hold two ticks each.
	time.Sleep(time.Until(time.Now().Truncate(time.Minute).Add(time.Minute + time.Second)))
	b.ResetTimer()
	from := maxRunID(b, db)
	var err error
	one.sched, err = scheduler.New(scheduler.Options{DB: db, Project: ps.Project, Queue: one.queue})
	require.NoError(b, err)
	require.NoError(b, one.sched.Start(context.Background()))
	cpu0, wall0 := cpuTime(), time.Now()
	peak := 0.0
	for time.Since(wall0) < 2*time.Minute {
		time.Sleep(time.Second)
		peak = max(peak, rssMB())
	}
	cpu := cpuTime() - cpu0
	time.Sleep(10 * time.Second) // the runs of the last tick end
	alone := delays(b, db, from)
	b.ReportMetric(100*cpu.Seconds()/time.Since(wall0).Seconds(), "idle_cpu_%_of_a_core")
	b.ReportMetric(peak, "idle_rss_MB")
	b.ReportMetric(float64(len(alone)), "runs_one_replica")
	b.ReportMetric(alone.p(50), "delay_one_replica_p50_ms")
	b.ReportMetric(alone.p(99), "delay_one_replica_p99_ms")

	from = maxRunID(b, db)
	startBenchReplica(b, db, ps, "two", true)
	time.Sleep(2*time.Minute + 10*time.Second)
	both := delays(b, db, from)
	b.ReportMetric(float64(len(both)), "runs_two_replicas")
	b.ReportMetric(both.p(50), "delay_two_replicas_p50_ms")
	b.ReportMetric(both.p(99), "delay_two_replicas_p99_ms")
	var dup int
	require.NoError(b, db.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT 1 FROM ferry.runs WHERE triggered_by = 'schedule' GROUP BY sync, tick HAVING count(*) > 1) d`).Scan(&dup))
	require.Zero(b, dup, "a tick ran twice")
}

// BenchmarkSyncsOneReplicaKeeps: 1,000 syncs with nothing new, all due at
// once (one tick of a one-minute schedule), on one replica: how long the
// tick takes to drain, and so how many syncs one replica keeps on a
// one-minute schedule.
func BenchmarkSyncsOneReplicaKeeps(b *testing.B) {
	const syncs = 1000
	db := benchWarehouse(b, 1)
	ps := benchProject(b, syncs, nil)
	r := startBenchReplica(b, db, ps, "one", false)
	firstRuns(b, r, ps)
	from := maxRunID(b, db)
	ctx := context.Background()
	tick := time.Now().Truncate(time.Second)
	b.ResetTimer()
	start := time.Now()
	p, _ := ps.Project(ctx)
	for _, s := range p.Syncs {
		_, _, err := r.queue.Enqueue(ctx, runqueue.Args{What: runqueue.WhatSync, Name: s.Name, Tick: tick, Trigger: runqueue.TriggerSchedule})
		require.NoError(b, err)
	}
	require.Eventually(b, func() bool {
		var done int
		require.NoError(b, db.QueryRow(ctx, `SELECT count(*) FROM ferry.runs WHERE id > $1 AND status <> 'running'`, from).Scan(&done))
		return done == syncs
	}, 10*time.Minute, 100*time.Millisecond)
	took := time.Since(start)
	b.ReportMetric(took.Seconds(), "drain_s")
	b.ReportMetric(float64(syncs)/took.Seconds()*60, "syncs_kept_per_minute")
	var unchanged int64
	require.NoError(b, db.QueryRow(ctx, `SELECT sum(inserted + updated) FROM ferry.runs WHERE id > $1`, from).Scan(&unchanged))
	require.Zero(b, unchanged, "nothing new was written")
}
