package postgres_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/conformance"
	"github.com/ferry-sync/ferry/engine/connector/postgres"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

var _ connector.SecretHolder = (*postgres.Target)(nil)

// testPassword has characters a URL must escape.
const testPassword = "pg-S3cret/pass word"

// passwordURL returns dbURL with a password in it, and the password. When
// the server's URL (or PGPASSWORD, or a password file) gives one already,
// that one is kept; otherwise testPassword is added, which a server that
// trusts local connections, as the test server does, never asks for.
func passwordURL(t *testing.T, dbURL string) (string, string) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	require.NoError(t, err)
	if pw := cfg.ConnConfig.Password; pw != "" {
		return dbURL, pw
	}
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	u.User = url.UserPassword(cfg.ConnConfig.User, testPassword)
	return u.String(), testPassword
}

// envWith is a LookupEnv holding one variable.
func envWith(name, value string) connector.LookupEnv {
	return func(n string) (string, bool) { return value, n == name }
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	dbURL, password := passwordURL(t, dbtest.NewEmptyURL(t))
	target := newTarget(t, postgres.Config{URLEnv: "TARGET_URL", Env: envWith("TARGET_URL", dbURL)})
	secrets := target.Secrets()
	require.Contains(t, secrets, password)
	require.Contains(t, secrets, dbURL, "the URL holds the password")
	if password == testPassword {
		require.Contains(t, secrets, url.PathEscape(testPassword), "the password as the URL writes it")
	}

	// A key=value string is asked of pgx.
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	kv := "host=" + u.Hostname() + " port=" + u.Port() + " user=" + u.User.Username() +
		" dbname=" + u.Path[1:] + " sslmode=disable password='" + password + "'"
	target = newTarget(t, postgres.Config{URLEnv: "TARGET_DSN", Env: envWith("TARGET_DSN", kv)})
	require.Contains(t, target.Secrets(), password)
	require.Contains(t, target.Secrets(), kv)

	// No password, no secret: the URL is not one.
	plain, err := pgxpool.ParseConfig(dbtest.ServerURL())
	require.NoError(t, err)
	if plain.ConnConfig.Password == "" {
		target = newTarget(t, postgres.Config{URL: dbtest.ServerURL()})
		require.Empty(t, target.Secrets())
	}
}

// PostgreSQL quotes the values it refuses, so a password that is also a
// value (or an id, or a column name) would land in the error; the target
// redacts it, whatever the way in.
func TestErrorsNeverHoldThePassword(t *testing.T) {
	t.Parallel()
	dbURL, password := passwordURL(t, dbtest.NewEmptyURL(t))
	admin := dbtest.Open(t, dbURL)
	ctx := context.Background()
	_, err := admin.Exec(ctx, `CREATE TABLE contacts (
		id    bigserial PRIMARY KEY,
		email text NOT NULL UNIQUE,
		age   int
	)`)
	require.NoError(t, err)
	target := newTarget(t, postgres.Config{URLEnv: "TARGET_URL", Env: envWith("TARGET_URL", dbURL)})
	secrets := target.Secrets()
	res, err := target.Write(ctx, "contacts", []connector.Change{insertOf(map[string]any{"email": password})})
	require.NoError(t, err)
	require.Nil(t, res[0].Err)

	tests := []struct {
		name     string
		change   connector.Change
		class    connector.Class
		contains string // what PostgreSQL said, kept
	}{
		{"unique", insertOf(map[string]any{"email": password}), connector.Rejected, "Key (email)=(***) already exists"},
		{"bad integer", insertOf(map[string]any{"email": "a@example.com", "age": password}), connector.Rejected,
			`invalid input syntax for type integer: "***"`},
		{"bad id", connector.Change{Op: connector.OpUpdate, TargetID: password, Payload: map[string]any{"age": 1}}, connector.Rejected,
			`update of public.contacts id ***: invalid input syntax for type bigint: "***"`},
		{"unknown column", insertOf(map[string]any{"email": "b@example.com", password: 1}), connector.Rejected,
			`column "***" does not exist`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := target.Write(ctx, "contacts", []connector.Change{tc.change})
			require.NoError(t, err)
			require.NotNil(t, res[0].Err)
			require.Equal(t, tc.class, res[0].Err.Class, "error: %v", res[0].Err)
			require.Contains(t, res[0].Err.Error(), tc.contains)
			conformance.RequireNoSecret(t, res[0].Err.Error(), secrets)
			if res[0].Err.Err != nil {
				conformance.RequireNoSecret(t, res[0].Err.Err.Error(), secrets)
			}
		})
	}

	t.Run("Find", func(t *testing.T) {
		t.Parallel()
		_, err := target.Find(ctx, "contacts", map[string]any{"age": password})
		require.ErrorContains(t, err, `invalid input syntax for type integer: "***"`)
		conformance.RequireNoSecret(t, err.Error(), secrets)
		_, err = target.Find(ctx, "contacts", map[string]any{password: 1})
		require.ErrorContains(t, err, `column "***" does not exist`)
		conformance.RequireNoSecret(t, err.Error(), secrets)
	})
	t.Run("missing table", func(t *testing.T) {
		t.Parallel()
		res, err := target.Write(ctx, password, []connector.Change{insertOf(map[string]any{"a": 1})})
		require.ErrorContains(t, err, "(object ***) does not exist")
		conformance.RequireNoSecret(t, err.Error(), secrets)
		require.False(t, res[0].Done)
		_, err = target.IDType(ctx, password)
		require.ErrorContains(t, err, "does not exist")
		conformance.RequireNoSecret(t, err.Error(), secrets)
	})
}

func TestNewErrorsNeverHoldThePassword(t *testing.T) {
	t.Parallel()
	server, err := url.Parse(dbtest.ServerURL())
	require.NoError(t, err)
	unreachable := *server
	unreachable.Host = "127.0.0.1:1"
	unreachable.User = url.UserPassword("postgres", testPassword)
	badPort := "postgres://postgres:" + url.PathEscape(testPassword) + "@127.0.0.1:notaport/db"
	badParam := unreachable
	badParam.RawQuery = "sslmode=" + url.QueryEscape(testPassword)

	tests := []struct {
		name     string
		url      string
		contains string
	}{
		{"unreachable", unreachable.String(), "cannot connect to postgres://postgres@127.0.0.1:1/"},
		{"does not parse", badPort, "does not parse"},
		{"bad parameter", badParam.String(), "does not parse"},
		{"bad concurrency", unreachable.String() + "&x", "concurrency"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := postgres.Config{URLEnv: "TARGET_URL", Env: envWith("TARGET_URL", tc.url)}
			if tc.name == "bad concurrency" {
				cfg.Concurrency = -1
			}
			target, err := postgres.New(context.Background(), cfg)
			require.Nil(t, target)
			require.ErrorContains(t, err, tc.contains)
			conformance.RequireNoSecret(t, err.Error(), []string{testPassword, tc.url})
		})
	}
}
