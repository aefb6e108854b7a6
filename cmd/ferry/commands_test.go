package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/queries/dbtest"
)

// execSQL runs sql on the database at dbURL.
func execSQL(t *testing.T, dbURL, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	require.NoError(t, err)
}

// writeProject writes files into a fresh project folder.
func writeProject(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	}
	return dir
}

// familyProject is a warehouse with companies and their contacts, an ERP
// with partners and people, and a project whose group "crm_to_erp" syncs
// both, parents first. The ERP's URL is in the variable erpEnv.
func familyProject(t *testing.T, companiesSource string) (dir, wh, erp string) {
	t.Helper()
	wh, erp = dbtest.NewURL(t), dbtest.NewEmptyURL(t)
	execSQL(t, wh, `CREATE SCHEMA crm;
		CREATE TABLE crm.companies (id int PRIMARY KEY, name text, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE crm.contacts (id int PRIMARY KEY, name text, company_id int, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO crm.companies (id, name) VALUES (1, 'Acme'), (2, 'Globex'), (3, 'Initech');
		INSERT INTO crm.contacts (id, name, company_id) VALUES (10, 'Ann', 1), (11, 'Bob', 2);`)
	execSQL(t, erp, `CREATE TABLE partners (id serial PRIMARY KEY, name text NOT NULL);
		CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL, partner_id int);`)
	const erpEnv = "FERRY_TEST_FAMILY_ERP_URL"
	t.Setenv(erpEnv, erp)
	dir = writeProject(t, map[string]string{
		"ferry.yaml": fmt.Sprintf(`connections:
  erp:
    kind: postgres
    settings: {url_env: %s}
groups:
  crm_to_erp: {syncs: [contacts, companies]}
`, erpEnv),
		"syncs/companies.yaml": fmt.Sprintf(`
source: %s
target: {connection: erp, object: partners}
mapping: [{source: name, target: name}]
`, companiesSource),
		"syncs/contacts.yaml": `
source: {table: crm.contacts}
target: {connection: erp, object: people}
mapping: [{source: name, target: name}]
relations: [{source: company_id, sync: companies, target: partner_id}]
`,
	})
	return dir, wh, erp
}

// A group whose parent fails as a whole: the child is not started, says
// why, and the run exits 1.
func TestRunGroupWhoseParentFails(t *testing.T) {
	// The scope query divides by zero on the second row it reads: the
	// companies run fails once it has started.
	dir, wh, _ := familyProject(t, `{query: "SELECT id, name, _sdc_batched_at FROM crm.companies WHERE 1 / (id - 2) IS NOT NULL"}`)
	code, out, errOut := ferry(t, "--project", dir, "--db", wh, "run", "--group", "crm_to_erp")
	assert.Equal(t, exitFailed, code, out+errOut)
	assert.Regexp(t, `companies\s+failed\s+read`, out)
	assert.Contains(t, out, "contacts     not started: its parent companies failed")
	assert.Contains(t, errOut, "division by zero")

	// Children of a parent that syncs run; the names given are put in order.
	dir, wh, erp := familyProject(t, `{table: crm.companies}`)
	code, out, errOut = ferry(t, "run", "contacts", "companies", "--project", dir, "--db", wh)
	require.Equal(t, exitOK, code, out+errOut)
	assert.Regexp(t, `(?s)companies\s+succeeded read 3  inserted 3.*contacts\s+succeeded read 2  inserted 2`, out)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, erp)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var linked int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM people p JOIN partners c ON c.id = p.partner_id`).Scan(&linked))
	assert.Equal(t, 2, linked, "each contact points at its company in the ERP")

	// An unknown group is a usage error.
	code, _, errOut = ferry(t, "--project", dir, "--db", wh, "run", "--group", "nope")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, `unknown group "nope"`)
	assert.Contains(t, errOut, "defined: crm_to_erp")
}

// A connection whose secret is not set is the user's to fix: exit 2, for
// check and for run.
func TestMissingSecretIsAUsageError(t *testing.T) {
	dir, wh, _ := familyProject(t, `{table: crm.companies}`)
	t.Setenv("FERRY_TEST_FAMILY_ERP_URL", "")
	os.Unsetenv("FERRY_TEST_FAMILY_ERP_URL") //nolint:errcheck // t.Setenv restores it

	code, out, errOut := ferry(t, "--project", dir, "--db", wh, "check")
	assert.Equal(t, exitUsage, code, out+errOut)
	assert.Contains(t, errOut, "environment variable FERRY_TEST_FAMILY_ERP_URL is not set")
	assert.NotContains(t, out, "syncs checked")

	code, out, errOut = ferry(t, "--project", dir, "--db", wh, "run", "companies")
	assert.Equal(t, exitUsage, code, out+errOut)
	assert.Contains(t, errOut, "environment variable FERRY_TEST_FAMILY_ERP_URL is not set")
}

func TestCheck(t *testing.T) {
	dir, wh, _ := familyProject(t, `{table: crm.companies}`)
	code, out, errOut := ferry(t, "--project", dir, "--db", wh, "check")
	require.Equal(t, exitOK, code, errOut)
	assert.Equal(t, "2 syncs checked: scope queries, columns, relations and targets are fine\n", out)
	assert.Contains(t, errOut, "ferry: WARNING: scope queries run with every right", "the warning goes to stderr")

	code, out, _ = ferry(t, "check", "companies", "--project", dir, "--db", wh)
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "1 syncs checked")

	code, _, errOut = ferry(t, "--project", dir, "--db", wh, "check", "nope")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, `unknown sync "nope"`)
}

// Plans and tests show what an update changes, field by field.
func TestPlanAndTestShowChanges(t *testing.T) {
	dir, wh, _ := familyProject(t, `{table: crm.companies}`)
	code, out, errOut := ferry(t, "--project", dir, "--db", wh, "plan", "--group", "crm_to_erp")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "companies: would insert 3, update 0; 0 unchanged, 0 skipped, 0 invalid, 0 would fail, 0 waiting for a parent, 0 need a lookup (of 3 read)")
	assert.Contains(t, out, "contacts: would insert 0, update 0; 0 unchanged, 0 skipped, 0 invalid, 0 would fail, 2 waiting for a parent")
	assert.Contains(t, out, "wait   source id 10: waits for its parent companies id 1")

	code, _, errOut = ferry(t, "--project", dir, "--db", wh, "run")
	require.Equal(t, exitOK, code, errOut)
	execSQL(t, wh, `UPDATE crm.companies SET name = 'Acme Corp', _sdc_batched_at = now() WHERE id = 1`)

	code, out, errOut = ferry(t, "--project", dir, "--db", wh, "plan", "companies")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "companies: would insert 0, update 1; ")
	assert.Regexp(t, `update source id 1 \(target id \d+\): name: "Acme" → "Acme Corp"`, out)

	code, out, errOut = ferry(t, "--project", dir, "--db", wh, "test", "companies", "--id", "1")
	require.Equal(t, exitOK, code, errOut)
	assert.Regexp(t, `decision:\s+update target id \d+`, out)
	assert.Contains(t, out, `changes:        name: "Acme" → "Acme Corp"`)
	assert.Contains(t, out, "nothing written")

	code, out, errOut = ferry(t, "--project", dir, "--db", wh, "explain", "companies", "1")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, `an update would change: name: "Acme" → "Acme Corp"`)
}

// link init creates the link table and says how to seed it; link seed
// links the pairs that are unambiguous, and a run then updates them
// instead of inserting them again.
func TestLinkInitAndSeed(t *testing.T) {
	dir, wh, erp := familyProject(t, `{table: crm.companies}`)
	execSQL(t, erp, `INSERT INTO partners (id, name) VALUES (100, 'Acme'), (101, 'Globex'), (102, 'Globex')`)
	// The ERP's partners, as its ELT pipeline loads them into the warehouse.
	execSQL(t, wh, `CREATE SCHEMA erp_elt; CREATE TABLE erp_elt.partners (id int, name text);
		INSERT INTO erp_elt.partners VALUES (100, 'Acme'), (101, 'Globex'), (102, 'Globex')`)

	code, out, errOut := ferry(t, "--project", dir, "--db", wh, "link", "init", "companies")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "link_tables.companies created.")
	assert.Contains(t, out, "ferry link seed companies --dry-run --query")
	assert.Contains(t, out, "INSERT INTO link_tables.companies (source_id, target_id)")
	assert.Contains(t, out, "FROM crm.companies s JOIN")
	code, out, _ = ferry(t, "link", "init", "companies", "--project", dir, "--db", wh)
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "link_tables.companies is already there.")

	query := "SELECT s.id AS source_id, t.id AS target_id FROM crm.companies s JOIN erp_elt.partners t ON t.name = s.name"
	code, out, errOut = ferry(t, "--project", dir, "--db", wh, "link", "seed", "companies", "--query", query, "--dry-run")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "companies: the query returned 3 pairs")
	assert.Contains(t, out, "matched         1")
	assert.Contains(t, out, "ambiguous       2")
	assert.Contains(t, out, "source 2 → target 101 (2 targets for this source, 1 sources for this target)")
	assert.Contains(t, out, "already linked  0")
	assert.Contains(t, out, "unmatched       2  (records no pair names: runs insert them)")
	assert.Contains(t, out, "dry run: nothing written")

	code, out, errOut = ferry(t, "--project", dir, "--db", wh, "link", "seed", "companies", "--query", query)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "written: 1 link rows")

	code, out, _ = ferry(t, "--project", dir, "--db", wh, "link", "seed", "companies", "--query", query, "--dry-run")
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "already linked  1")

	// Acme is linked to partner 100: the run updates it and inserts the others.
	code, out, errOut = ferry(t, "--project", dir, "--db", wh, "run", "companies")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "inserted 2  updated 1")

	code, _, errOut = ferry(t, "--project", dir, "--db", wh, "link", "seed", "companies", "--query", "SELECT 1 AS nothing")
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, errOut, "source_id and target_id")

	code, _, errOut = ferry(t, "--project", dir, "--db", wh, "link", "init", "nope")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, `unknown sync "nope"`)
}
