package pbtest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector/pbtest"
)

type answer struct {
	status int
	body   any
}

func do(t *testing.T, srv *pbtest.Server, method, path, token, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, bytes.NewBufferString(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	a := answer{status: res.StatusCode}
	if len(b) > 0 {
		require.NoError(t, json.Unmarshal(b, &a.body), "%s", b)
	}
	return a
}

func field(v any, path ...string) any {
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

func TestPocketBaseBehaviour(t *testing.T) {
	t.Parallel()
	srv := pbtest.New(t, pbtest.Options{Email: "a@example.com", Password: "pw-123456", BatchMax: 3, TokenTTL: time.Hour,
		Collections: map[string]pbtest.Collection{"contacts": {Required: []string{"email"}, Unique: []string{"email"}, Email: []string{"email"}}}})

	require.Equal(t, 400, do(t, srv, "POST", "/api/collections/_superusers/auth-with-password", "", `{"identity":"a@example.com","password":"no"}`).status)
	login := do(t, srv, "POST", "/api/collections/_superusers/auth-with-password", "", `{"identity":"a@example.com","password":"pw-123456"}`)
	require.Equal(t, 200, login.status)
	tok := field(login.body, "token").(string)

	require.Equal(t, 403, do(t, srv, "GET", "/api/collections/contacts/records", "", ``).status, "no token")
	bad := do(t, srv, "GET", "/api/collections/contacts/records", "not-a-token", ``)
	require.Equal(t, 400, bad.status, "an invalid token is a 400")
	require.Contains(t, field(bad.body, "message"), "token")

	created := do(t, srv, "POST", "/api/collections/contacts/records", tok, `{"email":"x@example.com"}`)
	require.Equal(t, 200, created.status, "created is 200, not 201")
	id := field(created.body, "id").(string)
	require.Len(t, id, 15)

	dup := do(t, srv, "POST", "/api/collections/contacts/records", "Bearer "+tok, `{"email":"x@example.com"}`)
	require.Equal(t, 400, dup.status)
	require.Equal(t, "Failed to create record.", field(dup.body, "message"))
	require.Equal(t, "validation_not_unique", field(dup.body, "data", "email", "code"))

	taken := do(t, srv, "POST", "/api/collections/contacts/records", tok, `{"id":"`+id+`","email":"y@example.com"}`)
	require.Equal(t, "validation_pk_invalid", field(taken.body, "data", "id", "code"))

	list := do(t, srv, "GET", "/api/collections/contacts/records?email=nobody@example.com", tok, ``)
	require.EqualValues(t, 1, field(list.body, "totalItems"), "unknown parameters are ignored")
	list = do(t, srv, "GET", `/api/collections/contacts/records?filter=(email%3D'nobody%40example.com')`, tok, ``)
	require.EqualValues(t, 0, field(list.body, "totalItems"))
	list = do(t, srv, "GET", `/api/collections/contacts/records?filter=(email~'X%40EXAMPLE')`, tok, ``)
	require.EqualValues(t, 1, field(list.body, "totalItems"), "~ is contains, without case")
	require.Equal(t, 400, do(t, srv, "GET", `/api/collections/contacts/records?filter=(email='unterminated)`, tok, ``).status)

	// A batch is all or nothing and names the failing request.
	failed := do(t, srv, "POST", "/api/batch", tok, `{"requests":[
		{"method":"POST","url":"/api/collections/contacts/records","body":{"email":"b1@example.com"}},
		{"method":"POST","url":"/api/collections/contacts/records","body":{"email":"bad"}}]}`)
	require.Equal(t, 400, failed.status)
	require.Equal(t, "validation_is_email", field(failed.body, "data", "requests", "1", "response", "data", "email", "code"))
	require.Equal(t, 1, srv.Count("contacts"), "nothing of the failed batch was written")
	ok := do(t, srv, "POST", "/api/batch", tok, `{"requests":[
		{"method":"PUT","url":"/api/collections/contacts/records","body":{"id":"`+id+`","email":"x2@example.com"}},
		{"method":"PUT","url":"/api/collections/contacts/records","body":{"id":"abcdefghij12345","email":"b2@example.com"}}]}`)
	require.Equal(t, 200, ok.status)
	require.Equal(t, 2, srv.Count("contacts"), "PUT is an upsert by id")
	require.Equal(t, 400, do(t, srv, "POST", "/api/batch", tok, `{"requests":[{},{},{},{}]}`).status, "over BatchMax")

	srv.ExpireTokens()
	require.Equal(t, 400, do(t, srv, "GET", "/api/collections/contacts/records", tok, ``).status)
}

func TestPocketBaseRateLimiter(t *testing.T) {
	t.Parallel()
	srv := pbtest.New(t, pbtest.Options{Email: "a@example.com", Password: "pw-123456",
		RateLimit: &pbtest.RateLimit{MaxRequests: 2, Interval: 200 * time.Millisecond}})
	require.Equal(t, 403, do(t, srv, "GET", "/api/collections/contacts/records", "", ``).status)
	require.Equal(t, 403, do(t, srv, "GET", "/api/collections/contacts/records", "", ``).status)
	limited := do(t, srv, "GET", "/api/collections/contacts/records", "", ``)
	require.Equal(t, 429, limited.status)
	require.Equal(t, "Too Many Requests.", field(limited.body, "message"))
	time.Sleep(250 * time.Millisecond)
	require.Equal(t, 403, do(t, srv, "GET", "/api/collections/contacts/records", "", ``).status, "refilled after a quiet interval")
}
