package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/queries/dbtest"
	"github.com/ferry-sync/ferry/templates"
)

// A new user's path, on the command line only: list the templates, show
// one, write it into a project folder, check and test it, run it against
// the demo warehouse and ERP, and see what a template changed since.
func TestTemplateFromListToRun(t *testing.T) {
	code, out, errOut := ferry(t, "template", "list")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "companies_contacts  v1")
	assert.Contains(t, out, "13 templates.")

	code, out, _ = ferry(t, "template", "show", "companies_contacts")
	require.Equal(t, exitOK, code)
	for _, want := range []string{"Parameters (--set name=value):", "companies_table", "default crm.companies", "syncs/contacts.sql", "groups.crm_to_erp", "ferry template new companies_contacts ./my-project"} {
		assert.Contains(t, out, want)
	}

	wh, erp := dbtest.NewURL(t), dbtest.NewEmptyURL(t)
	for db, file := range map[string]string{wh: "warehouse.sql", erp: "erp.sql"} {
		sql, err := templates.ReadFile("demo", file)
		require.NoError(t, err)
		execSQL(t, db, string(sql))
	}
	t.Setenv("FERRY_TEST_TEMPLATE_ERP_URL", erp)
	dir := filepath.Join(t.TempDir(), "my-project")

	code, out, errOut = ferry(t, "template", "new", "companies_contacts", dir, "--dry-run", "--set", "erp_url_env=FERRY_TEST_TEMPLATE_ERP_URL")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "would write (dry run: nothing written)")
	assert.NoDirExists(t, dir)

	code, out, errOut = ferry(t, "template", "new", "companies_contacts", dir, "--set", "erp_url_env=FERRY_TEST_TEMPLATE_ERP_URL", "--set", "every=15m")
	require.Equal(t, exitOK, code, errOut)
	for _, want := range []string{"created      syncs/contacts.yaml", "added        ferry.yaml: connections.erp", "added        ferry.yaml: groups.crm_to_erp", "export FERRY_TEST_TEMPLATE_ERP_URL='postgres://…'", "ferry run --group crm_to_erp"} {
		assert.Contains(t, out, want)
	}

	code, out, errOut = ferry(t, "--project", dir, "--db", wh, "check")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "2 syncs checked")
	code, out, errOut = ferry(t, "--project", dir, "--db", wh, "run", "--group", "crm_to_erp")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "companies    succeeded read 40  inserted 40")
	assert.Contains(t, out, "contacts     succeeded read 144  inserted 144")
	code, out, _ = ferry(t, "--project", dir, "--db", wh, "schedule", "list")
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "crm_to_erp")
	assert.Contains(t, out, "every 15m")

	code, out, _ = ferry(t, "template", "diff", dir)
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "companies_contacts: written by v1, now v1")
	assert.Contains(t, out, "up to date       syncs/contacts.sql\n")
	f, err := os.OpenFile(filepath.Join(dir, "syncs", "contacts.sql"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("  AND c.email NOT LIKE '%@example.org'\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	code, out, _ = ferry(t, "template", "diff", dir)
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "up to date       syncs/contacts.sql (edited by you)")

	// Written again, the edited file is in the way: nothing is written.
	code, _, errOut = ferry(t, "template", "new", "companies_contacts", dir, "--set", "erp_url_env=FERRY_TEST_TEMPLATE_ERP_URL", "--set", "every=15m")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "would overwrite syncs/contacts.sql")
	assert.Contains(t, errOut, "--force")
}

// Wrong names and values are usage errors that say what is wrong.
func TestTemplateUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"template", "show", "nope"}, `no template named "nope" (there are: companies_contacts`},
		{[]string{"template", "new", "nope", dir}, `no template named "nope"`},
		{[]string{"template", "new", "contacts_people", dir, "--set", "contacts_table=contacts"}, `parameter contacts_table: "contacts" is not a table name: write schema.table`},
		{[]string{"template", "new", "contacts_people", dir, "--set", "vip"}, `--set "vip": write name=value`},
		{[]string{"template", "new", "contacts_people", dir, "--set", "colour=red"}, "parameter colour: contacts_people takes no such parameter (it takes: contacts_table, vip_stage"},
		{[]string{"template", "new", "./no/such/folder", dir}, "no template in ./no/such/folder"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, out, errOut := ferry(t, c.args...)
			assert.Equal(t, exitUsage, code)
			assert.Empty(t, out)
			assert.Contains(t, errOut, c.want)
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing was written")
}

// A team's templates live in folders: listed with --templates, used by
// name or by path.
func TestTemplateFromAFolder(t *testing.T) {
	team := t.TempDir()
	files := map[string]string{
		"deals/template.yaml": `name: deals
version: 3
title: CRM deals → ERP orders
description: Won deals become orders.
parameters:
  - {name: stage, type: string, default: won, description: The stage that makes an order.}
`,
		"deals/project/ferry.yaml":        "connections:\n  erp: {kind: postgres, settings: {url_env: ERP_URL}}\n",
		"deals/project/syncs/orders.yaml": "source: {query_file: orders.sql}\ntarget: {connection: erp, object: orders}\n",
		"deals/project/syncs/orders.sql":  "SELECT d.id FROM crm.deals AS d WHERE d.stage = {{stage}}\n",
	}
	for p, c := range files {
		require.NoError(t, os.MkdirAll(filepath.Join(team, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(team, p), []byte(c), 0o644))
	}
	code, out, errOut := ferry(t, "template", "list", "--templates", team)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "deals               v3       CRM deals → ERP orders ("+filepath.Join(team, "deals")+")")
	assert.Contains(t, out, "14 templates.")

	dir := t.TempDir()
	code, out, errOut = ferry(t, "template", "new", filepath.Join(team, "deals"), dir, "--set", "stage=closed won")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "template deals v3 wrote into")
	sql, err := os.ReadFile(filepath.Join(dir, "syncs", "orders.sql"))
	require.NoError(t, err)
	assert.Contains(t, string(sql), "WHERE d.stage = 'closed won'")

	code, out, _ = ferry(t, "template", "diff", dir)
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "pass --templates DIR", "a team's template is found only in its folder")
	code, out, _ = ferry(t, "template", "diff", dir, "--templates", team)
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "deals: written by v3, now v3")
}
