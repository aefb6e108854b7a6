package hubtest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector/hubtest"
)

func do(t *testing.T, srv *hubtest.Server, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, bytes.NewBufferString(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out), "%s", b)
	return res.StatusCode, out
}

func TestHubSpotBehaviour(t *testing.T) {
	t.Parallel()
	srv := hubtest.New(t, hubtest.Options{Token: "pat", Objects: map[string]hubtest.Object{"contacts": {
		Unique: []string{"email"}, Email: []string{"email"}, Defaults: []string{"email"}}}})
	status, rec := do(t, srv, "POST", "/crm/v3/objects/contacts", "pat", `{"properties":{"email":"a@example.com","age":42}}`)
	require.Equal(t, 201, status)
	require.Equal(t, "42", rec["properties"].(map[string]any)["age"], "values come back as strings")

	status, e := do(t, srv, "POST", "/crm/v3/objects/contacts", "pat", `{"properties":{"email":"A@example.com"}}`)
	require.Equal(t, 409, status)
	require.Equal(t, "CONFLICT", e["category"])
	require.True(t, strings.HasPrefix(e["message"].(string), "Contact already exists. Existing ID: "))

	status, _ = do(t, srv, "POST", "/crm/v3/objects/contacts", "wrong", `{"properties":{}}`)
	require.Equal(t, 401, status)

	status, batch := do(t, srv, "POST", "/crm/v3/objects/contacts/batch/create", "pat", `{"inputs":[
		{"properties":{"email":"b@example.com"},"objectWriteTraceId":"0"},
		{"properties":{"email":"bad"},"objectWriteTraceId":"1"},
		{"properties":{"email":"c@example.com"},"objectWriteTraceId":"2"}]}`)
	require.Equal(t, 207, status, "partial success")
	require.Len(t, batch["results"], 2)
	errs := batch["errors"].([]any)
	require.Len(t, errs, 1)
	require.Equal(t, []any{"1"}, errs[0].(map[string]any)["context"].(map[string]any)["objectWriteTraceId"])
	require.Equal(t, 3, srv.Count("contacts"))

	status, found := do(t, srv, "POST", "/crm/v3/objects/contacts/search", "pat",
		`{"filterGroups":[{"filters":[{"propertyName":"email","operator":"EQ","value":"B@EXAMPLE.COM"}]}]}`)
	require.Equal(t, 200, status)
	require.EqualValues(t, 1, found["total"])
	props := found["results"].([]any)[0].(map[string]any)["properties"].(map[string]any)
	require.Equal(t, "b@example.com", props["email"])
	require.NotContains(t, props, "age", "only the properties asked for")
}

func TestHubSpotTokens(t *testing.T) {
	t.Parallel()
	srv := hubtest.New(t, hubtest.Options{OAuth: &hubtest.OAuth{ClientID: "id", ClientSecret: "secret", RefreshToken: "rt", TokenTTL: time.Second},
		Objects: map[string]hubtest.Object{"contacts": {}}, RateWindow: &hubtest.RateWindow{Requests: 100, Per: time.Minute}})
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {"id"}, "client_secret": {"secret"}, "refresh_token": {"rt"}}
	res, err := http.PostForm(srv.URL+"/oauth/v1/token", form)
	require.NoError(t, err)
	var tok map[string]any
	require.NoError(t, json.NewDecoder(res.Body).Decode(&tok))
	res.Body.Close()
	require.EqualValues(t, 1, tok["expires_in"])
	access := tok["access_token"].(string)
	status, _ := do(t, srv, "GET", "/crm/v3/objects/contacts/1", access, ``)
	require.Equal(t, 404, status, "a valid token: the record is missing")
	time.Sleep(1100 * time.Millisecond)
	status, e := do(t, srv, "GET", "/crm/v3/objects/contacts/1", access, ``)
	require.Equal(t, 401, status)
	require.Equal(t, "EXPIRED_AUTHENTICATION", e["category"])

	form.Set("refresh_token", "other")
	res, err = http.PostForm(srv.URL+"/oauth/v1/token", form)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 400, res.StatusCode)
}

func TestHubSpotSecondlyLimit(t *testing.T) {
	t.Parallel()
	srv := hubtest.New(t, hubtest.Options{Token: "pat", Objects: map[string]hubtest.Object{"contacts": {}},
		RateWindow: &hubtest.RateWindow{Requests: 2, Per: time.Minute}})
	do(t, srv, "GET", "/crm/v3/objects/contacts/1", "pat", ``)
	do(t, srv, "GET", "/crm/v3/objects/contacts/1", "pat", ``)
	req, _ := http.NewRequest("GET", srv.URL+"/crm/v3/objects/contacts/1", nil)
	req.Header.Set("Authorization", "Bearer pat")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 429, res.StatusCode)
	require.Empty(t, res.Header.Get("Retry-After"))
	require.Equal(t, 1, srv.Limited())
}
