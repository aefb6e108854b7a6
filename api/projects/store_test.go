package projects_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/api/projects"
	"github.com/ferry-sync/ferry/engine/connector"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
	"github.com/ferry-sync/ferry/engine/connector/postgres"
	"github.com/ferry-sync/ferry/queries/dbtest"
	"github.com/ferry-sync/ferry/templates"
)

func newStore(t *testing.T) *projects.Store {
	t.Helper()
	kinds, err := connector.NewRegistry(httptarget.Kind(), postgres.Kind())
	require.NoError(t, err)
	s, err := projects.NewStore(dbtest.NewPool(t), kinds, t.TempDir())
	require.NoError(t, err)
	return s
}

// A folder imported into the store comes back out byte for byte; a change
// that would break the project is refused whole; every change is in the
// history and can be reverted.
func TestImportExportChangeRevert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	dir := t.TempDir()
	_, err := templates.CopyTo("demo", dir, false)
	require.NoError(t, err)
	files, err := projects.ReadDir(dir)
	require.NoError(t, err)
	require.Contains(t, files, "syncs/companies.yaml")
	assert.NotContains(t, files, "erp.sql", "only a project's own files")

	cs, err := s.Replace(ctx, files, "alice", "import", true)
	require.NoError(t, err)
	assert.NotEmpty(t, cs.Files)
	empty, err := s.Files(ctx)
	require.NoError(t, err)
	assert.Empty(t, empty, "a dry run writes nothing")

	cs, err = s.Replace(ctx, files, "alice", "import", false)
	require.NoError(t, err)
	assert.Equal(t, int64(1), cs.Version)
	p, err := s.Project(ctx)
	require.NoError(t, err)
	assert.Len(t, p.Syncs, 2)

	out := t.TempDir()
	stored, err := s.Files(ctx)
	require.NoError(t, err)
	require.NoError(t, projects.WriteDir(out, stored))
	again, err := projects.ReadDir(out)
	require.NoError(t, err)
	assert.Equal(t, files, again, "export gives back the imported files, byte for byte")

	// A change that breaks the project is refused, and nothing changes.
	_, err = s.Change(ctx, map[string][]byte{"syncs/companies.yaml": []byte("source: {table: crm.companies}\ntarget: {connection: nowhere, object: x}\n")}, "bob", "edit", false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `syncs/companies.yaml: target.connection: unknown connection "nowhere"`)
	v, err := s.Version(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), v, "refused: the version did not move")

	edited := []byte(string(files["syncs/companies.yaml"]) + "on_error: stop\n")
	cs, err = s.Change(ctx, map[string][]byte{"syncs/companies.yaml": edited}, "bob", "stop on the first error", false)
	require.NoError(t, err)
	require.Len(t, cs.Files, 1)
	assert.Contains(t, cs.Files[0].Diff, "+on_error: stop")
	p, err = s.Project(ctx)
	require.NoError(t, err)
	c, _ := p.Sync("companies")
	assert.EqualValues(t, "stop", c.OnError, "the next call sees the edit")

	hist, err := s.History(ctx, "syncs/companies.yaml", 0, 10)
	require.NoError(t, err)
	require.Len(t, hist, 2)
	assert.Equal(t, "bob", hist[0].Actor)
	assert.Equal(t, "stop on the first error", hist[0].Reason)

	_, err = s.Revert(ctx, cs.Version, "carol")
	require.NoError(t, err)
	back, err := s.Files(ctx)
	require.NoError(t, err)
	assert.Equal(t, files["syncs/companies.yaml"], back["syncs/companies.yaml"])

	_, err = s.Change(ctx, map[string][]byte{"../etc/passwd.yaml": []byte("x")}, "eve", "x", false)
	assert.ErrorContains(t, err, "relative, clean and not hidden")
	_, err = os.Stat(filepath.Join(out, "ferry.yaml"))
	require.NoError(t, err)
}
