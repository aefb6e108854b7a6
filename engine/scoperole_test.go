package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

// scopeRole makes a role for one test (roles are cluster-wide) with
// SetupScopeRole, dropped when the test ends.
func scopeRole(t *testing.T, b *testBundle, schemas ...string) string {
	t.Helper()
	role := fmt.Sprintf("ferry_scope_%s", strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name())))
	if len(role) > 60 {
		role = role[:60]
	}
	require.NoError(t, engine.SetupScopeRole(context.Background(), b.db, role, schemas))
	t.Cleanup(func() {
		ctx := context.Background()
		b.db.Exec(ctx, "DROP OWNED BY "+pgx.Identifier{role}.Sanitize())
		admin, err := pgx.Connect(ctx, dbtest.ServerURL())
		if err != nil {
			return
		}
		defer admin.Close(ctx)
		admin.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
	})
	return role
}

// Under a scope role, a scope query reads what it was granted and nothing
// else: not the server's files, not Ferry's own sessions.
func TestScopeQueriesRunUnderTheScopeRole(t *testing.T) {
	t.Parallel()
	b := setup(t, companiesSync())
	b.exec(`INSERT INTO crm.companies (id, name) VALUES (1, 'Acme')`)
	role := scopeRole(t, b, "crm")
	b.proj.Warehouse.ScopeRole = role

	res := b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Inserted, "a granted table reads as before")

	for name, expr := range map[string]string{
		"server file":         "pg_read_file('/etc/hostname')",
		"another session":     "pg_terminate_backend((SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() LIMIT 1))::text",
		"Ferry's state":       "(SELECT count(*) FROM ferry.leases)::text",
		"a table not granted": "(SELECT count(*) FROM public.secrets)::text",
	} {
		t.Run(name, func(t *testing.T) {
			b.exec(`CREATE TABLE IF NOT EXISTS public.secrets (x text)`)
			s := companiesSync()
			s.Name = "hostile"
			s.Source = project.Source{Query: "SELECT id, " + expr + " AS name, vat, _sdc_batched_at FROM crm.companies"}
			p, err := project.New(nil, map[string]project.Connection{"erp": testConnection}, s)
			require.NoError(t, err)
			p.Warehouse.ScopeRole = role
			eng := engine.New(b.db, engine.StaticProject(p), engine.Options{Open: only(b.target)})
			_, err = eng.Run(context.Background(), "hostile", engine.RunOptions{})
			require.Error(t, err)
			assert.Regexp(t, "permission denied|must be a superuser", err.Error())
			assert.Contains(t, err.Error(), "sync hostile")
		})
	}
}

func TestMissingScopeRoleIsAConfigError(t *testing.T) {
	t.Parallel()
	b := setup(t, companiesSync())
	b.proj.Warehouse.ScopeRole = "no_such_role_here"
	_, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{})
	var ce *project.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, err.Error(), `warehouse.scope_role: cannot run queries as role "no_such_role_here"`)
	assert.Contains(t, err.Error(), "ferry setup --scope-role no_such_role_here")

	warnings, err := b.eng.Check(context.Background())
	assert.Error(t, err)
	assert.Empty(t, warnings)
	b.proj.Warehouse.ScopeRole = ""
	warnings, err = b.eng.Check(context.Background())
	assert.NoError(t, err)
	require.Len(t, warnings, 1)
	assert.Contains(t, warnings[0], "every right of the warehouse login")
}
