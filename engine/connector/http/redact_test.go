package httptarget_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/conformance"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
)

var _ connector.SecretHolder = (*httptarget.Target)(nil)

func TestSecrets(t *testing.T) {
	t.Parallel()
	env := func(name string) (string, bool) {
		v, ok := map[string]string{"TOKEN": "tok-123", "USER": "svc", "PASS": "p@ss:word", "KEY": "key-456"}[name]
		return v, ok
	}
	tests := []struct {
		name string
		auth httptarget.Auth
		want []string
	}{
		{"none", httptarget.Auth{}, []string{}},
		{"bearer", httptarget.Auth{Type: "bearer", TokenEnv: "TOKEN"}, []string{"tok-123", "Bearer tok-123"}},
		{"basic", httptarget.Auth{Type: "basic", UsernameEnv: "USER", PasswordEnv: "PASS"},
			[]string{"svc", "p@ss:word", "svc:p@ss:word", "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:p@ss:word"))}},
		{"header", httptarget.Auth{Type: "header", Header: "x-api-key", ValueEnv: "KEY"}, []string{"key-456"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := fastConfig("http://127.0.0.1:1")
			cfg.Auth, cfg.Env = tc.auth, env
			require.Equal(t, tc.want, newTarget(t, cfg).Secrets())
		})
	}
}

// echoCRM is a CRM that quotes the request's Authorization header in its
// error bodies, and whose contacts need a unique email.
func echoCRM(t *testing.T) *crmtest.Server {
	return crmtest.New(t, crmtest.Options{
		Token:            token,
		EchoAuthInErrors: true,
		Objects:          map[string]crmtest.Object{"contacts": {Required: []string{"email"}, Unique: []string{"email"}}},
	})
}

func TestErrorsDoNotQuoteTheToken(t *testing.T) {
	t.Parallel()
	srv := echoCRM(t)
	target := newTarget(t, config(srv, token))
	ctx := context.Background()
	secrets := target.Secrets()
	res, err := target.Write(ctx, "contacts", []connector.Change{insertOf(map[string]any{"email": "taken@example.com"})})
	require.NoError(t, err)
	require.Nil(t, res[0].Err)

	tests := []struct {
		name     string
		target   *httptarget.Target
		change   connector.Change
		class    connector.Class
		status   int
		contains string // what the target said, kept
	}{
		{"422", target, insertOf(map[string]any{"name": "no email"}), connector.Rejected, 422,
			"POST /contacts: validation failed (Authorization: ***): email: is required"},
		{"409", target, insertOf(map[string]any{"email": "taken@example.com"}), connector.Rejected, 409,
			"contact with email taken@example.com already exists (Authorization: ***)"},
		{"404", target, updateOf("c_404", map[string]any{"name": "x"}), connector.NotFound, 404,
			"contact c_404 not found (Authorization: ***)"},
		{"401", newTarget(t, config(srv, "wrong-token-value")), insertOf(map[string]any{"email": "new@example.com"}), connector.Auth, 401,
			"invalid token (Authorization: ***)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			secrets := append(tc.target.Secrets(), secrets...)
			res, err := tc.target.Write(ctx, "contacts", []connector.Change{tc.change})
			require.Len(t, res, 1)
			require.NotNil(t, res[0].Err)
			require.Equal(t, tc.class, res[0].Err.Class, "error: %v", res[0].Err)
			require.Equal(t, tc.status, res[0].Err.Status)
			require.Contains(t, res[0].Err.Error(), tc.contains)
			conformance.RequireNoSecret(t, res[0].Err.Error(), secrets)
			if err != nil {
				require.Same(t, res[0].Err, err, "an auth failure returns the result's own *Error")
				conformance.RequireNoSecret(t, err.Error(), secrets)
			}
		})
	}

	t.Run("Find", func(t *testing.T) {
		t.Parallel()
		bad := newTarget(t, config(srv, "another-wrong-token"))
		_, err := bad.Find(ctx, "contacts", map[string]any{"email": "taken@example.com"})
		require.Error(t, err)
		require.Equal(t, connector.Auth, connector.ClassOf(err))
		require.Contains(t, err.Error(), "invalid token (Authorization: ***)")
		conformance.RequireNoSecret(t, err.Error(), bad.Secrets())
	})
}

// echoServer answers every request with status and the body that echo
// makes of the request's credentials, as a debugging API might.
func echoServer(t *testing.T, status int, header http.Header, echo func(r *http.Request) string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, echo(r))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestErrorsDoNotQuoteCredentialsInAnyEncoding(t *testing.T) {
	t.Parallel()
	// Characters that encoders escape: a slash, a plus, a quote, non-ASCII.
	const tok = `tok/en+"s3cr€t`
	const user, pass = "svc-user", "p@ss/wörd"
	env := func(name string) (string, bool) {
		v, ok := map[string]string{"TOKEN": tok, "USER": user, "PASS": pass, "KEY": "api-key-789"}[name]
		return v, ok
	}
	bearer := httptarget.Auth{Type: "bearer", TokenEnv: "TOKEN"}
	basic := httptarget.Auth{Type: "basic", UsernameEnv: "USER", PasswordEnv: "PASS"}
	apiKey := httptarget.Auth{Type: "header", Header: "X-API-Key", ValueEnv: "KEY"}
	b64 := base64.StdEncoding.EncodeToString
	jsonOf := func(v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return string(b)
	}
	php := func(s string) string { return strings.ReplaceAll(jsonOf(s), "/", `\/`) }

	tests := []struct {
		name   string
		auth   httptarget.Auth
		status int
		header func(r *http.Request) http.Header
		echo   func(r *http.Request) string
		class  connector.Class
	}{
		{"plain text body", bearer, 400, nil, func(r *http.Request) string {
			return "bad request\nheaders:\n  Authorization: " + r.Header.Get("Authorization")
		}, connector.Rejected},
		{"unknown JSON shape, Go escaping", bearer, 400, nil, func(r *http.Request) string {
			return jsonOf(map[string]any{"status": "bad", "headers": r.Header})
		}, connector.Rejected},
		{"unknown JSON shape, PHP escaping", bearer, 400, nil, func(r *http.Request) string {
			return `{"status":"bad","authorization":` + php(r.Header.Get("Authorization")) + `}`
		}, connector.Rejected},
		{"token alone in a message", bearer, 422, nil, func(*http.Request) string {
			return jsonOf(map[string]any{"message": "token " + tok + " may not create contacts"})
		}, connector.Rejected},
		{"token URL-escaped", bearer, 400, nil, func(*http.Request) string {
			return "GET /oauth?access_token=" + url.QueryEscape(tok) + " failed"
		}, connector.Rejected},
		{"token in base64", bearer, 500, nil, func(*http.Request) string {
			return "trace " + base64.RawURLEncoding.EncodeToString([]byte(tok))
		}, connector.Retryable},
		{"basic header, OAuth shape", basic, 401, nil, func(r *http.Request) string {
			return jsonOf(map[string]any{"error": "invalid_client", "error_description": "rejected " + r.Header.Get("Authorization")})
		}, connector.Auth},
		{"basic user:pass base64 without the scheme", basic, 403, nil, func(r *http.Request) string {
			return "forbidden: " + strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
		}, connector.Auth},
		{"basic password alone", basic, 400, nil, func(*http.Request) string {
			return jsonOf(map[string]any{"message": "password " + pass + " (" + b64([]byte(pass)) + ") is weak"})
		}, connector.Rejected},
		{"API key header", apiKey, 400, nil, func(r *http.Request) string {
			return jsonOf(map[string]any{"errors": []any{map[string]any{"field": "X-API-Key", "message": "unknown key " + r.Header.Get("X-API-Key")}}})
		}, connector.Rejected},
		{"2xx without an id quotes the body", bearer, 201, nil, func(r *http.Request) string {
			return jsonOf(map[string]any{"ok": true, "echo": r.Header.Get("Authorization")})
		}, connector.Ambiguous},
		{"redirect to a URL with the token", bearer, 302, func(*http.Request) http.Header {
			return http.Header{"Location": {"/login?token=" + url.QueryEscape(tok)}}
		}, func(*http.Request) string { return "" }, connector.Rejected},
		{"the token where the message is cut", bearer, 400, nil, func(r *http.Request) string {
			// Without redacting first, the trim would keep the start of the token.
			return strings.Repeat("x", 490) + " " + r.Header.Get("Authorization") + strings.Repeat(" y", 100)
		}, connector.Rejected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var header http.Header
			if tc.header != nil {
				header = tc.header(nil)
			}
			cfg := fastConfig(echoServer(t, tc.status, header, tc.echo))
			cfg.Auth, cfg.Env, cfg.Retries = tc.auth, env, retries(0)
			target := newTarget(t, cfg)
			res, err := target.Write(context.Background(), "contacts", []connector.Change{insertOf(map[string]any{"a": 1})})
			require.Len(t, res, 1)
			require.NotNil(t, res[0].Err)
			require.Equal(t, tc.class, res[0].Err.Class, "error: %v", res[0].Err)
			text := res[0].Err.Error()
			require.Contains(t, text, "***", "the echo was there, and redacted")
			conformance.RequireNoSecret(t, text, target.Secrets())
			for _, secret := range target.Secrets() {
				require.NotContains(t, text, secret[:5], "no piece of a secret is left")
			}
			if err != nil {
				conformance.RequireNoSecret(t, err.Error(), target.Secrets())
			}
		})
	}
}

// A network error quotes the URL it failed on; the Target redacts it like
// any other text (here the base URL's host happens to be the secret).
func TestNetworkErrorsAreRedacted(t *testing.T) {
	t.Parallel()
	const key = "127.0.0.1:1" // nothing listens there
	cfg := fastConfig("http://" + key)
	cfg.Auth = httptarget.Auth{Type: "header", Header: "X-API-Key", ValueEnv: "KEY"}
	cfg.Env = func(string) (string, bool) { return key, true }
	cfg.Retries = retries(0)
	cfg.Timeout = httptarget.Duration(5 * time.Second)
	target := newTarget(t, cfg)
	res, err := target.Write(context.Background(), "contacts", []connector.Change{updateOf("1", map[string]any{"a": 1})})
	require.Error(t, err)
	conformance.RequireNoSecret(t, err.Error(), []string{key})
	require.NotNil(t, res[0].Err)
	require.Equal(t, connector.Unreachable, res[0].Err.Class, "error: %v", res[0].Err)
	conformance.RequireNoSecret(t, res[0].Err.Error(), []string{key})
	require.NotNil(t, res[0].Err.Err)
	conformance.RequireNoSecret(t, res[0].Err.Err.Error(), []string{key})
	var urlErr *url.Error
	require.ErrorAs(t, res[0].Err, &urlErr, "the underlying error is still there for errors.As")
	require.Equal(t, fmt.Sprintf("http://%s/contacts/1", key), urlErr.URL)
}
