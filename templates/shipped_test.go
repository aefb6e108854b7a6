package templates_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/postgres"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries/dbtest"
	"github.com/ferry-sync/ferry/scripting"
	"github.com/ferry-sync/ferry/templates"
)

// kinds are the connection kinds the shipped templates use.
func kinds(t *testing.T) *connector.Registry {
	t.Helper()
	r, err := connector.NewRegistry(postgres.Kind())
	require.NoError(t, err)
	return r
}

// Every shipped template, end to end: it instantiates with its defaults
// (twice: the second time changes nothing), the project loads, its
// *_test.star tests pass, ferry check finds the demo warehouse and ERP
// (with the template's fixtures) fit, and the steps of its manifest (runs,
// seeds, scripts, checks of link tables and target tables) pass. Each
// template works on databases of its own, in parallel.
func TestShippedTemplates(t *testing.T) {
	all, err := templates.Shipped()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(all), 13, "the spec's patterns")
	for _, tmpl := range all {
		t.Run(tmpl.Manifest.Name, func(t *testing.T) {
			t.Parallel()
			testTemplate(t, tmpl)
		})
	}
}

// templateBed is one template's test: its project folder, engine and
// databases.
type templateBed struct {
	t         *testing.T
	ctx       context.Context
	dir       string
	warehouse string
	target    string
	eng       *engine.Engine
}

func testTemplate(t *testing.T, tmpl *templates.Template) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec := tmpl.Manifest.Test
	require.NotNil(t, spec, "a shipped template says how it is tested (test: in %s)", templates.ManifestFile)
	dir := t.TempDir()

	// Instantiate what it builds on, then it, with defaults.
	env := map[string]string{}
	for _, name := range append(append([]string{}, spec.With...), tmpl.Manifest.Name) {
		it := tmpl
		if name != tmpl.Manifest.Name {
			it, _ = templates.LoadShipped(name)
			require.NotNil(t, it, "test.with names shipped template %s", name)
		}
		r, applied, err := templates.Instantiate(it, nil, dir, false)
		require.NoError(t, err, "instantiating %s with its defaults", name)
		require.NotEmpty(t, applied.Files)
		for _, f := range applied.Files {
			assert.Equal(t, templates.FileCreated, f.Op, f.Path)
		}
		for _, p := range it.Manifest.Parameters {
			if p.Type == templates.TypeEnv {
				env[r.Values[p.Name].(string)] = "target"
			}
		}
		// Instantiating again changes nothing.
		_, again, err := templates.Instantiate(it, nil, dir, false)
		require.NoError(t, err, "instantiating %s again", name)
		assert.Empty(t, again.Changes, "a second instantiation changes nothing")
	}
	for k, v := range spec.Env {
		env[k] = v
	}

	kinds := kinds(t)
	p, err := project.Load(dir, kinds)
	require.NoError(t, err, "the project loads")

	report, err := scripting.RunTests(ctx, filepath.Join(dir, "syncs"))
	require.NoError(t, err)
	var out bytes.Buffer
	_, _ = report.WriteTo(&out)
	require.True(t, report.OK(), "its *_test.star tests pass:\n%s", out.String())
	if hasScripts(tmpl) {
		assert.Positive(t, report.Passed, "a template with scripts tests them")
	}

	b := &templateBed{t: t, ctx: ctx, dir: dir, warehouse: dbtest.NewURL(t), target: dbtest.NewEmptyURL(t)}
	for _, load := range []struct{ db, demo, fixture string }{
		{b.warehouse, "warehouse.sql", "fixtures/warehouse.sql"},
		{b.target, "erp.sql", "fixtures/target.sql"},
	} {
		demo, err := templates.ReadFile("demo", load.demo)
		require.NoError(t, err)
		b.exec(load.db, string(demo))
		if fixture, ok := tmpl.Files[load.fixture]; ok {
			b.exec(load.db, string(fixture))
		}
	}
	lookup := func(name string) (string, bool) {
		switch env[name] {
		case "warehouse":
			return b.warehouse, true
		case "target":
			return b.target, true
		}
		return "", false
	}
	b.eng = engine.New(dbtest.Open(t, b.warehouse), engine.StaticProject(p), engine.Options{
		Connectors: kinds, Env: lookup, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ScriptIsolation: scripting.IsolationNone,
	})
	for _, schema := range spec.Mirror {
		b.mirror(schema)
	}
	_, err = b.eng.Check(ctx)
	require.NoError(t, err, "ferry check: the scope queries fit the demo warehouse, the syncs the demo ERP")

	for i, step := range spec.Steps {
		b.step(i, step)
		if t.Failed() {
			return
		}
	}
}

func hasScripts(tmpl *templates.Template) bool {
	for _, p := range tmpl.Creates() {
		if strings.HasSuffix(p, ".star") {
			return true
		}
	}
	return false
}

func (b *templateBed) step(i int, s templates.TestStep) {
	t := b.t
	what := fmt.Sprintf("step %d", i+1)
	db := b.warehouse
	if s.DB == "target" {
		db = b.target
	}
	switch {
	case len(s.Run) > 0 || s.Group != "":
		results, err := b.eng.RunMany(b.ctx, engine.Selection{Names: s.Run, Group: s.Group}, engine.RunOptions{Full: s.Full})
		require.NoError(t, err, what)
		for _, r := range results {
			require.Equal(t, engine.RunSucceeded, r.Status, "%s: sync %s: %s", what, r.Sync, r.Error)
			if want, ok := s.Want[r.Sync]; ok {
				counts := map[string]int64{}
				raw, _ := json.Marshal(r.Counts)
				require.NoError(t, json.Unmarshal(raw, &counts))
				for k, v := range want {
					assert.Equal(t, v, counts[k], "%s: sync %s: %s (all counts: %v)", what, r.Sync, k, counts)
				}
			}
		}
	case s.Seed != nil:
		q := b.projectFile(s.Seed.QueryFile)
		rep, err := b.eng.LinkSeed(b.ctx, s.Seed.Sync, q, false)
		require.NoError(t, err, what)
		assert.Positive(t, rep.Written, "%s: the seed links pairs", what)
	case s.Script != "":
		full := filepath.Join(b.dir, filepath.FromSlash(s.Script))
		src, err := os.ReadFile(full)
		require.NoError(t, err)
		name := strings.TrimSuffix(filepath.Base(full), ".star")
		printed, err := b.eng.RunScript(b.ctx, name, filepath.Base(full), src, filepath.Dir(full), engine.Origin{})
		require.NoError(t, err, "%s: script %s printed %v", what, s.Script, printed)
	case s.Mirror != "":
		b.mirror(s.Mirror)
	case s.SQL != "":
		b.exec(db, s.SQL)
	case s.SQLFile != "":
		b.exec(db, b.projectFile(s.SQLFile))
	case s.Check != "":
		assert.Equal(t, s.Expect, b.rows(db, s.Check), "%s: %s", what, s.Check)
	}
}

func (b *templateBed) projectFile(p string) string {
	raw, err := os.ReadFile(filepath.Join(b.dir, filepath.FromSlash(p)))
	require.NoError(b.t, err)
	return string(raw)
}

func (b *templateBed) exec(db, sql string) {
	b.t.Helper()
	conn, err := pgx.Connect(b.ctx, db)
	require.NoError(b.t, err)
	defer conn.Close(b.ctx)
	_, err = conn.Exec(b.ctx, sql)
	require.NoError(b.t, err, sql)
}

// rows runs a query and returns its rows as text, one line each, columns
// joined by "|" (NULL as NULL).
func (b *templateBed) rows(db, sql string) string {
	b.t.Helper()
	conn, err := pgx.Connect(b.ctx, db)
	require.NoError(b.t, err)
	defer conn.Close(b.ctx)
	res, err := conn.PgConn().Exec(b.ctx, sql).ReadAll()
	require.NoError(b.t, err, sql)
	var lines []string
	for _, r := range res {
		for _, row := range r.Rows {
			cells := make([]string, len(row))
			for i, c := range row {
				cells[i] = string(c)
				if c == nil {
					cells[i] = "NULL"
				}
			}
			lines = append(lines, strings.Join(cells, "|"))
		}
	}
	return strings.Join(lines, "\n")
}

// mirror copies every table of a schema of the target database into the
// warehouse as <schema>_elt, as the target's own ELT pipeline would.
func (b *templateBed) mirror(schema string) {
	t := b.t
	src, err := pgx.Connect(b.ctx, b.target)
	require.NoError(t, err)
	defer src.Close(b.ctx)
	dst, err := pgx.Connect(b.ctx, b.warehouse)
	require.NoError(t, err)
	defer dst.Close(b.ctx)
	rows, err := src.Query(b.ctx, `SELECT c.relname, string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE n.nspname = $1 AND c.relkind = 'r' GROUP BY c.relname`, schema)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Name, Columns string }])
	require.NoError(t, err)
	elt := pgx.Identifier{schema + "_elt"}.Sanitize()
	_, err = dst.Exec(b.ctx, "CREATE SCHEMA IF NOT EXISTS "+elt)
	require.NoError(t, err)
	for _, tbl := range tables {
		from := pgx.Identifier{schema, tbl.Name}.Sanitize()
		to := pgx.Identifier{schema + "_elt", tbl.Name}.Sanitize()
		_, err := dst.Exec(b.ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s; CREATE TABLE %s (%s)", to, to, tbl.Columns))
		require.NoError(t, err)
		var buf bytes.Buffer
		_, err = src.PgConn().CopyTo(b.ctx, &buf, "COPY "+from+" TO STDOUT")
		require.NoError(t, err)
		_, err = dst.PgConn().CopyFrom(b.ctx, &buf, "COPY "+to+" FROM STDIN")
		require.NoError(t, err)
	}
}
