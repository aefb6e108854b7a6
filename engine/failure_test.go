package engine_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/enginetest"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

// cancellingTarget applies the first n changes it is given, then cancels
// the run (as Ctrl-C would) and reports the rest as not sent.
type cancellingTarget struct {
	*enginetest.Memory
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
}

func (c *cancellingTarget) Write(ctx context.Context, object string, changes []connector.Change) ([]connector.Result, error) {
	c.mu.Lock()
	n := min(c.n, len(changes))
	c.n -= n
	c.mu.Unlock()
	results, err := c.Memory.Write(ctx, object, changes[:n])
	if err != nil || n == len(changes) {
		return append(results, make([]connector.Result, len(changes)-len(results))...), err
	}
	c.cancel()
	return append(results, make([]connector.Result, len(changes)-n)...), context.Canceled
}

func TestCancelledRunLosesAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source.PageSize = 10
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name, vat) SELECT g, 'C' || g, 'V' || g FROM generate_series(1, 35) g`)
	ctx, cancel := context.WithCancel(context.Background())
	target := &cancellingTarget{Memory: b.target, n: 23, cancel: cancel}
	eng := engine.New(b.db, engine.StaticProject(b.proj), engine.Options{Open: only(target)})

	first, err := eng.Run(ctx, "companies", engine.RunOptions{})
	require.Error(t, err)
	assert.Equal(t, engine.RunInterrupted, first.Status, "a cancelled run did not fail: it was interrupted")
	assert.Len(t, b.target.Records("partners"), 23)
	links := b.links("companies")
	assert.Len(t, links, 23, "every record the target applied has its link row, although the run was cancelled")

	res := b.run("companies")
	assert.Equal(t, int64(12), res.Counts.Inserted, "%+v %s", res.Counts, res.Error)
	assert.Len(t, b.target.Records("partners"), 35, "each record exactly once")
	var intents int
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT count(*) FROM ferry.write_intents`).Scan(&intents))
	assert.Zero(t, intents)
}

func TestCrashAfterWriteIsReconciledNotDuplicated(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Target.MatchOn = []string{"vat"}
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (1, 'A', 'V1'), (2, 'B', 'V2'), (3, 'C', 'V3')`)
	b.run("companies")

	// A later run inserted 4 and 5 in the target and died before recording
	// them: their write intent is all that is left.
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (4, 'D', 'V4'), (5, 'E', 'V5')`)
	applied := b.target.Put("partners", map[string]any{"name": "D", "vat": "V4"})
	b.exec(`INSERT INTO ferry.write_intents (sync, source_ids) VALUES ('companies', '{4,5}')`)

	res := b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Updated, "4 was found by match_on and linked")
	assert.Equal(t, int64(1), res.Counts.Inserted, "5 never arrived: inserted")
	assert.Len(t, b.target.Records("partners"), 5, "nothing duplicated")
	assert.Equal(t, "success:"+applied, b.links("companies")["4"])
}

// Ferry's own warehouse connections terminated mid-commit (a DBA's
// pg_terminate_backend, a failover): the run ends with an error that says
// what it was doing, and the next run completes, each record once.
func TestConnectionsTerminatedMidCommit(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source.PageSize = 20
	s.Target.MatchOn = []string{"vat"}
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name, vat) SELECT g, 'C' || g, 'V' || g FROM generate_series(1, 100) g`)
	var db string
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT current_database()`).Scan(&db))
	admin, err := pgx.Connect(context.Background(), dbtest.ServerURL())
	require.NoError(t, err)
	defer admin.Close(context.Background())
	var once sync.Once
	eng := engine.New(b.db, engine.StaticProject(b.proj), engine.Options{Open: only(b.target), Failpoint: func(point string) {
		if point != "before-link-commit" {
			return
		}
		once.Do(func() {
			_, err := admin.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db)
			require.NoError(t, err)
		})
	}})
	res, err := eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "sync companies: ")
	assert.Regexp(t, `recording a page|terminat|connection`, err.Error(), "the error says what failed")
	assert.Contains(t, err.Error(), "run the sync again")
	var status string
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT status FROM ferry.runs WHERE id = $1`, res.RunID).Scan(&status))
	assert.Equal(t, "failed", status, "the run row is closed, although its connection died")

	// The claim was given up: the run that follows starts at once, settles
	// what the failed one sent and finishes.
	res = b.run("companies")
	assert.Equal(t, engine.RunSucceeded, res.Status, res.Error)
	assert.Len(t, b.target.Records("partners"), 100, "each record exactly once")
	for id, l := range b.links("companies") {
		assert.Regexp(t, `^success:\d+$`, l, "source id %s", id)
	}
}

// The warehouse's PostgreSQL crashes and restarts mid-run (a cluster of the
// test's own): the run ends with an error that says what failed, and the
// next run completes, each record once.
func TestWarehouseRestartedMidRun(t *testing.T) {
	t.Parallel()
	cluster := dbtest.NewCluster(t)
	ctx := context.Background()
	db, err := pgxpool.New(ctx, cluster.URL())
	require.NoError(t, err)
	defer db.Close()
	_, err = queries.Migrate(ctx, db)
	require.NoError(t, err)
	_, err = db.Exec(ctx, warehouseSQL+`;
INSERT INTO crm.companies (id, name, vat) SELECT g, 'C' || g, 'V' || g FROM generate_series(1, 100) g`)
	require.NoError(t, err)
	s := companiesSync()
	s.Source.PageSize = 20
	s.Target.MatchOn = []string{"vat"}
	p, err := project.New(nil, map[string]project.Connection{"erp": testConnection}, s)
	require.NoError(t, err)
	target := enginetest.NewMemory()
	var once sync.Once
	eng := engine.New(db, engine.StaticProject(p), engine.Options{Open: only(target), Failpoint: func(point string) {
		if point == "after-target-answered" {
			once.Do(cluster.Restart)
		}
	}})
	_, err = eng.Run(ctx, "companies", engine.RunOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "sync companies: ")
	assert.Contains(t, err.Error(), "run the sync again")
	t.Logf("the run ended: %s", err)

	res, err := eng.Run(ctx, "companies", engine.RunOptions{})
	require.NoError(t, err)
	assert.Equal(t, engine.RunSucceeded, res.Status, res.Error)
	assert.Len(t, target.Records("partners"), 100, "each record exactly once")
	var bad int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM link_tables.companies WHERE status <> 'success'`).Scan(&bad))
	assert.Zero(t, bad)
	var runs []string
	rows, err := db.Query(ctx, `SELECT status FROM ferry.runs ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var st string
		require.NoError(t, rows.Scan(&st))
		runs = append(runs, st)
	}
	assert.Equal(t, []string{"failed", "succeeded"}, runs, "the first run's row is closed too")
}

// quotaTarget answers every write with a spent daily quota.
type quotaTarget struct{ *enginetest.Memory }

func (quotaTarget) Write(_ context.Context, _ string, changes []connector.Change) ([]connector.Result, error) {
	err := &connector.Error{Class: connector.RateLimited, Status: 429, Message: "daily quota of 1000 requests spent"}
	return make([]connector.Result, len(changes)), err
}

// A spent quota stops the run once, with what happened, and leaves every
// record as it was: none is marked failed for the target's limit.
func TestSpentQuotaStopsTheRunAndLeavesRecordsUntouched(t *testing.T) {
	t.Parallel()
	b := setup(t, companiesSync())
	b.exec(`INSERT INTO crm.companies (id, name, vat) SELECT g, 'C' || g, 'V' || g FROM generate_series(1, 20) g`)
	eng := engine.New(b.db, engine.StaticProject(b.proj), engine.Options{Open: only(quotaTarget{b.target})})
	_, err := eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refuses more requests for now")
	assert.Contains(t, err.Error(), "daily quota")
	assert.Empty(t, b.links("companies"), "no record is marked failed for the target's quota")
	res := b.run("companies")
	assert.EqualValues(t, 20, res.Counts.Inserted, "the next run sends them all")
}
