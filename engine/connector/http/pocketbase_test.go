package httptarget_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/conformance"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
	"github.com/ferry-sync/ferry/engine/connector/pbtest"
)

const pbEmail, pbPassword = "admin@example.com", "pb-pa55word-xyz"

func pocketBase(t testing.TB, opts pbtest.Options) *pbtest.Server {
	opts.Email, opts.Password = pbEmail, pbPassword
	if opts.Collections == nil {
		opts.Collections = map[string]pbtest.Collection{"contacts": {
			Required:  []string{"email", "name"},
			Unique:    []string{"email"},
			Email:     []string{"email"},
			MaxLength: map[string]int{"name": 255},
		}}
	}
	return pbtest.New(t, opts)
}

func pbEnv(name string) (string, bool) {
	v, ok := map[string]string{"PB_EMAIL": pbEmail, "PB_PASSWORD": pbPassword}[name]
	return v, ok
}

// pbConfig is the PocketBase example of the README: a superuser login whose
// token goes without "Bearer", 400s about the token taken as auth errors,
// field errors from "data", lookups by filter, client-chosen ids, and
// batches through /api/batch (upserts by id) that name the failing request.
func pbConfig(srv *pbtest.Server, batchSize int) httptarget.Config {
	obj := httptarget.Object{
		Insert: httptarget.Endpoint{Path: "/api/collections/contacts/records"},
		Update: httptarget.Endpoint{Path: "/api/collections/contacts/records/{id}"},
		Lookup: &httptarget.Lookup{
			Path: "/api/collections/contacts/records",
			Query: map[string]string{
				"filter":  `{{range $i, $f := fields}}{{if $i}} && {{end}}{{$f}}={{value $f | quote}}{{end}}`,
				"perPage": "5",
			},
			ResultsPath: "items",
		},
		ClientID: &httptarget.ClientID{Field: "id",
			Exists: &httptarget.Answer{Status: []int{400}, Field: "id", Code: "validation_pk_invalid"}},
	}
	if batchSize > 0 {
		obj.Batch = &httptarget.Batch{
			Size: batchSize,
			Insert: &httptarget.BatchEndpoint{Path: "/api/batch", Body: map[string]any{"requests": "{{items}}"},
				Item: map[string]any{"method": "PUT", "url": "/api/collections/contacts/records", "body": "{{record}}"}},
			Update: &httptarget.BatchEndpoint{Path: "/api/batch", Body: map[string]any{"requests": "{{items}}"},
				Item: map[string]any{"method": "PATCH", "url": "/api/collections/contacts/records/{{id}}", "body": "{{record}}"}},
			ResultsPath: ".",
			IDPath:      "body.id",
			Failures:    &httptarget.BatchFailures{Path: "data.requests", Body: "response"},
		}
	}
	return httptarget.Config{
		BaseURL: srv.URL,
		Auth: httptarget.Auth{Type: "login", UsernameEnv: "PB_EMAIL", PasswordEnv: "PB_PASSWORD", Scheme: "none",
			Login: &httptarget.Login{Path: "/api/collections/_superusers/auth-with-password",
				Body: map[string]any{"identity": "{{username}}", "password": "{{password}}"}}},
		AuthError:   &httptarget.Answer{Status: []int{400}, MessageContains: "token"},
		Errors:      &httptarget.FieldErrors{Path: "data"},
		Env:         pbEnv,
		BackoffBase: httptarget.Duration(5 * time.Millisecond),
		BackoffMax:  httptarget.Duration(100 * time.Millisecond),
		Objects:     map[string]httptarget.Object{"contacts": obj},
	}
}

func person(i int) map[string]any {
	return map[string]any{"email": fmt.Sprintf("person%d@example.com", i), "name": fmt.Sprintf("Person %d", i)}
}

func inserts(payloads ...map[string]any) []connector.Change {
	out := make([]connector.Change, len(payloads))
	for i, p := range payloads {
		out[i] = connector.Change{Op: connector.OpInsert, SourceID: fmt.Sprint(p["email"]), Payload: p}
	}
	return out
}

// The four failures of the issue, each with its field and reason.
func TestPocketBaseFieldErrorsSayWhichFieldAndWhy(t *testing.T) {
	t.Parallel()
	bad := []struct {
		name    string
		payload map[string]any
		want    string
	}{
		{"duplicate email", map[string]any{"email": "taken@example.com", "name": "Dup"}, "email: Value must be unique. (validation_not_unique)"},
		{"missing name", map[string]any{"email": "noname@example.com"}, "name: Cannot be blank. (validation_required)"},
		{"name over 255", map[string]any{"email": "long@example.com", "name": strings.Repeat("x", 256)}, "name: Must be less than 255 character(s). (validation_max_text_constraint)"},
		{"invalid email", map[string]any{"email": "not-an-email", "name": "Bad"}, "email: Must be a valid email address. (validation_is_email)"},
	}
	for _, mode := range []struct {
		name  string
		batch int
	}{{"single", 0}, {"batch", 50}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			srv := pocketBase(t, pbtest.Options{BatchMax: 50})
			srv.Put(t, "contacts", map[string]any{"email": "taken@example.com", "name": "First"})
			target := newTarget(t, pbConfig(srv, mode.batch))
			payloads := []map[string]any{person(1)}
			for _, b := range bad {
				payloads = append(payloads, b.payload)
			}
			payloads = append(payloads, person(2))
			res, err := target.Write(context.Background(), "contacts", inserts(payloads...))
			require.NoError(t, err)
			require.Nil(t, res[0].Err)
			require.Nil(t, res[len(res)-1].Err)
			for i, b := range bad {
				r := res[i+1]
				require.NotNil(t, r.Err, b.name)
				require.Equal(t, connector.Rejected, r.Err.Class, b.name)
				require.Equal(t, 400, r.Err.Status, b.name)
				require.True(t, strings.HasSuffix(r.Err.Message, ": "+b.want), "%s: %q", b.name, r.Err.Message)
				require.NotContains(t, r.Err.Message, "Failed to create record.", "the field's reason, not the generic message")
				require.Contains(t, r.Err.Body, `"data"`, "the answer is kept for the engine to store")
				require.LessOrEqual(t, len(r.Err.Body), connector.MaxErrorBody)
				conformance.RequireNoSecret(t, r.Err.Error()+r.Err.Body, target.Secrets())
			}
			require.Equal(t, 3, srv.Count("contacts"))
		})
	}
}

func TestPocketBaseBatchSplitsAtTheFailingIndex(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		bad      []int
		requests int // batch requests
	}{
		{"no bad record", nil, 1},
		{"one bad record", []int{63}, 2},
		{"three bad records", []int{0, 50, 99}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := pocketBase(t, pbtest.Options{BatchMax: 100})
			target := newTarget(t, pbConfig(srv, 100))
			payloads := make([]map[string]any, 100)
			for i := range payloads {
				payloads[i] = person(i)
			}
			for _, i := range tc.bad {
				payloads[i]["email"] = fmt.Sprintf("bad-%d", i)
			}
			res, err := target.Write(context.Background(), "contacts", inserts(payloads...))
			require.NoError(t, err)
			for i, r := range res {
				if contains(tc.bad, i) {
					require.NotNil(t, r.Err, "change %d", i)
					require.Contains(t, r.Err.Message, "email: Must be a valid email address. (validation_is_email)")
					continue
				}
				require.Nil(t, r.Err, "change %d", i)
				rec, ok := srv.Record("contacts", r.TargetID)
				require.True(t, ok)
				require.Equal(t, payloads[i]["email"], rec["email"])
			}
			require.Equal(t, 100-len(tc.bad), srv.Count("contacts"))
			require.Equal(t, 1+tc.requests, srv.Requests(), "a login, then the batches")
		})
	}
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// A target session that outlives three token lifetimes keeps writing:
// the token is renewed before its JWT exp, or when a 400 "token" answer
// (auth_error) says it is no longer valid; a refusal after a renewal
// stops the call as Auth.
func TestPocketBaseLoginIsRenewed(t *testing.T) {
	t.Parallel()
	srv := pocketBase(t, pbtest.Options{TokenTTL: time.Second})
	target := newTarget(t, pbConfig(srv, 0))
	var renewed []string
	target.WatchSecrets(func(s ...string) { renewed = append(renewed, s...) })
	ctx := context.Background()
	start := time.Now()
	written := 0
	for time.Since(start) < 3500*time.Millisecond {
		res, err := target.Write(ctx, "contacts", inserts(person(written)))
		require.NoError(t, err)
		require.Nil(t, res[0].Err, "after %s", time.Since(start))
		written++
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, written, srv.Count("contacts"))
	require.GreaterOrEqual(t, srv.Logins(), 3, "a token lives a second at most")
	require.NotEmpty(t, renewed, "every new token is reported for redaction")

	// A server restart invalidates the token: its 400 is taken as auth, the
	// target logs in again and the write goes through.
	srv.ExpireTokens()
	logins := srv.Logins()
	res, err := target.Write(ctx, "contacts", inserts(person(1000)))
	require.NoError(t, err)
	require.Nil(t, res[0].Err)
	require.Equal(t, logins+1, srv.Logins())

	// Refused even with a fresh token: the call stops as Auth.
	srv.RejectTokens(true)
	res, err = target.Write(ctx, "contacts", inserts(person(1001), person(1002), person(1003)))
	require.Error(t, err)
	require.Equal(t, connector.Auth, connector.ClassOf(err))
	require.Contains(t, err.Error(), "The request requires valid record authorization token.")
	conformance.RequireNoSecret(t, err.Error(), append(target.Secrets(), renewed...))
	done := 0
	for _, r := range res {
		if r.Done {
			done++
			require.Equal(t, connector.Auth, r.Err.Class)
		}
	}
	require.Equal(t, 1, done, "the changes after the refusal are not sent")
}

func TestPocketBaseWrongPasswordStopsTheCall(t *testing.T) {
	t.Parallel()
	srv := pocketBase(t, pbtest.Options{})
	cfg := pbConfig(srv, 0)
	cfg.Env = func(name string) (string, bool) {
		if name == "PB_PASSWORD" {
			return "wrong-password-123", true
		}
		return pbEnv(name)
	}
	target := newTarget(t, cfg)
	res, err := target.Write(context.Background(), "contacts", inserts(person(1), person(2)))
	require.Error(t, err)
	require.Equal(t, connector.Auth, connector.ClassOf(err))
	require.Contains(t, err.Error(), "logging in (POST "+srv.URL+"/api/collections/_superusers/auth-with-password): the credentials were refused: Failed to authenticate.")
	conformance.RequireNoSecret(t, err.Error(), []string{"wrong-password-123", pbEmail})
	for _, r := range res {
		require.False(t, r.Done && r.Err == nil)
	}
	require.Zero(t, srv.Count("contacts"))
}

// With client-chosen ids an insert whose answer was lost is sent again:
// the retry meets "already exists" (or the upsert) and no record is
// written twice.
func TestPocketBaseClientIDsMakeRetriesSafe(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name  string
		batch int
	}{{"single", 0}, {"batch", 20}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			srv := pocketBase(t, pbtest.Options{BatchMax: 50})
			cfg := pbConfig(srv, mode.batch)
			cfg.Timeout = httptarget.Duration(300 * time.Millisecond)
			target := newTarget(t, cfg)
			ctx := connector.WithIdempotencyScope(context.Background(), "contacts_sync")
			payloads := make([]map[string]any, 20)
			for i := range payloads {
				payloads[i] = person(i)
			}
			changes := inserts(payloads...)
			// The first write logs in; the next one hangs after applying.
			_, err := target.Write(ctx, "contacts", changes[:1])
			require.NoError(t, err)
			srv.HangNext(1)
			res, err := target.Write(ctx, "contacts", changes)
			require.NoError(t, err)
			ids := map[string]bool{}
			for i, r := range res {
				require.Nil(t, r.Err, "change %d", i)
				require.Len(t, r.TargetID, 15)
				ids[r.TargetID] = true
			}
			require.Len(t, ids, 20)
			require.Equal(t, 20, srv.Count("contacts"), "no duplicates")

			// The engine sending them again (a retry after an ambiguous
			// answer) finds the same records.
			again, err := target.Write(ctx, "contacts", changes)
			require.NoError(t, err)
			for i, r := range again {
				require.Nil(t, r.Err, "change %d", i)
				require.Equal(t, res[i].TargetID, r.TargetID)
			}
			require.Equal(t, 20, srv.Count("contacts"), "no duplicates")

			// Another sync (another scope) writing the same source ids makes
			// its own records.
			other, err := target.Write(connector.WithIdempotencyScope(context.Background(), "other_sync"), "contacts",
				[]connector.Change{{Op: connector.OpInsert, SourceID: changes[0].SourceID, Payload: map[string]any{"email": "x@example.com", "name": "X"}}})
			require.NoError(t, err)
			require.Nil(t, other[0].Err)
			require.False(t, ids[other[0].TargetID])
		})
	}
}

// Lookups built for PocketBase's filter find the record, with values quoted
// and escaped, and refuse records that only look alike.
func TestPocketBaseLookups(t *testing.T) {
	t.Parallel()
	srv := pocketBase(t, pbtest.Options{})
	tricky := `o'brien\x@example.com`
	id := srv.Put(t, "contacts", map[string]any{"email": tricky, "name": "O'Brien"})
	srv.Put(t, "contacts", map[string]any{"email": "ann@example.com.au", "name": "Ann AU"})
	target := newTarget(t, pbConfig(srv, 0))
	ctx := context.Background()

	found, err := target.Find(ctx, "contacts", map[string]any{"email": tricky})
	require.NoError(t, err)
	require.Len(t, found, 1)
	require.Equal(t, id, found[0]["id"])

	found, err = target.Find(ctx, "contacts", map[string]any{"email": tricky, "name": "O'Brien"})
	require.NoError(t, err)
	require.Len(t, found, 1, "two fields, joined with &&")

	found, err = target.Find(ctx, "contacts", map[string]any{"email": "nobody@example.com"})
	require.NoError(t, err)
	require.Empty(t, found)

	// A lookup that loosens the filter ("contains") gets a near miss back:
	// it is not taken for a match.
	loose := pbConfig(srv, 0)
	obj := loose.Objects["contacts"]
	obj.Lookup = &httptarget.Lookup{Path: "/api/collections/contacts/records", ResultsPath: "items",
		Query: map[string]string{"filter": `email~{{value "email" | quote}}`}}
	loose.Objects = map[string]httptarget.Object{"contacts": obj}
	_, err = newTarget(t, loose).Find(ctx, "contacts", map[string]any{"email": "ann@example.com"})
	var mismatch *connector.LookupMismatchError
	require.ErrorAs(t, err, &mismatch, "ann@example.com.au is not ann@example.com")

	// The old ?email=x lookup: PocketBase ignores the parameter and lists
	// everything; none of it is taken for a match.
	legacy := pbConfig(srv, 0)
	obj.Lookup = &httptarget.Lookup{Path: "/api/collections/contacts/records", ResultsPath: "items"}
	legacy.Objects = map[string]httptarget.Object{"contacts": obj}
	_, err = newTarget(t, legacy).Find(ctx, "contacts", map[string]any{"email": "ann@example.com"})
	require.ErrorAs(t, err, &mismatch)
	require.Equal(t, 2, mismatch.Returned)
}

// PocketBase's limiter sends no Retry-After and refills only after a quiet
// interval: the target waits it out within its retry budget, and every
// record is written.
func TestPocketBaseRateLimitWithoutRetryAfter(t *testing.T) {
	t.Parallel()
	srv := pocketBase(t, pbtest.Options{RateLimit: &pbtest.RateLimit{MaxRequests: 10, Interval: 300 * time.Millisecond}})
	target := newTarget(t, pbConfig(srv, 0))
	payloads := make([]map[string]any, 40)
	for i := range payloads {
		payloads[i] = person(i)
	}
	res, err := target.Write(context.Background(), "contacts", inserts(payloads...))
	require.NoError(t, err)
	for i, r := range res {
		require.Nil(t, r.Err, "change %d", i)
	}
	require.Equal(t, 40, srv.Count("contacts"))
	require.Positive(t, srv.Limited(), "the limit was met")
	t.Logf("%d requests refused with 429", srv.Limited())
}
