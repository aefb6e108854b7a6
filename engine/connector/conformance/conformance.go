// Package conformance is the one test suite every connector kind runs, so
// that the engine can rely on the same behaviour from all of them: ids on
// insert, exact values stored, updates in place, NotFound, one bad record
// rejected alone, results in input order, prompt cancellation, auth failures
// that stop the call, lookups, and errors that never quote the target's
// secrets.
//
// The suite asserts what the target really holds (through Env.Read and
// Env.Count), not only what Write returns. A kind's test calls Run with a
// Harness whose Setup builds a fresh target whose object accepts the fields
// of Record:
//
//	email         text, unique, required (the invalid record lacks it)
//	name          text (unicode)
//	amount        numeric, unconstrained (40 significant digits)
//	attrs         json object (nested objects, arrays, numerics)
//	note          text, nullable (sent as null)
//	active        boolean
//	signed_up_at  timestamp with time zone (microsecond precision)
package conformance

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
)

// Harness tells the suite how to test one kind.
type Harness struct {
	// Setup returns a fresh target and what the cases need, for one subtest.
	// It registers its own cleanups on t. Setup may be called in parallel.
	Setup func(t *testing.T) Env
}

// Env is one subtest's target and the means to check it.
type Env struct {
	Target connector.Target
	// Object is the object the suite writes; it must accept Record's fields.
	Object string
	// Valid returns the i-th valid payload, distinct for every i; nil means
	// Record.
	Valid func(i int) map[string]any
	// Invalid is a payload the target must reject, and InvalidMessage a
	// text the Rejected error's message must contain (e.g. "email").
	Invalid        map[string]any
	InvalidMessage string
	// Read returns what the target holds under id, as JSON values (numbers
	// as json.Number, timestamps as RFC 3339 text or time.Time), with or
	// without "id"; nil and no error when there is no such record.
	Read func(ctx context.Context, id string) (map[string]any, error)
	// Count returns how many records the object holds.
	Count func(ctx context.Context) (int, error)
	// MissingID is a well-formed id that no record has.
	MissingID string
	// BadAuth returns a target on the same object whose credentials or
	// permissions the target refuses.
	BadAuth func(t *testing.T) connector.Target
}

// Record returns the i-th standard record: exact numerics, a nested object,
// unicode, a null, a bool and a timestamp outside UTC.
func Record(i int) map[string]any {
	return map[string]any{
		"email":  fmt.Sprintf("person%d@example.com", i),
		"name":   fmt.Sprintf("Zoë Ångström 東京 🚢 \"quoted\" <b>&amp; #%d", i),
		"amount": json.Number(fmt.Sprintf("12345678901234567890.1234567890123456789%d", i%10)),
		"attrs": map[string]any{
			"tier":   "gold",
			"tags":   []any{"a", "b", json.Number("3")},
			"score":  json.Number("1.50"),
			"nested": map[string]any{"ok": true, "none": nil},
		},
		"note":         nil,
		"active":       i%2 == 0,
		"signed_up_at": time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.FixedZone("UTC+2", 2*60*60)),
	}
}

// hang is how long the suite waits for a Write before calling it stuck: not
// a speed requirement, only a guard against a test that never ends.
const hang = 30 * time.Second

// Run runs every case against the harness.
func Run(t *testing.T, h Harness) {
	cases := []struct {
		name string
		run  func(t *testing.T, env Env)
	}{
		{"InsertStoresExactValues", testInsert},
		{"UpdateChangesRecordAndKeepsID", testUpdate},
		{"UpdateOfMissingIDIsNotFound", testUpdateMissing},
		{"InvalidRecordIsRejectedAlone", testInvalidInBatch},
		{"ResultsInInputOrder", testOrder},
		{"CancelledContextStopsPromptly", testCancelled},
		{"CancelledMidCallReportsHonestly", testCancelledMidCall},
		{"AuthFailureStopsTheCall", testAuth},
		{"FinderFindsByField", testFinder},
		{"IDTyper", testIDTyper},
		{"SecretsStayOutOfErrors", testSecrets},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := h.Setup(t)
			if env.Valid == nil {
				env.Valid = Record
			}
			tc.run(t, env)
		})
	}
}

func testInsert(t *testing.T, env Env) {
	ctx := context.Background()
	rec := Record(1)
	res := write(t, ctx, env.Target, env.Object, insert(rec))
	id := requireDone(t, res[0])

	stored := read(t, env, id)
	requireStored(t, rec, stored)
	requireCount(t, env, 1)
}

func testUpdate(t *testing.T, env Env) {
	ctx := context.Background()
	rec := env.Valid(1)
	id := requireDone(t, write(t, ctx, env.Target, env.Object, insert(rec))[0])

	patch := map[string]any{
		"name":   "Renamed ✓ ünïcödé",
		"amount": json.Number("-0.000000000000000000000000000001"),
		"attrs":  map[string]any{"tier": "platinum", "list": []any{}},
		"active": false,
	}
	res := write(t, ctx, env.Target, env.Object, []connector.Change{{Op: connector.OpUpdate, SourceID: "s1", TargetID: id, Payload: patch}})
	require.Equal(t, id, requireDone(t, res[0]), "an update keeps the id")

	stored := read(t, env, id)
	requireStored(t, patch, stored)
	require.Equal(t, canonical(t, rec["email"]), canonical(t, stored["email"]), "fields not in the update are kept")
	requireCount(t, env, 1)
}

func testUpdateMissing(t *testing.T, env Env) {
	ctx := context.Background()
	res := write(t, ctx, env.Target, env.Object, []connector.Change{{
		Op: connector.OpUpdate, SourceID: "s1", TargetID: env.MissingID, Payload: map[string]any{"name": "nobody"},
	}})
	require.True(t, res[0].Done)
	require.NotNil(t, res[0].Err, "updating a missing id must fail")
	require.Equal(t, connector.NotFound, res[0].Err.Class, "error: %v", res[0].Err)
	requireCount(t, env, 0)
}

func testInvalidInBatch(t *testing.T, env Env) {
	ctx := context.Background()
	const bad = 2
	payloads := make([]map[string]any, 5)
	for i := range payloads {
		payloads[i] = env.Valid(i)
	}
	payloads[bad] = env.Invalid
	res := write(t, ctx, env.Target, env.Object, insert(payloads...))

	for i, r := range res {
		if i == bad {
			require.True(t, r.Done, "the invalid record was attempted")
			require.NotNil(t, r.Err, "the invalid record must fail")
			require.Equal(t, connector.Rejected, r.Err.Class, "error: %v", r.Err)
			require.NotEmpty(t, r.Err.Message)
			require.Contains(t, r.Err.Error(), env.InvalidMessage, "the message says what is wrong")
			continue
		}
		requireStored(t, payloads[i], read(t, env, requireDone(t, r)))
	}
	requireCount(t, env, len(payloads)-1)
}

func testOrder(t *testing.T, env Env) {
	ctx := context.Background()
	const n = 40
	payloads := make([]map[string]any, n)
	for i := range payloads {
		payloads[i] = env.Valid(100 + i)
	}
	res := write(t, ctx, env.Target, env.Object, insert(payloads...))
	ids := make([]string, n)
	seen := make(map[string]bool)
	for i, r := range res {
		ids[i] = requireDone(t, r)
		require.False(t, seen[ids[i]], "ids are distinct")
		seen[ids[i]] = true
		requireStored(t, payloads[i], read(t, env, ids[i]))
	}

	// A mixed batch: updates, inserts and a failure keep their places.
	newA, newB := env.Valid(200), env.Valid(201)
	mixed := []connector.Change{
		{Op: connector.OpUpdate, SourceID: "u1", TargetID: ids[1], Payload: map[string]any{"name": "first update"}},
		{Op: connector.OpInsert, SourceID: "i1", Payload: newA},
		{Op: connector.OpUpdate, SourceID: "u2", TargetID: env.MissingID, Payload: map[string]any{"name": "missing"}},
		{Op: connector.OpInsert, SourceID: "i2", Payload: newB},
		{Op: connector.OpUpdate, SourceID: "u3", TargetID: ids[0], Payload: map[string]any{"name": "second update"}},
	}
	res = write(t, ctx, env.Target, env.Object, mixed)
	require.Equal(t, ids[1], requireDone(t, res[0]))
	requireStored(t, newA, read(t, env, requireDone(t, res[1])))
	require.NotNil(t, res[2].Err)
	require.Equal(t, connector.NotFound, res[2].Err.Class)
	requireStored(t, newB, read(t, env, requireDone(t, res[3])))
	require.Equal(t, ids[0], requireDone(t, res[4]))
	require.Equal(t, "first update", read(t, env, ids[1])["name"])
	require.Equal(t, "second update", read(t, env, ids[0])["name"])
	requireCount(t, env, n+2)
}

func testCancelled(t *testing.T, env Env) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := writeNoCheck(t, ctx, env.Target, env.Object, insert(env.Valid(1), env.Valid(2), env.Valid(3)))
	require.Error(t, err, "a cancelled context fails the call")
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, res, 3, "one result per change, even on error")
	for _, r := range res {
		require.False(t, r.Done, "nothing is attempted under a cancelled context")
	}
	requireCount(t, env, 0)
}

func testCancelledMidCall(t *testing.T, env Env) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 300
	payloads := make([]map[string]any, n)
	for i := range payloads {
		payloads[i] = env.Valid(1000 + i)
	}
	time.AfterFunc(5*time.Millisecond, cancel)
	res, err := writeNoCheck(t, ctx, env.Target, env.Object, insert(payloads...))
	require.Len(t, res, n)
	if err == nil {
		t.Log("the call finished before the cancellation")
	} else {
		require.ErrorIs(t, err, context.Canceled)
	}
	// Every success is real; nothing is stored that the results do not
	// account for (an Ambiguous insert may or may not be stored).
	successes, ambiguous := 0, 0
	for i, r := range res {
		switch {
		case r.Done && r.Err == nil:
			successes++
			requireStored(t, payloads[i], read(t, env, r.TargetID))
		case r.Done && r.Err.Class == connector.Ambiguous:
			ambiguous++
		case r.Done:
			t.Fatalf("change %d: only successes and Ambiguous inserts are expected, got %v", i, r.Err)
		}
	}
	count, cerr := env.Count(context.Background())
	require.NoError(t, cerr)
	t.Logf("after cancelling: %d done, %d ambiguous, %d not attempted, %d stored", successes, ambiguous, n-successes-ambiguous, count)
	require.GreaterOrEqual(t, count, successes)
	require.LessOrEqual(t, count, successes+ambiguous, "records stored that no result accounts for")
}

func testAuth(t *testing.T, env Env) {
	if env.BadAuth == nil {
		t.Skip("the harness has no way to make credentials fail")
	}
	bad := env.BadAuth(t)
	ctx := context.Background()
	res, err := writeNoCheck(t, ctx, bad, env.Object, insert(env.Valid(1), env.Valid(2), env.Valid(3), env.Valid(4)))
	require.Error(t, err, "an auth failure fails the whole call")
	require.Equal(t, connector.Auth, connector.ClassOf(err), "error: %v", err)
	require.Len(t, res, 4)
	for i, r := range res {
		require.False(t, r.Done && r.Err == nil, "change %d reported done under refused credentials", i)
		if r.Done {
			require.Equal(t, connector.Auth, r.Err.Class)
		}
	}
	requireCount(t, env, 0)
}

func testFinder(t *testing.T, env Env) {
	finder, ok := env.Target.(connector.Finder)
	if !ok {
		t.Skip("the kind does not implement Finder")
	}
	ctx := context.Background()
	rec := Record(7)
	id := requireDone(t, write(t, ctx, env.Target, env.Object, insert(Record(6), rec, Record(8)))[1])

	found, err := finder.Find(ctx, env.Object, map[string]any{"email": rec["email"]})
	require.NoError(t, err)
	require.Len(t, found, 1)
	require.Equal(t, id, found[0]["id"], "the id is under \"id\", as text")
	require.Equal(t, rec["email"], found[0]["email"])

	found, err = finder.Find(ctx, env.Object, map[string]any{"email": "nobody@example.com"})
	require.NoError(t, err)
	require.Empty(t, found)
}

func testIDTyper(t *testing.T, env Env) {
	typer, ok := env.Target.(connector.IDTyper)
	if !ok {
		t.Skip("the kind does not implement IDTyper")
	}
	typ, err := typer.IDType(context.Background(), env.Object)
	require.NoError(t, err)
	require.NotEmpty(t, typ)
}

// testSecrets makes a kind that holds secrets (SecretHolder) fail with them
// in hand, the way targets quote back what they refuse: records whose unique
// email is a secret, sent twice, and updates addressed to a secret as the
// id. No error text may hold a secret.
func testSecrets(t *testing.T, env Env) {
	holder, ok := env.Target.(connector.SecretHolder)
	if !ok {
		t.Skip("the kind does not implement SecretHolder")
	}
	secrets := redactable(holder.Secrets())
	if len(secrets) == 0 {
		t.Skip("the target holds no secret (none long enough to redact)")
	}
	ctx := context.Background()
	var changes []connector.Change
	for i, secret := range secrets {
		rec := env.Valid(300 + i)
		rec["email"] = secret
		changes = append(changes,
			connector.Change{Op: connector.OpInsert, SourceID: fmt.Sprintf("first-%d", i), Payload: rec},
			connector.Change{Op: connector.OpInsert, SourceID: fmt.Sprintf("again-%d", i), Payload: maps.Clone(rec)},
			connector.Change{Op: connector.OpUpdate, SourceID: fmt.Sprintf("update-%d", i), TargetID: secret,
				Payload: map[string]any{"name": secret}},
		)
	}
	res, err := writeNoCheck(t, ctx, env.Target, env.Object, changes)
	require.Len(t, res, len(changes))
	if err != nil {
		RequireNoSecret(t, err.Error(), secrets, "the call's error")
	}
	failed := 0
	for i, r := range res {
		if r.Err != nil {
			failed++
			requireNoSecretInError(t, r.Err, secrets, "change %d (%s)", i, changes[i].SourceID)
		}
	}
	require.NotZero(t, failed, "the duplicate emails must fail")

	if finder, ok := env.Target.(connector.Finder); ok {
		// A field named after the secret: a target may say it has none such.
		_, err := finder.Find(ctx, env.Object, map[string]any{secrets[0]: secrets[0]})
		if err != nil {
			RequireNoSecret(t, err.Error(), secrets, "Find's error")
		}
	}

	if env.BadAuth != nil {
		bad := env.BadAuth(t)
		if badHolder, ok := bad.(connector.SecretHolder); ok {
			badSecrets := redactable(badHolder.Secrets())
			res, err := writeNoCheck(t, ctx, bad, env.Object, insert(env.Valid(400)))
			require.Error(t, err, "the refused credentials fail the call")
			RequireNoSecret(t, err.Error(), badSecrets, "the auth failure")
			for _, r := range res {
				if r.Err != nil {
					requireNoSecretInError(t, r.Err, badSecrets, "the refused change")
				}
			}
		}
	}
}

func redactable(secrets []string) []string {
	var out []string
	for _, s := range secrets {
		if utf8.RuneCountInString(s) >= connector.MinSecretLength {
			out = append(out, s)
		}
	}
	return out
}

// requireNoSecretInError checks the texts of a classified error that are
// printed or stored: Error(), Message and the underlying error's Error().
// It does not unwrap further: a redacted error unwraps to the original, for
// errors.Is and errors.As, not for printing.
func requireNoSecretInError(t *testing.T, e *connector.Error, secrets []string, msgAndArgs ...any) {
	t.Helper()
	RequireNoSecret(t, e.Error(), secrets, msgAndArgs...)
	RequireNoSecret(t, e.Message, secrets, msgAndArgs...)
	if e.Err != nil {
		RequireNoSecret(t, e.Err.Error(), secrets, msgAndArgs...)
	}
}

// RequireNoSecret fails the test when text holds one of secrets as it is or
// in a form a target could echo it in: URL-escaped, JSON-escaped, or base64
// (either alphabet; without padding, so that a padded one is caught too).
// Secrets shorter than connector.MinSecretLength are not redacted, so not
// looked for.
func RequireNoSecret(t testing.TB, text string, secrets []string, msgAndArgs ...any) {
	t.Helper()
	for _, secret := range redactable(secrets) {
		quoted, err := json.Marshal(secret)
		require.NoError(t, err)
		forms := map[string]string{
			"as is":          secret,
			"query-escaped":  url.QueryEscape(secret),
			"path-escaped":   url.PathEscape(secret),
			"JSON-escaped":   string(quoted[1 : len(quoted)-1]),
			"base64":         base64.RawStdEncoding.EncodeToString([]byte(secret)),
			"base64 for URL": base64.RawURLEncoding.EncodeToString([]byte(secret)),
		}
		for how, form := range forms {
			if strings.Contains(text, form) {
				require.Fail(t, fmt.Sprintf("a secret (%s) leaked into: %s", how, text), msgAndArgs...)
			}
		}
	}
}

func insert(payloads ...map[string]any) []connector.Change {
	changes := make([]connector.Change, len(payloads))
	for i, p := range payloads {
		changes[i] = connector.Change{Op: connector.OpInsert, SourceID: fmt.Sprintf("src-%d", i), Payload: p}
	}
	return changes
}

// write calls Write, requiring no whole-call error and one result per change.
func write(t *testing.T, ctx context.Context, target connector.Target, object string, changes []connector.Change) []connector.Result {
	t.Helper()
	res, err := writeNoCheck(t, ctx, target, object, changes)
	require.NoError(t, err)
	require.Len(t, res, len(changes))
	return res
}

// writeNoCheck calls Write, failing the test if it does not return.
func writeNoCheck(t *testing.T, ctx context.Context, target connector.Target, object string, changes []connector.Change) ([]connector.Result, error) {
	t.Helper()
	type answer struct {
		res []connector.Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := target.Write(ctx, object, changes)
		done <- answer{res, err}
	}()
	select {
	case a := <-done:
		return a.res, a.err
	case <-time.After(hang):
		t.Fatalf("Write did not return within %s", hang)
		return nil, errors.New("unreachable")
	}
}

func requireDone(t *testing.T, r connector.Result) string {
	t.Helper()
	require.True(t, r.Done, "the change was attempted")
	require.Nil(t, r.Err, "the change succeeded")
	require.NotEmpty(t, r.TargetID, "a target id is reported")
	return r.TargetID
}

func read(t *testing.T, env Env, id string) map[string]any {
	t.Helper()
	rec, err := env.Read(context.Background(), id)
	require.NoError(t, err)
	require.NotNil(t, rec, "the target holds no record %s", id)
	return rec
}

func requireCount(t *testing.T, env Env, want int) {
	t.Helper()
	n, err := env.Count(context.Background())
	require.NoError(t, err)
	require.Equal(t, want, n, "records the target holds")
}

// requireStored checks that every field sent is stored with the same value.
func requireStored(t *testing.T, sent, stored map[string]any) {
	t.Helper()
	for k, want := range sent {
		got, ok := stored[k]
		require.True(t, ok, "field %s is stored", k)
		if wt, isTime := want.(time.Time); isTime {
			require.True(t, wt.Equal(asTime(t, got)), "field %s: sent %s, stored %v", k, wt, got)
			continue
		}
		require.Equal(t, canonical(t, want), canonical(t, got), "field %s", k)
	}
}

func asTime(t *testing.T, v any) time.Time {
	t.Helper()
	switch v := v.(type) {
	case time.Time:
		return v
	case string:
		parsed, err := time.Parse(time.RFC3339Nano, v)
		require.NoError(t, err, "a stored timestamp")
		return parsed
	default:
		t.Fatalf("a timestamp is stored as %T %v", v, v)
		return time.Time{}
	}
}

// canonical is a value as JSON reads it back, numbers as json.Number, so
// that values from different kinds compare exactly.
func canonical(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	require.NoError(t, dec.Decode(&out))
	return out
}
