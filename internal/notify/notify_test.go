package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/notify"
	"github.com/ferry-sync/ferry/queries"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

const (
	hookSecret = "whsec-test-7f3a9c0e5b"
	smtpPass   = "smtp-pass-4d1e8b"
)

// testBundle is one test's database, captured log and environment.
type testBundle struct {
	db   *pgxpool.Pool
	logs *syncBuffer
	env  map[string]string
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	return &testBundle{
		db:   dbtest.NewPool(t),
		logs: &syncBuffer{},
		env:  map[string]string{"HOOK_SECRET": hookSecret},
	}
}

// notifier returns a Notifier with fast retries, closed when t ends.
func (tb *testBundle) notifier(t *testing.T) *notify.Notifier {
	t.Helper()
	n := notify.New(tb.db, notify.Options{
		Env:       func(k string) (string, bool) { v, ok := tb.env[k]; return v, ok },
		Logger:    slog.New(slog.NewTextHandler(tb.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RetryBase: 5 * time.Millisecond,
	})
	t.Cleanup(n.Close)
	return n
}

// insertRun writes a finished run of sync, as the engine would have, and
// returns its id.
func (tb *testBundle) insertRun(t *testing.T, sync, status string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, tb.db.QueryRow(context.Background(),
		`INSERT INTO ferry.runs (sync, status, finished_at) VALUES ($1, $2, now()) RETURNING id`,
		sync, status).Scan(&id))
	return id
}

func (tb *testBundle) deliveries(t *testing.T, runID int64) []queries.FerryWebhookDelivery {
	t.Helper()
	rows, err := queries.New(tb.db).WebhookDeliveryListByRun(context.Background(),
		queries.WebhookDeliveryListByRunParams{RunID: runID, MaxRows: 100})
	require.NoError(t, err)
	return rows
}

// assertNoSecret checks that no secret reached the log or the delivery log.
func (tb *testBundle) assertNoSecret(t *testing.T) {
	t.Helper()
	for _, s := range []string{hookSecret, smtpPass, "query-token-9"} {
		assert.NotContains(t, tb.logs.String(), s)
		var n int
		require.NoError(t, tb.db.QueryRow(context.Background(),
			`SELECT count(*) FROM ferry.webhook_deliveries d WHERE d::text LIKE '%' || $1 || '%'`, s).Scan(&n))
		assert.Zero(t, n, "a delivery log row holds %q", s)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// received is one request a receiver got.
type received struct {
	at        time.Time
	event     string
	delivery  string
	verifyErr error
	payload   notify.Payload
}

// receiver is a webhook endpoint that checks signatures with Verify and
// answers with the scripted status codes, then 200.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	answers []func(w http.ResponseWriter)
}

func newReceiver(t *testing.T, secret string, answers ...func(w http.ResponseWriter)) *receiver {
	t.Helper()
	rc := &receiver{answers: answers}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		got := received{
			at:        time.Now(),
			event:     r.Header.Get(notify.EventHeader),
			delivery:  r.Header.Get(notify.DeliveryHeader),
			verifyErr: notify.Verify([]byte(secret), r.Header.Get(notify.SignatureHeader), body, time.Now(), time.Minute),
		}
		assert.NoError(t, json.Unmarshal(body, &got.payload))
		rc.mu.Lock()
		rc.got = append(rc.got, got)
		var answer func(http.ResponseWriter)
		if len(rc.answers) > 0 {
			answer, rc.answers = rc.answers[0], rc.answers[1:]
		}
		rc.mu.Unlock()
		if got.verifyErr != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if answer != nil {
			answer(w)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func status(code int) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code))
	}
}

// urlWithSecrets is rc's URL with userinfo and a query token, which the
// delivery log must not keep.
func (rc *receiver) urlWithSecrets() string {
	return strings.Replace(rc.URL, "http://", "http://hooks:pw-in-url-1@", 1) + "/ferry?token=query-token-9"
}

func hooks(url string, events ...string) *project.Alerts {
	return &project.Alerts{Webhooks: []project.Webhook{{URL: url, SecretEnv: "HOOK_SECRET", Events: events}}}
}

func failedRun(id int64) notify.Event {
	return notify.Event{
		RunID: id, Sync: "contacts", Kind: notify.KindSync, Status: "failed", Trigger: notify.TriggerSchedule,
		Error:     "target refused the credentials (401)",
		StartedAt: time.Now().Add(-time.Minute), FinishedAt: time.Now(), Replica: "ferry-1",
	}
}

func succeededRun(id int64) notify.Event {
	return notify.Event{
		RunID: id, Sync: "contacts", Kind: notify.KindSync, Status: "succeeded", Trigger: notify.TriggerSchedule,
		Read: 100, Inserted: 10, Updated: 5, Unchanged: 85,
		StartedAt: time.Now().Add(-time.Minute), FinishedAt: time.Now(),
	}
}

// A receiver that answers 500, then 429 without Retry-After, then 200 gets
// three signed attempts of one delivery, each in the delivery log, which
// keeps neither the URL's credentials nor its query.
func TestWebhookRetriesUntilDelivered(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	rc := newReceiver(t, hookSecret, status(http.StatusInternalServerError), status(http.StatusTooManyRequests))
	n := tb.notifier(t)
	runID := tb.insertRun(t, "contacts", "failed")

	n.RunEnded(context.Background(), hooks(rc.urlWithSecrets()), failedRun(runID))
	n.Close()

	got := rc.requests()
	require.Len(t, got, 3)
	for _, r := range got {
		assert.NoError(t, r.verifyErr)
		assert.Equal(t, project.EventFailed, r.event)
		assert.Equal(t, got[0].delivery, r.delivery, "every attempt of a delivery carries its id")
		assert.Equal(t, project.EventFailed, r.payload.Event)
		assert.Equal(t, runID, r.payload.Run.RunID)
		assert.Equal(t, "contacts", r.payload.Run.Sync)
		assert.Equal(t, "target refused the credentials (401)", r.payload.Run.Error)
		assert.False(t, r.payload.SentAt.IsZero())
	}
	assert.Len(t, got[0].delivery, 32)

	rows := tb.deliveries(t, runID)
	require.Len(t, rows, 3)
	for i, row := range rows {
		assert.EqualValues(t, i+1, row.Attempt)
		assert.Equal(t, got[0].delivery, row.DeliveryID)
		assert.Equal(t, project.EventFailed, row.Event)
		assert.Equal(t, "contacts", row.Sync)
		assert.Equal(t, rc.URL+"/ferry", row.Url)
	}
	assert.EqualValues(t, 500, rows[0].StatusCode.Int32)
	assert.EqualValues(t, 429, rows[1].StatusCode.Int32)
	assert.EqualValues(t, 200, rows[2].StatusCode.Int32)
	require.NotNil(t, rows[0].Error)
	assert.Contains(t, *rows[0].Error, "HTTP 500")
	require.NotNil(t, rows[1].Error)
	assert.Contains(t, *rows[1].Error, "HTTP 429")
	assert.Nil(t, rows[2].Error)
	assert.NotContains(t, tb.logs.String(), "pw-in-url-1")
	tb.assertNoSecret(t)
}

// 400 is the receiver saying no: one attempt, logged, not retried.
func TestWebhookClientErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	rc := newReceiver(t, hookSecret, status(http.StatusBadRequest))
	n := tb.notifier(t)
	runID := tb.insertRun(t, "contacts", "failed")

	n.RunEnded(context.Background(), hooks(rc.URL), failedRun(runID))
	n.Close()

	require.Len(t, rc.requests(), 1)
	rows := tb.deliveries(t, runID)
	require.Len(t, rows, 1)
	assert.EqualValues(t, 400, rows[0].StatusCode.Int32)
	require.NotNil(t, rows[0].Error)
	assert.Contains(t, *rows[0].Error, "HTTP 400: Bad Request")
}

// A receiver's Retry-After is waited for.
func TestWebhookHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	rc := newReceiver(t, hookSecret, func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	n := tb.notifier(t)
	runID := tb.insertRun(t, "contacts", "failed")

	n.RunEnded(context.Background(), hooks(rc.URL), failedRun(runID))
	n.Close()

	got := rc.requests()
	require.Len(t, got, 2)
	assert.GreaterOrEqual(t, got[1].at.Sub(got[0].at), 900*time.Millisecond)
	assert.Len(t, tb.deliveries(t, runID), 2)
}

// A receiver that never answers well gets five attempts, no more.
func TestWebhookGivesUpAfterFiveAttempts(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	rc := newReceiver(t, hookSecret, status(502), status(502), status(502), status(502), status(502), status(502))
	n := tb.notifier(t)
	runID := tb.insertRun(t, "contacts", "failed")

	n.RunEnded(context.Background(), hooks(rc.URL), failedRun(runID))
	n.Close()

	assert.Len(t, rc.requests(), 5)
	assert.Len(t, tb.deliveries(t, runID), 5)
	assert.Contains(t, tb.logs.String(), "webhook not delivered")
}

// A receiver that holds a different secret refuses every delivery.
func TestWebhookWrongSecretIsRefused(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	rc := newReceiver(t, "not-the-secret")
	n := tb.notifier(t)
	runID := tb.insertRun(t, "contacts", "failed")

	n.RunEnded(context.Background(), hooks(rc.URL), failedRun(runID))
	n.Close()

	got := rc.requests()
	require.Len(t, got, 1, "401 is not retried")
	assert.ErrorIs(t, got[0].verifyErr, notify.ErrSignatureMismatch)
}

// An unset secret sends nothing (an unsigned body is worth nothing) and says
// so in the delivery log.
func TestWebhookWithoutSecretSendsNothing(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	delete(tb.env, "HOOK_SECRET")
	rc := newReceiver(t, hookSecret)
	n := tb.notifier(t)
	runID := tb.insertRun(t, "contacts", "failed")

	n.RunEnded(context.Background(), hooks(rc.URL), failedRun(runID))
	n.Close()

	assert.Empty(t, rc.requests())
	rows := tb.deliveries(t, runID)
	require.Len(t, rows, 1)
	assert.EqualValues(t, 0, rows[0].Attempt)
	assert.False(t, rows[0].StatusCode.Valid)
	require.NotNil(t, rows[0].Error)
	assert.Contains(t, *rows[0].Error, "HOOK_SECRET is not set")
}

// By default a webhook gets every event but run.started; a list of events
// narrows it.
func TestWebhookEvents(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	all := newReceiver(t, hookSecret)
	started := newReceiver(t, hookSecret)
	n := tb.notifier(t)
	alerts := &project.Alerts{Webhooks: []project.Webhook{
		{URL: all.URL, SecretEnv: "HOOK_SECRET"},
		{URL: started.URL, SecretEnv: "HOOK_SECRET", Events: []string{project.EventStarted}},
	}}
	runID := tb.insertRun(t, "contacts", "succeeded")
	ev := succeededRun(runID)
	ev.Status = ""
	n.RunStarted(context.Background(), alerts, ev)
	n.RunEnded(context.Background(), alerts, succeededRun(runID))
	n.Close()

	require.Len(t, all.requests(), 1)
	assert.Equal(t, project.EventSucceeded, all.requests()[0].event)
	require.Len(t, started.requests(), 1)
	assert.Equal(t, project.EventStarted, started.requests()[0].event)
	assert.Equal(t, "running", started.requests()[0].payload.Run.Status)
}

// run.recovered follows the first good run after a failed or stopped one,
// read from ferry.runs, once; a run with too many failed records is no
// recovery.
func TestWebhookRecovery(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	rc := newReceiver(t, hookSecret)
	n := tb.notifier(t)
	alerts := hooks(rc.URL, project.EventRecovered)

	tb.insertRun(t, "contacts", "failed")
	tb.insertRun(t, "other", "succeeded") // another sync's run is not "the previous run"
	recovered := tb.insertRun(t, "contacts", "succeeded")
	again := tb.insertRun(t, "contacts", "succeeded")
	tb.insertRun(t, "orders", "stopped")
	tooMany := tb.insertRun(t, "orders", "succeeded_with_errors")
	tb.insertRun(t, "deals", "stopped")
	fewErrors := tb.insertRun(t, "deals", "succeeded_with_errors")
	first := tb.insertRun(t, "fresh", "succeeded")
	// A run whose replica stopped mid-run was interrupted, not failed: the
	// run that resumes it recovers from nothing.
	tb.insertRun(t, "leads", "succeeded")
	tb.insertRun(t, "leads", "interrupted")
	resumed := tb.insertRun(t, "leads", "succeeded")

	n.RunEnded(context.Background(), alerts, succeededRun(resumed))
	n.RunEnded(context.Background(), alerts, succeededRun(recovered))
	n.RunEnded(context.Background(), alerts, succeededRun(again))
	ev := succeededRun(tooMany)
	ev.Sync, ev.Status, ev.Failed, ev.Updated = "orders", "succeeded_with_errors", 20, 0
	n.RunEnded(context.Background(), alerts, ev)
	ev = succeededRun(fewErrors)
	ev.Sync, ev.Status, ev.Failed, ev.Updated = "deals", "succeeded_with_errors", 2, 3
	n.RunEnded(context.Background(), alerts, ev)
	n.RunEnded(context.Background(), alerts, succeededRun(first))
	n.Close()

	var runs []int64
	for _, r := range rc.requests() {
		assert.Equal(t, project.EventRecovered, r.event)
		runs = append(runs, r.payload.Run.RunID)
	}
	assert.ElementsMatch(t, []int64{recovered, fewErrors}, runs)
}

// Close waits for deliveries only so long, then cancels them.
func TestCloseIsBounded(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	rc := newReceiver(t, hookSecret, status(503), status(503), status(503))
	n := notify.New(tb.db, notify.Options{
		Env:       func(k string) (string, bool) { v, ok := tb.env[k]; return v, ok },
		RetryBase: time.Hour,
		CloseWait: 100 * time.Millisecond,
	})
	runID := tb.insertRun(t, "contacts", "failed")
	n.RunEnded(context.Background(), hooks(rc.URL), failedRun(runID))
	require.Eventually(t, func() bool { return len(tb.deliveries(t, runID)) == 1 }, 10*time.Second, 10*time.Millisecond)

	start := time.Now()
	n.Close()
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Len(t, rc.requests(), 1)

	// Events after Close are dropped, not sent.
	n.RunEnded(context.Background(), hooks(rc.URL), failedRun(runID))
	assert.Len(t, rc.requests(), 1)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	secret := []byte(hookSecret)
	body := []byte(`{"event":"run.failed"}`)
	now := time.Unix(1_750_000_000, 0)
	good := notify.Sign(secret, now, body)
	tests := []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"good", secret, good, body, now, nil},
		{"slightly late", secret, good, body, now.Add(4 * time.Minute), nil},
		{"wrong secret", []byte("other"), good, body, now, notify.ErrSignatureMismatch},
		{"changed body", secret, good, []byte(`{"event":"run.succeeded"}`), now, notify.ErrSignatureMismatch},
		{"changed timestamp", secret, strings.Replace(good, "t=1750000000", "t=1750000100", 1), body, now, notify.ErrSignatureMismatch},
		{"replayed", secret, good, body, now.Add(6 * time.Minute), notify.ErrSignatureTooOld},
		{"from the future", secret, good, body, now.Add(-6 * time.Minute), notify.ErrSignatureTooOld},
		{"rotation: one of two matches", secret, good + ",v1=" + strings.Repeat("ab", 32), body, now, nil},
		{"empty", secret, "", body, now, notify.ErrMalformedSignature},
		{"no timestamp", secret, good[strings.Index(good, "v1="):], body, now, notify.ErrMalformedSignature},
		{"no signature", secret, "t=1750000000", body, now, notify.ErrMalformedSignature},
		{"bad timestamp", secret, "t=soon,v1=" + strings.Repeat("ab", 32), body, now, notify.ErrMalformedSignature},
		{"bad hex", secret, "t=1750000000,v1=zz", body, now, notify.ErrMalformedSignature},
		{"short signature", secret, "t=1750000000,v1=abcd", body, now, notify.ErrMalformedSignature},
		{"no equals", secret, "t=1750000000,v1", body, now, notify.ErrMalformedSignature},
		{"two timestamps", secret, "t=1,t=2,v1=" + strings.Repeat("ab", 32), body, now, notify.ErrMalformedSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := notify.Verify(tt.secret, tt.header, tt.body, tt.now, 0)
			if tt.want == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tt.want)
			}
		})
	}
	assert.Regexp(t, `^t=1750000000,v1=[0-9a-f]{64}$`, good)
}

// The delivery log is plain SQL an operator can read.
func TestDeliveryLogIsQueryable(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	rc := newReceiver(t, hookSecret)
	n := tb.notifier(t)
	runID := tb.insertRun(t, "contacts", "failed")
	n.RunEnded(context.Background(), hooks(rc.URL), failedRun(runID))
	n.Close()

	rows, err := tb.db.Query(context.Background(),
		`SELECT event, status_code FROM ferry.webhook_deliveries WHERE run_id = $1`, runID)
	require.NoError(t, err)
	type row struct {
		Event      string
		StatusCode int
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	require.NoError(t, err)
	assert.Equal(t, []row{{project.EventFailed, 200}}, got)
}
