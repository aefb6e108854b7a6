package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/api/auth"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

const crmSQL = `
CREATE SCHEMA crm;
CREATE TABLE crm.companies (id int PRIMARY KEY, name text, vat text, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE crm.contacts (id int PRIMARY KEY, name text, email text, company_id int, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
INSERT INTO crm.companies VALUES (1, 'Acme', 'BE01'), (2, 'Globex', 'BE02');
INSERT INTO crm.contacts VALUES (10, 'Ann', 'ann@acme.test', 1), (11, 'Bob', 'bob@globex.test', 2), (12, 'Cy', NULL, 2);
`

const erpSQL = `
CREATE TABLE partners (id serial PRIMARY KEY, name text NOT NULL, vat text);
CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL, partner_id int REFERENCES partners, label text);
`

func exec(t testing.TB, db *pgxpool.Pool, sql string) {
	t.Helper()
	_, err := db.Exec(context.Background(), sql)
	require.NoError(t, err)
}

func count(t testing.TB, db *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

// The user story of the issue, through the API only: a connection with its
// secret, two syncs (SQL scope, mapping, relation, a Starlark transform),
// check, test one record, runs followed to their end, counts, the records
// in error and why one did not sync; then the configuration exported and
// imported on a second, empty warehouse, where the same runs give the same
// results, and a round trip that gives the same bytes.
func TestUserStory(t *testing.T) {
	t.Parallel()
	key := secretKey(t)
	ts := newServer(t, key)
	exec(t, ts.db, crmSQL)
	erpURL := dbtest.NewEmptyURL(t)
	erp := dbtest.Open(t, erpURL)
	exec(t, erp, erpSQL)

	ts.ok(auth.Admin, http.MethodPut, "/api/v1/connections/erp", map[string]any{
		"kind": "postgres", "settings": map[string]any{"url_env": "ERP_URL"},
		"secrets": map[string]string{"ERP_URL": erpURL},
	})
	conn := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/connections/erp", nil)
	assert.Equal(t, []any{map[string]any{"name": "ERP_URL", "stored": true, "in_environment": false}}, conn["secrets"])

	ts.ok(auth.Editor, http.MethodPut, "/api/v1/syncs/companies", map[string]any{
		"source":  map[string]any{"query": "SELECT id, name, vat, _sdc_batched_at FROM crm.companies"},
		"target":  map[string]any{"connection": "erp", "object": "partners"},
		"mapping": []any{map[string]any{"source": "name", "target": "name"}, map[string]any{"source": "vat", "target": "vat"}},
	})
	ts.ok(auth.Editor, http.MethodPut, "/api/v1/scripts/contacts.star", map[string]any{"source": `def transform(source_record, target_record, pq, target_id=None):
    target_record["label"] = source_record["name"].upper()
    return target_record
`})
	ts.ok(auth.Editor, http.MethodPut, "/api/v1/syncs/contacts", map[string]any{
		"source":    map[string]any{"table": "crm.contacts"},
		"target":    map[string]any{"connection": "erp", "object": "people"},
		"mapping":   []any{map[string]any{"source": "name", "target": "name"}, map[string]any{"source": "email", "target": "email"}},
		"relations": []any{map[string]any{"source": "company_id", "sync": "companies", "target": "partner_id"}},
		"transform": "contacts.star",
	})

	check := ts.ok(auth.Viewer, http.MethodPost, "/api/v1/syncs/contacts/check", nil)
	assert.Equal(t, true, check["ok"], "%v", check)
	test := ts.ok(auth.Viewer, http.MethodPost, "/api/v1/syncs/companies/test", map[string]any{"id": "1"})
	assert.Equal(t, "insert", test["records"].([]any)[0].(map[string]any)["decision"])
	assert.Zero(t, count(t, erp, "SELECT count(*) FROM partners"), "a test writes nothing")

	for _, sync := range []string{"companies", "contacts"} {
		started := ts.ok(auth.Editor, http.MethodPost, "/api/v1/syncs/"+sync+"/runs", nil)
		run := ts.waitRun(started["run_id"])
		switch sync {
		case "companies":
			assert.Equal(t, "succeeded", run["status"])
			assert.EqualValues(t, 2, run["inserted"])
		case "contacts":
			assert.Equal(t, "succeeded_with_errors", run["status"])
			assert.EqualValues(t, 2, run["inserted"])
			assert.EqualValues(t, 1, run["failed"])
		}
	}
	assert.Equal(t, 2, count(t, erp, "SELECT count(*) FROM people WHERE label = upper(name) AND partner_id IS NOT NULL"))

	st := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/syncs/contacts/status", nil)
	assert.EqualValues(t, map[string]any{"success": float64(2), "error": float64(1)}, st["links"])
	errs := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/syncs/contacts/links?status=error", nil)
	links := errs["links"].([]any)
	require.Len(t, links, 1)
	assert.Contains(t, links[0].(map[string]any)["error"], `null value in column "email"`)
	ex := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/syncs/contacts/explain/12", nil)
	assert.Contains(t, fmt.Sprint(ex["findings"]), "has it as error")

	// Export, and import on a second, empty warehouse: the same runs give
	// the same results.
	exported := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/export", nil)
	files := exported["files"].(map[string]any)
	assert.Contains(t, files, "ferry.yaml")
	assert.Contains(t, files, "syncs/contacts.yaml")

	ts2 := newServer(t, key)
	exec(t, ts2.db, crmSQL)
	erp2URL := dbtest.NewEmptyURL(t)
	erp2 := dbtest.Open(t, erp2URL)
	exec(t, erp2, erpSQL)
	ts2.ok(auth.Admin, http.MethodPut, "/api/v1/secrets/ERP_URL", map[string]any{"value": erp2URL})
	dry := ts2.ok(auth.Admin, http.MethodPost, "/api/v1/import", map[string]any{"files": files, "dry_run": true})
	assert.Len(t, dry["files"], len(files), "a dry run shows every file it would add")
	ts2.ok(auth.Admin, http.MethodPost, "/api/v1/import", map[string]any{"files": files})
	for _, sync := range []string{"companies", "contacts"} {
		started := ts2.ok(auth.Editor, http.MethodPost, "/api/v1/syncs/"+sync+"/runs", nil)
		ts2.waitRun(started["run_id"])
	}
	for _, q := range []string{"SELECT count(*) FROM partners", "SELECT count(*) FROM people", "SELECT count(*) FROM people WHERE label = upper(name)"} {
		assert.Equal(t, count(t, erp, q), count(t, erp2, q), q)
	}
	again := ts2.ok(auth.Viewer, http.MethodGet, "/api/v1/export", nil)
	assert.Equal(t, files, again["files"], "export → import → export gives the same bytes")
}
