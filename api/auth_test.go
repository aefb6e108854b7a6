package api_test

import (
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/api"
	"github.com/ferry-sync/ferry/api/auth"
)

// Every operation, taken from the router itself, answers 401 without a
// token, 403 to a role below the one it declares, and neither to roles at
// or above it: a new route cannot be forgotten.
func TestEveryRouteChecksItsRole(t *testing.T) {
	t.Parallel()
	ts := newServer(t, secretKey(t))
	oapi := ts.api.API().OpenAPI()
	roles := []auth.Role{auth.Viewer, auth.Editor, auth.Admin}
	checked := 0
	for path, item := range oapi.Paths {
		for method, op := range map[string]*huma.Operation{http.MethodGet: item.Get, http.MethodPost: item.Post, http.MethodPut: item.Put, http.MethodDelete: item.Delete, http.MethodPatch: item.Patch} {
			if op == nil {
				continue
			}
			need, ok := op.Metadata["role"].(auth.Role)
			require.True(t, ok, "%s %s declares no role", method, path)
			url := fill(path)
			status, _, _ := ts.call("", method, url, map[string]any{})
			assert.Equal(t, http.StatusUnauthorized, status, "%s %s without a token", method, path)
			for _, role := range roles {
				status, _, raw := ts.call(role, method, url, map[string]any{})
				if role.Allows(need) {
					assert.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, status, "%s %s as %s (needs %s): %s", method, path, role, need, raw)
				} else {
					assert.Equal(t, http.StatusForbidden, status, "%s %s as %s (needs %s)", method, path, role, need)
				}
			}
			checked++
		}
	}
	assert.Greater(t, checked, 40)
}

// fill puts harmless values in a path's parameters.
func fill(path string) string {
	r := strings.NewReplacer("{name}", "nothing_here", "{id}", "424242", "{version}", "424242")
	return r.Replace(path)
}

// The OpenAPI document and the router agree: every route the router serves
// under /api/v1 is documented, and every documented operation is served.
func TestOpenAPIDocumentMatchesTheRouter(t *testing.T) {
	t.Parallel()
	ts := newServer(t, secretKey(t))
	documented := map[string]bool{}
	for path, item := range ts.api.API().OpenAPI().Paths {
		for method, op := range map[string]*huma.Operation{http.MethodGet: item.Get, http.MethodPost: item.Post, http.MethodPut: item.Put, http.MethodDelete: item.Delete, http.MethodPatch: item.Patch} {
			if op != nil {
				documented[method+" "+path] = true
			}
		}
	}
	served := map[string]bool{}
	for _, r := range ts.api.Routes() {
		if !strings.HasPrefix(r.Path, api.Prefix) || strings.HasPrefix(r.Path, api.Prefix+"/openapi") {
			continue
		}
		served[r.Method+" "+strings.NewReplacer(":name", "{name}", ":id", "{id}", ":version", "{version}").Replace(r.Path)] = true
	}
	assert.Equal(t, keys(documented), keys(served))

	status, doc, _ := ts.call("", http.MethodGet, "/api/v1/openapi.json", nil)
	require.Equal(t, http.StatusOK, status, "the document is public")
	assert.Equal(t, "3.1.0", doc["openapi"])
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
