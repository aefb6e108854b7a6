package templates_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
	"sigs.k8s.io/yaml"

	"github.com/ferry-sync/ferry/templates"
)

// manifest is a template.yaml with the parameters given (YAML list items).
func manifest(params string) string {
	return "name: sample\nversion: 1\ntitle: A sample\ndescription: For tests.\nparameters:\n" + params
}

// sample is a template with the manifest and project files given.
func sample(t *testing.T, manifestYAML string, project map[string]string) (*templates.Template, error) {
	t.Helper()
	files := map[string][]byte{"template.yaml": []byte(manifestYAML)}
	for p, c := range project {
		files["project/"+p] = []byte(c)
	}
	return templates.Parse(files, "test")
}

// Every type accepts what it should and refuses the rest, with an error
// naming the parameter; accepted values are written into SQL as quoted
// identifiers, literals or numbers.
func TestValuesAreCheckedAndWrittenByType(t *testing.T) {
	for _, c := range []struct {
		typ, extra, value string
		sql               string // rendered into SQL; "" when refused
		refused           string
	}{
		{"table", "", "crm.contacts", `"crm"."contacts"`, ""},
		{"table", "", "Crm.Contacts", `"Crm"."Contacts"`, ""},
		{"table", "", "contacts", "", "is not a table name: write schema.table"},
		{"table", "", "crm.contacts; DROP TABLE x", "", "is not a table name"},
		{"table", "", `crm."contacts"`, "", "is not a table name"},
		{"schema", "", "erp", `"erp"`, ""},
		{"schema", "", "erp.x", "", "is not a schema name"},
		{"column", "", "email", `"email"`, ""},
		{"column", "", "e mail", "", "is not a column name"},
		{"name", "", "contacts", `"contacts"`, ""},
		{"name", "", "Contacts", "", "is not a name name"},
		{"connection", "", "erp", `"erp"`, ""},
		{"connection", "", "erp-1", "", "is not a connection name"},
		{"env", "", "ERP_URL", `'ERP_URL'`, ""},
		{"env", "", "erp_url", "", "is not an environment variable's name"},
		{"string", "", "it's", `'it''s'`, ""},
		{"string", "", `x'; DROP TABLE y; --`, `'x''; DROP TABLE y; --'`, ""},
		{"string", "", "two\nlines", "", "holds a control character"},
		{"integer", "", "42", "42", ""},
		{"integer", "\n    min: 1\n    max: 10", "0", "", "0 is less than 1"},
		{"integer", "", "4 2", "", "is not a whole number"},
		{"boolean", "", "yes", "TRUE", ""},
		{"boolean", "", "false", "FALSE", ""},
		{"boolean", "", "maybe", "", "is not a boolean"},
		{"enum", "\n    values: [A, B]", "B", `'B'`, ""},
		{"enum", "\n    values: [A, B]", "C", "", `"C" is not one of A, B`},
		{"duration", "", "90s", `'90s'`, ""},
		{"duration", "", "10ms", "", "is not a duration of a second or more"},
	} {
		t.Run(c.typ+" "+c.value, func(t *testing.T) {
			tmpl, err := sample(t, manifest("  - name: p\n    type: "+c.typ+"\n    description: It."+c.extra+"\n"),
				map[string]string{"syncs/a.sql": "SELECT {{p}}"})
			require.NoError(t, err)
			vals, err := tmpl.Resolve(map[string]string{"p": c.value})
			if c.refused != "" {
				require.Error(t, err)
				var pe *templates.ParamError
				require.True(t, errors.As(err, &pe), "%v", err)
				assert.Equal(t, "p", pe.Param, "the error names the parameter")
				assert.Contains(t, err.Error(), "parameter p: ")
				assert.Contains(t, err.Error(), c.refused)
				return
			}
			require.NoError(t, err)
			r, err := tmpl.Render(vals)
			require.NoError(t, err)
			_, body, ok := templates.ParseHeader(r.Files["syncs/a.sql"])
			require.True(t, ok)
			assert.Equal(t, "SELECT "+c.sql, string(body))
		})
	}
}

// A value reaches each language as one literal that reads back as the value
// itself, whatever it holds: YAML and Starlark parse it back unchanged, SQL
// doubles its quotes.
func TestValuesReadBackInEveryLanguage(t *testing.T) {
	tmpl, err := sample(t, manifest(`  - {name: s, type: string, description: It.}
  - {name: tbl, type: table, default: crm.contacts, description: It.}
  - {name: num, type: integer, default: 7, description: It.}
  - {name: flag, type: boolean, default: true, description: It.}
`), map[string]string{
		"syncs/a.yaml": "value: {{s}}\ntable: {{tbl}}\nschema: {{tbl.schema}}\nnum: {{num}}\nflag: {{flag}}\n",
		"syncs/a.star": "S = {{s}}\nQ = \"SELECT * FROM \" + {{tbl.sql}} + \" WHERE x = \" + {{s.sql}}\nN = {{num}}\nB = {{flag}}\n",
		"syncs/a.sql":  "SELECT {{s}} FROM {{tbl}} -- {{s}}\n",
	})
	require.NoError(t, err)
	for _, hostile := range []string{`it's "quoted" \ {braces} # not a comment: yes`, "yes", "on", "null", "42", "${HOME}", "é"} {
		vals, err := tmpl.Resolve(map[string]string{"s": hostile})
		require.NoError(t, err)
		r, err := tmpl.Render(vals)
		require.NoError(t, err)

		var doc map[string]any
		require.NoError(t, yaml.Unmarshal(r.Files["syncs/a.yaml"], &doc), string(r.Files["syncs/a.yaml"]))
		assert.Equal(t, map[string]any{"value": hostile, "table": "crm.contacts", "schema": "crm", "num": float64(7), "flag": true}, doc)

		globals, err := starlark.ExecFileOptions(&syntax.FileOptions{}, &starlark.Thread{}, "a.star", r.Files["syncs/a.star"], nil)
		require.NoError(t, err)
		assert.Equal(t, starlark.String(hostile), globals["S"])
		assert.Equal(t, starlark.String(`SELECT * FROM "crm"."contacts" WHERE x = '`+strings.ReplaceAll(hostile, "'", "''")+`'`), globals["Q"])
		assert.Equal(t, starlark.MakeInt(7), globals["N"])
		assert.Equal(t, starlark.True, globals["B"])

		quoted := "'" + strings.ReplaceAll(hostile, "'", "''") + "'"
		assert.Contains(t, string(r.Files["syncs/a.sql"]), `SELECT `+quoted+` FROM "crm"."contacts" -- `+quoted)
	}
}

// A template that could not render safely is refused when it is read,
// naming the file and the field.
func TestParseRefusesBrokenTemplates(t *testing.T) {
	params := "  - {name: tbl, type: table, default: crm.x, description: It.}\n"
	good := map[string]string{"syncs/a.yaml": "source: {table: {{tbl}}}\n"}
	for _, c := range []struct {
		name     string
		manifest string
		project  map[string]string
		want     string
	}{
		{"a placeholder naming no parameter", manifest(params), map[string]string{"syncs/a.sql": "SELECT {{tbl}}, {{other}}"}, "line 1: {{other}} names no parameter (declared: tbl)"},
		{"a malformed placeholder", manifest(params), map[string]string{"syncs/a.sql": "SELECT {{tbl}}\nFROM {{ tbl x }}"}, "line 2: {{ tbl x }} is not a placeholder"},
		{"a part of a non-table", manifest(params + "  - {name: c, type: column, default: x, description: It.}\n"), map[string]string{"syncs/a.sql": "SELECT {{c.schema}} FROM {{tbl}}"}, ".schema is for table parameters only"},
		{"an unused parameter", manifest(params + "  - {name: c, type: column, default: x, description: It.}\n"), good, `parameter "c" is used by no file`},
		{"an unknown type", manifest("  - {name: tbl, type: tabel, description: It.}\n"), good, `"tabel" is not a type: use one of string, integer`},
		{"a bad default", manifest("  - {name: tbl, type: table, default: x, description: It.}\n"), good, `parameters[0].default: "x" is not a table name`},
		{"an enum without values", manifest(params + "  - {name: e, type: enum, description: It.}\n"), map[string]string{"syncs/a.yaml": "a: {{tbl}}\nb: {{e}}\n"}, "an enum lists its values"},
		{"no description", manifest("  - {name: tbl, type: table}\n"), good, "required: say what the parameter is for"},
		{"an unknown manifest field", manifest(params) + "paramters: []\n", good, `unknown field "paramters"`},
		{"a hidden file", manifest(params), map[string]string{"syncs/a.yaml": "a: {{tbl}}", ".env": "X=1"}, `".env": a project file's path is relative, clean and not hidden`},
		{"a file a project does not keep", manifest(params), map[string]string{"syncs/a.yaml": "a: {{tbl}}", "notes.txt": "x"}, `"notes.txt": a template writes ferry.yaml and files in folders`},
		{"no files", manifest(params), nil, "writes no file"},
		{"a name that is no name", strings.Replace(manifest(params), "name: sample", "name: Sample", 1), good, `"Sample" is not a template name`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := sample(t, c.manifest, c.project)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	_, err := sample(t, manifest(params), good)
	assert.NoError(t, err, "the good one parses")
}

// Instantiating never replaces a file the project has otherwise unless
// forced; ferry.yaml gets the entries it lacks, keeps the user's own and
// their comments.
func TestInstantiateRefusesToOverwriteAndMergesFerryYAML(t *testing.T) {
	tmpl, err := sample(t, manifest("  - {name: conn, type: connection, default: erp, description: It.}\n"), map[string]string{
		"ferry.yaml":   "connections:\n  {{conn}}:\n    kind: postgres\n    settings: {url_env: ERP_URL}\ngroups:\n  g: {syncs: [a]}\n",
		"syncs/a.yaml": "source: {table: crm.a}\ntarget: {connection: {{conn}}, object: a}\n",
		"syncs/a.sql":  "SELECT 1\n",
	})
	require.NoError(t, err)

	dir := t.TempDir()
	mine := "# my project\nconnections:\n  # the ERP, by hand\n  erp:\n    kind: postgres\n    settings: {url_env: MY_ERP}\n  crm: {kind: postgres, settings: {url_env: CRM}}\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(mine), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "syncs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "syncs", "a.sql"), []byte("SELECT 2 -- mine\n"), 0o644))

	_, _, err = templates.Instantiate(tmpl, nil, dir, false)
	var conflict *templates.ConflictError
	require.True(t, errors.As(err, &conflict), "%v", err)
	assert.Equal(t, []string{"syncs/a.sql"}, conflict.Paths)
	assert.Contains(t, err.Error(), "pass --force")
	_, statErr := os.Stat(filepath.Join(dir, "syncs", "a.yaml"))
	assert.True(t, os.IsNotExist(statErr), "nothing is written when one file is in the way")

	require.NoError(t, os.Remove(filepath.Join(dir, "syncs", "a.sql")))
	_, applied, err := templates.Instantiate(tmpl, nil, dir, false)
	require.NoError(t, err)
	assert.Equal(t, []templates.FileOp{{Path: "syncs/a.sql", Op: "created"}, {Path: "syncs/a.yaml", Op: "created"}}, applied.Files)
	require.Len(t, applied.Entries, 2)
	assert.Equal(t, "connections.erp", applied.Entries[0].Key)
	assert.Equal(t, templates.EntryKept, applied.Entries[0].Op, "the user's erp differs and is kept")
	assert.Contains(t, applied.Entries[0].YAML, "url_env: ERP_URL", "the template's entry, to compare")
	assert.Equal(t, templates.ProjectEntry{Key: "groups.g", Op: templates.EntryAdded, YAML: "g: {syncs: [a]}\n"}, applied.Entries[1])
	merged, err := os.ReadFile(filepath.Join(dir, "ferry.yaml"))
	require.NoError(t, err)
	for _, kept := range []string{"# my project", "# the ERP, by hand", "url_env: MY_ERP", "crm: {kind: postgres, settings: {url_env: CRM}}", "# from template sample v1\n  g: {syncs: [a]}"} {
		assert.Contains(t, string(merged), kept)
	}

	// Forced: the file and the differing entry are replaced.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "syncs", "a.sql"), []byte("SELECT 2 -- mine\n"), 0o644))
	_, applied, err = templates.Instantiate(tmpl, nil, dir, true)
	require.NoError(t, err)
	assert.Equal(t, []templates.FileOp{{Path: "syncs/a.sql", Op: "overwritten"}, {Path: "syncs/a.yaml", Op: "unchanged"}}, applied.Files)
	assert.Equal(t, templates.EntryReplaced, applied.Entries[0].Op)
	assert.Equal(t, templates.EntrySame, applied.Entries[1].Op)
	merged, err = os.ReadFile(filepath.Join(dir, "ferry.yaml"))
	require.NoError(t, err)
	assert.NotContains(t, string(merged), "MY_ERP")
	assert.Contains(t, string(merged), "crm: {kind: postgres, settings: {url_env: CRM}}", "other entries stay")

	// A ferry.yaml that is not a mapping: it says what to add by hand.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte("- a list\n"), 0o644))
	_, _, err = templates.Instantiate(tmpl, nil, dir, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "add them by hand:\nconnections:\n  erp:")
}

// Diff tells what changed upstream from what the user edited, with the
// values the project was made with.
func TestDiffTellsUpstreamChangesFromEdits(t *testing.T) {
	v1 := map[string]string{
		"syncs/a.yaml": "source: {table: {{tbl}}}\n",
		"syncs/a.sql":  "SELECT * FROM {{tbl}}\n",
		"syncs/b.sql":  "SELECT 2\n",
		"syncs/c.sql":  "SELECT 3\n",
	}
	params := "  - {name: tbl, type: table, default: crm.x, description: It.}\n"
	tmpl, err := sample(t, manifest(params), v1)
	require.NoError(t, err)
	dir := t.TempDir()
	_, _, err = templates.Instantiate(tmpl, map[string]string{"tbl": "crm.mine"}, dir, false)
	require.NoError(t, err)

	// The user edits a.sql and c.sql; v2 changes a.sql and b.sql, drops c.sql, adds d.sql.
	for p, extra := range map[string]string{"syncs/a.sql": "-- my edit\n", "syncs/c.sql": "-- mine too\n"} {
		f, err := os.OpenFile(filepath.Join(dir, p), os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.WriteString(extra)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	v2 := map[string]string{
		"syncs/a.yaml": v1["syncs/a.yaml"],
		"syncs/a.sql":  "SELECT id FROM {{tbl}}\n",
		"syncs/b.sql":  "SELECT 22\n",
		"syncs/d.sql":  "SELECT 4\n",
	}
	newer, err := sample(t, strings.Replace(manifest(params), "version: 1", "version: 2", 1), v2)
	require.NoError(t, err)

	files, err := templates.ReadProjectDir(dir)
	require.NoError(t, err)
	insts := templates.Instances(files)
	require.Len(t, insts, 1)
	assert.Equal(t, "sample", insts[0].Template)
	assert.Equal(t, 1, insts[0].Version)
	rep, err := templates.Diff(insts[0], newer, files)
	require.NoError(t, err)
	assert.True(t, rep.Upstream())
	assert.Equal(t, 1, rep.Was)
	assert.Equal(t, 2, rep.Now)
	got := map[string]templates.FileDiff{}
	for _, f := range rep.Files {
		got[f.Path] = f
	}
	assert.Equal(t, templates.DiffChanged, got["syncs/a.sql"].State)
	assert.True(t, got["syncs/a.sql"].Edited, "the user's edit is seen")
	assert.Contains(t, got["syncs/a.sql"].Diff, `+SELECT id FROM "crm"."mine"`, "rendered with the project's values")
	assert.Contains(t, got["syncs/a.sql"].Diff, "-- my edit")
	assert.Equal(t, templates.DiffChanged, got["syncs/b.sql"].State)
	assert.False(t, got["syncs/b.sql"].Edited)
	assert.Equal(t, templates.DiffRemoved, got["syncs/c.sql"].State)
	assert.True(t, got["syncs/c.sql"].Edited)
	assert.Equal(t, templates.DiffNew, got["syncs/d.sql"].State)
	assert.Equal(t, templates.DiffUpToDate, got["syncs/a.yaml"].State)
	assert.False(t, got["syncs/a.yaml"].Edited)

	// Against the version that wrote them, only the edits show.
	same, err := templates.Diff(insts[0], tmpl, files)
	require.NoError(t, err)
	assert.False(t, same.Upstream())
}

// The header of a file names the template, the version, the values and
// the hash of what it wrote, and reads back.
func TestHeaderReadsBack(t *testing.T) {
	tmpl, err := sample(t, manifest("  - {name: num, type: integer, default: 3, description: It.}\n"), map[string]string{"syncs/a.star": "N = {{num}}\n", "syncs/a.sql": "SELECT {{num}}\n"})
	require.NoError(t, err)
	vals, err := tmpl.Resolve(nil)
	require.NoError(t, err)
	r, err := tmpl.Render(vals)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(r.Files["syncs/a.star"]), `# from template sample v1 with {"num":3} (sha256 `))
	assert.True(t, strings.HasPrefix(string(r.Files["syncs/a.sql"]), `-- from template sample v1 with {"num":3} (sha256 `))
	h, body, ok := templates.ParseHeader(r.Files["syncs/a.sql"])
	require.True(t, ok)
	assert.Equal(t, "sample", h.Template)
	assert.Equal(t, 1, h.Version)
	assert.Equal(t, "SELECT 3\n", string(body))
	assert.Len(t, h.Hash, 16)
	_, _, ok = templates.ParseHeader([]byte("-- a comment of my own\nSELECT 1\n"))
	assert.False(t, ok)
}

// Every shipped template says what it is for: a README, a title, a
// pattern of the spec, parameters with defaults (instantiating needs no
// value), the next commands, and a test.
func TestShippedTemplatesAreDocumented(t *testing.T) {
	all, err := templates.Shipped()
	require.NoError(t, err)
	for _, tmpl := range all {
		m := tmpl.Manifest
		assert.NotEmpty(t, strings.TrimSpace(tmpl.Readme()), "%s: README.md", m.Name)
		assert.True(t, strings.HasPrefix(tmpl.Readme(), "# "+m.Name+"\n"), "%s: its README starts with its name", m.Name)
		assert.NotEmpty(t, m.Pattern, "%s: the spec's pattern", m.Name)
		assert.NotEmpty(t, m.Next, "%s: the commands to run next", m.Name)
		assert.NotNil(t, m.Test, "%s: a test", m.Name)
		_, err := tmpl.Resolve(nil)
		assert.NoError(t, err, "%s: instantiates with its defaults", m.Name)
	}
}

// A project that reads its sync files from another folder is told where
// the template's must go.
func TestApplySaysWhereSyncFilesGo(t *testing.T) {
	tmpl, err := sample(t, manifest("  - {name: tbl, type: table, default: crm.x, description: It.}\n"), map[string]string{"syncs/a.yaml": "source: {table: {{tbl}}}\n"})
	require.NoError(t, err)
	vals, err := tmpl.Resolve(nil)
	require.NoError(t, err)
	r, err := tmpl.Render(vals)
	require.NoError(t, err)
	a, err := r.Apply(map[string][]byte{"ferry.yaml": []byte("syncs_dir: flows\n")}, false)
	require.NoError(t, err)
	assert.Equal(t, []string{"ferry.yaml reads sync files from flows/ (syncs_dir): move syncs/a.yaml there"}, a.Notes)
	a, err = r.Apply(map[string][]byte{"ferry.yaml": []byte("connections: {}\n")}, false)
	require.NoError(t, err)
	assert.Empty(t, a.Notes)
}
