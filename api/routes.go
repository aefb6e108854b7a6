package api

import (
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferry-sync/ferry/api/auth"
)

// op describes one operation: its id, method, path (under Prefix), summary,
// the role it needs and the statuses it answers besides 200.
func op(id, method, path, summary string, role auth.Role, errs ...int) huma.Operation {
	tag := ""
	if p := path[1:]; len(p) > 0 {
		for i, r := range p {
			if r == '/' {
				p = p[:i]
				break
			}
		}
		tag = p
	}
	return huma.Operation{
		OperationID: id,
		Method:      method,
		Path:        Prefix + path,
		Summary:     summary,
		Description: summary + ". Needs a token of role " + string(role) + roleAbove(role) + ".",
		Tags:        []string{tag},
		Metadata:    map[string]any{"role": role},
		Errors:      append([]int{http.StatusUnauthorized, http.StatusForbidden}, errs...),
	}
}

// roleAbove says which roles include a role, for the descriptions.
func roleAbove(r auth.Role) string {
	switch r {
	case auth.Viewer:
		return " (or editor, admin)"
	case auth.Editor:
		return " (or admin)"
	}
	return ""
}

// tags describe the groups of operations, by the first segment of a path.
func tags() []*huma.Tag {
	return []*huma.Tag{
		{Name: "kinds", Description: "The kinds of connection this server can open (http, postgres, …) and their settings."},
		{Name: "connections", Description: "Where data goes: a kind, its settings and the secrets they name."},
		{Name: "syncs", Description: "A scope query over the warehouse mapped onto a target object, and its link table."},
		{Name: "groups", Description: "Syncs run together, parents first."},
		{Name: "scripts", Description: "Starlark transforms, libraries, their tests and data-sync scripts."},
		{Name: "runs", Description: "Runs of syncs, groups and scripts: started in the background, followed, cancelled."},
		{Name: "status", Description: "Every sync's state at a glance."},
		{Name: "schedules", Description: "When the server runs syncs, groups and scripts; set in their definitions."},
		{Name: "export", Description: "The configuration as the files of a project folder."},
		{Name: "import", Description: "Replace the configuration with a project folder's files."},
		{Name: "templates", Description: "Bundles of syncs, scope queries and scripts with typed parameters, which a configuration starts from."},
		{Name: "history", Description: "Every change to the configuration: who, when, the diff; and undo."},
		{Name: "secrets", Description: "Encrypted, write-only values connections name."},
		{Name: "tokens", Description: "API tokens and their roles."},
	}
}

// routes registers every operation, one place for all of them.
func (s *Server) routes() {
	a := s.api
	// Kinds and connections.
	huma.Register(a, op("list-kinds", http.MethodGet, "/kinds", "List the connection kinds this server can open", auth.Viewer), s.listKinds)
	huma.Register(a, op("list-connections", http.MethodGet, "/connections", "List connections (secrets show only whether they are set)", auth.Viewer), s.listConnections)
	huma.Register(a, op("get-connection", http.MethodGet, "/connections/{name}", "Get one connection", auth.Viewer, 404), s.getConnection)
	huma.Register(a, op("put-connection", http.MethodPut, "/connections/{name}", "Create or replace a connection; its secrets are stored encrypted and never shown again", auth.Admin, 422, 503), s.putConnection)
	huma.Register(a, op("delete-connection", http.MethodDelete, "/connections/{name}", "Delete a connection no sync uses", auth.Admin, 404, 422), s.deleteConnection)
	huma.Register(a, op("check-connection", http.MethodPost, "/connections/{name}/check", "Open a connection and check that it answers", auth.Editor, 404, 422), s.checkConnection)

	// Syncs and groups.
	huma.Register(a, op("list-syncs", http.MethodGet, "/syncs", "List syncs", auth.Viewer), s.listSyncs)
	huma.Register(a, op("get-sync", http.MethodGet, "/syncs/{name}", "Get one sync, with its defaults applied", auth.Viewer, 404), s.getSync)
	huma.Register(a, op("put-sync", http.MethodPut, "/syncs/{name}", "Create or replace a sync", auth.Editor, 422), s.putSync)
	huma.Register(a, op("delete-sync", http.MethodDelete, "/syncs/{name}", "Delete a sync (its link table stays)", auth.Editor, 404, 422), s.deleteSync)
	huma.Register(a, op("check-sync", http.MethodPost, "/syncs/{name}/check", "Check a sync against the warehouse and its target, reading no rows", auth.Viewer, 404, 422), s.checkSync)
	huma.Register(a, op("plan-sync", http.MethodPost, "/syncs/{name}/plan", "What a run would do, writing nothing", auth.Viewer, 404, 422), s.planSync)
	huma.Register(a, op("test-sync", http.MethodPost, "/syncs/{name}/test", "What a run does with one record; writes it only when asked (editor)", auth.Viewer, 404, 409, 422), s.testSync)
	huma.Register(a, op("explain-record", http.MethodGet, "/syncs/{name}/explain/{id}", "Why a record did or did not sync", auth.Viewer, 404), s.explainRecord)
	huma.Register(a, op("start-sync-run", http.MethodPost, "/syncs/{name}/runs", "Start a run of a sync in the background", auth.Editor, 404, 409, 422), s.startSyncRun)
	huma.Register(a, op("get-sync-status", http.MethodGet, "/syncs/{name}/status", "A sync's link rows by status, failing records, bookmark and latest runs", auth.Viewer, 404), s.syncStatus)
	huma.Register(a, op("list-links", http.MethodGet, "/syncs/{name}/links", "A sync's link rows, a page at a time", auth.Viewer, 404, 422), s.listLinks)
	huma.Register(a, op("get-link", http.MethodGet, "/syncs/{name}/links/{id}", "One record's link row and its history of errors", auth.Viewer, 404), s.getLink)
	huma.Register(a, op("list-groups", http.MethodGet, "/groups", "List groups", auth.Viewer), s.listGroups)
	huma.Register(a, op("put-group", http.MethodPut, "/groups/{name}", "Create or replace a group", auth.Editor, 422), s.putGroup)
	huma.Register(a, op("delete-group", http.MethodDelete, "/groups/{name}", "Delete a group", auth.Editor, 404), s.deleteGroup)
	huma.Register(a, op("start-group-run", http.MethodPost, "/groups/{name}/runs", "Start runs of a group's syncs, parents first, in the background", auth.Editor, 404, 409, 422), s.startGroupRun)

	// Scripts.
	huma.Register(a, op("list-scripts", http.MethodGet, "/scripts", "List Starlark scripts (transforms, libraries, tests, data-sync scripts)", auth.Viewer), s.listScripts)
	huma.Register(a, op("get-script", http.MethodGet, "/scripts/{name}", "Get one script's source", auth.Viewer, 404), s.getScript)
	huma.Register(a, op("put-script", http.MethodPut, "/scripts/{name}", "Create or replace a script; it is checked (file:line) before it is saved", auth.Editor, 422), s.putScript)
	huma.Register(a, op("delete-script", http.MethodDelete, "/scripts/{name}", "Delete a script no sync uses", auth.Editor, 404, 422), s.deleteScript)
	huma.Register(a, op("test-scripts", http.MethodPost, "/scripts/tests", "Run the *_test.star tests of the transforms", auth.Viewer), s.testScripts)
	huma.Register(a, op("start-script-run", http.MethodPost, "/scripts/{name}/runs", "Start a data-sync script (def main(pq)) in the background", auth.Editor, 404, 409, 422), s.startScriptRun)

	// Runs and status.
	huma.Register(a, op("list-runs", http.MethodGet, "/runs", "List runs, newest first, a page at a time", auth.Viewer, 422), s.listRuns)
	huma.Register(a, op("get-run", http.MethodGet, "/runs/{id}", "One run: status, counts, bookmark, errors", auth.Viewer, 404), s.getRun)
	huma.Register(a, op("cancel-run", http.MethodPost, "/runs/{id}/cancel", "Cancel a run this server started", auth.Editor, 404, 409), s.cancelRun)
	huma.Register(a, op("get-status", http.MethodGet, "/status", "Every sync's status", auth.Viewer), s.status)
	huma.Register(a, op("list-schedules", http.MethodGet, "/schedules", "Every schedule (syncs, groups, scripts) with its next and last tick", auth.Viewer), s.listSchedules)

	// Configuration as code.
	huma.Register(a, op("export", http.MethodGet, "/export", "The whole configuration, as the files of a project folder", auth.Viewer), s.export)
	huma.Register(a, op("import", http.MethodPost, "/import", "Replace the configuration with a project folder's files (dry_run shows the diff)", auth.Admin, 422), s.importFiles)
	huma.Register(a, op("list-history", http.MethodGet, "/history", "Changes to the configuration, newest first", auth.Viewer), s.history)
	huma.Register(a, op("revert-version", http.MethodPost, "/history/{version}/revert", "Undo one change of the configuration", auth.Admin, 404, 422), s.revert)

	// Templates.
	s.templateRoutes()

	// Secrets and tokens.
	huma.Register(a, op("list-secrets", http.MethodGet, "/secrets", "Which secrets are set (never their values)", auth.Admin), s.listSecrets)
	huma.Register(a, op("put-secret", http.MethodPut, "/secrets/{name}", "Set a secret (write-only)", auth.Admin, 422, 503), s.putSecret)
	huma.Register(a, op("delete-secret", http.MethodDelete, "/secrets/{name}", "Delete a secret", auth.Admin, 404), s.deleteSecret)
	huma.Register(a, op("list-tokens", http.MethodGet, "/tokens", "List API tokens", auth.Admin), s.listTokens)
	huma.Register(a, op("create-token", http.MethodPost, "/tokens", "Create an API token (its text is shown once)", auth.Admin, 422), s.createToken)
	huma.Register(a, op("revoke-token", http.MethodDelete, "/tokens/{id}", "Revoke an API token", auth.Admin, 404), s.revokeToken)
}
