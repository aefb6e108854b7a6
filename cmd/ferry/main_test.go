package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/queries/dbtest"
	"github.com/ferry-sync/ferry/templates"
)

// ferry runs the CLI in-process and returns its exit code and output.
func ferry(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// project writes a project whose ERP is a fresh database, and returns the
// folder and the warehouse URL.
func testProject(t *testing.T) (string, string) {
	t.Helper()
	wh := dbtest.NewURL(t)
	erp := dbtest.NewEmptyURL(t)
	ctx := context.Background()
	exec := func(dbURL, sql string) {
		conn, err := pgx.Connect(ctx, dbURL)
		require.NoError(t, err)
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		require.NoError(t, err)
	}
	exec(wh, `CREATE SCHEMA crm;
		CREATE TABLE crm.companies (id int PRIMARY KEY, name text, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO crm.companies (id, name) VALUES (1, 'Acme'), (2, 'Globex'), (3, NULL);`)
	exec(erp, `CREATE TABLE partners (id serial PRIMARY KEY, name text NOT NULL);`)

	dir := t.TempDir()
	envName := "FERRY_TEST_ERP_" + strings.ToUpper(filepath.Base(dir))
	envName = strings.Map(func(r rune) rune {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
			return r
		}
		return '_'
	}, envName)
	require.NoError(t, os.Setenv(envName, erp))
	t.Cleanup(func() { os.Unsetenv(envName) })
	files := map[string]string{
		"ferry.yaml": fmt.Sprintf("connections:\n  erp:\n    kind: postgres\n    settings: {url_env: %s}\n", envName),
		"syncs/companies.yaml": `
source: {table: crm.companies}
target: {connection: erp, object: partners}
mapping: [{source: name, target: name}]
`,
	}
	for name, body := range files {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	}
	return dir, wh
}

func TestRunPlanTestStatus(t *testing.T) {
	dir, wh := testProject(t)

	code, out, _ := ferry(t, "--project", dir, "--db", wh, "plan")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "companies: would insert 3, update 0")
	assert.Contains(t, out, `insert source id 1: {"name":"Acme"}`)

	code, out, _ = ferry(t, "--project", dir, "--db", wh, "test", "companies", "--id", "2")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, `mapped record:  {"name":"Globex"}`)
	assert.Contains(t, out, "decision:       insert")
	assert.Contains(t, out, "nothing written")

	code, out, errOut := ferry(t, "--project", dir, "--db", wh, "run")
	assert.Equal(t, exitRecords, code, "a record failed: exit 3")
	assert.Contains(t, out, "inserted 2")
	assert.Contains(t, out, "failed 1")
	assert.Contains(t, errOut, "ferry status")

	code, out, _ = ferry(t, "--project", dir, "--db", wh, "status", "companies")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "success  2")
	assert.Contains(t, out, "error    1")
	assert.Contains(t, out, `null value in column "name"`, "the target's refusal, with the record")
	assert.Contains(t, out, "source id 3")

	code, out, _ = ferry(t, "--project", dir, "--db", wh, "test", "companies", "--id", "1")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "decision:       unchanged")

	code, out, _ = ferry(t, "--project", dir, "--db", wh, "explain", "companies", "3")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "has it as error")
	assert.Contains(t, out, `null value in column "name"`)

	code, out, _ = ferry(t, "--project", dir, "--db", wh, "test", "companies", "--id", "99")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "source id 99: not in the scope of companies")
}

func TestExitCodes(t *testing.T) {
	dir, wh := testProject(t)
	code, _, errOut := ferry(t, "--project", dir, "--db", wh, "nope")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, `unknown command "nope"`)

	code, _, errOut = ferry(t, "--project", t.TempDir(), "--db", wh, "run")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "ferry.yaml: not found: a project folder holds ferry.yaml")

	code, _, errOut = ferry(t, "--project", dir, "--db", wh, "run", "unknown_sync")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, `unknown sync "unknown_sync"`)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "syncs", "broken.yaml"), []byte("source: {query: 'SELEC 1'}\ntarget: {connection: erp, object: partners}\n"), 0o644))
	code, _, errOut = ferry(t, "--project", dir, "--db", wh, "check")
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, errOut, "sync broken (syncs/broken.yaml): scope query line 1 column 7: syntax error at or near \"1\"")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "syncs", "broken.yaml"), []byte("source: {table: crm.companies}\ntarget: {connection: erp, object: partners}\nmode: sometimes\n"), 0o644))
	code, _, errOut = ferry(t, "--project", dir, "--db", wh, "run")
	assert.Equal(t, exitUsage, code, "a bad project file is a usage error")
	assert.Contains(t, errOut, `syncs/broken.yaml: mode: "sometimes" is not a mode`)
}

func TestDemo(t *testing.T) {
	u, err := url.Parse(dbtest.ServerURL())
	require.NoError(t, err)
	prefix := "ferry_demo_test_" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_")
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, u.String())
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		for _, db := range []string{prefix, prefix + "_erp"} {
			conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)") //nolint:errcheck
		}
	})
	code, out, errOut := ferry(t, "--db", u.String(), "demo", "--dir", t.TempDir(), "--db-prefix", prefix)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "Dropping and recreating the databases "+prefix+" and "+prefix+"_erp", "it says what it drops before it does")
	for _, name := range []string{"FERRY_DEMO_WAREHOUSE_URL", "FERRY_DEMO_ERP_URL"} {
		_, set := os.LookupEnv(name)
		assert.False(t, set, "the demo hands %s to the engine, not to the process environment", name)
	}
	runs := strings.Split(out, "== Run ")
	require.Len(t, runs, 4, out)
	assert.Contains(t, runs[1], "companies    succeeded read 40  inserted 40")
	assert.Contains(t, runs[1], "contacts     succeeded read 144  inserted 144")
	assert.Contains(t, runs[2], "inserted 1  updated 0", "one new company; the re-stamped ones are unchanged")
	assert.Contains(t, runs[2], "inserted 2  updated 3", "two new contacts, three edited")
	assert.Contains(t, runs[3], "inserted 0  updated 0  unchanged")
	assert.NotContains(t, runs[3], "failed 1")
	// Both QA checks that expect no rows find none.
	assert.Equal(t, 2, strings.Count(out, "(expect none)"))
	for _, part := range strings.Split(out, "(expect none)")[1:] {
		assert.Contains(t, strings.SplitN(part, "-- ", 2)[0], "(0 rows)")
	}
}

func TestScriptTestOnTheDemoTemplate(t *testing.T) {
	dir := t.TempDir()
	_, err := templates.CopyTo("demo", dir, false)
	require.NoError(t, err)
	code, out, errOut := ferry(t, "--project", dir, "script", "test")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "2 passed, 0 failed")

	// A failing expectation fails the command.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "syncs", "extra_test.star"), []byte(
		"load(\"companies.star\", \"transform\")\ndef test_wrong():\n    r = run_transform(transform, {\"id\": 1, \"name\": \"a\", \"vat\": None}, target={\"name\": \"a\"})\n    assert.eq(r.payload[\"name\"], \"B\")\n"), 0o644))
	code, out, _ = ferry(t, "--project", dir, "script", "test")
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, out, "2 passed, 1 failed")
}

// ferry rollback counts what a sync inserted, then, with --yes, deletes it
// from the target; records it found there are left alone.
func TestRollback(t *testing.T) {
	dir, wh := testProject(t)
	code, out, errOut := ferry(t, "--project", dir, "--db", wh, "run")
	require.Equal(t, exitRecords, code, out+errOut) // company 3 has no name
	code, out, errOut = ferry(t, "--project", dir, "--db", wh, "rollback", "companies")
	require.Equal(t, exitOK, code, out+errOut)
	assert.Contains(t, out, "companies: 2 records Ferry inserted would be deleted from partners of connection erp; run again with --yes")
	code, out, errOut = ferry(t, "--project", dir, "--db", wh, "rollback", "companies", "--since", "2000-01-01", "--yes")
	require.Equal(t, exitOK, code, out+errOut)
	assert.Regexp(t, `companies: 2 records deleted \(run \d+\)`, out)
	code, out, _ = ferry(t, "--project", dir, "--db", wh, "rollback", "companies")
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "companies: 0 records Ferry inserted would be deleted")
	code, _, errOut = ferry(t, "--project", dir, "--db", wh, "rollback", "companies", "--since", "yesterday")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, `--since "yesterday": give a time like`)
}
