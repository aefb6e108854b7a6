package httptarget_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
)

func openKind(t *testing.T, settings map[string]any) *httptarget.Target {
	t.Helper()
	raw, err := json.Marshal(settings)
	require.NoError(t, err)
	env := func(name string) (string, bool) { return token, name == "CRM_TOKEN" }
	target, err := httptarget.Kind().Open(context.Background(), raw, env)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, target.Close()) })
	return target.(*httptarget.Target)
}

// Two targets opened for the same connection (two syncs, or a sync and a
// script) draw on one budget: together they never exceed its limit. The
// server counts the requests in every span of its window and refuses, and
// counts, any over the limit.
func TestTwoTargetsOnOneConnectionShareItsLimit(t *testing.T) {
	t.Parallel()
	srv := crmtest.New(t, crmtest.Options{
		Token:      token,
		Objects:    map[string]crmtest.Object{"contacts": {Unique: []string{"email"}}},
		RateWindow: &crmtest.RateWindow{Requests: 20, Per: 500 * time.Millisecond},
	})
	settings := map[string]any{
		"base_url":    srv.URL,
		"auth":        map[string]any{"type": "bearer", "token_env": "CRM_TOKEN"},
		"rate_window": map[string]any{"requests": 20, "per": "500ms"},
		"objects":     map[string]any{"contacts": map[string]any{}},
	}
	a, b := openKind(t, settings), openKind(t, settings)
	var wg sync.WaitGroup
	for n, target := range []*httptarget.Target{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := target.Write(context.Background(), "contacts", contacts(40, 1000*n))
			if !assertNoErrors(t, res, err) {
				return
			}
		}()
	}
	wg.Wait()
	refused, peak := srv.Refused()
	require.Zero(t, refused, "no request over the limit (peak %d in a window)", peak)
	require.LessOrEqual(t, peak, 20)
	require.Equal(t, 80, srv.Count("contacts"))
}

func assertNoErrors(t *testing.T, res []connector.Result, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	for i, r := range res {
		if r.Err != nil || !r.Done {
			t.Errorf("change %d: done %v, %v", i, r.Done, r.Err)
			return false
		}
	}
	return true
}

// Under a limit the connection does not know, answered 429 without
// Retry-After, the target backs off and retries within its retry budget:
// every record is written.
func TestRateLimitWithoutRetryAfterWritesEverything(t *testing.T) {
	t.Parallel()
	srv := crmtest.New(t, crmtest.Options{
		Token:      token,
		Objects:    map[string]crmtest.Object{"contacts": {Unique: []string{"email"}}},
		RateWindow: &crmtest.RateWindow{Requests: 100, Per: time.Second},
	})
	cfg := config(srv, token)
	cfg.Objects = map[string]httptarget.Object{"contacts": {}}
	cfg.BackoffBase = httptarget.Duration(50 * time.Millisecond)
	cfg.BackoffMax = httptarget.Duration(time.Second)
	target := newTarget(t, cfg)
	start := time.Now()
	res, err := target.Write(context.Background(), "contacts", contacts(300, 0))
	require.True(t, assertNoErrors(t, res, err))
	require.Equal(t, 300, srv.Count("contacts"))
	refused, _ := srv.Refused()
	t.Logf("300 records in %s, %d requests refused with 429", time.Since(start).Round(time.Millisecond), refused)
}

func TestDailyQuotaIsSharedAndStopsTheCall(t *testing.T) {
	t.Parallel()
	srv := contactsCRM(t)
	settings := map[string]any{
		"base_url":    srv.URL,
		"auth":        map[string]any{"type": "bearer", "token_env": "CRM_TOKEN"},
		"daily_quota": 3,
		"concurrency": 1,
		"objects":     map[string]any{"contacts": map[string]any{}},
	}
	a := openKind(t, settings)
	res, err := a.Write(context.Background(), "contacts", contacts(5, 0))
	require.Error(t, err)
	require.Equal(t, connector.RateLimited, connector.ClassOf(err))
	require.Contains(t, err.Error(), "daily_quota of 3 requests is used up until")
	var ce *connector.Error
	require.ErrorAs(t, err, &ce)
	require.Positive(t, ce.RetryAfter)
	done := 0
	for _, r := range res {
		if r.Done {
			require.Nil(t, r.Err)
			done++
		}
	}
	require.Equal(t, 3, done, "the rest are not sent")
	require.Equal(t, 3, srv.Requests())

	b := openKind(t, settings)
	_, err = b.Write(context.Background(), "contacts", contacts(1, 10))
	require.Equal(t, connector.RateLimited, connector.ClassOf(err), "another target of the connection shares the quota")
	require.Equal(t, 3, srv.Requests())
}

func TestIdempotencyKeyHeader(t *testing.T) {
	t.Parallel()
	srv, seen := newCapturing(t, http.StatusCreated, `{"id":"x1"}`)
	cfg := fastConfig(srv.URL)
	cfg.Objects = map[string]httptarget.Object{"contacts": {IdempotencyKey: &httptarget.IdempotencyKey{}}}
	target := newTarget(t, cfg)
	ctx := connector.WithIdempotencyScope(context.Background(), "contacts_sync")
	a := connector.Change{Op: connector.OpInsert, SourceID: "1", Payload: map[string]any{"email": "a@example.com"}}
	b := connector.Change{Op: connector.OpInsert, SourceID: "2", Payload: map[string]any{"email": "b@example.com"}}
	changed := connector.Change{Op: connector.OpInsert, SourceID: "1", Payload: map[string]any{"email": "a2@example.com"}}
	for _, changes := range [][]connector.Change{{a}, {b}, {a}, {changed}} {
		_, err := target.Write(ctx, "contacts", changes)
		require.NoError(t, err)
	}
	_, err := target.Write(context.Background(), "contacts", []connector.Change{a})
	require.NoError(t, err)
	reqs := seen()
	require.Len(t, reqs, 5)
	key := func(i int) string { return reqs[i].header.Get("Idempotency-Key") }
	require.NotEmpty(t, key(0))
	require.NotEqual(t, key(0), key(1), "another record, another key")
	require.Equal(t, key(0), key(2), "the same record, the same key")
	require.NotEqual(t, key(0), key(3), "a changed record is a new request")
	require.NotEqual(t, key(0), key(4), "another sync, another key")
}

// An insert whose answer was lost is sent again when it carries an
// idempotency key: the API answers the repeat with the first answer.
func TestIdempotentInsertIsRetriedAfterATimeout(t *testing.T) {
	t.Parallel()
	srv := contactsCRM(t)
	cfg := config(srv, token)
	cfg.Timeout = httptarget.Duration(150 * time.Millisecond)
	cfg.Objects = map[string]httptarget.Object{"contacts": {IdempotencyKey: &httptarget.IdempotencyKey{}}}
	target := newTarget(t, cfg)
	_, err := target.Write(context.Background(), "contacts", contacts(1, 0))
	require.NoError(t, err)
	srv.HangNext(1)
	res, err := target.Write(context.Background(), "contacts", contacts(1, 1))
	require.NoError(t, err)
	// crmtest does not honour the key, so the repeat meets the unique email:
	// what matters here is that it was sent again instead of being Ambiguous.
	require.Equal(t, 3, srv.RequestsFor("POST", "contacts"))
	require.NotNil(t, res[0].Err)
	require.Equal(t, connector.Rejected, res[0].Err.Class, "%v", res[0].Err)
}

func TestLookupRequestsEscapeValuesForWhereTheyGo(t *testing.T) {
	t.Parallel()
	value := `o'ne "two" \three & four/five`
	tests := []struct {
		name   string
		lookup httptarget.Lookup
		uri    string
		body   string
	}{
		{"pipedrive query", httptarget.Lookup{Path: "/v1/persons/search", Query: map[string]string{
			"term": `{{value "email"}}`, "fields": "email", "exact_match": "true"}, ResultsPath: "data.items"},
			"/v1/persons/search?exact_match=true&fields=email&term=o%27ne+%22two%22+%5Cthree+%26+four%2Ffive", ""},
		{"pocketbase filter", httptarget.Lookup{Path: "/api/collections/contacts/records", Query: map[string]string{
			"filter": `(email={{value "email" | quote}})`}, ResultsPath: "items"},
			"/api/collections/contacts/records?filter=%28email%3D%27o%5C%27ne+%22two%22+%5C%5Cthree+%26+four%2Ffive%27%29", ""},
		{"path", httptarget.Lookup{Path: `/contacts/by-email/{{value "email"}}`},
			"/contacts/by-email/o%27ne%20%22two%22%20%5Cthree%20&%20four%2Ffive", ""},
		{"odoo json-rpc", httptarget.Lookup{Method: "POST", Path: "/jsonrpc", ResultsPath: "result", Body: map[string]any{
			"jsonrpc": "2.0", "method": "call", "params": map[string]any{
				"service": "object", "method": "execute_kw",
				"args": []any{"db", 2, "key", "res.partner", "search_read",
					[]any{[]any{map[string]any{"$each_match": []any{"{{field}}", "=", "{{value}}"}}}},
					map[string]any{"fields": "{{fields}}"}},
			}}},
			"/jsonrpc", `{"jsonrpc":"2.0","method":"call","params":{"args":["db",2,"key","res.partner","search_read",[[["email","=","o'ne \"two\" \\three & four/five"]]],{"fields":["email"]}],"method":"execute_kw","service":"object"}}`},
		{"hubspot search", httptarget.Lookup{Method: "POST", Path: "/crm/v3/objects/contacts/search", Body: map[string]any{
			"filterGroups": []any{map[string]any{"filters": []any{map[string]any{"propertyName": "email", "operator": "EQ", "value": `{{value "email"}}`}}}}}},
			"/crm/v3/objects/contacts/search", `{"filterGroups":[{"filters":[{"operator":"EQ","propertyName":"email","value":"o'ne \"two\" \\three & four/five"}]}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, seen := newCapturing(t, http.StatusOK, `{"results":[],"items":[],"data":{"items":[]},"result":[]}`)
			cfg := fastConfig(srv.URL)
			l := tc.lookup
			cfg.Objects = map[string]httptarget.Object{"contacts": {Lookup: &l}}
			found, err := newTarget(t, cfg).Find(context.Background(), "contacts", map[string]any{"email": value})
			require.NoError(t, err)
			require.Empty(t, found)
			reqs := seen()
			require.Len(t, reqs, 1)
			require.Equal(t, tc.uri, reqs[0].uri)
			require.Equal(t, tc.body, reqs[0].body)
		})
	}

	t.Run("a lookup by a field its template does not use", func(t *testing.T) {
		t.Parallel()
		srv, seen := newCapturing(t, http.StatusOK, `{"results":[]}`)
		cfg := fastConfig(srv.URL)
		cfg.Objects = map[string]httptarget.Object{"contacts": {Lookup: &httptarget.Lookup{Path: "/s",
			Query: map[string]string{"q": `{{value "email"}}`}}}}
		_, err := newTarget(t, cfg).Find(context.Background(), "contacts", map[string]any{"vat": "BE01"})
		require.ErrorContains(t, err, "the lookup uses field email, but the record is looked up by vat")
		require.Empty(t, seen(), "nothing is sent")
	})
}

func TestSettingsErrorsNameTheirPath(t *testing.T) {
	t.Parallel()
	base := func(object string) string {
		return fmt.Sprintf(`{"base_url":"https://api.example.com","objects":{"contacts":%s}}`, object)
	}
	tests := []struct {
		name     string
		settings string
		want     string
	}{
		{"unknown field under an object", base(`{"batch":{"sise":3}}`), `objects.contacts.batch: unknown field "sise" (known: size, mode, insert, update, results_path, id_path, failures)`},
		{"wrong type", base(`{"batch":{"size":"ten"}}`), `objects.contacts.batch.size: a number is expected, not a string ("ten")`},
		{"duration", `{"base_url":"https://api.example.com","timeout":5,"objects":{"c":{}}}`, `timeout: a duration is a string like "30s" or "2m"`},
		{"batch without items", base(`{"batch":{"insert":{"path":"/b","body":{"x":1}}}}`), `objects.contacts.batch.insert.body: must hold "{{items}}" where the records go`},
		{"batch mode", base(`{"batch":{"mode":"sometimes","insert":{"path":"/b"}}}`), `objects.contacts.batch.mode: "sometimes": use all_or_nothing`},
		{"partial without failures", base(`{"batch":{"mode":"partial","insert":{"path":"/b"}}}`), `objects.contacts.batch.failures: is required in partial mode`},
		{"batch update without id", base(`{"batch":{"update":{"path":"/b","item":{"f":"{{record}}"}}}}`), `objects.contacts.batch.update.item: must hold "{{id}}"`},
		{"unknown placeholder", base(`{"lookup":{"path":"/s","query":{"filter":"{{record}}"}}}`), `objects.contacts.lookup.query.filter: {{record}} is not known here: use {{value}}, {{fields}}, {{field}}`},
		{"bad template", base(`{"lookup":{"path":"/s","query":{"filter":"{{value \"email\""}}}`), `objects.contacts.lookup.query.filter:`},
		{"client id without exists", base(`{"client_id":{"field":"id"}}`), `objects.contacts.client_id.exists: is required`},
		{"login without login", `{"base_url":"https://api.example.com","auth":{"type":"login","password_env":"P"},"objects":{"c":{}}}`, `auth.login: is required for auth type login`},
		{"oauth2 without token url", `{"base_url":"https://api.example.com","auth":{"type":"oauth2"},"objects":{"c":{}}}`, `auth.token_url: "" must be the http(s) URL of the token endpoint`},
		{"rate window", `{"base_url":"https://api.example.com","rate_window":{"requests":0,"per":"1s"},"objects":{"c":{}}}`, `rate_window.requests: 0 must be positive`},
		{"errors without path", `{"base_url":"https://api.example.com","errors":{"message":"m"},"objects":{"c":{}}}`, `errors.path: is required`},
		{"auth error of nothing", `{"base_url":"https://api.example.com","auth_error":{},"objects":{"c":{}}}`, `auth_error: say which answers`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := httptarget.Kind().Check(json.RawMessage(tc.settings))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
