package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/postgres"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

type bundle struct {
	url    string
	admin  *pgxpool.Pool
	target *postgres.Target
}

// setup gives a test its own database holding ddl, and a target on it.
func setup(t *testing.T, ddl string, cfg postgres.Config) bundle {
	t.Helper()
	dbURL := dbtest.NewEmptyURL(t)
	admin := dbtest.Open(t, dbURL)
	_, err := admin.Exec(context.Background(), ddl)
	require.NoError(t, err)
	cfg.URL = dbURL
	return bundle{url: dbURL, admin: admin, target: newTarget(t, cfg)}
}

func TestNewExplainsWhatIsWrong(t *testing.T) {
	t.Parallel()
	server, err := url.Parse(dbtest.ServerURL())
	require.NoError(t, err)
	unreachable := *server
	unreachable.Host = "127.0.0.1:1"
	withPassword := unreachable
	withPassword.User = url.UserPassword("postgres", "hunter2")
	noRole := *server
	noRole.User = url.User("ferry_no_such_role")
	env := map[string]string{"UNREACHABLE_URL": withPassword.String(), "NO_ROLE_URL": noRole.String()}

	tests := []struct {
		name      string
		cfg       postgres.Config
		contains  []string
		class     connector.Class
		forbidden string
	}{
		{name: "nothing", cfg: postgres.Config{}, contains: []string{"url_env is required"}},
		{name: "both", cfg: postgres.Config{URL: server.String(), URLEnv: "X"}, contains: []string{"not both"}},
		{name: "unset env", cfg: postgres.Config{URLEnv: "FERRY_TEST_UNSET"}, contains: []string{"FERRY_TEST_UNSET is not set"}},
		{name: "password in url", cfg: postgres.Config{URL: withPassword.String()}, contains: []string{"url holds a password"}, forbidden: "hunter2"},
		{
			name:      "unreachable",
			cfg:       postgres.Config{URLEnv: "UNREACHABLE_URL"},
			contains:  []string{"postgres connection: cannot connect to postgres://postgres@127.0.0.1:1/", "check url_env UNREACHABLE_URL"},
			class:     connector.Retryable,
			forbidden: "hunter2",
		},
		{
			name:     "unknown role",
			cfg:      postgres.Config{URLEnv: "NO_ROLE_URL"},
			contains: []string{"cannot connect to", "ferry_no_such_role", "check url_env NO_ROLE_URL"},
			class:    connector.Auth,
		},
		{name: "negative concurrency", cfg: postgres.Config{URL: server.String(), Concurrency: -1}, contains: []string{"concurrency"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Env = func(name string) (string, bool) { v, ok := env[name]; return v, ok }
			target, err := postgres.New(context.Background(), tc.cfg)
			require.Error(t, err)
			require.Nil(t, target)
			for _, s := range tc.contains {
				require.Contains(t, err.Error(), s)
			}
			if tc.forbidden != "" {
				require.NotContains(t, err.Error(), tc.forbidden, "a secret leaked into the error")
			}
			require.Equal(t, tc.class, connector.ClassOf(err))
		})
	}
}

func TestValuesAreConvertedFaithfully(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE things (
		id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
		exact     numeric,
		big       bigint,
		ratio     double precision,
		doc       jsonb,
		plain     json,
		at        timestamptz,
		wall      timestamp,
		day       date,
		tags      text[],
		flag      boolean,
		label     text,
		ref       uuid
	)`, postgres.Config{})
	ctx := context.Background()
	payload := map[string]any{
		"exact": json.Number("123456789012345678901234567890.000000000000000000001"),
		"big":   int64(9007199254740993), // not representable as float64
		"ratio": 0.1,
		"doc":   map[string]any{"a": []any{json.Number("1.10"), "x", nil}, "b": map[string]any{"c": true}},
		"plain": []any{"one", json.Number("2")},
		"at":    time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.FixedZone("UTC+2", 7200)),
		"wall":  time.Date(2024, 2, 29, 23, 59, 58, 0, time.FixedZone("UTC+2", 7200)),
		"day":   time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		"tags":  []any{"a", "b c", "ü"},
		"flag":  true,
		"label": "tab\there \"quoted\" 🚢",
		"ref":   "7c9e6679-7425-40de-944b-e07fc1f90ae7",
	}
	res, err := b.target.Write(ctx, "things", []connector.Change{{Op: connector.OpInsert, Payload: payload}})
	require.NoError(t, err)
	require.Nil(t, res[0].Err)
	require.Len(t, res[0].TargetID, 36, "a uuid id comes back as text")

	var got struct {
		exact, big, ratio, doc, plain, at, wall, day, tags, label, ref string
		flag                                                           bool
	}
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT exact::text, big::text, ratio::text, doc::text, plain::text,
		to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), wall::text, day::text, tags::text, label, ref::text, flag
		FROM things WHERE id = $1`, res[0].TargetID).Scan(
		&got.exact, &got.big, &got.ratio, &got.doc, &got.plain, &got.at, &got.wall, &got.day, &got.tags, &got.label, &got.ref, &got.flag))
	require.Equal(t, "123456789012345678901234567890.000000000000000000001", got.exact)
	require.Equal(t, "9007199254740993", got.big)
	require.Equal(t, "0.1", got.ratio)
	require.JSONEq(t, `{"a": [1.10, "x", null], "b": {"c": true}}`, got.doc)
	require.JSONEq(t, `["one", 2]`, got.plain)
	require.Equal(t, "2024-02-29 21:59:58.123456", got.at)
	require.Equal(t, "2024-02-29 21:59:58", got.wall, "a timestamp without time zone holds UTC")
	require.Equal(t, "2024-02-29", got.day)
	require.Equal(t, `{a,"b c",ü}`, got.tags)
	require.Equal(t, payload["label"], got.label)
	require.Equal(t, payload["ref"], got.ref)
	require.True(t, got.flag)

	typ, err := b.target.IDType(ctx, "things")
	require.NoError(t, err)
	require.Equal(t, "uuid", typ)

	// Updates convert the same way, and address the row by its uuid.
	res, err = b.target.Write(ctx, "things", []connector.Change{{Op: connector.OpUpdate, TargetID: res[0].TargetID,
		Payload: map[string]any{"exact": json.Number("-1E-30"), "doc": nil}}})
	require.NoError(t, err)
	require.Nil(t, res[0].Err)
	var exact string
	var docNull bool
	require.NoError(t, b.admin.QueryRow(ctx, "SELECT exact::text, doc IS NULL FROM things WHERE id = $1", res[0].TargetID).Scan(&exact, &docNull))
	require.Equal(t, "-0.000000000000000000000000000001", exact)
	require.True(t, docNull)
}

func TestRejections(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE contacts (
		id     bigserial PRIMARY KEY,
		email  text NOT NULL UNIQUE,
		age    int CHECK (age >= 0),
		amount numeric(6,2),
		code   varchar(3)
	);
	INSERT INTO contacts (email) VALUES ('taken@example.com')`, postgres.Config{})

	tests := []struct {
		name     string
		change   connector.Change
		class    connector.Class
		contains []string
	}{
		{"unknown column", insertOf(map[string]any{"email": "a@example.com", "nope": 1, "zap": 2}), connector.Rejected,
			[]string{`columns "nope", "zap" do not exist in table public.contacts`}},
		{"not null", insertOf(map[string]any{"age": 3}), connector.Rejected,
			[]string{"insert into public.contacts", `null value in column "email"`, "23502"}},
		{"unique", insertOf(map[string]any{"email": "taken@example.com"}), connector.Rejected,
			[]string{"duplicate key", "Key (email)=(taken@example.com) already exists", "23505"}},
		{"check", insertOf(map[string]any{"email": "b@example.com", "age": -1}), connector.Rejected,
			[]string{"contacts_age_check", "23514"}},
		{"bad integer", insertOf(map[string]any{"email": "c@example.com", "age": "old"}), connector.Rejected,
			[]string{"invalid input syntax for type integer", "22P02"}},
		{"numeric overflow", insertOf(map[string]any{"email": "d@example.com", "amount": json.Number("123456.7")}), connector.Rejected,
			[]string{"numeric field overflow", "22003"}},
		{"too long", insertOf(map[string]any{"email": "e@example.com", "code": "abcd"}), connector.Rejected,
			[]string{"too long", "22001"}},
		{"NaN", insertOf(map[string]any{"email": "f@example.com", "age": math.NaN()}), connector.Rejected,
			[]string{"encoding the payload"}},
		{"nul byte", insertOf(map[string]any{"email": "g\x00@example.com"}), connector.Rejected,
			[]string{"22P05"}},
		{"update of missing id", connector.Change{Op: connector.OpUpdate, TargetID: "424242", Payload: map[string]any{"age": 1}}, connector.NotFound,
			[]string{"update of public.contacts id 424242"}},
		{"empty update of missing id", connector.Change{Op: connector.OpUpdate, TargetID: "424242"}, connector.NotFound, nil},
		{"update without id", connector.Change{Op: connector.OpUpdate, Payload: map[string]any{"age": 1}}, connector.Rejected,
			[]string{"needs a target id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := b.target.Write(context.Background(), "contacts", []connector.Change{tc.change})
			require.NoError(t, err, "a bad record is not a failed call")
			require.True(t, res[0].Done)
			require.NotNil(t, res[0].Err)
			require.Equal(t, tc.class, res[0].Err.Class, "error: %v", res[0].Err)
			for _, s := range tc.contains {
				require.Contains(t, res[0].Err.Error(), s)
			}
		})
	}
}

func TestNewColumnIsSeenWithoutRestart(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE notes (id serial PRIMARY KEY, body text)`, postgres.Config{})
	ctx := context.Background()
	res, err := b.target.Write(ctx, "notes", []connector.Change{insertOf(map[string]any{"body": "one"})})
	require.NoError(t, err)
	require.Nil(t, res[0].Err)

	_, err = b.admin.Exec(ctx, "ALTER TABLE notes ADD COLUMN color text")
	require.NoError(t, err)
	res, err = b.target.Write(ctx, "notes", []connector.Change{insertOf(map[string]any{"body": "two", "color": "red"})})
	require.NoError(t, err)
	require.Nil(t, res[0].Err, "the column cache is refreshed when a key is unknown")

	_, err = b.admin.Exec(ctx, "ALTER TABLE notes DROP COLUMN color")
	require.NoError(t, err)
	res, err = b.target.Write(ctx, "notes", []connector.Change{insertOf(map[string]any{"body": "three", "color": "blue"})})
	require.NoError(t, err)
	require.NotNil(t, res[0].Err)
	require.Equal(t, connector.Rejected, res[0].Err.Class)
	require.Contains(t, res[0].Err.Error(), "color")
	res, err = b.target.Write(ctx, "notes", []connector.Change{insertOf(map[string]any{"body": "four", "color": "blue"})})
	require.NoError(t, err)
	require.Contains(t, res[0].Err.Error(), `column "color" does not exist in table public.notes`)
}

func TestObjectsResolveToTables(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewEmptyURL(t)
	admin := dbtest.Open(t, dbURL)
	ctx := context.Background()
	_, err := admin.Exec(ctx, `CREATE SCHEMA crm;
		CREATE TABLE crm.deals (deal_id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title text);
		CREATE TABLE crm.people (id text PRIMARY KEY, name text);
		CREATE TABLE public.people (id int PRIMARY KEY, name text)`)
	require.NoError(t, err)

	tests := []struct {
		name   string
		cfg    postgres.Config
		object string
		table  string
		idType string
	}{
		{"schema setting", postgres.Config{Schema: "crm", IDColumn: "deal_id"}, "deals", "crm.deals", "integer"},
		{"qualified object name", postgres.Config{IDColumn: "deal_id"}, "crm.deals", "crm.deals", "integer"},
		{"table override", postgres.Config{Objects: map[string]postgres.Object{"opportunities": {Table: "crm.deals", IDColumn: "deal_id"}}}, "opportunities", "crm.deals", "integer"},
		{"default schema", postgres.Config{}, "people", "public.people", "integer"},
		{"other schema", postgres.Config{Schema: "crm"}, "people", "crm.people", "text"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.URL = dbURL
			target := newTarget(t, tc.cfg)
			typ, err := target.IDType(ctx, tc.object)
			require.NoError(t, err)
			require.Equal(t, tc.idType, typ)
			field := "name"
			if tc.table == "crm.deals" {
				field = "title"
			}
			payload := map[string]any{field: tc.name}
			if typ != "integer" || tc.table == "public.people" {
				payload["id"] = fmt.Sprint(len(tc.name)) // text or int ids given by the writer
			}
			res, err := target.Write(ctx, tc.object, []connector.Change{insertOf(payload)})
			require.NoError(t, err)
			require.Nil(t, res[0].Err)
			var n int
			require.NoError(t, admin.QueryRow(ctx, "SELECT count(*) FROM "+tc.table+" WHERE "+field+" = $1", tc.name).Scan(&n))
			require.Equal(t, 1, n)
		})
	}

	t.Run("missing table", func(t *testing.T) {
		t.Parallel()
		target := newTarget(t, postgres.Config{URL: dbURL})
		res, err := target.Write(ctx, "nothing_here", []connector.Change{insertOf(map[string]any{"a": 1})})
		require.ErrorContains(t, err, "table public.nothing_here (object nothing_here) does not exist")
		require.False(t, res[0].Done)
	})
}

func TestFind(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE people (id bigserial PRIMARY KEY, email text, city text, score numeric);
		INSERT INTO people (email, city, score) VALUES
			('a@example.com', 'Oslo', 1.50), ('b@example.com', 'Oslo', NULL), ('c@example.com', NULL, 3)`, postgres.Config{})
	ctx := context.Background()

	tests := []struct {
		name   string
		match  map[string]any
		emails []string
		err    string
	}{
		{"one field", map[string]any{"email": "b@example.com"}, []string{"b@example.com"}, ""},
		{"two fields", map[string]any{"city": "Oslo", "score": json.Number("1.5")}, []string{"a@example.com"}, ""},
		{"null", map[string]any{"city": nil}, []string{"c@example.com"}, ""},
		{"none", map[string]any{"email": "zz@example.com"}, nil, ""},
		{"unknown field", map[string]any{"mail": "a"}, nil, `column "mail" does not exist in table public.people`},
		{"no field", map[string]any{}, nil, "at least one field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			found, err := b.target.Find(ctx, "people", tc.match)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			var emails []string
			for _, f := range found {
				emails = append(emails, f["email"].(string))
				require.IsType(t, "", f["id"], "ids are text")
			}
			require.ElementsMatch(t, tc.emails, emails)
		})
	}

	found, err := b.target.Find(ctx, "people", map[string]any{"email": "a@example.com"})
	require.NoError(t, err)
	require.Equal(t, json.Number("1.50"), found[0]["score"], "numerics keep their digits")
}

func TestUpdateSurvivesLostConnections(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE counters (id int PRIMARY KEY, n int); INSERT INTO counters VALUES (1, 0)`,
		postgres.Config{Concurrency: 2})
	ctx := context.Background()
	update := func(n int) connector.Result {
		res, err := b.target.Write(ctx, "counters", []connector.Change{
			{Op: connector.OpUpdate, TargetID: "1", Payload: map[string]any{"n": n}},
		})
		require.NoError(t, err)
		return res[0]
	}
	require.Nil(t, update(1).Err)

	// Kill every connection of the target's pool, as a failover would.
	_, err := b.admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	require.NoError(t, err)
	r := update(2)
	require.Nil(t, r.Err, "an update is retried on a fresh connection")
	var n int
	require.NoError(t, b.admin.QueryRow(ctx, "SELECT n FROM counters WHERE id = 1").Scan(&n))
	require.Equal(t, 2, n)
}

func TestConcurrentWritesAllLand(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE events (id bigserial PRIMARY KEY, seq int UNIQUE)`, postgres.Config{Concurrency: 6})
	changes := make([]connector.Change, 300)
	for i := range changes {
		changes[i] = insertOf(map[string]any{"seq": i})
	}
	res, err := b.target.Write(context.Background(), "events", changes)
	require.NoError(t, err)
	for i, r := range res {
		require.Nil(t, r.Err)
		var seq int
		require.NoError(t, b.admin.QueryRow(context.Background(), "SELECT seq FROM events WHERE id = $1::bigint", r.TargetID).Scan(&seq))
		require.Equal(t, i, seq, "result %d is the id of change %d", i, i)
	}
}

func insertOf(payload map[string]any) connector.Change {
	return connector.Change{Op: connector.OpInsert, SourceID: "src", Payload: payload}
}
