package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/enginetest"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

// testBundle is one test's warehouse, target and engine.
type testBundle struct {
	t      *testing.T
	db     *pgxpool.Pool
	target *enginetest.Memory
	eng    *engine.Engine
	proj   *project.Project
}

const warehouseSQL = `
CREATE SCHEMA crm;
CREATE TABLE crm.companies (
    id bigint PRIMARY KEY, name text, vat text,
    _sdc_batched_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE crm.contacts (
    id bigint PRIMARY KEY, name text, email text, company_id bigint,
    _sdc_batched_at timestamptz NOT NULL DEFAULT now());
`

func companiesSync() *project.Sync {
	return &project.Sync{
		Name:   "companies",
		Source: project.Source{Table: "crm.companies"},
		Target: project.TargetRef{Connection: "erp", Object: "partners"},
		Mapping: []project.Field{
			{Source: "name", Target: "name"},
			{Source: "vat", Target: "vat"},
		},
	}
}

func contactsSync() *project.Sync {
	return &project.Sync{
		Name:   "contacts",
		Source: project.Source{Table: "crm.contacts"},
		Target: project.TargetRef{Connection: "erp", Object: "people"},
		Mapping: []project.Field{
			{Source: "name", Target: "name"},
			{Source: "email", Target: "email"},
			{Value: []byte(`555`), Target: "division_id"},
		},
		Relations: []project.Relation{{Source: "company_id", Sync: "companies", Target: "partner_id"}},
	}
}

func setup(t *testing.T, syncs ...*project.Sync) *testBundle {
	t.Helper()
	db := dbtest.NewPool(t)
	_, err := db.Exec(context.Background(), warehouseSQL)
	require.NoError(t, err)
	if len(syncs) == 0 {
		syncs = []*project.Sync{companiesSync(), contactsSync()}
	}
	p, err := project.New(nil, map[string]project.Connection{"erp": testConnection}, syncs...)
	require.NoError(t, err)
	target := enginetest.NewMemory()
	eng := engine.New(db, engine.StaticProject(p), engine.Options{Open: only(target)})
	return &testBundle{t: t, db: db, target: target, eng: eng, proj: p}
}

func (b *testBundle) exec(sql string, args ...any) {
	b.t.Helper()
	_, err := b.db.Exec(context.Background(), sql, args...)
	require.NoError(b.t, err)
}

func (b *testBundle) run(sync string) *engine.RunResult {
	b.t.Helper()
	res, err := b.eng.Run(context.Background(), sync, engine.RunOptions{})
	require.NoError(b.t, err)
	return res
}

// links returns source_id -> status:target_id of a link table.
func (b *testBundle) links(sync string) map[string]string {
	b.t.Helper()
	rows, err := b.db.Query(context.Background(), fmt.Sprintf(`SELECT source_id::text, status, coalesce(target_id::text, '') FROM link_tables.%s`, sync))
	require.NoError(b.t, err)
	out := map[string]string{}
	for rows.Next() {
		var id, st, tid string
		require.NoError(b.t, rows.Scan(&id, &st, &tid))
		out[id] = st + ":" + tid
	}
	require.NoError(b.t, rows.Err())
	return out
}

func (b *testBundle) linkError(sync, id string) string {
	b.t.Helper()
	var msg *string
	require.NoError(b.t, b.db.QueryRow(context.Background(), fmt.Sprintf(`SELECT error FROM link_tables.%s WHERE source_id::text = $1`, sync), id).Scan(&msg))
	if msg == nil {
		return ""
	}
	return *msg
}

func TestFirstSyncThenNothingNew(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (100, 'Acme', 'BE01'), (200, 'Globex', 'BE02')`)
	b.exec(`INSERT INTO crm.contacts (id, name, email, company_id) VALUES (500, 'Ann', 'ann@acme.test', 100), (501, 'Bob', 'bob@globex.test', 200), (502, 'Cy', 'cy@nowhere.test', NULL)`)

	res := b.run("companies")
	assert.Equal(t, engine.RunSucceeded, res.Status)
	assert.Equal(t, engine.Counts{Read: 2, Inserted: 2, TargetCalls: 2}, res.Counts)
	res = b.run("contacts")
	assert.Equal(t, engine.Counts{Read: 3, Inserted: 3, TargetCalls: 3}, res.Counts)

	partners := b.target.Records("partners")
	require.Len(t, partners, 2)
	companyLinks := b.links("companies")
	acmeID := strings.TrimPrefix(companyLinks["100"], "success:")
	assert.Equal(t, "Acme", partners[acmeID]["name"])

	people := b.target.Records("people")
	require.Len(t, people, 3)
	contactLinks := b.links("contacts")
	ann := people[strings.TrimPrefix(contactLinks["500"], "success:")]
	assert.Equal(t, "Ann", ann["name"])
	assert.Equal(t, acmeID, fmt.Sprint(ann["partner_id"]), "the child's FK is the parent's target id")
	assert.EqualValues(t, 555, toInt(t, ann["division_id"]), "static value")
	cy := people[strings.TrimPrefix(contactLinks["502"], "success:")]
	assert.Nil(t, cy["partner_id"], "a NULL FK stays NULL")

	writes := b.target.Writes()
	res = b.run("companies")
	assert.Equal(t, engine.Counts{}, res.Counts, "rows inside the overlap window are compared in the warehouse and stay there")
	res = b.run("contacts")
	assert.Equal(t, b.target.Writes(), writes, "a second run makes no target call")
	assert.Zero(t, res.Counts.TargetCalls)

	var runs int
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT count(*) FROM ferry.runs WHERE status = 'succeeded'`).Scan(&runs))
	assert.Equal(t, 4, runs)
}

func toInt(t *testing.T, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case int64:
		return x
	case fmt.Stringer:
		var n int64
		_, err := fmt.Sscan(x.String(), &n)
		require.NoError(t, err)
		return n
	}
	var n int64
	_, err := fmt.Sscan(fmt.Sprint(v), &n)
	require.NoError(t, err)
	return n
}

func TestIncrementalRestampedChangedAndNew(t *testing.T) {
	t.Parallel()
	b := setup(t, companiesSync())
	b.exec(`INSERT INTO crm.companies (id, name, vat, _sdc_batched_at) SELECT g, 'Company ' || g, 'VAT' || g, now() - interval '1 day' - g * interval '1 hour' FROM generate_series(1, 10) g`)
	first := b.run("companies")
	require.Equal(t, int64(10), first.Counts.Inserted)
	before := b.links("companies")

	// 1-3 re-stamped only, 4-5 edited, 11 new.
	b.exec(`UPDATE crm.companies SET _sdc_batched_at = now() WHERE id IN (1, 2, 3)`)
	b.exec(`UPDATE crm.companies SET name = name || ' (edited)', _sdc_batched_at = now() WHERE id IN (4, 5)`)
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (11, 'Company 11', 'VAT11')`)
	res := b.run("companies")
	assert.Equal(t, engine.Counts{Read: 3, Inserted: 1, Updated: 2, TargetCalls: 3}, res.Counts, "re-stamped rows whose content did not change stay in the warehouse")

	after := b.links("companies")
	for _, id := range []string{"1", "2", "3"} {
		assert.Equal(t, before[id], after[id], "re-stamped unchanged row %s: its link row is untouched", id)
	}
	for _, id := range []string{"4", "5"} {
		assert.Equal(t, before[id], after[id], "an update keeps the target id")
	}
	partners := b.target.Records("partners")
	assert.Len(t, partners, 11)
	assert.Equal(t, "Company 4 (edited)", partners[strings.TrimPrefix(after["4"], "success:")]["name"])
	assert.NotEmpty(t, res.BookmarkAfter)
	assert.NotEqual(t, first.BookmarkAfter, res.BookmarkAfter)
}

func TestMappingChangeResyncs(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (1, 'A', 'V1'), (2, 'B', 'V2')`)
	b.run("companies")

	s.Mapping = append(s.Mapping, project.Field{Value: []byte(`"EUR"`), Target: "currency"})
	res, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{Full: true})
	require.NoError(t, err)
	assert.Equal(t, int64(2), res.Counts.Updated, "editing the mapping changes the hash of every record")
	for _, r := range b.target.Records("partners") {
		assert.Equal(t, "EUR", r["currency"])
	}
}

func TestSeededMatchedRowIsUpdatedNotDuplicated(t *testing.T) {
	t.Parallel()
	b := setup(t, companiesSync())
	existing := b.target.Put("partners", map[string]any{"name": "Acme (entered by hand)", "vat": "BE01"})
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (100, 'Acme', 'BE01'), (200, 'Globex', 'BE02')`)
	// Create the link table the way a first run would, then seed it by SQL.
	_, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{IDs: []string{}})
	require.NoError(t, err)
	b.exec(`INSERT INTO link_tables.companies (source_id, target_id, status) VALUES (100, $1, 'matched')`, existing)

	res := b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Updated)
	assert.Equal(t, int64(1), res.Counts.Inserted)
	partners := b.target.Records("partners")
	assert.Len(t, partners, 2, "the matched record is not inserted again")
	assert.Equal(t, "Acme", partners[existing]["name"])
	assert.Equal(t, "success:"+existing, b.links("companies")["100"])
}

func TestChildBeforeParentFailsThenRecovers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(`INSERT INTO crm.companies (id, name) VALUES (100, 'Acme')`)
	b.exec(`INSERT INTO crm.contacts (id, name, company_id) VALUES (500, 'Ann', 100)`)

	res := b.run("contacts")
	assert.Equal(t, int64(1), res.Counts.Failed)
	assert.Equal(t, "error:", b.links("contacts")["500"])
	assert.Contains(t, b.linkError("contacts", "500"), "parent sync companies has not run yet")
	assert.Empty(t, b.target.Records("people"))

	b.run("companies")
	res = b.run("contacts")
	assert.Equal(t, int64(1), res.Counts.Inserted, "the failed child is retried although the bookmark is past it")
	assert.Len(t, b.target.Records("people"), 1)
	assert.True(t, strings.HasPrefix(b.links("contacts")["500"], "success:"))

	// A parent id that is not linked names the parent and its id.
	b.exec(`INSERT INTO crm.contacts (id, name, company_id) VALUES (501, 'Bob', 999)`)
	b.run("contacts")
	assert.Contains(t, b.linkError("contacts", "501"), "parent companies id 999 is not in link_tables.companies")

	// A parent that failed: the child says why the parent failed.
	b.target.Validate = func(object string, p map[string]any) string {
		if object == "partners" && p["name"] == "Bad" {
			return "name Bad is not allowed"
		}
		return ""
	}
	b.exec(`INSERT INTO crm.companies (id, name) VALUES (300, 'Bad')`)
	b.exec(`INSERT INTO crm.contacts (id, name, company_id) VALUES (502, 'Cy', 300)`)
	b.run("companies")
	b.run("contacts")
	msg := b.linkError("contacts", "502")
	assert.Contains(t, msg, "parent companies id 300 failed: ")
	assert.Contains(t, msg, "name Bad is not allowed")
}

func TestRejectedRecordContinueAndRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, companiesSync())
	b.target.Validate = func(_ string, p map[string]any) string {
		if p["vat"] == nil {
			return "vat is required"
		}
		return ""
	}
	b.exec(`INSERT INTO crm.companies (id, name, vat, _sdc_batched_at) VALUES (1, 'A', 'V1', now() - interval '3 hours'), (2, 'B', NULL, now() - interval '2 days'), (3, 'C', 'V3', now() - interval '1 hour')`)
	res := b.run("companies")
	assert.Equal(t, engine.RunSucceededWithErrors, res.Status)
	assert.Equal(t, int64(2), res.Counts.Inserted)
	assert.Equal(t, int64(1), res.Counts.Failed)
	msg := b.linkError("companies", "2")
	assert.Contains(t, msg, "vat is required")
	assert.Contains(t, msg, "source id 2")

	// Retried on the next run with no source change, still failing.
	res = b.run("companies")
	assert.Equal(t, engine.Counts{Read: 1, Failed: 1, TargetCalls: 1}, res.Counts,
		"id 2 is far behind the bookmark and read again because it failed; id 3, the bookmark's own row, stays in the warehouse")
	var attempts int
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT attempts FROM link_tables.companies WHERE source_id = 2`).Scan(&attempts))
	assert.Equal(t, 2, attempts)

	// The target accepts it now (a fix on the target side): it syncs.
	b.target.Validate = nil
	res = b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Inserted)
	assert.Len(t, b.target.Records("partners"), 3)
}

func TestOnErrorStop(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.OnError = project.OnErrorStop
	s.Source.PageSize = 2
	b := setup(t, s)
	b.target.Validate = func(_ string, p map[string]any) string {
		if p["name"] == "bad" {
			return "name is not allowed"
		}
		return ""
	}
	b.exec(`INSERT INTO crm.companies (id, name, _sdc_batched_at) SELECT g, CASE WHEN g = 2 THEN 'bad' ELSE 'ok' END, now() - (10 - g) * interval '1 hour' FROM generate_series(1, 6) g`)
	res := b.run("companies")
	assert.Equal(t, engine.RunStopped, res.Status)
	assert.Contains(t, res.Error, "stopped at source id 2")
	assert.Contains(t, res.Error, "name is not allowed")
	assert.Len(t, b.target.Records("partners"), 1, "records after the failing page are untouched")
	links := b.links("companies")
	assert.Len(t, links, 2)
	assert.Equal(t, "error:", links["2"])
}

// A run that stops mid-page (on_error: stop, or the error budget) leaves
// the page's later records unsent; the bookmark must not move past them, or
// the next incremental run would never read them again.
func TestStoppedRunKeepsTheBookmarkBeforeUnsentRecords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		set  func(*project.Sync)
	}{
		{"on_error stop", func(s *project.Sync) { s.OnError = project.OnErrorStop }},
		{"error budget", func(s *project.Sync) { s.ErrorBudget = &project.ErrorBudget{Window: 2, Share: 1} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := companiesSync()
			// Records 2 and 3 appear twice while crm.dups holds them: their
			// ids are ambiguous, so they fail before anything is sent.
			s.Source = project.Source{Query: "SELECT * FROM crm.companies UNION ALL SELECT * FROM crm.dups", PageSize: 100}
			// No reconciling run to catch what the bookmark skipped.
			require.NoError(t, json.Unmarshal([]byte(`"0s"`), &s.Source.ReconcileEvery))
			tc.set(s)
			b := setup(t, s)
			// A day apart: the overlap window re-reads none of them.
			b.exec(`INSERT INTO crm.companies (id, name, _sdc_batched_at) SELECT g, 'C' || g, now() - (10 - g) * interval '1 day' FROM generate_series(1, 8) g;
				CREATE TABLE crm.dups AS SELECT * FROM crm.companies WHERE id IN (2, 3)`)
			res := b.run("companies")
			require.Equal(t, engine.RunStopped, res.Status, res.Error)
			require.Less(t, len(b.target.Records("partners")), 6, "the run stopped before the end")

			b.exec(`DELETE FROM crm.dups`)
			res = b.run("companies")
			assert.Len(t, b.target.Records("partners"), 8, "every record synced on the next run: %+v", res.Counts)
			for id, state := range b.links("companies") {
				assert.Equal(t, "success", strings.SplitN(state, ":", 2)[0], "source id %s", id)
			}
		})
	}
}

func TestAuthFailureStopsRunAndLeavesRecordsUntouched(t *testing.T) {
	t.Parallel()
	b := setup(t, companiesSync())
	b.exec(`INSERT INTO crm.companies (id, name) SELECT g, 'C' || g FROM generate_series(1, 5) g`)
	b.target.AuthFail = true
	res, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused the credentials")
	assert.Equal(t, engine.RunFailed, res.Status)
	assert.Equal(t, 1, b.target.Writes(), "one failing call, not one per record")
	assert.Empty(t, b.links("companies"), "a record refused for the credentials is untouched, like the rest")

	b.target.AuthFail = false
	res = b.run("companies")
	assert.Equal(t, int64(5), res.Counts.Inserted, "every record syncs once the credentials are fixed")
	assert.Len(t, b.target.Records("partners"), 5)
}

func TestTiedAndLateBookmarksAreNotLost(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source.PageSize = 3
	b := setup(t, s)
	// Ten rows share one stamp: they straddle page boundaries.
	b.exec(`INSERT INTO crm.companies (id, name, _sdc_batched_at) SELECT g, 'C' || g, '2026-01-01 10:00:00+00' FROM generate_series(1, 10) g`)
	res := b.run("companies")
	assert.Equal(t, int64(10), res.Counts.Inserted)

	// A row stamped earlier than the bookmark but committed later (a slow
	// ELT transaction), and a new row with the same tied stamp.
	b.exec(`INSERT INTO crm.companies (id, name, _sdc_batched_at) VALUES (11, 'late', '2026-01-01 09:58:00+00'), (12, 'tied', '2026-01-01 10:00:00+00')`)
	res = b.run("companies")
	assert.Equal(t, int64(2), res.Counts.Inserted)
	assert.Equal(t, int64(2), res.Counts.Read, "the overlap re-reads in the warehouse; the unchanged rows stay there")
	assert.Len(t, b.target.Records("partners"), 12)
}

func TestExplain(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source = project.Source{Query: "SELECT * FROM crm.companies WHERE name <> 'hidden'"}
	b := setup(t, s)
	b.target.Validate = func(_ string, p map[string]any) string {
		if p["vat"] == nil {
			return "vat is required"
		}
		return ""
	}
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (1, 'A', 'V1'), (2, 'B', NULL), (3, 'hidden', 'V3'), (4, 'D', 'V4')`)
	b.run("companies")
	b.exec(`UPDATE crm.companies SET name = 'D2', _sdc_batched_at = now() WHERE id = 4`)

	cases := []struct {
		id   string
		want []string
	}{
		{"1", []string{"has it as success (target id", "a run now would: unchanged", "hashes the same"}},
		{"2", []string{"has it as error (no target id, 1 failed attempts)", "last error: inserting partners refused source id 2", "vat is required", "read again on every run", "a run now would: insert"}},
		{"3", []string{"not in the scope of companies", "check its WHERE clause", "has no row for it"}},
		{"4", []string{"a run now would: update", "_sdc_batched_at is 20"}},
	}
	for _, tc := range cases {
		ex, err := b.eng.Explain(context.Background(), "companies", tc.id)
		require.NoError(t, err)
		text := strings.Join(ex.Findings, "\n")
		for _, w := range tc.want {
			assert.Contains(t, text, w, "source id %s", tc.id)
		}
	}
	assert.Len(t, b.target.Records("partners"), 2, "explain writes nothing")
}

func TestInvalidIDs(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source = project.Source{Query: `SELECT id, name, vat, _sdc_batched_at FROM crm.companies
		UNION ALL SELECT 1, 'dup of 1', NULL, now()
		UNION ALL SELECT NULL, 'no id', NULL, now()`}
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name) VALUES (1, 'A'), (2, 'B')`)
	res := b.run("companies")
	assert.Equal(t, int64(3), res.Counts.Invalid, "two rows of id 1 and one NULL id")
	assert.Equal(t, int64(1), res.Counts.Inserted)
	assert.Len(t, b.target.Records("partners"), 1, "never written twice")
	assert.Contains(t, b.linkError("companies", "1"), "appears 2 times")
	var msg string
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT message FROM ferry.run_errors WHERE source_id IS NULL`).Scan(&msg))
	assert.Contains(t, msg, "NULL id")
}

func TestBadScopeQueries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		query string
		want  []string
	}{
		{"syntax error", "SELECT id, name,\nFROM crm.companies", []string{"sync companies", "line 2", "syntax error"}},
		{"no id column", "SELECT name, _sdc_batched_at FROM crm.companies", []string{`no id column "id"`, "name, _sdc_batched_at", "source.id_column"}},
		{"no bookmark column", "SELECT id, name FROM crm.companies", []string{`no bookmark column "_sdc_batched_at"`, "incremental: false"}},
		{"writes", "DELETE FROM crm.companies", []string{"DELETE statement", "may only read"}},
		{"writes in a CTE", "WITH d AS (DELETE FROM crm.companies RETURNING *) SELECT * FROM d", []string{"scope query"}},
		{"unknown table", "SELECT * FROM crm.nope", []string{`relation "crm.nope" does not exist`, "line 1 column 15"}},
		{"times out", "SELECT c.*, pg_sleep(2) AS z FROM crm.companies c", []string{"took longer than source.timeout (200ms)", "raise source.timeout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := companiesSync()
			s.Source = project.Source{Query: tc.query, Timeout: project.Duration{Duration: 200 * time.Millisecond}}
			b := setup(t, s)
			b.exec(`INSERT INTO crm.companies (id, name) VALUES (1, 'A')`)
			_, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{})
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			var n int
			require.NoError(t, b.db.QueryRow(context.Background(), `SELECT count(*) FROM crm.companies`).Scan(&n))
			assert.Equal(t, 1, n, "nothing in the warehouse is changed")
			assert.Empty(t, b.target.Records("partners"))
		})
	}
}

func TestInterruptedRunIsClosedByTheNext(t *testing.T) {
	t.Parallel()
	b := setup(t, companiesSync())
	b.exec(`INSERT INTO ferry.runs (sync, started_at) VALUES ('companies', now() - interval '1 hour')`)
	b.run("companies")
	var status, msg string
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT status, error FROM ferry.runs ORDER BY id LIMIT 1`).Scan(&status, &msg))
	assert.Equal(t, "interrupted", status)
	assert.Contains(t, msg, "interrupted")
}

func TestOneRunAtATime(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name) VALUES (1, 'A')`)
	// Another process (on another machine) holds the sync, and renews it.
	b.exec(`INSERT INTO ferry.leases (name, holder, epoch, run_id, acquired_at, renewed_at, expires_at)
		VALUES ('sync:companies', 'elsewhere[boot]/42/abcd', 7, 99, now(), now(), now() + interval '1 minute')`)
	_, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.ErrorIs(t, err, engine.ErrBusy)
	assert.EqualError(t, err, "sync companies is already running (run 99) in elsewhere[boot]/42/abcd; wait for that run to finish")
	assert.Zero(t, b.target.Writes())

	// It releases it: the next run takes the sync, with a new epoch.
	b.exec(`UPDATE ferry.leases SET expires_at = '-infinity' WHERE name = 'sync:companies'`)
	res := b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Inserted)
	var epoch int64
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT epoch FROM ferry.leases WHERE name = 'sync:companies'`).Scan(&epoch))
	assert.Equal(t, int64(8), epoch)

	// Two runs at once in this process: exactly one gets the sync.
	b.exec(`UPDATE crm.companies SET name = 'B', _sdc_batched_at = now()`)
	entered := make(chan struct{})
	release := make(chan struct{})
	b.target.Validate = func(string, map[string]any) string {
		close(entered)
		<-release
		return ""
	}
	done := make(chan error, 1)
	go func() { _, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{}); done <- err }()
	<-entered
	_, err = b.eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.ErrorIs(t, err, engine.ErrBusy, "the second run is refused while the first holds the sync")
	close(release)
	require.NoError(t, <-done)
}

// only opens target for every connection.
func only(target connector.Target) engine.Opener {
	return func(context.Context, project.Connection) (connector.Target, error) { return target, nil }
}

// testConnection passes the project's checks; the tests open an in-process
// target in its place.
var testConnection = project.Connection{Kind: "postgres", Settings: []byte(`{"url_env": "FERRY_TEST_UNUSED"}`)}

func TestWriteBackOfNewIDs(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.WriteBack = &project.WriteBack{Connection: "crm", Object: "companies", Field: "erp_id"}
	db := dbtest.NewPool(t)
	_, err := db.Exec(context.Background(), warehouseSQL)
	require.NoError(t, err)
	p, err := project.New(nil, map[string]project.Connection{"erp": testConnection, "crm": testConnection}, s)
	require.NoError(t, err)
	erp, crm := enginetest.NewMemory(), enginetest.NewMemory()
	// The CRM holds the source records under the source ids 1 and 2.
	crm.Put("companies", map[string]any{"name": "Acme"})
	crm.Put("companies", map[string]any{"name": "Globex"})
	eng := engine.New(db, engine.StaticProject(p), engine.Options{Open: func(_ context.Context, c project.Connection) (connector.Target, error) {
		if c.Name == "crm" {
			return crm, nil
		}
		return erp, nil
	}})
	b := &testBundle{t: t, db: db, target: erp, eng: eng, proj: p}
	b.exec(`INSERT INTO crm.companies (id, name) VALUES (1, 'Acme'), (2, 'Globex'), (3, 'Initech')`)

	res := b.run("companies")
	assert.Equal(t, int64(3), res.Counts.Inserted)
	assert.Equal(t, int64(2), res.Counts.WrittenBack)
	links := b.links("companies")
	for _, id := range []string{"1", "2"} {
		assert.Equal(t, "success:"+fmt.Sprint(crm.Records("companies")[id]["erp_id"]), links[id], "source %s got its ERP id", id)
	}
	var msg string
	require.NoError(t, db.QueryRow(context.Background(), `SELECT message FROM ferry.run_errors WHERE source_id = '3' AND class = 'write_back'`).Scan(&msg))
	assert.Contains(t, msg, "back to companies.erp_id of source id 3 failed")
	assert.Contains(t, msg, "the record itself is synced")
	assert.Regexp(t, `^success:\d+$`, links["3"], "a failed write-back does not undo the insert")

	res = b.run("companies")
	assert.Zero(t, res.Counts.WrittenBack, "only new records are written back")
}

// lookup_in looks new records up in the target's copy in the warehouse
// (its ELT table) instead of calling the target.
func TestLookupInTheTargetsWarehouseCopy(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Target.MatchOn = []string{"vat"}
	s.Target.LookupIn = &project.LookupTable{Table: "erp_elt.partners"}
	b := setup(t, s)
	// The ERP holds two of the companies already; its pipeline copied them.
	id1 := b.target.Put("partners", map[string]any{"name": "Old 1", "vat": "V1"})
	id2 := b.target.Put("partners", map[string]any{"name": "Old 2", "vat": "V2"})
	b.exec(`CREATE SCHEMA erp_elt; CREATE TABLE erp_elt.partners (id text PRIMARY KEY, name text, vat text)`)
	b.exec(`INSERT INTO erp_elt.partners VALUES ($1, 'Old 1', 'V1'), ($2, 'Old 2', 'V2'), ('x', 'Twin', 'V3'), ('y', 'Twin', 'V3')`, id1, id2)
	b.exec(`INSERT INTO crm.companies (id, name, vat) SELECT g, 'C' || g, 'V' || g FROM generate_series(1, 5) g`)
	res := b.run("companies")
	assert.EqualValues(t, 2, res.Counts.Updated, "linked to the records the ERP holds")
	assert.EqualValues(t, 2, res.Counts.Inserted)
	assert.EqualValues(t, 1, res.Counts.Failed, "V3 matches two ERP records: not guessed")
	assert.Zero(t, res.Counts.Lookups, "no call to the target")
	links := b.links("companies")
	assert.Equal(t, "success:"+id1, links["1"])
	assert.Equal(t, "success:"+id2, links["2"])
	assert.Contains(t, b.linkError("companies", "3"), "matches 2 records")
	assert.Len(t, b.target.Records("partners"), 4)
	assert.Equal(t, "C1", b.target.Records("partners")[id1]["name"])
}
