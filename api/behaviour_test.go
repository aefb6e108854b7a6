package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/api/auth"
	"github.com/ferry-sync/ferry/engine/connector/conformance"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

// Validation errors name the JSON path of what is wrong, in the one error
// shape, and change nothing.
func TestValidationNamesTheJSONPath(t *testing.T) {
	t.Parallel()
	ts := newServer(t, secretKey(t))
	ts.ok(auth.Admin, http.MethodPut, "/api/v1/connections/erp", map[string]any{"kind": "postgres", "settings": map[string]any{"url_env": "ERP_URL"}})
	cases := []struct {
		body  map[string]any
		path  string
		words string
	}{
		{map[string]any{"source": map[string]any{"table": "crm.x"}, "target": map[string]any{"connection": "nowhere", "object": "x"}}, "target.connection", `unknown connection "nowhere"`},
		{map[string]any{"source": map[string]any{"table": "crm.x"}, "target": map[string]any{"connection": "erp", "object": "x"}, "mode": "sometimes"}, "mode", `"sometimes" is not a mode`},
		{map[string]any{"source": map[string]any{"table": "crm.x", "tabel": 1}, "target": map[string]any{"connection": "erp", "object": "x"}}, "source.tabel", "unexpected property"},
		{map[string]any{"source": map[string]any{"table": "crm.x"}, "target": map[string]any{"connection": "erp", "object": "x"}, "mapping": []any{map[string]any{"source": "a"}}}, "mapping[0].target", "required"},
	}
	for _, c := range cases {
		status, out, raw := ts.call(auth.Editor, http.MethodPut, "/api/v1/syncs/deals", c.body)
		require.Equal(t, http.StatusUnprocessableEntity, status, raw)
		e := out["error"].(map[string]any)
		assert.Equal(t, "invalid", e["code"])
		found := false
		for _, f := range e["fields"].([]any) {
			fm := f.(map[string]any)
			if strings.Contains(fm["path"].(string), c.path) && strings.Contains(fm["message"].(string), c.words) {
				found = true
			}
		}
		assert.True(t, found, "want path %s and %q in %s", c.path, c.words, raw)
	}
	list := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/syncs", nil)
	assert.Empty(t, list["syncs"], "nothing was written")

	status, out, raw := ts.call(auth.Editor, http.MethodPut, "/api/v1/scripts/bad.star", map[string]any{"source": "def main(pq):\n    return pq +\n"})
	require.Equal(t, http.StatusUnprocessableEntity, status, raw)
	assert.Contains(t, raw, "bad.star:2:")
	_ = out
}

// Two triggers of one sync at once: one run starts, the other gets a 409
// naming it; a trigger while it runs gets a 409 with its run id.
func TestConcurrentTriggersGiveOneRunAndOneConflict(t *testing.T) {
	t.Parallel()
	ts := newServer(t, secretKey(t))
	exec(t, ts.db, crmSQL)
	exec(t, ts.db, `INSERT INTO crm.companies SELECT g, 'C' || g, 'V' || g FROM generate_series(100, 3000) g`)
	erpURL := dbtest.NewEmptyURL(t)
	exec(t, dbtest.Open(t, erpURL), erpSQL)
	ts.ok(auth.Admin, http.MethodPut, "/api/v1/connections/erp", map[string]any{"kind": "postgres", "settings": map[string]any{"url_env": "ERP_URL"}, "secrets": map[string]string{"ERP_URL": erpURL}})
	ts.ok(auth.Editor, http.MethodPut, "/api/v1/syncs/companies", map[string]any{
		"source": map[string]any{"table": "crm.companies", "page_size": 50}, "target": map[string]any{"connection": "erp", "object": "partners"},
		"mapping": []any{map[string]any{"source": "name", "target": "name"}},
	})
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	bodies := make([]map[string]any, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], bodies[i], _ = ts.call(auth.Editor, http.MethodPost, "/api/v1/syncs/companies/runs", nil)
		}()
	}
	wg.Wait()
	assert.ElementsMatch(t, []int{http.StatusAccepted, http.StatusConflict}, statuses)
	var started, conflict map[string]any
	for i := range 2 {
		if statuses[i] == http.StatusAccepted {
			started = bodies[i]
		} else {
			conflict = bodies[i]["error"].(map[string]any)
		}
	}
	// The other trigger finds the first run waiting in the queue or already
	// running, and names it.
	switch conflict["code"] {
	case "busy":
		assert.Equal(t, started["run_id"], conflict["run_id"], "the 409 names the run that holds the sync")
	case "queued":
		assert.Equal(t, started["job_id"], conflict["job_id"], "the 409 names the queued run")
	default:
		t.Fatalf("409 with code %v", conflict["code"])
	}
	require.Eventually(t, func() bool {
		return count(t, ts.db, "SELECT count(*) FROM ferry.runs WHERE status = 'running'") == 1
	}, 10*time.Second, 5*time.Millisecond)
	status, body, raw := ts.call(auth.Editor, http.MethodPost, "/api/v1/syncs/companies/runs", nil)
	ts.waitRun(started["run_id"])
	if status == http.StatusConflict {
		assert.Equal(t, "busy", body["error"].(map[string]any)["code"], raw)
		assert.EqualValues(t, count(t, ts.db, "SELECT min(id) FROM ferry.runs"), body["error"].(map[string]any)["run_id"])
		assert.Equal(t, 1, count(t, ts.db, "SELECT count(*) FROM ferry.runs"))
	} else {
		t.Logf("the run ended before the third trigger: %d %s", status, raw)
	}
}

// A sync edited through the API is used by the next run, with no restart.
func TestEditedSyncIsUsedByTheNextRun(t *testing.T) {
	t.Parallel()
	ts := newServer(t, secretKey(t))
	exec(t, ts.db, crmSQL)
	erpURL := dbtest.NewEmptyURL(t)
	erp := dbtest.Open(t, erpURL)
	exec(t, erp, erpSQL)
	ts.ok(auth.Admin, http.MethodPut, "/api/v1/connections/erp", map[string]any{"kind": "postgres", "settings": map[string]any{"url_env": "ERP_URL"}, "secrets": map[string]string{"ERP_URL": erpURL}})
	sync := map[string]any{"source": map[string]any{"table": "crm.companies"}, "target": map[string]any{"connection": "erp", "object": "partners"},
		"mapping": []any{map[string]any{"source": "name", "target": "name"}}}
	ts.ok(auth.Editor, http.MethodPut, "/api/v1/syncs/companies", sync)
	ts.waitRun(ts.ok(auth.Editor, http.MethodPost, "/api/v1/syncs/companies/runs", nil)["run_id"])
	assert.Zero(t, count(t, erp, "SELECT count(*) FROM partners WHERE vat IS NOT NULL"))

	sync["mapping"] = append(sync["mapping"].([]any), map[string]any{"source": "vat", "target": "vat"})
	changed := ts.ok(auth.Editor, http.MethodPut, "/api/v1/syncs/companies", sync)
	assert.Contains(t, changed["files"].([]any)[0].(map[string]any)["diff"], "+  - source: vat")
	run := ts.waitRun(ts.ok(auth.Editor, http.MethodPost, "/api/v1/syncs/companies/runs", nil)["run_id"])
	assert.EqualValues(t, 2, run["updated"], "a mapping change re-syncs every record")
	assert.Equal(t, 2, count(t, erp, "SELECT count(*) FROM partners WHERE vat IS NOT NULL"))

	hist := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/history?path=syncs/companies.yaml", nil)
	changes := hist["changes"].([]any)
	require.Len(t, changes, 2)
	assert.Contains(t, changes[0].(map[string]any)["actor"], "test editor")
	version := changes[0].(map[string]any)["version"]
	ts.ok(auth.Admin, http.MethodPost, "/api/v1/history/"+jsonText(version)+"/revert", nil)
	got := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/syncs/companies", nil)
	assert.Len(t, got["mapping"], 1, "the edit is undone")
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// A target that echoes the Authorization header: its token never appears in
// an answer, a log line, a link row or a run's error.
func TestSecretNeverLeaks(t *testing.T) {
	t.Parallel()
	const token = "tok-leak-test-9f8e7d6c5b4a"
	ts := newServer(t, secretKey(t))
	exec(t, ts.db, crmSQL)
	crm := crmtest.New(t, crmtest.Options{Token: token, EchoAuthInErrors: true, Objects: map[string]crmtest.Object{
		"contacts": {Required: []string{"email"}}}})
	ts.ok(auth.Admin, http.MethodPut, "/api/v1/connections/crm", map[string]any{
		"kind":     "http",
		"settings": map[string]any{"base_url": crm.URL, "auth": map[string]any{"type": "bearer", "token_env": "CRM_TOKEN"}, "objects": map[string]any{"contacts": map[string]any{}}},
		"secrets":  map[string]string{"CRM_TOKEN": token},
	})
	ts.ok(auth.Editor, http.MethodPut, "/api/v1/syncs/contacts", map[string]any{
		"source": map[string]any{"table": "crm.contacts"}, "target": map[string]any{"connection": "crm", "object": "contacts"},
		"mapping": []any{map[string]any{"source": "name", "target": "name"}, map[string]any{"source": "email", "target": "email"}},
	})
	run := ts.waitRun(ts.ok(auth.Editor, http.MethodPost, "/api/v1/syncs/contacts/runs", nil)["run_id"])
	assert.EqualValues(t, 1, run["failed"], "the record without an e-mail: the CRM's 422 echoes the header")
	crm.SetToken("rotated")
	ts.waitRun(ts.ok(auth.Editor, http.MethodPost, "/api/v1/syncs/contacts/runs", map[string]any{"full": true})["run_id"])

	var all strings.Builder
	for _, path := range []string{"/api/v1/connections", "/api/v1/connections/crm", "/api/v1/secrets", "/api/v1/runs", "/api/v1/syncs/contacts/links",
		"/api/v1/syncs/contacts/links/12", "/api/v1/syncs/contacts/status", "/api/v1/status", "/api/v1/export", "/api/v1/history"} {
		_, _, raw := ts.call(auth.Admin, http.MethodGet, path, nil)
		all.WriteString(raw)
	}
	runs := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/runs", nil)["runs"].([]any)
	for _, r := range runs {
		_, _, raw := ts.call(auth.Viewer, http.MethodGet, "/api/v1/runs/"+jsonText(r.(map[string]any)["id"]), nil)
		all.WriteString(raw)
	}
	var stored string
	require.NoError(t, ts.db.QueryRow(t.Context(), `SELECT concat_ws(' | ', (SELECT string_agg(coalesce(error, ''), ' | ') FROM link_tables.contacts),
		(SELECT string_agg(coalesce(error, ''), ' | ') FROM ferry.runs), (SELECT string_agg(message, ' | ') FROM ferry.run_errors))`).Scan(&stored))
	secrets := []string{token, "Bearer " + token}
	assert.Contains(t, all.String(), "HTTP 422", "what the target said is there")
	conformance.RequireNoSecret(t, all.String(), secrets, "API answers")
	conformance.RequireNoSecret(t, stored, secrets, "link rows, runs, run errors")
	conformance.RequireNoSecret(t, ts.logs.String(), secrets, "the server's log")
}

// /metrics counts what an operator alerts on: runs by how they ended,
// records by outcome, target requests by status, replaced script workers.
func TestMetricsCountRunsRecordsAndTargetRequests(t *testing.T) {
	t.Parallel()
	ts := newServer(t, secretKey(t))
	exec(t, ts.db, crmSQL)
	crm := crmtest.New(t, crmtest.Options{Token: "tok", Objects: map[string]crmtest.Object{"contacts": {Required: []string{"email"}}}})
	ts.ok(auth.Admin, http.MethodPut, "/api/v1/connections/crm", map[string]any{
		"kind":     "http",
		"settings": map[string]any{"base_url": crm.URL, "auth": map[string]any{"type": "bearer", "token_env": "CRM_TOKEN"}, "objects": map[string]any{"contacts": map[string]any{}}},
		"secrets":  map[string]string{"CRM_TOKEN": "tok"},
	})
	ts.ok(auth.Editor, http.MethodPut, "/api/v1/syncs/contacts", map[string]any{
		"source": map[string]any{"table": "crm.contacts"}, "target": map[string]any{"connection": "crm", "object": "contacts"},
		"mapping": []any{map[string]any{"source": "name", "target": "name"}, map[string]any{"source": "email", "target": "email"}},
	})
	ts.waitRun(ts.ok(auth.Editor, http.MethodPost, "/api/v1/syncs/contacts/runs", nil)["run_id"])

	want := []string{
		`ferry_runs_total{status="succeeded_with_errors",sync="contacts"} 1`,
		`ferry_records_total{outcome="inserted",sync="contacts"} 2`,
		`ferry_records_total{outcome="failed",sync="contacts"} 1`,
		`ferry_target_request_seconds_count{connection="crm",status="201"} 2`,
		`ferry_target_request_seconds_count{connection="crm",status="422"} 1`,
		`ferry_script_workers_replaced_total 0`,
		`ferry_queue_depth 0`,
		`ferry_api_request_seconds_count{method="POST",route="/api/v1/syncs/:name/runs",status="202"} 1`,
	}
	// The worker counts a run just after its run row says it ended.
	var text string
	require.Eventually(t, func() bool {
		res, err := http.Get(ts.srv.URL + "/metrics")
		require.NoError(t, err)
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		text = string(raw)
		for _, line := range want {
			if !strings.Contains(text, line) {
				return false
			}
		}
		return true
	}, 5*time.Second, 20*time.Millisecond, "metrics: %s", text)
}

// Paging a link table by its cursor gives every row once, in source id
// order, whatever the id's type (int ids compare as numbers, not text).
func TestLinkPagesGiveEveryRowOnce(t *testing.T) {
	t.Parallel()
	ts := newServer(t, secretKey(t))
	exec(t, ts.db, `CREATE SCHEMA crm;
CREATE TABLE crm.companies (id int PRIMARY KEY, name text, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
INSERT INTO crm.companies SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'Company ' || g END FROM generate_series(1, 250) g;`)
	erpURL := dbtest.NewEmptyURL(t)
	exec(t, dbtest.Open(t, erpURL), `CREATE TABLE partners (id serial PRIMARY KEY, name text NOT NULL)`)
	ts.ok(auth.Admin, http.MethodPut, "/api/v1/connections/erp", map[string]any{"kind": "postgres", "settings": map[string]any{"url_env": "ERP_URL"}, "secrets": map[string]string{"ERP_URL": erpURL}})
	ts.ok(auth.Editor, http.MethodPut, "/api/v1/syncs/companies", map[string]any{"source": map[string]any{"table": "crm.companies"},
		"target": map[string]any{"connection": "erp", "object": "partners"}, "mapping": []any{map[string]any{"source": "name", "target": "name"}}})
	run := ts.waitRun(ts.ok(auth.Editor, http.MethodPost, "/api/v1/syncs/companies/runs", nil)["run_id"])
	require.EqualValues(t, 35, run["failed"], "every 7th company has no name")

	for _, tc := range []struct {
		query string
		want  []int
	}{
		{"limit=100", seq(1, 250, 1)},
		{"status=error&limit=10", seq(7, 250, 7)},
		{"status=success&limit=64", slices.DeleteFunc(seq(1, 250, 1), func(i int) bool { return i%7 == 0 })},
	} {
		var got []int
		after, pages := "", 0
		for {
			page := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/syncs/companies/links?"+tc.query+"&after="+after, nil)
			pages++
			for _, l := range page["links"].([]any) {
				id, err := strconv.Atoi(l.(map[string]any)["source_id"].(string))
				require.NoError(t, err)
				got = append(got, id)
			}
			next, _ := page["next"].(string)
			if next == "" {
				break
			}
			after = next
		}
		assert.Equal(t, tc.want, got, tc.query)
		assert.Greater(t, pages, 2, tc.query)
	}
}

// seq is from, from+step, … up to to.
func seq(from, to, step int) []int {
	var out []int
	for i := from; i <= to; i += step {
		out = append(out, i)
	}
	return out
}

// A schedule set through the API is listed with its next run; a bad one is
// refused with the JSON path of the field.
func TestSchedulesThroughTheAPI(t *testing.T) {
	t.Parallel()
	ts := newServer(t, secretKey(t))
	exec(t, ts.db, crmSQL)
	erpURL := dbtest.NewEmptyURL(t)
	exec(t, dbtest.Open(t, erpURL), erpSQL)
	ts.ok(auth.Admin, http.MethodPut, "/api/v1/connections/erp", map[string]any{"kind": "postgres", "settings": map[string]any{"url_env": "ERP_URL"}, "secrets": map[string]string{"ERP_URL": erpURL}})
	sync := map[string]any{"source": map[string]any{"table": "crm.companies"}, "target": map[string]any{"connection": "erp", "object": "partners"},
		"mapping": []any{map[string]any{"source": "name", "target": "name"}}, "schedule": map[string]any{"cron": "0 */6 * * *", "timezone": "Mars/Olympus"}}
	status, body, raw := ts.call(auth.Editor, http.MethodPut, "/api/v1/syncs/companies", sync)
	require.Equal(t, http.StatusUnprocessableEntity, status, raw)
	assert.Contains(t, raw, `"path":"schedule.timezone"`)
	assert.Contains(t, body["error"].(map[string]any)["fields"].([]any)[0].(map[string]any)["message"], "IANA time zone")

	sync["schedule"] = map[string]any{"cron": "0 */6 * * *", "timezone": "Europe/Brussels"}
	ts.ok(auth.Editor, http.MethodPut, "/api/v1/syncs/companies", sync)
	list := ts.ok(auth.Viewer, http.MethodGet, "/api/v1/schedules", nil)["schedules"].([]any)
	require.Len(t, list, 1)
	entry := list[0].(map[string]any)
	assert.Equal(t, "cron 0 */6 * * * Europe/Brussels", entry["spec"])
	next, err := time.Parse(time.RFC3339, entry["next"].(string))
	require.NoError(t, err)
	brussels, err := time.LoadLocation("Europe/Brussels")
	require.NoError(t, err)
	assert.Zero(t, next.In(brussels).Hour()%6, "next run on a multiple of 6 hours, Brussels time")
	assert.WithinDuration(t, time.Now().Add(3*time.Hour), next, 3*time.Hour)
}
