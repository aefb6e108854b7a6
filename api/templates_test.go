package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/api/auth"
	"github.com/ferry-sync/ferry/queries/dbtest"
	"github.com/ferry-sync/ferry/templates"
)

// A shipped template through the API: listed, shown, instantiated into the
// stored configuration (a new connection needs admin; a file in the way is
// a conflict unless forced; a bad value names its parameter), and then run
// against the demo warehouse and ERP.
func TestTemplateInstantiatedThroughTheAPIRuns(t *testing.T) {
	t.Parallel()
	ts := newServer(t, secretKey(t))
	demoWarehouse, err := templates.ReadFile("demo", "warehouse.sql")
	require.NoError(t, err)
	demoERP, err := templates.ReadFile("demo", "erp.sql")
	require.NoError(t, err)
	exec(t, ts.db, string(demoWarehouse))
	erpURL := dbtest.NewEmptyURL(t)
	erp := dbtest.Open(t, erpURL)
	exec(t, erp, string(demoERP))

	list := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/templates", nil)
	var names []string
	for _, tmpl := range list["templates"].([]any) {
		names = append(names, tmpl.(map[string]any)["name"].(string))
	}
	assert.Contains(t, names, "companies_contacts")
	assert.GreaterOrEqual(t, len(names), 13)

	detail := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/templates/companies_contacts", nil)
	assert.Equal(t, "shipped", detail["origin"])
	assert.Equal(t, []any{"syncs/companies.yaml", "syncs/contacts.sql", "syncs/contacts.yaml"}, detail["creates"])
	assert.Equal(t, []any{"connections.erp", "groups.crm_to_erp"}, detail["project_entries"])
	assert.Contains(t, detail["readme"], "parent relation")
	status, _, _ := ts.call(auth.Viewer, http.MethodGet, "/api/v1/templates/nope", nil)
	assert.Equal(t, http.StatusNotFound, status)

	// A value of the wrong type names its parameter; nothing changes.
	status, out, raw := ts.call(auth.Editor, http.MethodPost, "/api/v1/templates/companies_contacts/instantiate",
		map[string]any{"parameters": map[string]any{"companies_table": "companies", "every": 5}})
	require.Equal(t, http.StatusUnprocessableEntity, status, raw)
	assert.Contains(t, raw, `"path":"parameters.companies_table"`)
	assert.Contains(t, raw, "is not a table name")
	assert.Contains(t, raw, `"path":"parameters.every"`)
	_ = out

	// It adds the erp connection: an editor may not, an admin may.
	status, _, raw = ts.call(auth.Editor, http.MethodPost, "/api/v1/templates/companies_contacts/instantiate", map[string]any{})
	require.Equal(t, http.StatusForbidden, status, raw)
	assert.Contains(t, raw, "connections need the admin role")
	dry := ts.ok(auth.Editor, http.MethodPost, "/api/v1/templates/companies_contacts/instantiate", map[string]any{"dry_run": true})
	assert.Len(t, dry["files"], 4, "a dry run shows what would change: three files and ferry.yaml")
	assert.Empty(t, ts.ok(auth.Viewer, http.MethodGet, "/api/v1/syncs", nil)["syncs"], "and changes nothing")

	done := ts.ok(auth.Admin, http.MethodPost, "/api/v1/templates/companies_contacts/instantiate", map[string]any{"parameters": map[string]any{"every": "15m"}})
	assert.EqualValues(t, 1, done["version"])
	assert.Contains(t, done["next"], "ferry run --group crm_to_erp              # companies first, then contacts")
	exported := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/export", nil)["files"].(map[string]any)
	assert.True(t, strings.HasPrefix(exported["syncs/contacts.sql"].(string), "-- from template companies_contacts v1 with {"), "the file names the template that wrote it")
	assert.Contains(t, exported["ferry.yaml"], "every: 15m")

	// Again: nothing changes. A file edited since is in the way, unless forced.
	again := ts.ok(auth.Admin, http.MethodPost, "/api/v1/templates/companies_contacts/instantiate", map[string]any{"parameters": map[string]any{"every": "15m"}})
	assert.EqualValues(t, 1, again["version"])
	assert.Empty(t, again["files"])
	ts.ok(auth.Editor, http.MethodPut, "/api/v1/syncs/companies", map[string]any{
		"source": map[string]any{"table": "crm.companies"}, "target": map[string]any{"connection": "erp", "object": "partners"},
		"mapping": []any{map[string]any{"source": "name", "target": "name"}, map[string]any{"source": "vat", "target": "vat"}},
	})
	status, _, raw = ts.call(auth.Editor, http.MethodPost, "/api/v1/templates/companies_contacts/instantiate", map[string]any{"parameters": map[string]any{"every": "15m"}})
	require.Equal(t, http.StatusConflict, status, raw)
	assert.Contains(t, raw, `"path":"syncs/companies.yaml"`)
	diff := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/templates/companies_contacts/diff", nil)
	reports := diff["reports"].([]any)
	require.Len(t, reports, 1)
	assert.EqualValues(t, 1, reports[0].(map[string]any)["was"])
	forced := ts.ok(auth.Editor, http.MethodPost, "/api/v1/templates/companies_contacts/instantiate", map[string]any{"parameters": map[string]any{"every": "15m"}, "force": true})
	assert.EqualValues(t, 3, forced["version"])

	// The syncs it wrote run against the demo databases.
	ts.ok(auth.Admin, http.MethodPut, "/api/v1/secrets/ERP_URL", map[string]any{"value": erpURL})
	check := ts.ok(auth.Viewer, http.MethodPost, "/api/v1/syncs/contacts/check", nil)
	require.Equal(t, true, check["ok"], "%v", check)
	for _, sync := range []string{"companies", "contacts"} {
		started := ts.ok(auth.Editor, http.MethodPost, "/api/v1/syncs/"+sync+"/runs", nil)
		run := ts.waitRun(started["run_id"])
		assert.Equal(t, "succeeded", run["status"], "%v", run)
	}
	assert.Equal(t, 40, count(t, erp, "SELECT count(*) FROM erp.partners"))
	assert.Equal(t, 144, count(t, erp, "SELECT count(*) FROM erp.people WHERE partner_id IS NOT NULL"))
	assert.Equal(t, 144, count(t, ts.db, "SELECT count(*) FROM link_tables.contacts WHERE status = 'success'"))
}

// A team's templates are stored on the server: checked when stored, their
// version must rise when their files change, they cannot take a shipped
// template's name, and a project made from one sees what a new version
// changes.
func TestStoredTemplates(t *testing.T) {
	t.Parallel()
	ts := newServer(t, secretKey(t))
	files := map[string]string{
		"template.yaml": `name: deals
version: 1
title: CRM deals → ERP orders
description: Deals that are won become orders.
parameters:
  - {name: deals_table, type: table, default: crm.deals, description: Where the deals are.}
  - {name: stage, type: string, default: won, description: The stage that makes an order.}
`,
		"README.md":                     "# deals\n",
		"project/ferry.yaml":            "connections:\n  erp: {kind: postgres, settings: {url_env: ERP_URL, schema: erp}}\n",
		"project/syncs/orders.yaml":     "source: {query_file: orders.sql}\ntarget: {connection: erp, object: orders}\n",
		"project/syncs/orders.sql":      "SELECT d.id, d.amount FROM {{deals_table}} AS d WHERE d.stage = {{stage}}\n",
		"fixtures/warehouse.sql":        "CREATE TABLE crm.deals (id int, amount numeric, stage text);\n",
		"project/syncs/orders_lib.star": "STAGE = {{stage}}\n",
	}
	put := func(role auth.Role, name string, files map[string]string) (int, string) {
		status, _, raw := ts.call(role, http.MethodPut, "/api/v1/templates/"+name, map[string]any{"files": files})
		return status, raw
	}
	status, raw := put(auth.Viewer, "deals", files)
	assert.Equal(t, http.StatusForbidden, status, raw)
	status, raw = put(auth.Editor, "deals", files)
	require.Equal(t, http.StatusOK, status, raw)

	list := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/templates", nil)
	found := false
	for _, tmpl := range list["templates"].([]any) {
		if m := tmpl.(map[string]any); m["name"] == "deals" {
			found = true
			assert.Equal(t, "stored", m["origin"])
		}
	}
	assert.True(t, found, "listed with the shipped ones")

	for _, c := range []struct {
		name  string
		edit  func(map[string]string)
		code  int
		words string
	}{
		{"a placeholder naming no parameter", func(f map[string]string) { f["project/syncs/orders.sql"] += "-- {{nope}}\n" }, 422, "{{nope}} names no parameter"},
		{"a bad default", func(f map[string]string) {
			f["template.yaml"] = strings.Replace(f["template.yaml"], "default: crm.deals", "default: deals", 1)
		}, 422, "is not a table name"},
		{"a file a project cannot keep", func(f map[string]string) { f["project/notes.txt"] = "x" }, 422, "a template writes ferry.yaml and files in folders"},
		{"changed files, same version", func(f map[string]string) { f["README.md"] = "# deals, better\n" }, 409, "raise version in template.yaml (to 2)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			edited := map[string]string{}
			for k, v := range files {
				edited[k] = v
			}
			c.edit(edited)
			status, raw := put(auth.Editor, "deals", edited)
			assert.Equal(t, c.code, status, raw)
			assert.Contains(t, raw, c.words)
		})
	}
	status, raw = put(auth.Editor, "contacts_people", files)
	assert.Equal(t, http.StatusUnprocessableEntity, status)
	assert.Contains(t, raw, "Ferry ships a template named contacts_people")

	// Instantiated, then changed upstream: the diff says so.
	ts.ok(auth.Admin, http.MethodPost, "/api/v1/templates/deals/instantiate", map[string]any{"parameters": map[string]any{"stage": "closed won"}})
	v2 := map[string]string{}
	for k, v := range files {
		v2[k] = v
	}
	v2["template.yaml"] = strings.Replace(v2["template.yaml"], "version: 1", "version: 2", 1)
	v2["project/syncs/orders.sql"] = "SELECT d.id, d.amount, d.currency FROM {{deals_table}} AS d WHERE d.stage = {{stage}}\n"
	status, raw = put(auth.Editor, "deals", v2)
	require.Equal(t, http.StatusOK, status, raw)
	diff := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/templates/deals/diff", nil)
	reports := diff["reports"].([]any)
	require.Len(t, reports, 1)
	rep := reports[0].(map[string]any)
	assert.EqualValues(t, 1, rep["was"])
	assert.EqualValues(t, 2, rep["now"])
	states := map[string]string{}
	for _, f := range rep["files"].([]any) {
		fm := f.(map[string]any)
		states[fm["path"].(string)] = fm["state"].(string)
		if fm["path"] == "syncs/orders.sql" {
			assert.Contains(t, fm["diff"], "+SELECT d.id, d.amount, d.currency FROM")
			assert.Contains(t, fm["diff"], "'closed won'", "rendered with the values the project was made with")
		}
	}
	assert.Equal(t, map[string]string{"syncs/orders.sql": "changed upstream", "syncs/orders.yaml": "up to date", "syncs/orders_lib.star": "up to date"}, states)

	status, _, _ = ts.call(auth.Editor, http.MethodDelete, "/api/v1/templates/deals", nil)
	assert.Equal(t, http.StatusNoContent, status)
	status, _, _ = ts.call(auth.Editor, http.MethodDelete, "/api/v1/templates/deals", nil)
	assert.Equal(t, http.StatusNotFound, status)
	status, _, _ = ts.call(auth.Editor, http.MethodDelete, "/api/v1/templates/contacts_people", nil)
	assert.Equal(t, http.StatusUnprocessableEntity, status, "a shipped template cannot be deleted")
}
