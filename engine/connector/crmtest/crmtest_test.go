package crmtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector/crmtest"
)

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

// call sends one request with the token and decodes the JSON answer.
func call(t *testing.T, srv *crmtest.Server, method, path, token, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, srv.URL+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	a := answer{status: res.StatusCode, header: res.Header}
	if len(b) > 0 {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		require.NoError(t, dec.Decode(&a.body), "body %s", b)
	}
	return a
}

func newCRM(t *testing.T) *crmtest.Server {
	return crmtest.New(t, crmtest.Options{
		Token: "tok",
		Objects: map[string]crmtest.Object{
			"contacts":  {Required: []string{"email"}, Unique: []string{"email"}, Patterns: map[string]string{"phone": `^\+[0-9]+$`}},
			"companies": {NumericIDs: true, BodyKey: "properties"},
		},
	})
}

func TestAPI(t *testing.T) {
	t.Parallel()
	srv := newCRM(t)
	created := call(t, srv, "POST", "/contacts", "tok", `{"email":"a@example.com","n":12345678901234567890.5}`)
	require.Equal(t, 201, created.status)
	require.Equal(t, "c_1", created.body["id"])
	require.Equal(t, json.Number("12345678901234567890.5"), created.body["n"], "numbers keep their digits")

	tests := []struct {
		name   string
		method string
		path   string
		token  string
		body   string
		status int
		want   map[string]any
	}{
		{"wrong token", "POST", "/contacts", "nope", `{"email":"b@example.com"}`, 401, map[string]any{"message": "invalid token"}},
		{"no token", "GET", "/contacts/c_1", "", ``, 401, map[string]any{"message": "invalid token"}},
		{"required", "POST", "/contacts", "tok", `{"name":"x"}`, 422,
			map[string]any{"errors": []any{map[string]any{"field": "email", "message": "is required"}}}},
		{"unique", "POST", "/contacts", "tok", `{"email":"a@example.com"}`, 409,
			map[string]any{"message": "contact with email a@example.com already exists"}},
		{"pattern", "POST", "/contacts", "tok", `{"email":"c@example.com","phone":"12"}`, 422,
			map[string]any{"errors": []any{map[string]any{"field": "phone", "message": `"12" does not match ^\+[0-9]+$`}}}},
		{"id from client", "POST", "/contacts", "tok", `{"id":"x","email":"d@example.com"}`, 400, map[string]any{"message": "id is assigned by the server"}},
		{"not json", "POST", "/contacts", "tok", `nope`, 400, map[string]any{"message": "body must be a JSON object"}},
		{"unknown object", "POST", "/widgets", "tok", `{}`, 404, map[string]any{"message": `unknown object "widgets"`}},
		{"get", "GET", "/contacts/c_1", "tok", ``, 200, map[string]any{"id": "c_1", "email": "a@example.com", "n": json.Number("12345678901234567890.5")}},
		{"get missing", "GET", "/contacts/c_99", "tok", ``, 404, map[string]any{"message": "contact c_99 not found"}},
		{"patch missing", "PATCH", "/contacts/c_99", "tok", `{"name":"x"}`, 404, map[string]any{"message": "contact c_99 not found"}},
		{"patch clearing a required field", "PATCH", "/contacts/c_1", "tok", `{"email":null}`, 422,
			map[string]any{"errors": []any{map[string]any{"field": "email", "message": "is required"}}}},
		{"search", "GET", "/contacts/search?email=a@example.com", "tok", ``, 200,
			map[string]any{"results": []any{map[string]any{"id": "c_1", "email": "a@example.com", "n": json.Number("12345678901234567890.5")}}}},
		{"search by number", "GET", "/contacts/search?n=12345678901234567890.5", "tok", ``, 200,
			map[string]any{"results": []any{map[string]any{"id": "c_1", "email": "a@example.com", "n": json.Number("12345678901234567890.5")}}}},
		{"search none", "GET", "/contacts/search?email=zz", "tok", ``, 200, map[string]any{"results": []any{}}},
		{"wrapped create", "POST", "/companies", "tok", `{"properties":{"name":"Acme"}}`, 201,
			map[string]any{"id": json.Number("1"), "properties": map[string]any{"name": "Acme"}}},
		{"wrapped create unwrapped", "POST", "/companies", "tok", `{"name":"Acme"}`, 400, map[string]any{"message": `body must be {"properties": {...}}`}},
		{"method not allowed", "POST", "/contacts/c_1", "tok", `{}`, 405, map[string]any{"message": "method POST not allowed on /contacts/c_1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, srv, tc.method, tc.path, tc.token, tc.body)
			require.Equal(t, tc.status, a.status)
			require.Equal(t, tc.want, a.body)
		})
	}

	// Updates merge (PATCH) or replace (PUT), keep unique rules, and the
	// snapshot shows the result.
	require.Equal(t, 201, call(t, srv, "POST", "/contacts", "tok", `{"email":"b@example.com"}`).status)
	require.Equal(t, 409, call(t, srv, "PATCH", "/contacts/c_2", "tok", `{"email":"a@example.com"}`).status)
	patched := call(t, srv, "PATCH", "/contacts/c_1", "tok", `{"name":"Ann","phone":"+47"}`)
	require.Equal(t, 200, patched.status)
	require.Equal(t, "a@example.com", patched.body["email"])
	require.Equal(t, 200, call(t, srv, "PUT", "/contacts/c_2", "tok", `{"email":"b2@example.com"}`).status)
	require.Equal(t, 201, call(t, srv, "POST", "/contacts", "tok", `{"email":"b@example.com"}`).status, "the old unique value is free again")
	require.Equal(t, 204, call(t, srv, "DELETE", "/contacts/c_3", "tok", ``).status)

	records := srv.Records("contacts")
	require.Len(t, records, 2)
	require.Equal(t, "c_1", records[0]["id"])
	require.Equal(t, "Ann", records[0]["name"])
	require.Equal(t, map[string]any{"id": "c_2", "email": "b2@example.com"}, records[1])
	rec, ok := srv.Record("companies", "1")
	require.True(t, ok)
	require.Equal(t, map[string]any{"id": json.Number("1"), "name": "Acme"}, rec)
	require.Equal(t, 2, srv.Count("contacts"))
	require.Equal(t, 2, srv.RequestsFor("DELETE", "contacts")+srv.RequestsFor("PUT", "contacts"))
}

func TestEchoAuthInErrors(t *testing.T) {
	t.Parallel()
	srv := crmtest.New(t, crmtest.Options{
		Token:            "tok",
		EchoAuthInErrors: true,
		Objects:          map[string]crmtest.Object{"contacts": {Required: []string{"email"}, Unique: []string{"email"}}},
	})
	require.Equal(t, 201, call(t, srv, "POST", "/contacts", "tok", `{"email":"a@example.com"}`).status)
	request := func(method, path, auth string) map[string]any {
		return map[string]any{"method": method, "path": path, "headers": map[string]any{"Authorization": auth}}
	}

	tests := []struct {
		name   string
		method string
		path   string
		token  string
		body   string
		status int
		want   map[string]any
	}{
		{"wrong token", "POST", "/contacts", "nope", `{"email":"b@example.com"}`, 401, map[string]any{
			"message": "invalid token (Authorization: Bearer nope)",
			"request": request("POST", "/contacts", "Bearer nope"),
		}},
		{"required", "POST", "/contacts", "tok", `{"name":"x"}`, 422, map[string]any{
			"message": "validation failed (Authorization: Bearer tok)",
			"errors":  []any{map[string]any{"field": "email", "message": "is required"}},
			"request": request("POST", "/contacts", "Bearer tok"),
		}},
		{"unique", "POST", "/contacts", "tok", `{"email":"a@example.com"}`, 409, map[string]any{
			"message": "contact with email a@example.com already exists (Authorization: Bearer tok)",
			"request": request("POST", "/contacts", "Bearer tok"),
		}},
		{"success is not touched", "GET", "/contacts/c_1", "tok", ``, 200, map[string]any{"id": "c_1", "email": "a@example.com"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, srv, tc.method, tc.path, tc.token, tc.body)
			require.Equal(t, tc.status, a.status)
			require.Equal(t, tc.want, a.body)
		})
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()

	t.Run("FailNext", func(t *testing.T) {
		t.Parallel()
		srv := newCRM(t)
		srv.FailNext(2, 503)
		require.Equal(t, 401, call(t, srv, "POST", "/contacts", "bad", `{"email":"a@example.com"}`).status, "auth comes first")
		require.Equal(t, 503, call(t, srv, "POST", "/contacts", "tok", `{"email":"a@example.com"}`).status)
		require.Equal(t, 503, call(t, srv, "POST", "/contacts", "tok", `{"email":"a@example.com"}`).status)
		require.Equal(t, 201, call(t, srv, "POST", "/contacts", "tok", `{"email":"a@example.com"}`).status)
		require.Equal(t, 1, srv.Count("contacts"))
		require.Equal(t, 4, srv.Requests())
		require.Equal(t, 4, srv.RequestsFor("POST", "contacts"))
		srv.ResetCounters()
		require.Zero(t, srv.Requests())
	})

	t.Run("RateLimitNext", func(t *testing.T) {
		t.Parallel()
		srv := newCRM(t)
		srv.RateLimitNext(1, 50*time.Millisecond)
		a := call(t, srv, "GET", "/contacts", "tok", ``)
		require.Equal(t, 429, a.status)
		require.Equal(t, "0.05", a.header.Get("Retry-After"))
		srv.RateLimitNext(1, 2*time.Second)
		require.Equal(t, "2", call(t, srv, "GET", "/contacts", "tok", ``).header.Get("Retry-After"))
		require.Equal(t, 200, call(t, srv, "GET", "/contacts", "tok", ``).status)
	})

	t.Run("HangNext applies the write and never answers", func(t *testing.T) {
		t.Parallel()
		srv := newCRM(t)
		srv.HangNext(1)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/contacts", bytes.NewBufferString(`{"email":"a@example.com"}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer tok")
		_, err = http.DefaultClient.Do(req)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 1, srv.Count("contacts"))
	})

	t.Run("Close ends hanging requests", func(t *testing.T) {
		t.Parallel()
		srv, err := crmtest.NewServer(crmtest.Options{})
		require.NoError(t, err)
		srv.HangNext(1)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := http.Post(srv.URL+"/anything", "application/json", bytes.NewBufferString(`{}`))
			if err == nil {
				res.Body.Close()
				t.Error("a hung request got an answer")
			}
		}()
		require.Eventually(t, func() bool { return srv.Count("anything") == 1 }, 10*time.Second, time.Millisecond)
		srv.Close()
		srv.Close()
		wg.Wait()
	})
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	srv := crmtest.New(t, crmtest.Options{Objects: map[string]crmtest.Object{"contacts": {Unique: []string{"email"}}}})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				body, _ := json.Marshal(map[string]any{"email": []int{w, i}})
				res, err := http.Post(srv.URL+"/contacts", "application/json", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 200, srv.Count("contacts"))
	require.Equal(t, 200, srv.Requests())
	seen := map[string]bool{}
	for _, r := range srv.Records("contacts") {
		seen[r["id"].(string)] = true
	}
	require.Len(t, seen, 200, "ids are unique")
}

func TestNewServerRejectsBadPattern(t *testing.T) {
	t.Parallel()
	_, err := crmtest.NewServer(crmtest.Options{Objects: map[string]crmtest.Object{"c": {Patterns: map[string]string{"x": "("}}}})
	require.ErrorContains(t, err, "object c: pattern of x")
}

func TestLatencyIsNeverShort(t *testing.T) {
	t.Parallel()
	const latency = 20 * time.Millisecond
	srv := crmtest.New(t, crmtest.Options{Latency: latency})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			res, err := http.Get(srv.URL + "/contacts")
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			if took := time.Since(start); took < latency {
				t.Errorf("answered after %s, before the latency", took)
			}
		}()
	}
	wg.Wait()
	n, waited := srv.Waited()
	require.Equal(t, 16, n)
	require.GreaterOrEqual(t, waited, 16*latency)

	// A shorter latency set while a request waits out a long one applies to
	// the next request at once.
	srv.SetLatency(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/contacts", nil)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	require.Eventually(t, func() bool { return srv.Requests() == 17 }, 5*time.Second, time.Millisecond)
	srv.SetLatency(latency)
	start := time.Now()
	require.Equal(t, 200, call(t, srv, "GET", "/contacts", "", "").status)
	require.Less(t, time.Since(start), 10*time.Second)
	require.GreaterOrEqual(t, time.Since(start), latency)
}

func TestBatchEndpoints(t *testing.T) {
	t.Parallel()
	srv := newCRM(t)
	ok := call(t, srv, "POST", "/contacts/batch/create", "tok", `{"inputs":[{"email":"a@example.com"},{"email":"b@example.com"}]}`)
	require.Equal(t, 201, ok.status)
	results := ok.body["results"].([]any)
	require.Len(t, results, 2)
	require.Equal(t, "a@example.com", results[0].(map[string]any)["email"], "results in input order")

	// All or nothing, answered as the bad input alone would be, without
	// saying which one it was.
	bad := call(t, srv, "POST", "/contacts/batch/create", "tok", `{"inputs":[{"email":"c@example.com"},{"email":"c@example.com"}]}`)
	require.Equal(t, 409, bad.status)
	require.Equal(t, 2, srv.Count("contacts"))
	bad = call(t, srv, "POST", "/contacts/batch/create", "tok", `{"inputs":[{"email":"d@example.com"},{"name":"no email"}]}`)
	require.Equal(t, 422, bad.status)
	require.Equal(t, 2, srv.Count("contacts"))

	id := results[0].(map[string]any)["id"].(string)
	upd := call(t, srv, "POST", "/contacts/batch/update", "tok", `{"inputs":[{"id":"`+id+`","fields":{"name":"A"}},{"id":"c_404","fields":{"name":"x"}}]}`)
	require.Equal(t, 404, upd.status)
	rec, _ := srv.Record("contacts", id)
	require.Nil(t, rec["name"], "nothing of the failed batch was written")
	upd = call(t, srv, "POST", "/contacts/batch/update", "tok", `{"inputs":[{"id":"`+id+`","fields":{"name":"A"}}]}`)
	require.Equal(t, 200, upd.status)
	rec, _ = srv.Record("contacts", id)
	require.Equal(t, "A", rec["name"])
}

func TestRateWindow(t *testing.T) {
	t.Parallel()
	srv := crmtest.New(t, crmtest.Options{RateWindow: &crmtest.RateWindow{Requests: 2, Per: time.Minute, RetryAfter: true}})
	require.Equal(t, 200, call(t, srv, "GET", "/contacts", "", ``).status)
	require.Equal(t, 200, call(t, srv, "GET", "/contacts", "", ``).status)
	limited := call(t, srv, "GET", "/contacts", "", ``)
	require.Equal(t, 429, limited.status)
	require.NotEmpty(t, limited.header.Get("Retry-After"))
	refused, peak := srv.Refused()
	require.Equal(t, 1, refused)
	require.Equal(t, 3, peak)
}
