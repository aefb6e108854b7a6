package api_test

import (
	"flag"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/api"
)

var update = flag.Bool("update", false, "rewrite api/openapi.json from the code")

// api/openapi.json is the committed contract: client generators and the
// linter in make verify read it. It is derived from the code, so it must be
// what the server serves; `make generate` rewrites it.
func TestOpenAPIDocumentIsCommitted(t *testing.T) {
	doc, err := api.Document()
	require.NoError(t, err)
	if *update {
		require.NoError(t, os.WriteFile("openapi.json", doc, 0o644))
	}
	committed, err := os.ReadFile("openapi.json")
	require.NoError(t, err)
	require.Equal(t, string(committed), string(doc), "api/openapi.json is stale: run make generate")
}
