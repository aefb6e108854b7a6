package engine_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
	"github.com/ferry-sync/ferry/engine/connector/postgres"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

// ferry check reaches every target and checks what the syncs write there:
// a secret that is not set, a target nobody answers for, a table or column
// that does not exist, an object that is not declared, match_on without a
// lookup. Each is named with its sync and what to do.
func TestCheckReachesTargets(t *testing.T) {
	t.Parallel()
	db := dbtest.NewPool(t)
	ctx := context.Background()
	_, err := db.Exec(ctx, warehouseSQL)
	require.NoError(t, err)
	erpURL := dbtest.NewEmptyURL(t)
	erp := dbtest.Open(t, erpURL)
	_, err = erp.Exec(ctx, `CREATE TABLE partners (id serial PRIMARY KEY, name text)`)
	require.NoError(t, err)
	crm := crmtest.New(t, crmtest.Options{Token: "tok-check-1234"})
	closed := crmtest.New(t, crmtest.Options{})
	closed.Close()

	httpSettings := func(base string, objects map[string]any) json.RawMessage {
		raw, err := json.Marshal(map[string]any{"base_url": base, "auth": map[string]any{"type": "bearer", "token_env": "CRM_TOKEN"}, "objects": objects})
		require.NoError(t, err)
		return raw
	}
	conns := map[string]project.Connection{
		"erp":      {Kind: "postgres", Settings: json.RawMessage(`{"url_env": "ERP_URL"}`)},
		"crm":      {Kind: "http", Settings: httpSettings(crm.URL, map[string]any{"contacts": map[string]any{}})},
		"down":     {Kind: "http", Settings: httpSettings(closed.URL, map[string]any{"contacts": map[string]any{}})},
		"nosecret": {Kind: "postgres", Settings: json.RawMessage(`{"url_env": "UNSET_URL"}`)},
	}
	mk := func(name, conn, object string, mapping ...project.Field) *project.Sync {
		return &project.Sync{Name: name, Source: project.Source{Table: "crm.companies"}, Target: project.TargetRef{Connection: conn, Object: object}, Mapping: mapping}
	}
	good := mk("good", "erp", "partners", project.Field{Source: "name", Target: "name"})
	badColumn := mk("bad_column", "erp", "partners", project.Field{Source: "vat", Target: "vat_number"})
	noTable := mk("no_table", "erp", "customers", project.Field{Source: "name", Target: "name"})
	undeclared := mk("undeclared", "crm", "deals", project.Field{Source: "name", Target: "name"})
	noLookup := mk("no_lookup", "crm", "contacts", project.Field{Source: "name", Target: "name"})
	noLookup.Target.MatchOn = []string{"name"}
	down := mk("down", "down", "contacts", project.Field{Source: "name", Target: "name"})
	secret := mk("secret", "nosecret", "partners", project.Field{Source: "name", Target: "name"})

	kinds, err := connector.NewRegistry(httptarget.Kind(), postgres.Kind())
	require.NoError(t, err)
	p, err := project.New(kinds, conns, good, badColumn, noTable, undeclared, noLookup, down, secret)
	require.NoError(t, err)
	env := map[string]string{"ERP_URL": erpURL, "CRM_TOKEN": "tok-check-1234"}
	eng := engine.New(db, engine.StaticProject(p), engine.Options{Connectors: kinds, Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})

	_, err = eng.Check(ctx, "good")
	require.NoError(t, err)
	_, err = eng.Check(ctx)
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, `sync bad_column: target: connection erp: table public.partners has no column vat_number`)
	assert.Contains(t, msg, `sync no_table: target:`)
	assert.Contains(t, msg, `customers`)
	assert.Contains(t, msg, `sync undeclared: target: connection crm: object "deals" is not declared`)
	assert.Contains(t, msg, `sync no_lookup: target: connection crm: object "contacts" has no lookup: match_on needs one`)
	assert.Contains(t, msg, `sync down: target: connection down: cannot reach `+closed.URL)
	assert.Contains(t, msg, `sync secret: target: opening connection nosecret:`)
	assert.Contains(t, msg, `UNSET_URL is not set`)
	var ce *project.ConfigError
	assert.ErrorAs(t, err, &ce, "a secret that is not set is a configuration error")
	assert.NotContains(t, msg, "sync good")
}
