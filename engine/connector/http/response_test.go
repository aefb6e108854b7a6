package httptarget

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTargetMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"message", 409, `{"message":"contact with email x already exists"}`, "contact with email x already exists"},
		{"error string", 400, `{"error":"invalid_request"}`, "invalid_request"},
		{"oauth", 401, `{"error":"invalid_token","error_description":"expired"}`, "invalid_token: expired"},
		{"error object", 422, `{"error":{"message":"bad phone","code":"E12"}}`, "bad phone"},
		{"errors list", 422, `{"errors":[{"field":"email","message":"is required"},{"field":"phone","message":"is invalid"}]}`,
			"email: is required; phone: is invalid"},
		{"errors strings", 400, `{"errors":["one","two"]}`, "one; two"},
		{"message and errors", 400, `{"message":"validation failed","errors":[{"property":"email","message":"taken"}]}`,
			"validation failed: email: taken"},
		{"problem json", 400, `{"type":"about:blank","title":"Bad Request","detail":"amount must be positive"}`, "amount must be positive"},
		{"nested error list", 400, `{"error":{"message":"invalid","errors":[{"code":"too_long","path":"name"}]}}`, "invalid: name: too_long"},
		{"plain text", 400, "  not\n json  ", "not json"},
		{"unknown json", 400, `{"status":"bad"}`, `{"status":"bad"}`},
		{"empty", 404, "", "Not Found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, targetMessage(tc.status, []byte(tc.body), nil))
		})
	}

	long := targetMessage(500, []byte(strings.Repeat("é", 400)), nil)
	require.LessOrEqual(t, len(long), maxMessage+len("…"))
	require.True(t, strings.HasSuffix(long, "…"))
	require.True(t, json.Valid([]byte(`"`+long+`"`)), "trimmed on a rune boundary")
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
		ok    bool
	}{
		{"120", 2 * time.Minute, true},
		{"0", 0, true},
		{"0.25", 250 * time.Millisecond, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"", 0, false},
		{"soon", 0, false},
		{"-5", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.value, func(t *testing.T) {
			t.Parallel()
			got, ok := parseRetryAfter(tc.value, now)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestLookupPath(t *testing.T) {
	t.Parallel()
	body, err := decodeJSON([]byte(`{"id":"top","data":{"id":12345678901234567890},"results":[{"id":"r0"},{"id":7}],"n":null}`))
	require.NoError(t, err)
	tests := []struct {
		path string
		want string
		ok   bool
	}{
		{"id", "top", true},
		{"data.id", "12345678901234567890", true},
		{"results.0.id", "r0", true},
		{"results.1.id", "7", true},
		{"results.2.id", "", false},
		{"results.x.id", "", false},
		{"data.missing", "", false},
		{"n", "", false},
		{"data", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			v, found := lookupPath(body, tc.path)
			id, ok := idText(v)
			require.Equal(t, tc.ok, found && ok)
			require.Equal(t, tc.want, id)
		})
	}
}

func TestTransportIsSizedToConcurrency(t *testing.T) {
	t.Parallel()
	target, err := New(t.Context(), Config{
		BaseURL:     "https://api.example.com/v1/",
		Concurrency: 48,
		Objects:     map[string]Object{"contacts": {}},
	})
	require.NoError(t, err)
	require.Equal(t, 48, target.transport.MaxConnsPerHost)
	require.Equal(t, 48, target.transport.MaxIdleConnsPerHost)
	require.Equal(t, 48, cap(target.budget.slots))
	require.Equal(t, "https://api.example.com/v1", target.s.baseURL)
	obj := target.s.objects["contacts"]
	require.Equal(t, Endpoint{Method: "POST", Path: "/contacts"}, obj.insert)
	require.Equal(t, Endpoint{Method: "PATCH", Path: "/contacts/{id}"}, obj.update)
	require.Equal(t, "id", obj.idPath)
	require.Equal(t, DefaultTimeout, target.s.timeout)
	require.Equal(t, DefaultRetries, target.s.retries)
}
