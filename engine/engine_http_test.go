package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/conformance"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries/dbtest"
	"github.com/ferry-sync/ferry/scripting"
)

// crmBundle syncs crm.contacts into a CRM-like HTTP server through the real
// http connector.
type crmBundle struct {
	*testBundle
	srv *crmtest.Server
}

func setupCRM(t *testing.T, s *project.Sync) *crmBundle {
	t.Helper()
	return setupCRMWith(t, s, crmtest.Options{Token: "secret"})
}

// setupCRMWith is setupCRM with the server's options (its token is Ferry's).
func setupCRMWith(t *testing.T, s *project.Sync, opts crmtest.Options) *crmBundle {
	t.Helper()
	return setupCRMEdit(t, s, opts, nil)
}

// setupCRMEdit is setupCRMWith with the connection's settings edited.
func setupCRMEdit(t *testing.T, s *project.Sync, opts crmtest.Options, edit func(settings map[string]any)) *crmBundle {
	t.Helper()
	if opts.Objects == nil {
		opts.Objects = map[string]crmtest.Object{
			"contacts": {Required: []string{"email"}, Unique: []string{"email"}, Patterns: map[string]string{"email": `^[^@\s]+@[^@\s]+$`}},
		}
	}
	srv := crmtest.New(t, opts)
	conn := map[string]any{
		"base_url":     srv.URL,
		"auth":         map[string]any{"type": "bearer", "token_env": "CRM_TOKEN"},
		"timeout":      "500ms",
		"backoff_base": "5ms",
		"backoff_max":  "20ms",
		"objects": map[string]any{"contacts": map[string]any{
			"insert": map[string]any{"method": "POST", "path": "/contacts"},
			"update": map[string]any{"method": "PATCH", "path": "/contacts/{id}"},
			"lookup": map[string]any{"path": "/contacts/search", "results_path": "results"},
			"delete": map[string]any{},
		}},
	}
	if edit != nil {
		edit(conn)
	}
	settings, err := json.Marshal(conn)
	require.NoError(t, err)
	db := dbtest.NewPool(t)
	_, err = db.Exec(context.Background(), warehouseSQL)
	require.NoError(t, err)
	p, err := project.New(nil, map[string]project.Connection{"crm": {Kind: "http", Settings: settings}}, s)
	require.NoError(t, err)
	token := opts.Token
	open := func(ctx context.Context, c project.Connection) (connector.Target, error) {
		var cfg httptarget.Config
		if err := json.Unmarshal(c.Settings, &cfg); err != nil {
			return nil, err
		}
		cfg.Env = func(name string) (string, bool) { return token, name == "CRM_TOKEN" }
		return httptarget.New(ctx, cfg)
	}
	eng := engine.New(db, engine.StaticProject(p), engine.Options{Open: open, ScriptIsolation: scripting.IsolationNone})
	return &crmBundle{testBundle: &testBundle{t: t, db: db, eng: eng, proj: p}, srv: srv}
}

func crmContactsSync() *project.Sync {
	return &project.Sync{
		Name:    "contacts",
		Source:  project.Source{Table: "crm.contacts"},
		Target:  project.TargetRef{Connection: "crm", Object: "contacts", MatchOn: []string{"email"}},
		Mapping: []project.Field{{Source: "name", Target: "name"}, {Source: "email", Target: "email"}},
	}
}

// emails returns how often each e-mail address is held by the server.
func (b *crmBundle) emails() map[string]int {
	out := map[string]int{}
	for _, r := range b.srv.Records("contacts") {
		out[fmt.Sprint(r["email"])]++
	}
	return out
}

func TestHTTPTargetEveryValidRecordExactlyOnce(t *testing.T) {
	t.Parallel()
	b := setupCRM(t, crmContactsSync())
	b.exec(`INSERT INTO crm.contacts (id, name, email, _sdc_batched_at)
		SELECT g, 'Person ' || g, CASE WHEN g = 7 THEN 'not-an-email' ELSE 'p' || g || '@example.com' END,
		       now() - interval '1 day' + g * interval '1 second'
		FROM generate_series(1, 30) g`)

	// Transient trouble the connector must absorb: 500s and 429s.
	b.srv.FailNext(3, 500)
	b.srv.RateLimitNext(2, 20*time.Millisecond)
	res := b.run("contacts")
	assert.Equal(t, int64(29), res.Counts.Inserted)
	assert.Equal(t, int64(1), res.Counts.Failed)
	assert.Contains(t, b.linkError("contacts", "7"), "email", "the CRM's validation message reaches the link row")
	assert.Contains(t, b.linkError("contacts", "7"), "HTTP 422")
	var body, payload string
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT coalesce(error_body, ''), coalesce(payload::text, '') FROM link_tables.contacts WHERE source_id = 7`).Scan(&body, &payload))
	assert.Contains(t, body, "not-an-email", "the CRM's own answer is kept with the error")
	assert.JSONEq(t, `{"name": "Person 7", "email": "not-an-email"}`, payload, "the payload that failed is kept for a record never written")

	// Bad credentials: the run stops after one failing call.
	b.exec(`UPDATE crm.contacts SET name = name || ' (edited)', _sdc_batched_at = now() WHERE id <= 10`)
	b.srv.SetToken("rotated")
	b.srv.ResetCounters()
	_, err := b.eng.Run(context.Background(), "contacts", engine.RunOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused the credentials")
	assert.Equal(t, 1, b.srv.Requests(), "one failing call, not one per record")

	// Credentials fixed: the edits go through, nothing is duplicated.
	b.srv.SetToken("secret")
	res = b.run("contacts")
	assert.Equal(t, int64(9), res.Counts.Updated, "ids 1-10 edited, 7 still invalid")
	for email, n := range b.emails() {
		assert.Equal(t, 1, n, "%s is held once", email)
	}
	assert.Len(t, b.srv.Records("contacts"), 29)
	for _, r := range b.srv.Records("contacts") {
		if r["email"] == "p3@example.com" {
			assert.Equal(t, "Person 3 (edited)", r["name"])
		}
	}
}

func TestHTTPTargetLostAnswerIsReconciledNotDuplicated(t *testing.T) {
	t.Parallel()
	b := setupCRM(t, crmContactsSync())
	b.exec(`INSERT INTO crm.contacts (id, name, email) VALUES (1, 'Ann', 'ann@example.com')`)

	// The CRM stores the contact but the answer never comes back.
	b.srv.HangNext(1)
	res := b.run("contacts")
	assert.Equal(t, int64(1), res.Counts.Failed)
	assert.Equal(t, "pending:", b.links("contacts")["1"], "an ambiguous insert is pending, not error")
	assert.Len(t, b.srv.Records("contacts"), 1, "the CRM applied it")

	// The next run looks it up by e-mail (match_on) and links it.
	res = b.run("contacts")
	assert.Equal(t, int64(1), res.Counts.Updated)
	assert.Len(t, b.srv.Records("contacts"), 1, "never inserted twice")
	assert.Regexp(t, `^success:.+`, b.links("contacts")["1"])
}

func TestHTTPTargetPendingWithoutMatchOnWaitsForTheAnalyst(t *testing.T) {
	t.Parallel()
	s := crmContactsSync()
	s.Target.MatchOn = nil
	b := setupCRM(t, s)
	b.exec(`INSERT INTO crm.contacts (id, name, email) VALUES (1, 'Ann', 'ann@example.com')`)
	b.srv.HangNext(1)
	b.run("contacts")
	res := b.run("contacts")
	assert.Equal(t, int64(1), res.Counts.Failed)
	assert.Len(t, b.srv.Records("contacts"), 1, "not re-sent blindly")
	msg := b.linkError("contacts", "1")
	assert.Contains(t, msg, "may or may not have reached the target")
	assert.Contains(t, msg, "status 'matched'")
	assert.Contains(t, msg, "target.match_on")

	// The analyst links it by SQL, as the message says: the next run updates it.
	id := fmt.Sprint(b.srv.Records("contacts")[0]["id"])
	b.exec(`UPDATE link_tables.contacts SET target_id = $1, status = 'matched' WHERE source_id = 1`, id)
	b.exec(`UPDATE crm.contacts SET name = 'Ann B', _sdc_batched_at = now()`)
	res = b.run("contacts")
	assert.Equal(t, int64(1), res.Counts.Updated)
	assert.Equal(t, "Ann B", b.srv.Records("contacts")[0]["name"])
}

// A target that echoes the Authorization header in its error bodies must
// not get Ferry to store or return the token: not in link rows, run rows,
// run errors or the errors a run returns.
func TestSecretEchoedByTheTargetIsNeverStored(t *testing.T) {
	t.Parallel()
	const token = "tok-9f8e7d6c5b4a3921"
	b := setupCRMWith(t, crmContactsSync(), crmtest.Options{Token: token, EchoAuthInErrors: true})
	b.exec(`INSERT INTO crm.contacts (id, name, email) SELECT g, 'P' || g, CASE WHEN g = 3 THEN 'bad' ELSE 'p' || g || '@x.test' END FROM generate_series(1, 5) g`)
	res := b.run("contacts")
	require.Equal(t, int64(1), res.Counts.Failed)
	assert.Contains(t, b.linkError("contacts", "3"), "HTTP 422", "what the target said is kept")

	b.exec(`UPDATE crm.contacts SET name = name || '!', _sdc_batched_at = now()`)
	b.srv.SetToken("rotated-on-the-server")
	_, err := b.eng.Run(context.Background(), "contacts", engine.RunOptions{})
	require.Error(t, err)
	secrets := []string{token, "Bearer " + token}
	conformance.RequireNoSecret(t, err.Error(), secrets, "the error a run returns")
	var stored string
	require.NoError(t, b.db.QueryRow(context.Background(), `
		SELECT concat_ws(' | ', (SELECT string_agg(coalesce(error, ''), ' | ') FROM link_tables.contacts),
		                        (SELECT string_agg(coalesce(error, ''), ' | ') FROM ferry.runs),
		                        (SELECT string_agg(message, ' | ') FROM ferry.run_errors))`).Scan(&stored))
	assert.Contains(t, stored, "refused the credentials")
	conformance.RequireNoSecret(t, stored, secrets, "link rows, runs and run errors")
}

// The README's lookup-before-insert transform against a search endpoint
// that ignores the parameters it does not know (it answers with every
// record, as many APIs do): a record returned is a match only if its fields
// match, so nothing is linked to the wrong record, and the records fail
// saying the lookup is misconfigured. Once the lookup works, they sync.
func TestLookupThatIgnoresItsFilterLinksNothing(t *testing.T) {
	t.Parallel()
	s := crmContactsSync()
	s.Target.MatchOn = nil
	s.Transform = "contacts.star"
	s.TransformSource = []byte(`
def transform(source_record, target_record, pq, target_id=None):
    if not target_id:
        existing = pq.lookup("contacts", email=source_record["email"])
        if existing:
            pq.update_id(existing["id"])
    return target_record
`)
	objects := map[string]crmtest.Object{"contacts": {Unique: []string{"email"}, Searchable: []string{"name"}}}
	b := setupCRMWith(t, s, crmtest.Options{Token: "secret", Objects: objects})
	b.srv.Put(t, "contacts", map[string]any{"name": "Zed", "email": "zed@example.com"})
	b.exec(`INSERT INTO crm.contacts (id, name, email) SELECT g, 'P' || g, 'p' || g || '@example.com' FROM generate_series(1, 20) g`)

	res := b.run("contacts")
	assert.Equal(t, int64(20), res.Counts.Failed)
	assert.Zero(t, res.Counts.Updated, "no record is linked to a record whose e-mail differs")
	assert.Contains(t, b.linkError("contacts", "1"), "none has those values")
	assert.Contains(t, b.linkError("contacts", "1"), "ignores or misreads the filter")
	records := b.srv.Records("contacts")
	require.Len(t, records, 1)
	assert.Equal(t, "Zed", records[0]["name"], "never overwritten")

	b.srv.SetSearchable("contacts", nil)
	res = b.run("contacts")
	assert.Equal(t, int64(20), res.Counts.Inserted)
	assert.Len(t, b.emails(), 21)
}

// Credentials revoked mid-run: the requests in flight meet 401s. Those
// records are untouched, like every record not sent; the run stops; once
// the credentials work, every record exists once.
func TestCredentialsRevokedMidRunLeaveInFlightRecordsUntouched(t *testing.T) {
	t.Parallel()
	b := setupCRM(t, crmContactsSync())
	b.srv.SetLatency(20 * time.Millisecond)
	b.exec(`INSERT INTO crm.contacts (id, name, email) SELECT g, 'P' || g, 'p' || g || '@x.test' FROM generate_series(1, 200) g`)
	done := make(chan error, 1)
	go func() {
		_, err := b.eng.Run(context.Background(), "contacts", engine.RunOptions{})
		done <- err
	}()
	require.Eventually(t, func() bool { return b.srv.Count("contacts") >= 40 }, 10*time.Second, time.Millisecond)
	b.srv.SetToken("revoked")
	require.Error(t, <-done)
	var authRows int
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT count(*) FROM link_tables.contacts WHERE status <> 'success'`).Scan(&authRows))
	assert.Zero(t, authRows, "no record is marked failed for the credentials")

	b.srv.SetToken("secret")
	b.srv.SetLatency(0)
	res := b.run("contacts")
	assert.Equal(t, engine.RunSucceeded, res.Status)
	assert.Len(t, b.emails(), 200)
	for email, n := range b.emails() {
		assert.Equal(t, 1, n, email)
	}
}

// A target that fails every write: the run stops once the error budget is
// spent, says why, and leaves the records it did not try untouched.
func TestRunStopsWhenRecentRecordsAllFailTheSameWay(t *testing.T) {
	t.Parallel()
	b := setupCRM(t, crmContactsSync())
	b.exec(`INSERT INTO crm.contacts (id, name, email) SELECT g, 'P' || g, 'p' || g || '@x.test' FROM generate_series(1, 1000) g`)
	b.srv.FailNext(1_000_000, 500)
	res, err := b.eng.Run(context.Background(), "contacts", engine.RunOptions{})
	require.NoError(t, err)
	assert.Equal(t, engine.RunStopped, res.Status)
	assert.Contains(t, res.Error, "of the last 50 records failed the same way")
	assert.Contains(t, res.Error, "HTTP 500")
	assert.LessOrEqual(t, res.Counts.Failed, int64(250), "it stops within the chunks in flight (2 × 100) after the budget is spent, not after 1,000")
	var rows int
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT count(*) FROM link_tables.contacts`).Scan(&rows))
	assert.Equal(t, int(res.Counts.Failed), rows, "records not tried have no row")
}

// A target nobody answers for: the run stops after the connector's retries,
// once, and touches no record.
func TestUnreachableTargetStopsTheRunOnce(t *testing.T) {
	t.Parallel()
	b := setupCRM(t, crmContactsSync())
	b.exec(`INSERT INTO crm.contacts (id, name, email) SELECT g, 'P' || g, 'p' || g || '@x.test' FROM generate_series(1, 500) g`)
	b.srv.Close()
	start := time.Now()
	_, err := b.eng.Run(context.Background(), "contacts", engine.RunOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection crm cannot be reached")
	assert.Less(t, time.Since(start), 10*time.Second)
	var rows int
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT count(*) FROM link_tables.contacts`).Scan(&rows))
	assert.Zero(t, rows)
}

// A first sync into a CRM that already holds some of the contacts: with
// lookup_before_insert they are found by e-mail, linked and updated; the
// others are inserted; none is duplicated and none fails.
func TestLookupBeforeInsertLinksWhatTheTargetHolds(t *testing.T) {
	t.Parallel()
	s := crmContactsSync()
	s.Target.LookupBeforeInsert = true
	b := setupCRM(t, s)
	for i := 1; i <= 100; i++ {
		b.srv.Put(t, "contacts", map[string]any{"name": fmt.Sprintf("Old %d", i), "email": fmt.Sprintf("p%d@example.com", i)})
	}
	// A near miss: the same address in another case is another record.
	b.srv.Put(t, "contacts", map[string]any{"name": "Someone", "email": "P150@EXAMPLE.COM"})
	b.exec(`INSERT INTO crm.contacts (id, name, email) SELECT g, 'Person ' || g, 'p' || g || '@example.com' FROM generate_series(1, 150) g`)
	res := b.run("contacts")
	assert.EqualValues(t, 100, res.Counts.Updated, "the 100 the CRM held are linked and updated")
	assert.EqualValues(t, 50, res.Counts.Inserted)
	assert.Zero(t, res.Counts.Failed)
	assert.GreaterOrEqual(t, res.Counts.Lookups, int64(150))
	for email, n := range b.emails() {
		assert.Equal(t, 1, n, "%s is held once", email)
	}
	assert.Len(t, b.srv.Records("contacts"), 151)
	for _, r := range b.srv.Records("contacts") {
		if r["email"] == "p42@example.com" {
			assert.Equal(t, "Person 42", r["name"], "the existing record was updated")
		}
	}
	for id, l := range b.links("contacts") {
		assert.Regexp(t, `^success:.+$`, l, "source id %s", id)
	}
}

// An insert the CRM refuses with 409 (it holds that e-mail already) is no
// error to fix: the next run finds the record by match_on and links it.
func TestConflictOnInsertIsLinkedByMatchOn(t *testing.T) {
	t.Parallel()
	b := setupCRM(t, crmContactsSync())
	b.srv.Put(t, "contacts", map[string]any{"name": "Old", "email": "p2@example.com"})
	b.exec(`INSERT INTO crm.contacts (id, name, email) SELECT g, 'Person ' || g, 'p' || g || '@example.com' FROM generate_series(1, 3) g`)
	res := b.run("contacts")
	require.EqualValues(t, 2, res.Counts.Inserted)
	assert.Contains(t, b.linkError("contacts", "2"), "already holds it (HTTP 409)")
	res = b.run("contacts")
	assert.EqualValues(t, 1, res.Counts.Updated, "found by e-mail, linked and updated")
	assert.Len(t, b.srv.Records("contacts"), 3)
	for id, l := range b.links("contacts") {
		assert.Regexp(t, `^success:.+$`, l, "source id %s", id)
	}
}

// Contacts deleted in the source are deleted in the CRM, through the
// object's delete endpoint; one already gone there counts as deleted.
func TestDeletesThroughTheHTTPConnector(t *testing.T) {
	t.Parallel()
	s := crmContactsSync()
	s.Delete = &project.DeletePolicy{MaxShare: 0.5}
	b := setupCRM(t, s)
	b.exec(`INSERT INTO crm.contacts (id, name, email) SELECT g, 'Person ' || g, 'p' || g || '@example.com' FROM generate_series(1, 10) g`)
	b.run("contacts")
	require.Len(t, b.srv.Records("contacts"), 10)
	gone := strings.SplitN(b.links("contacts")["2"], ":", 2)[1]
	require.Equal(t, 204, deleteInCRM(t, b.srv.URL, gone))

	b.exec(`DELETE FROM crm.contacts WHERE id IN (1, 2, 3)`)
	res := b.run("contacts")
	assert.EqualValues(t, 3, res.Counts.Deleted, "contact 2, gone already, counts as deleted")
	assert.Len(t, b.srv.Records("contacts"), 7)
	for _, id := range []string{"1", "2", "3"} {
		assert.Regexp(t, `^deleted:`, b.links("contacts")[id])
	}
	res = b.run("contacts")
	assert.Zero(t, res.Counts.Deleted, "deleted once")
}

// deleteInCRM deletes a contact by hand, as a CRM user would.
func deleteInCRM(t *testing.T, base, id string) int {
	req, err := http.NewRequest(http.MethodDelete, base+"/contacts/"+id, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}
