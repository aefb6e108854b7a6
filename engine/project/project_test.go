package project_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
	"github.com/ferry-sync/ferry/engine/connector/postgres"
	"github.com/ferry-sync/ferry/engine/project"
)

// kinds are the built-in connection kinds.
func kinds(t *testing.T) *connector.Registry {
	t.Helper()
	r, err := connector.NewRegistry(httptarget.Kind(), postgres.Kind())
	require.NoError(t, err)
	return r
}

const projectYAML = `
connections:
  erp:
    kind: postgres
    settings: {url_env: ERP_URL}
groups:
  all:
    syncs: [contacts, companies]
`

func writeProject(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if _, ok := files["ferry.yaml"]; !ok {
		files["ferry.yaml"] = projectYAML
	}
	for name, body := range files {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	}
	return dir
}

const goodCompanies = `
source: {table: crm.companies}
target: {connection: erp, object: partners}
mapping:
  - {source: name, target: name}
  - {value: 555, target: division_id}
`

const goodContacts = `
source:
  query_file: contacts.sql
  id_column: contact_id
  overlap: 10m
target: {connection: erp, object: people}
mapping:
  - {source: email, target: email}
relations:
  - {source: company_id, sync: companies, target: partner_id}
on_error: stop
`

func TestLoadProject(t *testing.T) {
	t.Parallel()
	dir := writeProject(t, map[string]string{
		"syncs/companies.yaml": goodCompanies,
		"syncs/contacts.yaml":  goodContacts,
		"syncs/contacts.sql":   "SELECT * FROM crm.contacts;\n",
	})
	p, err := project.Load(dir, kinds(t))
	require.NoError(t, err)
	require.Len(t, p.Syncs, 2)

	c, ok := p.Sync("contacts")
	require.True(t, ok)
	assert.Equal(t, "SELECT * FROM crm.contacts;\n", c.Source.Query)
	assert.Equal(t, "contact_id", c.Source.IDColumn)
	assert.Equal(t, "_sdc_batched_at", c.Source.BookmarkColumn, "default bookmark")
	assert.Equal(t, "10m0s", c.Source.Overlap.String())
	assert.Equal(t, project.ModeUpsert, c.Mode)
	assert.Equal(t, project.OnErrorStop, c.OnError)

	order, err := p.GroupOrder("all")
	require.NoError(t, err)
	assert.Equal(t, "companies", order[0].Name, "parents run first although the group lists the child first")
	assert.Equal(t, "contacts", order[1].Name)
}

func TestLoadProjectErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"unknown field", map[string]string{"syncs/a.yaml": goodCompanies + "mapings: []\n"},
			[]string{"syncs/a.yaml", `unknown field "mapings"`}},
		{"no source", map[string]string{"syncs/a.yaml": "target: {connection: erp, object: x}\n"},
			[]string{"syncs/a.yaml: source: set source.table, source.query or source.query_file"}},
		{"duplicate target field", map[string]string{"syncs/a.yaml": goodCompanies + "  - {source: other, target: name}\n"},
			[]string{"syncs/a.yaml: mapping[2]: target field \"name\" is already written by mapping[0]"}},
		{"relation and mapping write one field", map[string]string{"syncs/a.yaml": goodCompanies + "relations: [{source: p, sync: a2, target: name}]\n", "syncs/a2.yaml": goodCompanies},
			[]string{"syncs/a.yaml: relations[0]: target field \"name\" is already written by mapping[0]"}},
		{"relation to unknown sync", map[string]string{"syncs/a.yaml": goodCompanies + "relations: [{source: p, sync: nope, target: p_id}]\n"},
			[]string{"syncs/a.yaml: relations[0].sync: unknown sync \"nope\""}},
		{"cycle", map[string]string{
			"syncs/a.yaml": goodCompanies + "relations: [{source: b_id, sync: b, target: b_id}]\n",
			"syncs/b.yaml": goodCompanies + "relations: [{source: a_id, sync: a, target: a_id}]\n"},
			[]string{"relations form a cycle: a → b → a"}},
		{"unknown connection", map[string]string{"syncs/a.yaml": "source: {table: t}\ntarget: {connection: crm, object: x}\n"},
			[]string{"syncs/a.yaml: target.connection: unknown connection \"crm\" (defined in ferry.yaml: erp)"}},
		{"bad mode", map[string]string{"syncs/a.yaml": goodCompanies + "mode: merge\n"},
			[]string{"mode: \"merge\" is not a mode"}},
		{"bad name", map[string]string{"syncs/Bad-Name.yaml": goodCompanies},
			[]string{"\"Bad-Name\" is not a valid sync name"}},
		{"missing query file", map[string]string{"syncs/a.yaml": "source: {query_file: nope.sql}\ntarget: {connection: erp, object: x}\n"},
			[]string{"syncs/a.yaml: source.query_file: cannot read nope.sql"}},
		{"bad duration", map[string]string{"syncs/a.yaml": goodCompanies + "on_error: continue\n" + "x: 1\n"},
			[]string{"unknown field \"x\""}},
		{"unknown connection kind", map[string]string{"ferry.yaml": "connections:\n  erp: {kind: ftp}\n", "syncs/a.yaml": goodCompanies},
			[]string{"ferry.yaml: connections.erp.kind: unknown kind \"ftp\""}},
		{"write_back without field", map[string]string{"syncs/a.yaml": goodCompanies + "write_back: {connection: erp, object: companies}\n"},
			[]string{"syncs/a.yaml: write_back: write_back needs connection"}},
		{"write_back to unknown connection", map[string]string{"syncs/a.yaml": goodCompanies + "write_back: {connection: hubspot, object: companies, field: erp_id}\n"},
			[]string{"syncs/a.yaml: write_back.connection: unknown connection \"hubspot\""}},
		{"group with unknown sync", map[string]string{"syncs/companies.yaml": goodCompanies},
			[]string{"ferry.yaml: groups.all.syncs[0]: unknown sync \"contacts\""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{}
			for k, v := range tc.files {
				files[k] = v
			}
			if _, ok := files["ferry.yaml"]; !ok && tc.name != "group with unknown sync" {
				files["ferry.yaml"] = "connections:\n  erp: {kind: postgres, settings: {url_env: X}}\n"
			}
			_, err := project.Load(writeProject(t, files), kinds(t))
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestParseSyncJSON(t *testing.T) {
	t.Parallel()
	s, err := project.Parse([]byte(`{"name":"deals","source":{"query":"SELECT 1 AS id"},"target":{"connection":"crm","object":"deals"},"source_extra":1}`))
	require.Error(t, err, "unknown fields are refused in JSON too")
	assert.Nil(t, s)
	s, err = project.Parse([]byte(`{"name":"deals","source":{"query":"SELECT 1 AS id","incremental":false},"target":{"connection":"crm","object":"deals"}}`))
	require.NoError(t, err)
	assert.False(t, s.IsIncremental())
}

func TestBrokenScriptIsRefusedAtLoad(t *testing.T) {
	t.Parallel()
	dir := writeProject(t, map[string]string{
		"syncs/companies.yaml":   goodCompanies + "transform: companies.star\n",
		"syncs/companies.star":   "def transform(source_record, target_record, pq, target_id=None):\n    return target_record +\n",
		"syncs/helpers.star":     "",
		"syncs/contacts.yaml":    "source: {table: crm.contacts}\ntarget: {connection: erp, object: people}\ntransform: contacts.star\n",
		"syncs/contacts.star":    "load(\"os\", \"getenv\")\ndef transform(s, t, pq, target_id=None):\n    return t\n",
		"syncs/notransform.yaml": "source: {table: crm.contacts}\ntarget: {connection: erp, object: people}\ntransform: empty.star\n",
		"syncs/empty.star":       "x = 1\n",
	})
	_, err := project.Load(dir, kinds(t))
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, "syncs/companies.yaml: transform: companies.star:2:")
	assert.Contains(t, msg, "syncs/contacts.yaml: transform:")
	assert.Contains(t, msg, `"os"`, "load() of a module Ferry does not ship is refused")
	assert.Contains(t, msg, "syncs/notransform.yaml: transform:")
	assert.Contains(t, msg, "transform", "a script without a transform function")
}

// A two-way pair is declared once and checked: both syncs know their
// partner and the winning side, and a mistake names the file and field.
func TestTwoWayPairs(t *testing.T) {
	const pairYAML = `
connections:
  erp: {kind: postgres, settings: {url_env: ERP_URL}}
  crm: {kind: postgres, settings: {url_env: CRM_URL}}
`
	back := "source: {table: elt_erp.companies}\ntarget: {connection: crm, object: companies}\n"
	for _, tc := range []struct {
		name, twoWay, wantErr string
		wins                  string
	}{
		{name: "wins names a connection", twoWay: "{with: erp_to_crm, conflict: {wins: crm}}", wins: "crm_to_erp"},
		{name: "wins names a sync", twoWay: "{with: erp_to_crm, conflict: {wins: erp_to_crm, newer: updated_at}}", wins: "erp_to_crm"},
		{name: "unknown partner", twoWay: "{with: nope, conflict: {wins: crm}}", wantErr: `syncs/crm_to_erp.yaml: two_way.with: unknown sync "nope"`},
		{name: "no rule", twoWay: "{with: erp_to_crm}", wantErr: "two_way.conflict.wins: say whose change wins when both sides changed a record: a connection (crm or erp)"},
		{name: "not a side", twoWay: "{with: erp_to_crm, conflict: {wins: sales}}", wantErr: `two_way.conflict.wins: "sales" is neither side of the pair`},
		{name: "itself", twoWay: "{with: crm_to_erp, conflict: {wins: crm}}", wantErr: "two_way.with: a sync cannot be its own other direction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeProject(t, map[string]string{
				"ferry.yaml":            pairYAML,
				"syncs/crm_to_erp.yaml": "source: {table: elt_crm.companies}\ntarget: {connection: erp, object: companies}\ntwo_way: " + tc.twoWay + "\n",
				"syncs/erp_to_crm.yaml": back,
			})
			p, err := project.Load(dir, kinds(t))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			a, _ := p.Sync("crm_to_erp")
			b, _ := p.Sync("erp_to_crm")
			require.NotNil(t, a.Pair)
			require.NotNil(t, b.Pair)
			assert.Equal(t, "erp_to_crm", a.Pair.Partner)
			assert.Equal(t, "crm_to_erp", b.Pair.Partner)
			assert.Equal(t, tc.wins, a.Pair.Wins)
			assert.Equal(t, tc.wins, b.Pair.Wins)
		})
	}
}
