package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
)

// setupHooks is setup with an engine whose env lookup is env (the server's
// secrets, in production).
func setupHooks(t *testing.T, env map[string]string, syncs ...*project.Sync) *testBundle {
	t.Helper()
	b := setup(t, syncs...)
	b.eng = engine.New(b.db, engine.StaticProject(b.proj), engine.Options{Open: only(b.target), Logger: slog.New(slog.DiscardHandler),
		Env: func(name string) (string, bool) {
			v, ok := env[name]
			return v, ok
		}})
	b.exec(`CREATE TABLE public.hook_log (id serial PRIMARY KEY, what text, companies bigint, contacts bigint)`)
	// link_count is how many link rows a sync has (-1: no link table yet).
	b.exec(`CREATE FUNCTION public.link_count(sync text) RETURNS bigint LANGUAGE plpgsql AS $$
		DECLARE n bigint;
		BEGIN
			IF to_regclass('link_tables.' || sync) IS NULL THEN RETURN -1; END IF;
			EXECUTE format('SELECT count(*) FROM link_tables.%I', sync) INTO n;
			RETURN n;
		END $$`)
	return b
}

// hookLog returns what the SQL hooks wrote to public.hook_log, in order.
func (b *testBundle) hookLog() []string {
	b.t.Helper()
	rows, err := b.db.Query(context.Background(), `SELECT what, companies, contacts FROM public.hook_log ORDER BY id`)
	require.NoError(b.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var what string
		var companies, contacts int64
		require.NoError(b.t, rows.Scan(&what, &companies, &contacts))
		out = append(out, fmt.Sprintf("%s companies=%d contacts=%d", what, companies, contacts))
	}
	require.NoError(b.t, rows.Err())
	return out
}

// logHook is a SQL hook that notes what in public.hook_log, with how many
// link rows each sync had then.
func logHook(what string) project.Hook {
	return project.Hook{SQL: fmt.Sprintf(`INSERT INTO public.hook_log (what, companies, contacts)
		VALUES ('%s', public.link_count('companies'), public.link_count('contacts'))`, what)}
}

// linkRows counts a sync's link rows; 0 when its link table does not exist.
func (b *testBundle) linkRows(sync string) int {
	b.t.Helper()
	var exists bool
	require.NoError(b.t, b.db.QueryRow(context.Background(), `SELECT to_regclass('link_tables.' || $1) IS NOT NULL`, sync).Scan(&exists))
	if !exists {
		return 0
	}
	return len(b.links(sync))
}

// runRow is a run as ferry.runs keeps it.
func (b *testBundle) runRow(id int64) (status, msg string) {
	b.t.Helper()
	var m *string
	require.NoError(b.t, b.db.QueryRow(context.Background(), `SELECT status, error FROM ferry.runs WHERE id = $1`, id).Scan(&status, &m))
	if m != nil {
		msg = *m
	}
	return status, msg
}

// eltAPI behaves like an ELT tool's API (Fivetran, Airbyte): POST
// /v1/connectors/c1/sync starts a job and answers 200 (not 201)
// {"data":{"id":"j1"}}; GET /v1/jobs/j1 answers {"data":{"status":
// "running"}} for a few polls, once a 429 without Retry-After among them,
// then the job's final state.
type eltAPI struct {
	*httptest.Server
	eltConfig

	mu        sync.Mutex
	starts    int
	polls     int
	startedAt time.Time
	method    string
	ctype     string
	body      map[string]any
}

// eltConfig says how an eltAPI behaves.
type eltConfig struct {
	token   string // the Authorization a call must carry; a wrong one is echoed back in the 401
	running int    // polls that answer "running" (the second: 429) before the final state
	final   string // the job's final state; "" never ends
	fail    int    // when set, the start call answers this status, echoing the Authorization header
	onStart func() // called as the job starts
	onDone  func() // the job's work, done before its first "done" answer
}

func newELT(t *testing.T, cfg eltConfig) *eltAPI {
	t.Helper()
	api := &eltAPI{eltConfig: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/connectors/c1/sync", api.start)
	mux.HandleFunc("GET /v1/jobs/j1", api.poll)
	api.Server = httptest.NewServer(mux)
	t.Cleanup(api.Close)
	return api
}

func (a *eltAPI) start(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	if a.token != "" && auth != a.token {
		// Like many APIs, it says which credentials it refused, padded so
		// that the token straddles the cut of an error's excerpt.
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": strings.Repeat("x", 165) + " the token " + auth + " is not valid", "token": auth})
		return
	}
	if a.fail != 0 {
		writeJSON(w, a.fail, map[string]any{"error": "the connector is paused", "request": map[string]any{"authorization": auth}})
		return
	}
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	a.mu.Lock()
	a.starts++
	a.startedAt, a.method, a.ctype, a.body = time.Now(), r.Method, r.Header.Get("Content-Type"), body
	a.mu.Unlock()
	if a.onStart != nil {
		a.onStart()
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"id": "j1", "state": "scheduled"}})
}

func (a *eltAPI) poll(w http.ResponseWriter, r *http.Request) {
	if a.token != "" && r.Header.Get("Authorization") != a.token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "no token"})
		return
	}
	a.mu.Lock()
	a.polls++
	n := a.polls
	a.mu.Unlock()
	switch {
	case n == 2:
		w.WriteHeader(http.StatusTooManyRequests) // no Retry-After
		return
	case a.final == "" || n <= a.running:
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"id": "j1", "status": "running"}})
		return
	}
	if a.final == "done" && a.onDone != nil && n == a.running+1 {
		a.onDone()
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"id": "j1", "status": a.final}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *eltAPI) counts() (starts, polls int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.starts, a.polls
}

// lastStart is what the last start call was: when, its method, content
// type and body.
func (a *eltAPI) lastStart() (time.Time, string, string, map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.startedAt, a.method, a.ctype, a.body
}

// startHook is an HTTP hook that starts the ELT job and, with poll, waits
// for it.
func (a *eltAPI) startHook(poll bool) project.Hook {
	h := project.Hook{HTTP: &project.HTTPHook{
		URL:     a.URL + "/v1/connectors/c1/sync",
		Headers: map[string]string{"Authorization": "env:ELT_TOKEN", "X-Client": "ferry-test"},
		Body:    map[string]any{"force": true},
	}, Timeout: project.Duration{Duration: 10 * time.Second}}
	if poll {
		h.HTTP.Poll = &project.Poll{URL: a.URL + "/v1/jobs/{id}", IDField: "data.id", Every: project.Duration{Duration: 10 * time.Millisecond},
			Field: "data.status", Done: []string{"done"}, Failed: []string{"failed", "cancelled"}}
	}
	return h
}

const eltToken = "Bearer zq9X7vK2pL5mN8wR"

// A SQL before hook refreshes what the scope reads, with Ferry's own login
// (the scope role may only SELECT, and REFRESH needs the view's owner), so
// the run syncs the refreshed rows.
func TestBeforeHookSQLRefreshesWhatTheScopeReads(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source.Table = "crm.companies_mv"
	s.Hooks = &project.Hooks{Before: []project.Hook{{SQL: "REFRESH MATERIALIZED VIEW crm.companies_mv"}}}
	b := setupHooks(t, nil, s)
	b.exec(`CREATE MATERIALIZED VIEW crm.companies_mv AS SELECT * FROM crm.companies`)
	b.proj.Warehouse.ScopeRole = scopeRole(t, b, "crm")
	// Loaded after the view was built: only a refresh shows it.
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (1, 'Acme', 'BE01')`)

	res := b.run("companies")
	assert.Equal(t, engine.RunSucceeded, res.Status)
	assert.Equal(t, int64(1), res.Counts.Inserted, "the refreshed row is read by the same run")

	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (2, 'Globex', 'BE02')`)
	res = b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Inserted, "every run refreshes it again")
	assert.Len(t, b.target.Records("partners"), 2)
}

// An HTTP before hook starts an ELT job and waits for it through "running"
// answers and a 429: the rows the job loads are synced by the same run,
// which already held the sync when the job started.
func TestBeforeHookHTTPWaitsForTheELTJob(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	b := setupHooks(t, map[string]string{"ELT_TOKEN": eltToken}, s)
	runStatus := make(chan string, 1)
	api := newELT(t, eltConfig{token: eltToken, running: 4, final: "done",
		onStart: func() {
			var st string
			_ = b.db.QueryRow(context.Background(), `SELECT status FROM ferry.runs WHERE sync = 'companies'`).Scan(&st)
			runStatus <- st
		},
		onDone: func() {
			_, _ = b.db.Exec(context.Background(), `INSERT INTO crm.companies (id, name, vat) VALUES (7, 'Loaded by the job', 'BE07')`)
		},
	})
	s.Hooks = &project.Hooks{Before: []project.Hook{api.startHook(true)}}

	before := time.Now()
	res := b.run("companies")
	after := time.Now()
	assert.Equal(t, engine.RunSucceeded, res.Status)
	assert.Equal(t, int64(1), res.Counts.Inserted, "the row the job loaded is synced: the run waited for the job")
	assert.Equal(t, "running", <-runStatus, "the job started once the run held the sync")

	starts, polls := api.counts()
	assert.Equal(t, 1, starts)
	assert.Equal(t, 5, polls, "running, 429, running, running, done")
	at, method, ctype, body := api.lastStart()
	assert.True(t, at.After(before) && at.Before(after), "called during the run")
	assert.Equal(t, http.MethodPost, method, "POST by default")
	assert.Equal(t, "application/json", ctype)
	assert.Equal(t, map[string]any{"force": true}, body)
}

// A failing before hook fails the run before anything is read: nothing is
// written, no link row exists, and the run's error says which hook failed
// and why, never with a secret in it.
func TestFailingBeforeHookFailsTheRunBeforeAnyRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		api    eltConfig
		hooks  func(api *eltAPI) []project.Hook
		want   []string // in the run's error
		config bool     // the error is a *project.ConfigError (ferry exits 2)
	}{{
		name:  "sql error",
		hooks: func(*eltAPI) []project.Hook { return []project.Hook{{SQL: "REFRESH MATERIALIZED VIEW crm.missing"}} },
		want:  []string{`sync companies: before hook 1 (sql): ERROR: relation "crm.missing" does not exist`},
	}, {
		name: "start answers 500",
		api:  eltConfig{token: eltToken, fail: http.StatusInternalServerError},
		hooks: func(api *eltAPI) []project.Hook {
			return []project.Hook{logHook("first"), api.startHook(true)}
		},
		want: []string{"before hook 2 (http POST ", "/v1/connectors/c1/sync): HTTP 500: ", "the connector is paused", "***"},
	}, {
		name:  "the job fails",
		api:   eltConfig{token: eltToken, running: 3, final: "failed"},
		hooks: func(api *eltAPI) []project.Hook { return []project.Hook{api.startHook(true)} },
		want:  []string{`before hook 1 (http POST `, `: the job reported "failed" (field data.status)`},
	}, {
		name: "sql timeout",
		hooks: func(*eltAPI) []project.Hook {
			return []project.Hook{{SQL: "SELECT pg_sleep(30)", Timeout: project.Duration{Duration: 200 * time.Millisecond}}}
		},
		want: []string{"before hook 1 (sql): still not done after 200ms (timeout)"},
	}, {
		name: "poll timeout",
		api:  eltConfig{token: eltToken},
		hooks: func(api *eltAPI) []project.Hook {
			h := api.startHook(true)
			h.Timeout.Duration = 300 * time.Millisecond
			return []project.Hook{h}
		},
		want: []string{`before hook 1 (http POST `, `still not done after 300ms (timeout); the last poll said "running"`},
	}, {
		name: "poll answers 404",
		api:  eltConfig{token: eltToken},
		hooks: func(api *eltAPI) []project.Hook {
			h := api.startHook(true)
			h.HTTP.Poll.URL = api.URL + "/v1/jobz/{id}"
			return []project.Hook{h}
		},
		want: []string{"polling ", "/v1/jobz/j1: HTTP 404"},
	}, {
		name: "no job id in the answer",
		api:  eltConfig{token: eltToken},
		hooks: func(api *eltAPI) []project.Hook {
			h := api.startHook(true)
			h.HTTP.Poll.IDField = "data.job_id"
			return []project.Hook{h}
		},
		want: []string{"the answer has no data.job_id (id_field)"},
	}, {
		name: "the API echoes the secret header",
		api:  eltConfig{token: "Bearer the-right-one"},
		hooks: func(api *eltAPI) []project.Hook {
			return []project.Hook{api.startHook(true)}
		},
		want: []string{"HTTP 401: ", "the token ***"},
	}, {
		name: "secret not set",
		hooks: func(api *eltAPI) []project.Hook {
			h := api.startHook(false)
			h.HTTP.Headers["X-Api-Key"] = "env:ELT_KEY_MISSING"
			return []project.Hook{h}
		},
		want:   []string{"before hook 1 (http POST ", "companies: hooks.before[0].http.headers.X-Api-Key: ELT_KEY_MISSING is not set"},
		config: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := companiesSync()
			b := setupHooks(t, map[string]string{"ELT_TOKEN": eltToken}, s)
			api := newELT(t, tt.api)
			s.Hooks = &project.Hooks{Before: tt.hooks(api), After: []project.Hook{logHook("after")}}
			b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (1, 'Acme', 'BE01'), (2, 'Globex', 'BE02')`)

			res, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{})
			require.Error(t, err)
			require.NotNil(t, res)
			status, msg := b.runRow(res.RunID)
			assert.Equal(t, "failed", status)
			var ce *project.ConfigError
			assert.Equal(t, tt.config, errors.As(err, &ce))
			for _, w := range tt.want {
				assert.Contains(t, msg, w)
				assert.Contains(t, err.Error(), w)
			}
			for _, secret := range []string{"zq9X7vK2pL5mN8wR", "zq9X7", "pL5mN8wR"} {
				assert.NotContains(t, msg, secret, "the resolved header never reaches the run's error")
				assert.NotContains(t, err.Error(), secret)
			}
			assert.Zero(t, res.Counts.Read, "nothing was read")
			assert.Empty(t, b.target.Records("partners"), "nothing was written")
			assert.Zero(t, b.linkRows("companies"), "no link row exists")
			for _, l := range b.hookLog() {
				assert.False(t, strings.HasPrefix(l, "after"), "no after hook follows a failed run: %s", l)
			}
		})
	}
}

// A run that is cancelled while its hook waits for a job ends at once.
func TestBeforeHookHonoursCancellation(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	b := setupHooks(t, map[string]string{"ELT_TOKEN": eltToken}, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The job never ends; the user gives up shortly after it started.
	api := newELT(t, eltConfig{token: eltToken, onStart: func() { time.AfterFunc(100*time.Millisecond, cancel) }})
	h := api.startHook(true)
	h.Timeout.Duration = time.Minute
	s.Hooks = &project.Hooks{Before: []project.Hook{h}}

	started := time.Now()
	res, err := b.eng.Run(ctx, "companies", engine.RunOptions{})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(started), 10*time.Second)
	status, msg := b.runRow(res.RunID)
	assert.Equal(t, "interrupted", status, "a run cancelled in its hook is interrupted, not failed")
	assert.Contains(t, msg, "before hook 1 (http POST ")
	assert.NotContains(t, msg, "timeout")
	assert.Zero(t, b.linkRows("companies"))
}

// After hooks run once the records are recorded, after a run that synced
// (with or without record errors), and never after a failed one.
func TestAfterHooksRunOnlyAfterASyncedRun(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	b := setupHooks(t, map[string]string{"ELT_TOKEN": eltToken}, s)
	api := newELT(t, eltConfig{token: eltToken})
	s.Hooks = &project.Hooks{After: []project.Hook{logHook("after"), api.startHook(false)}}
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (1, 'Acme', 'BE01'), (2, 'Globex', 'BE02')`)

	res := b.run("companies")
	assert.Equal(t, engine.RunSucceeded, res.Status)
	assert.Equal(t, []string{"after companies=2 contacts=-1"}, b.hookLog(), "it ran once the run's link rows were committed")
	starts, _ := api.counts()
	assert.Equal(t, 1, starts)

	b.target.Validate = func(_ string, p map[string]any) string {
		if p["vat"] == nil {
			return "vat is required"
		}
		return ""
	}
	b.exec(`INSERT INTO crm.companies (id, name) VALUES (3, 'No VAT')`)
	res = b.run("companies")
	assert.Equal(t, engine.RunSucceededWithErrors, res.Status)
	assert.Equal(t, []string{"after companies=2 contacts=-1", "after companies=3 contacts=-1"}, b.hookLog(), "records failing is no reason to skip them")

	b.exec(`ALTER TABLE crm.companies RENAME TO companies_gone`)
	_, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.Error(t, err)
	assert.Len(t, b.hookLog(), 2, "no after hook follows a failed run")
	starts, _ = api.counts()
	assert.Equal(t, 2, starts)
}

// A failing after hook undoes nothing: the records stay written and
// recorded, and the run ends succeeded_with_errors with the hook's error.
func TestFailingAfterHookKeepsTheRecords(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	b := setupHooks(t, map[string]string{"ELT_TOKEN": eltToken}, s)
	api := newELT(t, eltConfig{token: eltToken, fail: http.StatusBadGateway})
	s.Hooks = &project.Hooks{After: []project.Hook{logHook("after"), api.startHook(false), logHook("never")}}
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (1, 'Acme', 'BE01'), (2, 'Globex', 'BE02')`)

	res := b.run("companies")
	assert.Equal(t, engine.RunSucceededWithErrors, res.Status)
	assert.Equal(t, int64(2), res.Counts.Inserted)
	assert.Contains(t, res.Error, "after hook 2 (http POST "+api.URL+"/v1/connectors/c1/sync): HTTP 502: ")
	assert.Contains(t, res.Error, "the records are written")
	assert.NotContains(t, res.Error, "zq9X7")
	status, msg := b.runRow(res.RunID)
	assert.Equal(t, "succeeded_with_errors", status)
	assert.Equal(t, res.Error, msg)

	var class, runErr string
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT class, message FROM ferry.run_errors WHERE run_id = $1`, res.RunID).Scan(&class, &runErr))
	assert.Equal(t, "hook", class)
	assert.Equal(t, msg, runErr)

	assert.Len(t, b.target.Records("partners"), 2, "the records stay written")
	for id, l := range b.links("companies") {
		assert.True(t, strings.HasPrefix(l, "success:"), "source %s is recorded", id)
	}
	assert.Equal(t, []string{"after companies=2 contacts=-1"}, b.hookLog(), "the hooks after the failing one do not run")

	res = b.run("companies")
	assert.Zero(t, res.Counts.Inserted+res.Counts.Updated, "the next run has nothing to redo")
}

// A group's hooks run once around the group: before its first sync and
// after its last; a failing before hook starts none of its syncs.
func TestGroupHooks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		hooks   project.Hooks
		setup   string
		want    []engine.RunStatus
		wantErr string // in every result's error (not started) or the last one's
		wantLog []string
	}{{
		name:    "once around the group",
		hooks:   project.Hooks{Before: []project.Hook{logHook("before")}, After: []project.Hook{logHook("after")}},
		want:    []engine.RunStatus{engine.RunSucceeded, engine.RunSucceeded},
		wantLog: []string{"before companies=-1 contacts=-1", "after companies=1 contacts=1"},
	}, {
		name:    "a failing before hook starts no sync",
		hooks:   project.Hooks{Before: []project.Hook{logHook("before"), {SQL: "SELECT * FROM crm.missing"}}, After: []project.Hook{logHook("after")}},
		want:    []engine.RunStatus{engine.RunNotStarted, engine.RunNotStarted},
		wantErr: `not started: group crm_to_erp: before hook 2 (sql): ERROR: relation "crm.missing" does not exist`,
		wantLog: []string{"before companies=-1 contacts=-1"},
	}, {
		name:    "a failed sync skips the after hooks",
		hooks:   project.Hooks{After: []project.Hook{logHook("after")}},
		setup:   `ALTER TABLE crm.contacts RENAME TO contacts_gone`,
		want:    []engine.RunStatus{engine.RunSucceeded, engine.RunFailed},
		wantLog: nil,
	}, {
		name:    "a failing after hook",
		hooks:   project.Hooks{After: []project.Hook{{SQL: "SELECT 1/0"}}},
		want:    []engine.RunStatus{engine.RunSucceeded, engine.RunSucceededWithErrors},
		wantErr: "group crm_to_erp: after hook 1 (sql): ERROR: division by zero",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupHooks(t, nil)
			b.proj.Groups = map[string]project.Group{"crm_to_erp": {Syncs: []string{"contacts", "companies"}, Hooks: &tt.hooks}}
			b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (100, 'Acme', 'BE01')`)
			b.exec(`INSERT INTO crm.contacts (id, name, email, company_id) VALUES (500, 'Ann', 'ann@acme.test', 100)`)
			if tt.setup != "" {
				b.exec(tt.setup)
			}

			results, err := b.eng.RunMany(context.Background(), engine.Selection{Group: "crm_to_erp"}, engine.RunOptions{})
			require.NoError(t, err)
			require.Len(t, results, 2)
			assert.Equal(t, "companies", results[0].Sync, "parents first")
			for i, want := range tt.want {
				assert.Equal(t, want, results[i].Status, results[i].Sync)
			}
			assert.Equal(t, tt.wantLog, b.hookLog())
			switch {
			case tt.want[0] == engine.RunNotStarted:
				for _, r := range results {
					assert.Contains(t, r.Error, tt.wantErr)
				}
				var runs int
				require.NoError(t, b.db.QueryRow(context.Background(), `SELECT count(*) FROM ferry.runs`).Scan(&runs))
				assert.Zero(t, runs, "no sync's run started")
				assert.Empty(t, b.target.Records("partners"))
			case tt.wantErr != "":
				last := results[len(results)-1]
				assert.Contains(t, last.Error, tt.wantErr)
				var class string
				require.NoError(t, b.db.QueryRow(context.Background(), `SELECT class FROM ferry.run_errors WHERE run_id = $1`, last.RunID).Scan(&class))
				assert.Equal(t, "hook", class)
				assert.Len(t, b.target.Records("people"), 1)
			}
		})
	}
}

// Plans, tests and explanations run no hook: they must not start a
// pipeline. Neither does a test that writes its one record.
func TestDryRunsRunNoHooks(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Hooks = &project.Hooks{Before: []project.Hook{logHook("before")}, After: []project.Hook{logHook("after")}}
	b := setupHooks(t, nil, s)
	b.proj.Groups = map[string]project.Group{"all": {Syncs: []string{"companies"}, Hooks: &project.Hooks{Before: []project.Hook{logHook("group before")}, After: []project.Hook{logHook("group after")}}}}
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (1, 'Acme', 'BE01')`)
	ctx := context.Background()

	_, err := b.eng.Plan(ctx, engine.Selection{Group: "all"}, engine.PlanOptions{})
	require.NoError(t, err)
	_, err = b.eng.TestRecord(ctx, "companies", "1", false)
	require.NoError(t, err)
	_, err = b.eng.Explain(ctx, "companies", "1")
	require.NoError(t, err)
	_, err = b.eng.RunMany(ctx, engine.Selection{Group: "all"}, engine.RunOptions{DryRun: true})
	require.NoError(t, err)
	_, err = b.eng.TestRecord(ctx, "companies", "1", true)
	require.NoError(t, err)
	assert.Empty(t, b.hookLog())
	assert.Len(t, b.target.Records("partners"), 1, "the test that writes did write")
}
