package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/postgres"
	"github.com/ferry-sync/ferry/engine/enginetest"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries/dbtest"
	"github.com/ferry-sync/ferry/scripting"
)

// setupScript is setup with in-process scripts (the worker process has its
// own tests in package scripting and below).
func setupScript(t *testing.T, syncs ...*project.Sync) *testBundle {
	t.Helper()
	db := dbtest.NewPool(t)
	_, err := db.Exec(context.Background(), warehouseSQL+`
		ALTER TABLE crm.companies ADD COLUMN street text, ADD COLUMN city text, ADD COLUMN status text;`)
	require.NoError(t, err)
	p, err := project.New(nil, map[string]project.Connection{"erp": testConnection}, syncs...)
	require.NoError(t, err)
	target := enginetest.NewMemory()
	eng := engine.New(db, engine.StaticProject(p), engine.Options{
		Open:            only(target),
		ScriptIsolation: scripting.IsolationNone,
	})
	return &testBundle{t: t, db: db, target: target, eng: eng, proj: p}
}

func transformSync(code string) *project.Sync {
	s := companiesSync()
	s.Transform = "companies.star"
	s.TransformSource = []byte(code)
	return s
}

func TestTransformNestedJSON(t *testing.T) {
	t.Parallel()
	// The spec's example, in Starlark.
	b := setupScript(t, transformSync(`
def transform(source_record, target_record, pq, target_id=None):
    target_record["address"] = {"street": source_record["street"], "city": source_record["city"]}
    if target_id:
        target_record["id"] = target_id
    return target_record
`))
	b.exec(`INSERT INTO crm.companies (id, name, street, city) VALUES (1, 'Acme', '1 Somestreet', 'NY')`)
	res := b.run("companies")
	require.Equal(t, int64(1), res.Counts.Inserted)
	for _, r := range b.target.Records("partners") {
		assert.Equal(t, map[string]any{"street": "1 Somestreet", "city": "NY"}, r["address"])
		assert.NotContains(t, r, "id", "no target id on insert")
	}

	b.exec(`UPDATE crm.companies SET city = 'Boston', _sdc_batched_at = now()`)
	res = b.run("companies")
	require.Equal(t, int64(1), res.Counts.Updated)
	for id, r := range b.target.Records("partners") {
		assert.Equal(t, "Boston", r["address"].(map[string]any)["city"])
		assert.Equal(t, id, r["id"], "updates carry the target id")
	}
}

func TestTransformConditionalSkip(t *testing.T) {
	t.Parallel()
	b := setupScript(t, transformSync(`
def transform(source_record, target_record, pq, target_id=None):
    if target_id:  # an update, not an insert
        if source_record["status"] == "deleted":
            return None  # skips the record
        target_record["id"] = target_id
    return target_record
`))
	b.exec(`INSERT INTO crm.companies (id, name, status) VALUES (1, 'A', 'active'), (2, 'B', 'active')`)
	b.run("companies")
	b.exec(`UPDATE crm.companies SET status = 'deleted', name = 'B (gone)', _sdc_batched_at = now() WHERE id = 2`)
	res := b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Skipped)
	assert.Equal(t, "skipped:"+strings.Split(b.links("companies")["2"], ":")[1], b.links("companies")["2"])
	assert.Equal(t, "transform returned None", b.linkError("companies", "2"), "the link table says why")
	for _, r := range b.target.Records("partners") {
		assert.NotEqual(t, "B (gone)", r["name"])
	}
}

func TestTransformLookupBeforeUpsert(t *testing.T) {
	t.Parallel()
	b := setupScript(t, transformSync(`
def transform(source_record, target_record, pq, target_id=None):
    if not target_id:
        existing = pq.lookup("partners", vat=source_record["vat"])
        if existing:
            pq.update_id(existing["id"])
    return target_record
`))
	existing := b.target.Put("partners", map[string]any{"name": "ACME NV (typed by hand)", "vat": "BE01"})
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (1, 'Acme', 'BE01'), (2, 'Globex', 'BE02')`)
	res := b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Updated, "the lookup turned the insert into an update")
	assert.Equal(t, int64(1), res.Counts.Inserted)
	assert.Equal(t, int64(2), res.Counts.Lookups)
	partners := b.target.Records("partners")
	assert.Len(t, partners, 2, "no duplicate")
	assert.Equal(t, "Acme", partners[existing]["name"])
	assert.Equal(t, "success:"+existing, b.links("companies")["1"], "the link row remembers the match")

	finds := b.target.Finds()
	b.exec(`UPDATE crm.companies SET name = 'Acme 2', _sdc_batched_at = now() WHERE id = 1`)
	res = b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Updated)
	assert.Equal(t, finds, b.target.Finds(), "a linked record is updated directly, with no lookup")
	assert.Equal(t, "Acme 2", b.target.Records("partners")[existing]["name"])
}

func TestTransformRuntimeErrorOnOneRecord(t *testing.T) {
	t.Parallel()
	code := `
def transform(source_record, target_record, pq, target_id=None):
    if source_record["id"] == 2:
        target_record["x"] = source_record["no_such_column"]
    return target_record
`
	for _, onError := range []project.OnError{project.OnErrorContinue, project.OnErrorStop} {
		t.Run(string(onError), func(t *testing.T) {
			t.Parallel()
			s := transformSync(code)
			s.OnError = onError
			b := setupScript(t, s)
			b.exec(`INSERT INTO crm.companies (id, name) SELECT g, 'C' || g FROM generate_series(1, 3) g`)
			res := b.run("companies")
			assert.Equal(t, int64(1), res.Counts.Failed)
			msg := b.linkError("companies", "2")
			assert.Contains(t, msg, "companies.star:4")
			assert.Contains(t, msg, "no_such_column")
			assert.Contains(t, msg, "source id 2")
			if onError == project.OnErrorStop {
				assert.Equal(t, engine.RunStopped, res.Status)
				assert.Contains(t, res.Error, "stopped at source id 2")
				assert.Len(t, b.target.Records("partners"), 1, "the record before it is written, the one after it is not")
			} else {
				assert.Equal(t, engine.RunSucceededWithErrors, res.Status)
				assert.Len(t, b.target.Records("partners"), 2, "the other records of the page are written")
			}
		})
	}
}

func TestEveryColumnTypeRoundTrips(t *testing.T) {
	t.Parallel()
	db := dbtest.NewPool(t)
	ctx := context.Background()
	const columns = `t text, i bigint, n numeric, f double precision, b boolean, z text,
		ts timestamptz, d date, j jsonb, a integer[], u uuid`
	_, err := db.Exec(ctx, `CREATE SCHEMA crm; CREATE TABLE crm.things (id int PRIMARY KEY, `+columns+`, _sdc_batched_at timestamptz DEFAULT now());
		INSERT INTO crm.things VALUES (1, 'héllo ✓', 9007199254740993, 12345678901234567890.123456789, 0.1, true, NULL,
			'2026-03-04 05:06:07.123456+02', '2026-12-31', '{"k": [1, 2.50, {"deep": 12345678901234567890}], "s": "x"}',
			'{1,2,3}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')`)
	require.NoError(t, err)
	erpURL := dbtest.NewEmptyURL(t)
	erp := dbtest.Open(t, erpURL)
	_, err = erp.Exec(ctx, `CREATE TABLE things (id serial PRIMARY KEY, `+columns+`)`)
	require.NoError(t, err)

	s := &project.Sync{
		Name: "things", Source: project.Source{Table: "crm.things"},
		Target:    project.TargetRef{Connection: "erp", Object: "things"},
		Transform: "things.star",
		// The transform rebuilds the record field by field: every value
		// crosses into Starlark and back.
		TransformSource: []byte(`
def transform(source_record, target_record, pq, target_id=None):
    out = {}
    for k in target_record:
        out[k] = source_record[k]
    return out
`),
	}
	p, err := project.New(nil, map[string]project.Connection{"erp": testConnection}, s)
	require.NoError(t, err)
	for _, isolation := range []scripting.Isolation{scripting.IsolationNone} {
		eng := engine.New(db, engine.StaticProject(p), engine.Options{
			Open: func(ctx context.Context, _ project.Connection) (connector.Target, error) {
				return postgres.New(ctx, postgres.Config{URL: erpURL})
			},
			ScriptIsolation: isolation,
		})
		res, err := eng.Run(ctx, "things", engine.RunOptions{})
		require.NoError(t, err)
		require.Equal(t, int64(1), res.Counts.Inserted, res.Error)
	}
	var src, dst string
	sel := `SELECT concat_ws(' | ', t, i, n, f, b, z, ts AT TIME ZONE 'UTC', d, j, a, u) FROM `
	require.NoError(t, db.QueryRow(ctx, sel+`crm.things`).Scan(&src))
	require.NoError(t, erp.QueryRow(ctx, sel+`things`).Scan(&dst))
	assert.Equal(t, src, dst)
	assert.Contains(t, dst, "12345678901234567890.123456789")
	assert.Contains(t, dst, "9007199254740993")
}

// A transform that fails every record spends the error budget: the run
// stops within the page instead of running the script on every record.
func TestTransformFailingEveryRecordStopsTheRun(t *testing.T) {
	t.Parallel()
	b := setupScript(t, transformSync(`
def transform(source_record, target_record, pq, target_id=None):
    fail("the lookup table is gone")
`))
	b.exec(`INSERT INTO crm.companies (id, name) SELECT g, 'C' || g FROM generate_series(1, 900) g`)
	res := b.run("companies")
	assert.Equal(t, engine.RunStopped, res.Status)
	assert.Contains(t, res.Error, "50 of the last 50 records failed the same way")
	assert.Contains(t, res.Error, "the lookup table is gone")
	assert.LessOrEqual(t, res.Counts.Failed, int64(100), "at most one batch of the transform past the budget")
}
