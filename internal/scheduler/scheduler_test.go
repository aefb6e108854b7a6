package scheduler_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/enginetest"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/runqueue"
	"github.com/ferry-sync/ferry/internal/scheduler"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// workers per replica in these tests.
const workers = 3

// projects is an engine.Projects whose project a test swaps.
type projects struct {
	mu sync.Mutex
	p  *project.Project
}

func (ps *projects) Project(context.Context) (*project.Project, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.p, nil
}

func (ps *projects) set(p *project.Project) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.p = p
}

// scheduledProject has n syncs of crm.companies, each on sched.
func scheduledProject(t *testing.T, n int, sched project.Schedule) *project.Project {
	t.Helper()
	var syncs []*project.Sync
	for i := 1; i <= n; i++ {
		sc := sched
		syncs = append(syncs, &project.Sync{
			Name:     fmt.Sprintf("s%02d", i),
			Source:   project.Source{Table: "crm.companies"},
			Target:   project.TargetRef{Connection: "erp", Object: fmt.Sprintf("o%02d", i)},
			Mapping:  []project.Field{{Source: "name", Target: "name"}},
			Schedule: &sc,
		})
	}
	p, err := project.New(nil, map[string]project.Connection{"erp": {Kind: "memory"}}, syncs...)
	require.NoError(t, err)
	return p
}

// replica is one server's queue and scheduler.
type replica struct {
	queue *runqueue.Queue
	sched *scheduler.Scheduler
}

func startReplica(t *testing.T, db *pgxpool.Pool, ps *projects, target connector.Target, name string) *replica {
	t.Helper()
	ctx := context.Background()
	eng := engine.New(db, ps, engine.Options{Open: func(context.Context, project.Connection) (connector.Target, error) { return target, nil }})
	q, err := runqueue.New(runqueue.Options{DB: db, Engine: eng, Replica: name, Workers: workers, SweepEvery: 500 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, q.Start(ctx))
	s, err := scheduler.New(scheduler.Options{DB: db, Project: ps.Project, Queue: q, ReloadEvery: 200 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, s.Start(ctx))
	r := &replica{queue: q, sched: s}
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *replica) stop(t *testing.T) {
	if r.sched != nil {
		require.NoError(t, r.sched.Stop())
		r.sched = nil
	}
	if r.queue != nil {
		require.NoError(t, r.queue.Stop(context.Background()))
		r.queue = nil
	}
}

// warehouse is a test database with a pool as big as a replica with
// workers needs (runqueue.PoolSize).
func warehouse(t *testing.T) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(dbtest.NewURL(t))
	require.NoError(t, err)
	cfg.MaxConns = 2 * runqueue.PoolSize(workers) // two replicas share it here
	db, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	_, err = db.Exec(context.Background(), `CREATE SCHEMA crm;
CREATE TABLE crm.companies (id int PRIMARY KEY, name text, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
INSERT INTO crm.companies VALUES (1, 'Acme'), (2, 'Globex'), (3, 'Initech');`)
	require.NoError(t, err)
	return db
}

func count(t *testing.T, db *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// Two replicas tick 20 syncs every second: every tick runs exactly once,
// on one replica or the other, and no sync ever has two runs at once.
func TestTwoReplicasRunEveryTickOnce(t *testing.T) {
	db := warehouse(t)
	ps := &projects{p: scheduledProject(t, 20, project.Schedule{Every: project.Duration{Duration: time.Second}})}
	target := enginetest.NewMemory()
	a := startReplica(t, db, ps, target, "replica-a")
	b := startReplica(t, db, ps, target, "replica-b")
	time.Sleep(6500 * time.Millisecond)
	a.sched.Stop()
	b.sched.Stop()
	a.sched, b.sched = nil, nil
	require.Eventually(t, func() bool {
		return count(t, db, `SELECT count(*) FROM ferry.runs WHERE status = 'running'`) == 0 &&
			count(t, db, `SELECT count(*) FROM ferry.river_job WHERE state IN ('available', 'running', 'scheduled', 'retryable')`) == 0
	}, 10*time.Second, 50*time.Millisecond)

	assert.Zero(t, count(t, db, `SELECT count(*) FROM (SELECT sync, tick FROM ferry.runs GROUP BY sync, tick HAVING count(*) > 1) d`),
		"no tick ran twice")
	assert.Zero(t, count(t, db, `SELECT count(*) FROM ferry.runs a JOIN ferry.runs b ON a.sync = b.sync AND a.id < b.id
		AND a.started_at < b.finished_at AND b.started_at < a.finished_at`), "no sync had two runs at once")
	assert.Zero(t, count(t, db, `SELECT count(*) FROM ferry.runs WHERE triggered_by <> 'schedule' OR tick IS NULL OR job_id IS NULL`))
	assert.Zero(t, count(t, db, `SELECT count(*) FROM ferry.runs WHERE status <> 'succeeded'`))
	// Every second between a sync's first and last tick has its run, none
	// lost between the replicas, unless a run of that sync still waited in
	// the queue then (a tick skips a sync whose run waits: on a loaded
	// machine runs fall behind a 1 s schedule, and a late tick is named by
	// the latest due time, hence the second of slack).
	assert.Zero(t, count(t, db, `WITH span AS (SELECT sync, min(tick) AS lo, max(tick) AS hi FROM ferry.runs GROUP BY sync),
		want AS (SELECT sync, generate_series(lo, hi, interval '1 second') AS t FROM span)
		SELECT count(*) FROM want w
		WHERE NOT EXISTS (SELECT 1 FROM ferry.runs r WHERE r.sync = w.sync AND r.tick = w.t)
		  AND NOT EXISTS (SELECT 1 FROM ferry.runs r JOIN ferry.river_job j ON j.id = r.job_id
		                  WHERE r.sync = w.sync AND j.created_at < w.t + interval '2 seconds' AND r.started_at > w.t)`),
		"a tick between the first and the last was lost")
	ticks := count(t, db, `SELECT count(DISTINCT tick) FROM ferry.runs`)
	assert.GreaterOrEqual(t, ticks, 5)
	assert.Equal(t, 20, count(t, db, `SELECT count(DISTINCT sync) FROM ferry.runs`))
	assert.Equal(t, 2, count(t, db, `SELECT count(DISTINCT replica) FROM ferry.runs`), "both replicas worked")
	assert.Len(t, target.Records("o01"), 3)
	t.Logf("%d ticks, %d runs", ticks, count(t, db, `SELECT count(*) FROM ferry.runs`))
}

// A sync slower than its schedule runs once right after the run in
// progress, not once per tick it overran.
func TestSlowSyncRunsOnceRightAfter(t *testing.T) {
	db := warehouse(t)
	_, err := db.Exec(context.Background(), `INSERT INTO crm.companies SELECT g, 'c' || g FROM generate_series(4, 40) g`)
	require.NoError(t, err)
	ps := &projects{p: scheduledProject(t, 1, project.Schedule{Every: project.Duration{Duration: time.Second}})}
	target := enginetest.NewMemory()
	slow := &slowTarget{Target: target, each: 100 * time.Millisecond} // 40 records: 4 s a run
	eng := engine.New(db, ps, engine.Options{Open: func(context.Context, project.Connection) (connector.Target, error) { return slow, nil }})
	q, err := runqueue.New(runqueue.Options{DB: db, Engine: eng, Replica: "a", Workers: workers})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, q.Start(ctx))
	defer q.Stop(ctx)
	s, err := scheduler.New(scheduler.Options{DB: db, Project: ps.Project, Queue: q})
	require.NoError(t, err)
	require.NoError(t, s.Start(ctx))
	require.Eventually(t, func() bool { return count(t, db, `SELECT count(*) FROM ferry.runs WHERE status <> 'running'`) >= 1 }, 15*time.Second, 20*time.Millisecond)
	require.NoError(t, s.Stop())
	require.Eventually(t, func() bool {
		return count(t, db, `SELECT count(*) FROM ferry.river_job WHERE state IN ('available', 'running', 'scheduled', 'retryable')`) == 0
	}, 15*time.Second, 20*time.Millisecond)
	// The first run took about 4 ticks; they left one run behind it.
	runs := count(t, db, `SELECT count(*) FROM ferry.runs`)
	assert.LessOrEqual(t, runs, 3, "one run per overrun, not one per tick")
	assert.Zero(t, count(t, db, `SELECT count(*) FROM ferry.runs a JOIN ferry.runs b ON a.sync = b.sync AND a.id < b.id
		AND a.started_at < b.finished_at AND b.started_at < a.finished_at`))
	var gap float64
	require.NoError(t, db.QueryRow(ctx, `SELECT extract(epoch FROM b.started_at - a.finished_at) FROM ferry.runs a JOIN ferry.runs b ON b.id = (SELECT min(id) FROM ferry.runs WHERE id > a.id) WHERE a.id = (SELECT min(id) FROM ferry.runs)`).Scan(&gap))
	assert.Less(t, gap, 1.5, "the queued run starts right after the first ends")
}

// slowTarget delays every record.
type slowTarget struct {
	connector.Target
	each time.Duration
}

func (s *slowTarget) Write(ctx context.Context, object string, changes []connector.Change) ([]connector.Result, error) {
	select {
	case <-time.After(s.each * time.Duration(len(changes))):
	case <-ctx.Done():
	}
	return s.Target.Write(ctx, object, changes)
}

// A server that was down for many ticks queues one catch-up run, and an
// edited schedule takes effect without a restart.
func TestCatchUpOnceAndEditedScheduleTakesEffect(t *testing.T) {
	db := warehouse(t)
	ctx := context.Background()
	ps := &projects{p: scheduledProject(t, 1, project.Schedule{Every: project.Duration{Duration: time.Hour}})}
	// The last tick any replica queued was three hours ago.
	_, err := db.Exec(ctx, `INSERT INTO ferry.schedule_ticks (kind, name, last_tick) VALUES ('sync', 's01', date_trunc('hour', now()) - interval '3 hours')`)
	require.NoError(t, err)
	target := enginetest.NewMemory()
	r := startReplica(t, db, ps, target, "a")
	require.Eventually(t, func() bool { return count(t, db, `SELECT count(*) FROM ferry.runs WHERE status = 'succeeded'`) == 1 }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, 1, count(t, db, `SELECT count(*) FROM ferry.runs`), "one catch-up, not three")
	assert.Equal(t, 1, count(t, db, `SELECT count(*) FROM ferry.runs WHERE triggered_by = 'catchup' AND tick = date_trunc('hour', now()) - interval '2 hours'`))

	entries, err := r.sched.Entries(ctx)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.NotNil(t, entries[0].Next)
	assert.WithinDuration(t, time.Now().Truncate(time.Hour).Add(time.Hour), *entries[0].Next, time.Second)

	ps.set(scheduledProject(t, 1, project.Schedule{Every: project.Duration{Duration: time.Second}}))
	require.Eventually(t, func() bool {
		return count(t, db, `SELECT count(*) FROM ferry.runs WHERE triggered_by = 'schedule'`) >= 2
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, 1, count(t, db, `SELECT count(*) FROM ferry.runs WHERE triggered_by = 'catchup'`), "an edited schedule does not catch up")

	ps.set(scheduledProject(t, 1, project.Schedule{Every: project.Duration{Duration: time.Second}, Paused: true}))
	time.Sleep(500 * time.Millisecond)
	n := count(t, db, `SELECT count(*) FROM ferry.runs`)
	time.Sleep(2 * time.Second)
	assert.Equal(t, n, count(t, db, `SELECT count(*) FROM ferry.runs`), "a paused schedule does not tick")
}

// A firing names the tick it is due for even when its timer fires late.
func TestDueAt(t *testing.T) {
	every := project.Schedule{Every: project.Duration{Duration: 2 * time.Second}}
	daily := project.Schedule{Daily: "06:30", Timezone: "Europe/Brussels"}
	hourly := project.Schedule{Cron: "15 * * * *"}
	brussels, err := time.LoadLocation("Europe/Brussels")
	require.NoError(t, err)
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04:05.000", s, brussels)
		require.NoError(t, err)
		return v
	}
	for _, tc := range []struct {
		name  string
		sched project.Schedule
		now   time.Time
		want  time.Time
	}{
		{"every, on time", every, at("2026-11-29 10:00:02.003"), at("2026-11-29 10:00:02.000")},
		{"every, 1.9 s late", every, at("2026-11-29 10:00:03.900"), at("2026-11-29 10:00:02.000")},
		{"every, clock stepped back 10 ms", every, at("2026-11-29 10:00:01.990"), at("2026-11-29 10:00:02.000")},
		{"daily, on time", daily, at("2026-11-29 06:30:00.001"), at("2026-11-29 06:30:00.000")},
		{"daily, 3 hours late", daily, at("2026-11-29 09:31:00.000"), at("2026-11-29 06:30:00.000")},
		{"cron, 20 minutes late", hourly, at("2026-11-29 10:35:00.000"), at("2026-11-29 10:15:00.000")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.True(t, tc.want.Equal(scheduler.DueAt(tc.sched, tc.now)), "got %s", scheduler.DueAt(tc.sched, tc.now))
		})
	}
}
