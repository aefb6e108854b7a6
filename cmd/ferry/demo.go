package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
	"github.com/ferry-sync/ferry/templates"
)

// demoCmd runs the demo project end to end on the local PostgreSQL: two
// fresh databases (a CRM warehouse and an ERP), a first full sync, changes
// in the CRM, an incremental sync, and the QA queries an analyst would run.
type demoCmd struct {
	Dir      string `help:"Where to write the demo project's files, replaced on every run (default: ${default})." default:"${demo_dir}" placeholder:"DIR"`
	DBPrefix string `name:"db-prefix" help:"Name of the demo warehouse database, dropped and recreated; the ERP's is NAME_erp (default: ${default})." env:"FERRY_DEMO_DB" default:"ferry_demo" placeholder:"NAME"`
}

func (demoCmd) Help() string {
	return `The demo DROPS and recreates two databases on the server --db (else DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres) points at: ferry_demo and ferry_demo_erp, ending the sessions connected to them (DROP DATABASE ... WITH (FORCE)). Choose other names with --db-prefix NAME or FERRY_DEMO_DB=NAME (then NAME and NAME_erp). It says which databases it drops before it does.

Examples:

    ferry demo
    ferry demo --db-prefix my_demo --dir ./demo-project
    FERRY_DEMO_DB=scratch_demo ferry --db postgres://postgres@localhost:5432/postgres demo`
}

func (d *demoCmd) Run(ctx context.Context, c *cli) error {
	server := c.dbURL
	if server == "" {
		server = envOr(c.env, "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	}
	if !project.ValidName(d.DBPrefix) {
		return usageError{fmt.Sprintf("--db-prefix %q: use lower-case letters, digits and _", d.DBPrefix)}
	}
	return demo(ctx, c, server, d.Dir, d.DBPrefix)
}

// envOr is the variable key of env, or def when it is not set.
func envOr(env connector.LookupEnv, key, def string) string {
	if v, ok := env(key); ok && v != "" {
		return v
	}
	return def
}

// envWith looks names up in vars first, then in env: the demo hands its
// databases' URLs to the connectors this way, leaving the process
// environment alone.
func envWith(env connector.LookupEnv, vars map[string]string) connector.LookupEnv {
	return func(name string) (string, bool) {
		if v, ok := vars[name]; ok {
			return v, true
		}
		return env(name)
	}
}

func demo(ctx context.Context, c *cli, server, dir, prefix string) error {
	out := c.stdout
	step := func(format string, args ...any) { fmt.Fprintf(out, "\n== "+format+"\n", args...) }

	whDB, erpDB := prefix, prefix+"_erp"
	if err := checkDemoDir(dir); err != nil {
		return err
	}
	step("Setting up: a CRM warehouse (database %s) and an ERP (database %s)", whDB, erpDB)
	fmt.Fprintf(out, "Dropping and recreating the databases %s and %s on %s, ending their sessions\n(other names: --db-prefix NAME or FERRY_DEMO_DB=NAME), and replacing the folder %s.\n",
		whDB, erpDB, redactURL(server), dir)
	whURL, erpURL, err := demoDatabases(ctx, server, whDB, erpDB)
	if err != nil {
		return err
	}
	for _, load := range []struct{ url, file string }{{whURL, "warehouse.sql"}, {erpURL, "erp.sql"}} {
		if err := execTemplateSQL(ctx, load.url, load.file); err != nil {
			return err
		}
	}
	if _, err := os.Stat(dir); err == nil {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("clearing the old demo project %s: %w", dir, err)
		}
	}
	if _, err := templates.CopyTo("demo", dir, true); err != nil {
		return err
	}
	// The project's files name these variables; the engine's connectors
	// look them up through c.env.
	c.env = envWith(c.env, map[string]string{"FERRY_DEMO_WAREHOUSE_URL": whURL, "FERRY_DEMO_ERP_URL": erpURL})
	fmt.Fprintf(out, "The project's files (ferry.yaml, syncs/*.yaml, syncs/contacts.sql) are in %s\n", dir)

	p, err := project.Load(dir, connectors())
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, whURL)
	if err != nil {
		return fmt.Errorf("connecting to the demo warehouse: %w", err)
	}
	if _, err := queries.Migrate(ctx, pool); err != nil {
		pool.Close()
		return err
	}
	ss, err := c.startWith(p, pool)
	if err != nil {
		return err
	}
	defer ss.close()
	eng := ss.eng
	group := engine.Selection{Group: "crm_to_erp"}

	step("Run 1: the first full sync (group crm_to_erp: companies first, then contacts)")
	if err := demoRun(ctx, c, eng, group); err != nil {
		return fmt.Errorf("the first demo run failed: %w", err)
	}
	fmt.Fprintln(out, "Six contacts have no e-mail address: the scope query leaves them out.")

	step("Meanwhile in the CRM: 5 companies re-stamped unchanged, 3 contacts edited, 1 company and 2 contacts added")
	if err := execTemplateSQL(ctx, whURL, "changes.sql"); err != nil {
		return err
	}

	step("Run 2: incremental — only rows past the bookmark are read; unchanged ones are skipped by hash")
	if err := demoRun(ctx, c, eng, group); err != nil {
		return fmt.Errorf("the second demo run failed: %w", err)
	}

	fmt.Fprintln(out, "Read includes the rows of the last 5 minutes before the bookmark (source.overlap), re-read in case a")
	fmt.Fprintln(out, "slow ELT transaction committed them late; the hash finds them unchanged, so they cost no API call.")
	fmt.Fprintln(out, "The 5 re-stamped companies are unchanged too: only the stamp moved, not a mapped field.")

	step("Run 3: nothing new — nothing is written to the ERP")
	if err := demoRun(ctx, c, eng, group); err != nil {
		return fmt.Errorf("the third demo run failed: %w", err)
	}

	step("QA: the ERP's tables, loaded back into the warehouse (schema erp_elt) as the ERP's own pipeline would")
	if err := copyERPToWarehouse(ctx, erpURL, pool); err != nil {
		return err
	}
	qa, err := templates.ReadFile("demo", "qa.sql")
	if err != nil {
		return err
	}
	for _, q := range splitNamedQueries(string(qa)) {
		fmt.Fprintf(out, "\n-- %s\n%s\n", q.name, q.sql)
		if err := printQuery(ctx, c, pool, q.sql); err != nil {
			return err
		}
	}

	step("Try it yourself")
	fmt.Fprintf(out, "  export FERRY_DEMO_WAREHOUSE_URL='%s' FERRY_DEMO_ERP_URL='%s'\n", whURL, erpURL)
	fmt.Fprintf(out, "  bin/ferry --project %s status contacts\n", dir)
	fmt.Fprintf(out, "  bin/ferry --project %s test contacts --id 1151\n", dir)
	fmt.Fprintf(out, "  bin/ferry --project %s plan --full\n", dir)
	fmt.Fprintf(out, "  psql '%s' -c 'SELECT * FROM link_tables.contacts LIMIT 5'\n", whURL)
	return nil
}

// checkDemoDir refuses to let the demo replace a folder that is neither new,
// empty nor an earlier demo's project.
func checkDemoDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil
	}
	if err != nil {
		return usageError{fmt.Sprintf("--dir %s: %v", dir, err)}
	}
	if b, err := os.ReadFile(filepath.Join(dir, project.ProjectFile)); err == nil && bytes.Contains(b, []byte("FERRY_DEMO_WAREHOUSE_URL")) {
		return nil
	}
	return usageError{fmt.Sprintf("--dir %s: the demo replaces this folder, which is not empty and holds no earlier demo: give a new or empty folder", dir)}
}

// demoRun runs the demo's group; records that fail are part of the story,
// runs that fail are not.
func demoRun(ctx context.Context, c *cli, eng *engine.Engine, group engine.Selection) error {
	err := c.runMany(ctx, eng, group, engine.RunOptions{})
	var code exitCode
	if errors.As(err, &code) {
		if code == exitRecords {
			return nil
		}
		return errors.New("see its error above")
	}
	return err
}

// demoDatabases (re)creates the two demo databases on the server and returns
// their URLs.
func demoDatabases(ctx context.Context, server string, names ...string) (string, string, error) {
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		return "", "", fmt.Errorf("the demo needs a PostgreSQL server at %s: %w (start one, or set DATABASE_URL)", redactURL(server), err)
	}
	defer admin.Close(ctx)
	var urls []string
	for _, name := range names {
		id := pgx.Identifier{name}.Sanitize()
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+id+" WITH (FORCE)"); err != nil {
			return "", "", fmt.Errorf("dropping the old demo database %s: %w", name, err)
		}
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+id); err != nil {
			return "", "", fmt.Errorf("creating the demo database %s: %w", name, err)
		}
		u, err := url.Parse(server)
		if err != nil {
			return "", "", fmt.Errorf("DATABASE_URL: %w", err)
		}
		u.Path = "/" + name
		urls = append(urls, u.String())
	}
	return urls[0], urls[1], nil
}

func execTemplateSQL(ctx context.Context, dbURL, file string) error {
	sql, err := templates.ReadFile("demo", file)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", redactURL(dbURL), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, string(sql)); err != nil {
		return fmt.Errorf("running demo/%s: %w", file, err)
	}
	return nil
}

// copyERPToWarehouse stands in for the ERP's ELT pipeline: it copies the
// ERP's tables into the warehouse so QA queries can JOIN them.
func copyERPToWarehouse(ctx context.Context, erpURL string, wh *pgxpool.Pool) error {
	erp, err := pgx.Connect(ctx, erpURL)
	if err != nil {
		return fmt.Errorf("connecting to the demo ERP: %w", err)
	}
	defer erp.Close(ctx)
	if _, err := wh.Exec(ctx, `DROP SCHEMA IF EXISTS erp_elt CASCADE; CREATE SCHEMA erp_elt;
		CREATE TABLE erp_elt.partners (id bigint, name text, vat text, city text);
		CREATE TABLE erp_elt.people (id bigint, partner_id bigint, full_name text, email text, segment text)`); err != nil {
		return fmt.Errorf("creating erp_elt in the warehouse: %w", err)
	}
	for _, t := range []struct{ table, cols string }{
		{"partners", "id, name, vat, city"},
		{"people", "id, partner_id, full_name, email, segment"},
	} {
		rows, err := erp.Query(ctx, "SELECT "+t.cols+" FROM erp."+t.table)
		if err != nil {
			return fmt.Errorf("reading erp.%s: %w", t.table, err)
		}
		data, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		if err != nil {
			return fmt.Errorf("reading erp.%s: %w", t.table, err)
		}
		if _, err := wh.CopyFrom(ctx, pgx.Identifier{"erp_elt", t.table}, strings.Split(strings.ReplaceAll(t.cols, " ", ""), ","), pgx.CopyFromRows(data)); err != nil {
			return fmt.Errorf("loading erp_elt.%s: %w", t.table, err)
		}
	}
	return nil
}

type namedQuery struct{ name, sql string }

// splitNamedQueries splits a file of "-- name: …" headed queries.
func splitNamedQueries(text string) []namedQuery {
	var out []namedQuery
	for _, part := range strings.Split(text, "-- name: ")[1:] {
		name, body, _ := strings.Cut(part, "\n")
		out = append(out, namedQuery{name: strings.TrimSpace(name), sql: strings.TrimSpace(body)})
	}
	return out
}

func printQuery(ctx context.Context, c *cli, pool *pgxpool.Pool, sql string) error {
	rows, err := pool.Query(ctx, strings.TrimSuffix(sql, ";"))
	if err != nil {
		return fmt.Errorf("QA query: %w", err)
	}
	defer rows.Close()
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	var header []string
	for _, f := range rows.FieldDescriptions() {
		header = append(header, f.Name)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	n := 0
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		cells := make([]string, len(vals))
		for i, v := range vals {
			cells[i] = fmt.Sprint(v)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
		n++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("QA query: %w", err)
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "(%d rows)\n", n)
	return nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
