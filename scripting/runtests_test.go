package scripting

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunTestsReport(t *testing.T) {
	t.Parallel()
	report, err := RunTests(context.Background(), filepath.Join("testdata", "project"))
	require.NoError(t, err)
	require.Equal(t, 4, report.Passed)
	require.Equal(t, 2, report.Failed)
	require.False(t, report.OK())
	var out bytes.Buffer
	_, err = report.WriteTo(&out)
	require.NoError(t, err)
	golden(t, filepath.Join("testdata", "runtests.golden"), out.Bytes())
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -run %s -update to create it", t.Name())
	require.Equal(t, string(want), string(got))
}
