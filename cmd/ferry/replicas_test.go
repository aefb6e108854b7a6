package main

// Two real `ferry serve` processes on one warehouse (issue "Near-real-time
// runs"): every schedule tick runs once on one of them, a run whose
// replica was killed is finished by the other, and a schedule edited
// through the API of either takes effect on both without a restart. The
// assertions read ferry.runs, the link tables and the CRM test server.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

// soakEnv makes TestTwoServersRunEveryTickOnce tick for a full minute
// instead of 20 seconds: FERRY_SOAK=1 go test -run TestTwoServers ./cmd/ferry/
const soakEnv = "FERRY_SOAK"

// crmEnv is what every replica of these tests needs in its environment:
// the CRM test server's token.
var crmEnv = []string{"FERRY_TEST_CRM_TOKEN=s3cret-token"}

// Twenty syncs, each every 2s, served by two replicas for ~20 seconds
// (a minute with FERRY_SOAK=1) while the warehouse table they read keeps
// changing: every tick between a sync's first and last ran exactly once,
// no sync ever ran twice at once, both replicas worked, every run
// succeeded, and each CRM object ends up holding the warehouse's rows
// once, as they are now.
func TestTwoServersRunEveryTickOnce(t *testing.T) {
	const (
		nSyncs = 20
		nRows  = 30
		every  = 2 * time.Second
	)
	window := 20 * time.Second
	if os.Getenv(soakEnv) == "1" {
		window = time.Minute
	}

	crm := crmtest.New(t, crmtest.Options{Token: "s3cret-token"}) // any object name is a collection
	wh := dbtest.NewURL(t)
	execSQL(t, wh, fmt.Sprintf(`CREATE SCHEMA crm;
		CREATE TABLE crm.contacts (id int PRIMARY KEY, name text, email text, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO crm.contacts (id, name, email) SELECT g, 'Contact ' || g, 'c' || g || '@example.com' FROM generate_series(1, %d) g;`, nRows))
	objects := map[string]any{}
	syncFile := func(i int, schedule string) string {
		return fmt.Sprintf(`
source: {table: crm.contacts}
target: {connection: crm, object: %s}
mapping: [{source: name, target: name}, {source: email, target: email}]
schedule: %s
`, crmObject(i), schedule)
	}
	files := map[string]string{}
	for i := 1; i <= nSyncs; i++ {
		objects[crmObject(i)] = map[string]any{}
		files[fmt.Sprintf("syncs/s%02d.yaml", i)] = syncFile(i, "{every: 2s}")
	}
	settings, err := json.Marshal(map[string]any{
		"base_url": crm.URL, "concurrency": 4,
		"auth":    map[string]any{"type": "bearer", "token_env": "FERRY_TEST_CRM_TOKEN"},
		"objects": objects,
	})
	require.NoError(t, err)
	files["ferry.yaml"] = fmt.Sprintf("connections:\n  crm:\n    kind: http\n    settings: %s\n", settings)
	dir := writeProject(t, files)
	token := importAndToken(t, wh, dir)
	w := openWarehouse(t, wh)

	a := startServeReplica(t, wh, "a", token, crmEnv)
	b := startServeReplica(t, wh, "b", token, crmEnv)
	began := time.Now()

	// The scope keeps changing while the syncs tick: runs have updates to
	// send, not only nothing to do.
	ctx, stopChanges := context.WithCancel(context.Background())
	changes := make(chan error, 1)
	go func() { changes <- keepChanging(ctx, w.pool, nRows) }()
	time.Sleep(window)
	stopChanges()
	require.NoError(t, <-changes)
	var changedBy time.Time
	require.NoError(t, w.pool.QueryRow(context.Background(), "SELECT now()").Scan(&changedBy))

	// Every sync runs once more after the last change, so the CRM must
	// hold the warehouse's rows as they are now.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, nSyncs, w.int(c, `SELECT count(DISTINCT sync) FROM ferry.runs WHERE status = 'succeeded' AND started_at > $1`, changedBy))
	}, 30*time.Second, 100*time.Millisecond, "every sync ran after the last change")

	// Pause every schedule (one import: one new version, which both
	// replicas load), let what was queued finish, then stop both: every
	// run this test looks at ran to its end on its own.
	for i := 1; i <= nSyncs; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "syncs", fmt.Sprintf("s%02d.yaml", i)), []byte(syncFile(i, "{every: 2s, paused: true}")), 0o644))
	}
	importProject(t, wh, dir)
	for _, r := range []*serveReplica{a, b} {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			entries := r.schedules(c)
			assert.Len(c, entries, nSyncs)
			for _, e := range entries {
				assert.True(c, e.Schedule.Paused, "%s on replica %s", e.Name, r.name)
				assert.Nil(c, e.Next, "a paused schedule has no next tick")
			}
		}, 15*time.Second, 100*time.Millisecond, "replica %s loaded the paused schedules", r.name)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.True(c, w.quiet(c)) }, 30*time.Second, 100*time.Millisecond, "queued runs finish")
	a.stop(t)
	b.stop(t)
	t.Logf("ticked for %s; %s in all", window, time.Since(began).Round(time.Millisecond))

	runs := w.runs(t, "")
	for _, r := range runs {
		assert.Equal(t, "succeeded", r.Status, "%s", r)
		assert.NotNil(t, r.Tick, "every run stands for a tick: %s", r)
	}

	// Every tick between a sync's first and last ran, exactly once.
	type span struct {
		sync              string
		runs, ticks, want int
	}
	rows, err := w.pool.Query(context.Background(), `SELECT sync, count(*), count(DISTINCT tick),
			(extract(epoch FROM max(tick) - min(tick)) / $1)::int + 1
		FROM ferry.runs GROUP BY sync ORDER BY sync`, every.Seconds())
	require.NoError(t, err)
	var spans []span
	for rows.Next() {
		var s span
		require.NoError(t, rows.Scan(&s.sync, &s.runs, &s.ticks, &s.want))
		spans = append(spans, s)
	}
	require.NoError(t, rows.Err())
	require.Len(t, spans, nSyncs, "every sync ran")
	minTicks := int(window/every) - 3
	for _, s := range spans {
		assert.Equal(t, s.ticks, s.runs, "%s: no tick ran twice", s.sync)
		assert.GreaterOrEqual(t, s.ticks, minTicks, "%s ticked every %s for %s", s.sync, every, window)
	}
	// A tick has its run, unless the sync's previous run was still waiting
	// or running then: the spec's "the next run is queued" (one run right
	// after, not one per tick), which a loaded machine can reach.
	gaps := `FROM (SELECT sync, min(tick) lo, max(tick) hi FROM ferry.runs GROUP BY sync) s
		CROSS JOIN LATERAL generate_series(s.lo, s.hi, make_interval(secs => $1)) g(tick)
		WHERE NOT EXISTS (SELECT 1 FROM ferry.runs r WHERE r.sync = s.sync AND r.tick = g.tick)`
	busy := `EXISTS (SELECT 1 FROM ferry.runs p WHERE p.sync = s.sync AND p.tick < g.tick AND p.finished_at > g.tick)`
	missing := w.int(t, `SELECT count(*) `+gaps+` AND NOT `+busy, every.Seconds())
	assert.Zero(t, missing, "ticks with no run, while the sync was idle")
	if coalesced := w.int(t, `SELECT count(*) `+gaps+` AND `+busy, every.Seconds()); coalesced > 0 {
		t.Logf("%d ticks found their sync's previous run still going and were folded into the run right after it", coalesced)
	}
	twice := w.int(t, `SELECT count(*) FROM (SELECT 1 FROM ferry.runs GROUP BY sync, tick HAVING count(*) > 1) d`)
	assert.Zero(t, twice, "ticks that ran twice")
	offBeat := w.int(t, `SELECT count(*) FROM ferry.runs WHERE extract(epoch FROM tick)::numeric % $1 <> 0`, int(every.Seconds()))
	assert.Zero(t, offBeat, "ticks are multiples of the period, whichever replica ticked")

	// No sync ever had two runs at once.
	overlaps := w.int(t, `SELECT count(*) FROM ferry.runs x JOIN ferry.runs y ON x.sync = y.sync AND x.id < y.id
		WHERE tstzrange(x.started_at, x.finished_at) && tstzrange(y.started_at, y.finished_at)`)
	assert.Zero(t, overlaps, "runs of one sync whose [started_at, finished_at) overlap")

	// Both replicas worked.
	byReplica := map[string]int{}
	for _, r := range runs {
		if r.Replica != nil {
			byReplica[*r.Replica]++
		}
	}
	assert.Positive(t, byReplica["a"], "replica a ran some runs: %v", byReplica)
	assert.Positive(t, byReplica["b"], "replica b ran some runs: %v", byReplica)
	assert.Equal(t, len(runs), byReplica["a"]+byReplica["b"], "every run names its replica: %v", byReplica)

	// Each CRM object holds every warehouse row once, as it is now.
	want := map[string]string{}
	wrows, err := w.pool.Query(context.Background(), `SELECT email, name FROM crm.contacts`)
	require.NoError(t, err)
	for wrows.Next() {
		var email, name string
		require.NoError(t, wrows.Scan(&email, &name))
		want[email] = name
	}
	require.NoError(t, wrows.Err())
	for i := 1; i <= nSyncs; i++ {
		got := map[string]string{}
		records := crm.Records(crmObject(i))
		for _, r := range records {
			got[fmt.Sprint(r["email"])] = fmt.Sprint(r["name"])
		}
		assert.Len(t, records, nRows, "%s: one record per row", crmObject(i))
		assert.Equal(t, want, got, "%s holds the warehouse's rows as they are", crmObject(i))
	}

	var delayMS, waitMS, updated int64
	require.NoError(t, w.pool.QueryRow(context.Background(), `SELECT
			(extract(epoch FROM max(started_at - tick)) * 1000)::bigint,
			(extract(epoch FROM max(started_at - queued_at)) * 1000)::bigint,
			sum(updated)::bigint
		FROM ferry.runs`).Scan(&delayMS, &waitMS, &updated))
	t.Logf("%d runs (%v), %d records updated; the slowest tick started %dms after its time, the longest queue wait %dms",
		len(runs), byReplica, updated, delayMS, waitMS)
}

// crmObject is the CRM object sync i writes to.
func crmObject(i int) string { return fmt.Sprintf("contacts_%02d", i) }

// keepChanging renames a few contacts every 300ms until ctx ends, as an
// ELT pipeline landing changes would.
func keepChanging(ctx context.Context, pool *pgxpool.Pool, n int) error {
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for v := 1; ; v++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		_, err := pool.Exec(context.Background(), `UPDATE crm.contacts SET name = 'Contact ' || id || ' v' || $1::int, _sdc_batched_at = now()
			WHERE id % $2::int = $1::int % $2::int`, v, n/3)
		if err != nil {
			return fmt.Errorf("changing contacts: %w", err)
		}
	}
}

// A run of 1,500 contacts, started through the API, whose replica is
// killed (SIGKILL) mid-run: once its claim expires (FERRY_LEASE_TTL=2s),
// the other replica takes the run over without anyone's help and
// finishes it; the dead run is marked interrupted, the CRM holds
// every contact exactly once (its inserts in flight settled by lookup on
// email) and every link row is a success.
func TestKilledServerRunIsFinishedByTheOther(t *testing.T) {
	const n = 1500
	const ttl = 2 * time.Second
	dir, wh, crm := crmProject(t, n)
	crm.SetLatency(20 * time.Millisecond) // 4 requests at once: a run takes several seconds
	token := importAndToken(t, wh, dir)
	w := openWarehouse(t, wh)
	env := append([]string{leaseTTLEnv + "=" + ttl.String()}, crmEnv...)
	replicas := map[string]*serveReplica{
		"a": startServeReplica(t, wh, "a", token, env),
		"b": startServeReplica(t, wh, "b", token, env),
	}

	status, body := replicas["a"].call(t, http.MethodPost, "/syncs/contacts/runs", nil)
	require.Equal(t, http.StatusAccepted, status, string(body))
	var dead runRow
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		runs := w.runs(c, "contacts")
		require.Len(c, runs, 1)
		require.NotNil(c, runs[0].Replica)
		dead = runs[0]
	}, 20*time.Second, 20*time.Millisecond, "the run started on a replica")
	assert.Equal(t, "api", dead.TriggeredBy)
	victim := replicas[*dead.Replica]
	require.NotNil(t, victim, "%s", dead)
	survivor := replicas["a"]
	if victim == survivor {
		survivor = replicas["b"]
	}

	require.Eventually(t, func() bool { return crm.Count("contacts") >= 300 }, 30*time.Second, 2*time.Millisecond, "the run reaches the CRM")
	victim.kill(t)
	killedAt := time.Now()
	inCRM := crm.Count("contacts")
	require.Less(t, inCRM, n, "killed mid-run")
	crm.SetLatency(2 * time.Millisecond)

	// The survivor finishes the sync on its own, within the claim's TTL,
	// the sweep and the rest of the run.
	var rescue runRow
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		runs := w.runs(c, "contacts")
		require.Len(c, runs, 2, "the dead run and one more")
		rescue = runs[1]
		require.Equal(c, "succeeded", rescue.Status, "%s", rescue)
	}, 60*time.Second, 50*time.Millisecond, "the other replica finishes the sync")
	tookOver := rescue.StartedAt.Sub(killedAt)
	finished := rescue.FinishedAt.Sub(killedAt)
	t.Logf("replica %s killed with %d of %d contacts in the CRM; %s took over after %s and finished %s after the kill",
		victim.name, inCRM, n, survivor.name, tookOver.Round(time.Millisecond), finished.Round(time.Millisecond))

	var read, inserted, updated, unchanged int64
	require.NoError(t, w.pool.QueryRow(context.Background(), `SELECT read, inserted, updated, unchanged FROM ferry.runs WHERE id = $1`, rescue.ID).Scan(&read, &inserted, &updated, &unchanged))
	t.Logf("the run that finished it read %d: inserted %d, updated %d, unchanged %d", read, inserted, updated, unchanged)
	require.NotNil(t, rescue.Replica)
	assert.Equal(t, survivor.name, *rescue.Replica, "%s", rescue)
	assert.Contains(t, []string{"rescue", "schedule"}, rescue.TriggeredBy, "%s", rescue)
	assert.Less(t, tookOver, ttl+10*time.Second, "taken over soon after the dead run's claim expired")

	runs := w.runs(t, "contacts")
	require.Len(t, runs, 2)
	dead = runs[0]
	assert.Equal(t, "interrupted", dead.Status, "%s", dead)
	require.NotNil(t, dead.Error, "%s", dead)
	assert.True(t, strings.HasPrefix(*dead.Error, "interrupted"), "%s", dead)
	require.NotNil(t, dead.FinishedAt)

	emails := map[string]int{}
	for _, r := range crm.Records("contacts") {
		emails[fmt.Sprint(r["email"])]++
	}
	assert.Len(t, emails, n, "every contact is in the CRM")
	for email, count := range emails {
		if count != 1 {
			assert.Equal(t, 1, count, "%s exists once", email)
		}
	}
	assert.Equal(t, n, crm.Count("contacts"))
	assert.Equal(t, n, w.int(t, `SELECT count(*) FROM link_tables.contacts WHERE status = 'success'`), "every link row is a success")
	assert.Equal(t, n, w.int(t, `SELECT count(*) FROM link_tables.contacts`))

	// Nothing else runs it again: the queue is quiet, and stays so.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Zero(c, w.int(c, `SELECT count(*) FROM ferry.runs WHERE status = 'running'`))
		assert.Zero(c, w.int(c, `SELECT count(*) FROM ferry.river_job WHERE state IN ('available', 'scheduled', 'retryable', 'pending')`))
	}, 15*time.Second, 100*time.Millisecond, "nothing runs or waits")
	survivor.stop(t)
	assert.Len(t, w.runs(t, "contacts"), 2)
}

// A sync on `every: 1h` does not run; PUT through one replica's API with
// `every: 2s` and both replicas tick it within seconds, without a
// restart; PUT with `paused: true` through the other and no run starts
// after a short grace.
func TestScheduleEditedThroughTheAPITakesEffect(t *testing.T) {
	const n = 20
	dir, wh, crm := crmProject(t, n)
	def := map[string]any{
		"source":   map[string]any{"table": "crm.contacts", "page_size": 25},
		"target":   map[string]any{"connection": "crm", "object": "contacts", "match_on": []string{"email"}},
		"mapping":  []map[string]string{{"source": "name", "target": "name"}, {"source": "email", "target": "email"}},
		"schedule": map[string]any{"every": "1h"},
	}
	doc, err := json.Marshal(def)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "syncs", "contacts.yaml"), doc, 0o644)) // JSON is YAML
	token := importAndToken(t, wh, dir)
	w := openWarehouse(t, wh)
	a := startServeReplica(t, wh, "a", token, crmEnv)
	b := startServeReplica(t, wh, "b", token, crmEnv)

	scheduled := func(r *serveReplica, every string, paused bool) func(c *assert.CollectT) {
		return func(c *assert.CollectT) {
			entries := r.schedules(c)
			require.Len(c, entries, 1)
			e := entries[0]
			assert.Equal(c, "contacts", e.Name)
			assert.Equal(c, every, e.Schedule.Every, "replica %s", r.name)
			assert.Equal(c, paused, e.Schedule.Paused, "replica %s", r.name)
			assert.Equal(c, paused, e.Next == nil, "replica %s: a next tick unless paused", r.name)
		}
	}
	for _, r := range []*serveReplica{a, b} {
		require.EventuallyWithT(t, scheduled(r, "1h0m0s", false), 10*time.Second, 100*time.Millisecond)
	}
	time.Sleep(3 * time.Second) // more than a reload of the schedules and a tick of the new period
	require.Empty(t, w.runs(t, "contacts"), "nothing runs on an hourly schedule")

	// Every 2s, through replica a.
	def["schedule"] = map[string]any{"every": "2s"}
	status, body := a.call(t, http.MethodPut, "/syncs/contacts", def)
	require.Equal(t, http.StatusOK, status, string(body))
	edited := time.Now()
	for _, r := range []*serveReplica{a, b} {
		require.EventuallyWithT(t, scheduled(r, "2s", false), 10*time.Second, 100*time.Millisecond)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		runs := w.runs(c, "contacts")
		require.GreaterOrEqual(c, len(runs), 2, "two ticks ran")
		for _, r := range runs {
			assert.Equal(c, "schedule", r.TriggeredBy, "%s", r)
			assert.Equal(c, "succeeded", r.Status, "%s", r)
		}
	}, 20*time.Second, 100*time.Millisecond, "runs start every 2s without a restart")
	first := w.runs(t, "contacts")[0]
	t.Logf("the first run started %s after the edit", first.StartedAt.Sub(edited).Round(time.Millisecond))
	assert.Less(t, first.StartedAt.Sub(edited), 10*time.Second, "the edit takes effect within seconds")
	assert.Equal(t, n, crm.Count("contacts"))

	// Paused, through replica b.
	def["schedule"] = map[string]any{"every": "2s", "paused": true}
	status, body = b.call(t, http.MethodPut, "/syncs/contacts", def)
	require.Equal(t, http.StatusOK, status, string(body))
	for _, r := range []*serveReplica{a, b} {
		require.EventuallyWithT(t, scheduled(r, "2s", true), 10*time.Second, 100*time.Millisecond)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.True(c, w.quiet(c)) }, 15*time.Second, 100*time.Millisecond, "a run queued before the pause finishes")
	before := len(w.runs(t, "contacts"))
	time.Sleep(5 * time.Second) // two and a half periods
	after := w.runs(t, "contacts")
	assert.Len(t, after, before, "no run starts once paused: %v", after[before:])

	a.stop(t)
	b.stop(t)
}
