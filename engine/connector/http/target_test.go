package httptarget_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
)

// scripted is a server that answers every request with the same status and
// body, and counts requests.
type scripted struct {
	srv      *httptest.Server
	requests atomic.Int64
}

func newScripted(t *testing.T, status int, header http.Header, body string) *scripted {
	t.Helper()
	s := &scripted{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func retries(n int) *int { return &n }

func fastConfig(baseURL string) httptarget.Config {
	return httptarget.Config{
		BaseURL:     baseURL,
		Retries:     retries(2),
		RetryBudget: httptarget.Duration(20 * time.Millisecond),
		BackoffBase: httptarget.Duration(time.Millisecond),
		BackoffMax:  httptarget.Duration(2 * time.Millisecond),
		Objects: map[string]httptarget.Object{
			"contacts": {},
			"deals":    {IDPath: "data.id"},
		},
	}
}

func insertOf(payload map[string]any) connector.Change {
	return connector.Change{Op: connector.OpInsert, SourceID: "src-1", Payload: payload}
}

func updateOf(id string, payload map[string]any) connector.Change {
	return connector.Change{Op: connector.OpUpdate, SourceID: "src-1", TargetID: id, Payload: payload}
}

func TestClassification(t *testing.T) {
	t.Parallel()
	msg := `{"message":"the target says no"}`
	retryAfter0 := http.Header{"Retry-After": {"0"}}
	insert, update := insertOf(map[string]any{"a": 1}), updateOf("42", map[string]any{"a": 1})

	tests := []struct {
		name     string
		object   string
		change   connector.Change
		status   int
		header   http.Header
		body     string
		class    connector.Class // "" for success
		id       string
		requests int64
		callErr  bool
		contains string
	}{
		{"insert 201", "contacts", insert, 201, nil, `{"id":"c_9"}`, "", "c_9", 1, false, ""},
		{"insert numeric id in data", "deals", insert, 200, nil, `{"data":{"id":12345678901234567890}}`, "", "12345678901234567890", 1, false, ""},
		{"insert 2xx without id", "deals", insert, 201, nil, `{"id":"x"}`, connector.Ambiguous, "", 1, false, `no id at "data.id"`},
		{"insert 2xx not json", "contacts", insert, 201, nil, `created`, connector.Ambiguous, "", 1, false, "not JSON"},
		{"update 200", "contacts", update, 200, nil, `{}`, "", "42", 1, false, ""},
		{"update 204", "contacts", update, 204, nil, ``, "", "42", 1, false, ""},
		{"insert 400", "contacts", insert, 400, nil, msg, connector.Rejected, "", 1, false, "POST /contacts: the target says no"},
		{"insert 404", "contacts", insert, 404, nil, msg, connector.Rejected, "", 1, false, "POST /contacts"},
		{"update 404", "contacts", update, 404, nil, msg, connector.NotFound, "42", 1, false, "PATCH /contacts/42: the target says no"},
		{"insert 409", "contacts", insert, 409, nil, msg, connector.Rejected, "", 1, false, ""},
		{"update 422", "contacts", update, 422, nil, `{"errors":[{"field":"email","message":"is invalid"}]}`, connector.Rejected, "42", 1, false, "email: is invalid"},
		{"insert 302", "contacts", insert, 302, http.Header{"Location": {"/elsewhere"}}, ``, connector.Rejected, "", 1, false, "redirect"},
		{"insert 401", "contacts", insert, 401, nil, `{"message":"invalid token"}`, connector.Auth, "", 1, true, "invalid token"},
		{"update 403", "contacts", update, 403, nil, msg, connector.Auth, "42", 1, true, ""},
		{"insert 429 beyond the retry budget", "contacts", insert, 429, retryAfter0, msg, connector.RateLimited, "", -1, false, "retry_budget"},
		{"insert 500 retried", "contacts", insert, 500, nil, msg, connector.Retryable, "", 3, false, "the target says no"},
		{"update 502 retried", "contacts", update, 502, nil, ``, connector.Retryable, "42", 3, false, "Bad Gateway"},
		{"update 503 retried", "contacts", update, 503, nil, msg, connector.Retryable, "42", 3, false, ""},
		{"insert 408 retried", "contacts", insert, 408, nil, msg, connector.Retryable, "", 3, false, ""},
		{"insert 504 not retried", "contacts", insert, 504, nil, msg, connector.Ambiguous, "", 1, false, ""},
		{"update 504 retried", "contacts", update, 504, nil, msg, connector.Retryable, "42", 3, false, ""},
		{"insert 501", "contacts", insert, 501, nil, msg, connector.Retryable, "", 1, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newScripted(t, tc.status, tc.header, tc.body)
			target := newTarget(t, fastConfig(srv.srv.URL))
			res, err := target.Write(context.Background(), tc.object, []connector.Change{tc.change})
			require.Len(t, res, 1)
			if tc.requests < 0 {
				require.Greater(t, srv.requests.Load(), int64(1), "requests sent: retried until the retry budget is spent")
			} else {
				require.Equal(t, tc.requests, srv.requests.Load(), "requests sent")
			}
			require.True(t, res[0].Done)
			require.Equal(t, tc.id, res[0].TargetID)
			if tc.callErr {
				require.Error(t, err)
				require.Equal(t, tc.class, connector.ClassOf(err))
			} else {
				require.NoError(t, err)
			}
			if tc.class == "" {
				require.Nil(t, res[0].Err)
				return
			}
			require.NotNil(t, res[0].Err)
			require.Equal(t, tc.class, res[0].Err.Class, "error: %v", res[0].Err)
			require.Equal(t, tc.status, res[0].Err.Status)
			require.Contains(t, res[0].Err.Error(), tc.contains)
		})
	}
}

func TestRetriesAgainstCRM(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fault    func(srv *crmtest.Server)
		class    connector.Class
		records  int
		requests int
	}{
		{"two 500s then success", func(s *crmtest.Server) { s.FailNext(2, 500) }, "", 1, 3},
		{"two 503s then success", func(s *crmtest.Server) { s.FailNext(2, 503) }, "", 1, 3},
		{"two 429s then success", func(s *crmtest.Server) { s.RateLimitNext(2, 10*time.Millisecond) }, "", 1, 3},
		{"429s beyond the retry budget", func(s *crmtest.Server) { s.RateLimitNext(5, 10*time.Millisecond) }, connector.RateLimited, 0, 3},
		{"429s are not bounded by retries", func(s *crmtest.Server) { s.RateLimitNext(2, 5*time.Millisecond) }, "", 1, 3},
		{"500s beyond the budget", func(s *crmtest.Server) { s.FailNext(3, 500) }, connector.Retryable, 0, 3},
		{"a 400 is not retried", func(s *crmtest.Server) { s.FailNext(3, 400) }, connector.Rejected, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := contactsCRM(t)
			cfg := config(srv, token)
			cfg.Retries = retries(2)
			cfg.RetryBudget = httptarget.Duration(25 * time.Millisecond) // three waits of 10ms exceed it
			target := newTarget(t, cfg)
			tc.fault(srv)
			res, err := target.Write(context.Background(), "contacts", []connector.Change{insertOf(map[string]any{"email": "a@example.com"})})
			require.NoError(t, err)
			require.True(t, res[0].Done)
			if tc.class == "" {
				require.Nil(t, res[0].Err)
				require.NotEmpty(t, res[0].TargetID)
			} else {
				require.NotNil(t, res[0].Err)
				require.Equal(t, tc.class, res[0].Err.Class)
			}
			require.Equal(t, tc.records, srv.Count("contacts"))
			require.Equal(t, tc.requests, srv.Requests())
			require.Equal(t, tc.requests, srv.RequestsFor("POST", "contacts"))
		})
	}

	t.Run("RateLimited carries the wait", func(t *testing.T) {
		t.Parallel()
		srv := contactsCRM(t)
		cfg := config(srv, token)
		cfg.MaxRetryAfter = httptarget.Duration(time.Second)
		target := newTarget(t, cfg)
		srv.RateLimitNext(1, time.Hour)
		res, err := target.Write(context.Background(), "contacts", []connector.Change{insertOf(map[string]any{"email": "a@example.com"})})
		require.NoError(t, err)
		require.Equal(t, connector.RateLimited, res[0].Err.Class, "a Retry-After over max_retry_after is not waited for")
		require.Equal(t, time.Hour, res[0].Err.RetryAfter)
		require.Equal(t, 1, srv.Requests())
	})
}

func TestAuthFailureCostsOneRequest(t *testing.T) {
	t.Parallel()
	srv := contactsCRM(t)
	cfg := config(srv, "wrong")
	cfg.Concurrency = 16
	target := newTarget(t, cfg)
	changes := make([]connector.Change, 50)
	for i := range changes {
		changes[i] = insertOf(map[string]any{"email": fmt.Sprintf("p%d@example.com", i)})
	}

	for call := 1; call <= 2; call++ {
		res, err := target.Write(context.Background(), "contacts", changes)
		require.Error(t, err)
		require.Equal(t, connector.Auth, connector.ClassOf(err))
		require.Contains(t, err.Error(), "POST /contacts: invalid token")
		require.Equal(t, call, srv.Requests(), "each call with bad credentials sends exactly one request")
		done := 0
		for _, r := range res {
			if r.Done {
				done++
				require.Equal(t, connector.Auth, r.Err.Class)
			}
		}
		require.Equal(t, 1, done, "only the change that met the error is done")
	}
	require.Zero(t, srv.Count("contacts"))

	// Once credentials work, requests run in parallel; revoking them stops
	// the next call with an Auth error again.
	good := newTarget(t, config(srv, token))
	res, err := good.Write(context.Background(), "contacts", changes[:20])
	require.NoError(t, err)
	for _, r := range res {
		require.Nil(t, r.Err)
	}
	srv.SetToken("rotated")
	_, err = good.Write(context.Background(), "contacts", changes[20:])
	require.Equal(t, connector.Auth, connector.ClassOf(err))
	require.Equal(t, 20, srv.Count("contacts"))
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T) (*crmtest.Server, *httptarget.Target) {
		srv := contactsCRM(t)
		cfg := config(srv, token)
		cfg.Timeout = httptarget.Duration(150 * time.Millisecond)
		return srv, newTarget(t, cfg)
	}

	t.Run("an insert that timed out is Ambiguous and not retried", func(t *testing.T) {
		t.Parallel()
		srv, target := setup(t)
		srv.HangNext(1)
		res, err := target.Write(context.Background(), "contacts", []connector.Change{insertOf(map[string]any{"email": "a@example.com"})})
		require.NoError(t, err)
		require.True(t, res[0].Done)
		require.NotNil(t, res[0].Err)
		require.Equal(t, connector.Ambiguous, res[0].Err.Class)
		require.Contains(t, res[0].Err.Error(), "POST /contacts: no response within 150ms")
		require.Equal(t, 1, srv.RequestsFor("POST", "contacts"), "never re-sent")
		require.Equal(t, 1, srv.Count("contacts"), "the server did create it")
	})

	t.Run("an update that timed out is retried", func(t *testing.T) {
		t.Parallel()
		srv, target := setup(t)
		res, err := target.Write(context.Background(), "contacts", []connector.Change{insertOf(map[string]any{"email": "a@example.com"})})
		require.NoError(t, err)
		id := res[0].TargetID
		srv.HangNext(1)
		res, err = target.Write(context.Background(), "contacts", []connector.Change{updateOf(id, map[string]any{"name": "New"})})
		require.NoError(t, err)
		require.Nil(t, res[0].Err)
		require.Equal(t, id, res[0].TargetID)
		require.Equal(t, 2, srv.RequestsFor("PATCH", "contacts"))
		rec, _ := srv.Record("contacts", id)
		require.Equal(t, "New", rec["name"])
	})

	t.Run("a connection refused is retried, then Unreachable, and the call stops", func(t *testing.T) {
		t.Parallel()
		closed := httptest.NewServer(http.NotFoundHandler())
		closed.Close()
		target := newTarget(t, fastConfig(closed.URL))
		changes := []connector.Change{insertOf(map[string]any{"a": 1}), insertOf(map[string]any{"a": 2}), insertOf(map[string]any{"a": 3})}
		res, err := target.Write(context.Background(), "contacts", changes)
		require.Error(t, err)
		assert.Equal(t, connector.Unreachable, connector.ClassOf(err))
		assert.Contains(t, err.Error(), "cannot reach "+closed.URL)
		unreachable := 0
		for _, r := range res {
			if r.Done {
				assert.Equal(t, connector.Unreachable, r.Err.Class, "nothing was sent")
				unreachable++
			}
		}
		assert.GreaterOrEqual(t, unreachable, 1)
	})
}

func TestCancellationIsPrompt(t *testing.T) {
	t.Parallel()
	srv := contactsCRM(t)
	srv.SetLatency(time.Minute)
	target := newTarget(t, config(srv, token))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	res, err := target.Write(ctx, "contacts", []connector.Change{
		insertOf(map[string]any{"email": "a@example.com"}), insertOf(map[string]any{"email": "b@example.com"}),
	})
	require.ErrorIs(t, err, context.Canceled)
	// One insert was sent and its outcome is unknown; the other waited for
	// it to prove the credentials, and was never sent.
	var ambiguous, undone int
	for _, r := range res {
		switch {
		case !r.Done:
			undone++
		case r.Err != nil && r.Err.Class == connector.Ambiguous:
			ambiguous++
		}
	}
	require.Equal(t, 1, ambiguous)
	require.Equal(t, 1, undone)
}

func TestRateLimitPausesTheWholeConnection(t *testing.T) {
	t.Parallel()
	const pause = 300 * time.Millisecond
	var mu sync.Mutex
	var limitedAt time.Time
	var arrivals []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if limitedAt.IsZero() {
			w.Header().Set("Retry-After", "0.3")
			w.WriteHeader(http.StatusTooManyRequests)
			limitedAt = time.Now()
			return
		}
		arrivals = append(arrivals, time.Now())
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, `{"id":"%d"}`, len(arrivals))
	}))
	t.Cleanup(srv.Close)
	cfg := fastConfig(srv.URL)
	cfg.Concurrency = 8
	cfg.RetryBudget = 0 // the default: a 300ms pause is well within it
	target := newTarget(t, cfg)

	changes := make([]connector.Change, 8)
	for i := range changes {
		changes[i] = insertOf(map[string]any{"n": i})
	}
	res, err := target.Write(context.Background(), "contacts", changes)
	require.NoError(t, err)
	for _, r := range res {
		require.Nil(t, r.Err)
	}
	require.Len(t, arrivals, 8)
	for _, at := range arrivals {
		require.GreaterOrEqual(t, at.Sub(limitedAt), pause, "a request went out during the pause")
	}
}

func TestConcurrencyIsSharedByCalls(t *testing.T) {
	t.Parallel()
	var inFlight, peak atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		inFlight.Add(-1)
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":"x"}`)
	}))
	t.Cleanup(srv.Close)
	cfg := fastConfig(srv.URL)
	cfg.Concurrency = 4
	target := newTarget(t, cfg)

	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			changes := make([]connector.Change, 30)
			for i := range changes {
				changes[i] = insertOf(map[string]any{"n": i})
			}
			if _, err := target.Write(context.Background(), "contacts", changes); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, peak.Load(), int64(4), "requests in flight across all calls")
}

func TestRateLimitSpacesRequests(t *testing.T) {
	t.Parallel()
	srv := newScripted(t, http.StatusCreated, nil, `{"id":"x"}`)
	cfg := fastConfig(srv.srv.URL)
	cfg.RateLimit = 50
	target := newTarget(t, cfg)
	changes := make([]connector.Change, 11)
	for i := range changes {
		changes[i] = insertOf(map[string]any{"n": i})
	}
	start := time.Now()
	_, err := target.Write(context.Background(), "contacts", changes)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "11 requests at 50/s take at least 10 intervals")
}

// rate_limit starts requests on a 50ms grid, a step's worth together: in
// any second the server still gets no more than the limit, give or take
// the one step a second's edge can cut through, and in any 100ms no more
// than the two steps it spans and one more its edge can catch (arrivals
// jitter): paced, not sent in one burst.
func TestRateLimitHoldsInEverySecond(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var arrived []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived = append(arrived, time.Now())
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":"x"}`)
	}))
	t.Cleanup(srv.Close)
	cfg := fastConfig(srv.URL)
	cfg.RateLimit = 200
	cfg.Concurrency = 16
	target := newTarget(t, cfg)
	changes := make([]connector.Change, 300)
	for i := range changes {
		changes[i] = insertOf(map[string]any{"n": i})
	}
	start := time.Now()
	_, err := target.Write(context.Background(), "contacts", changes)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 1400*time.Millisecond, "300 requests at 200/s take 1.5s")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, arrived, 300)
	most := func(span time.Duration) int {
		n := 0
		for i := range arrived {
			j := i
			for j < len(arrived) && arrived[j].Sub(arrived[i]) < span {
				j++
			}
			n = max(n, j-i)
		}
		return n
	}
	assert.LessOrEqual(t, most(time.Second), 200+10, "requests in any second")
	assert.LessOrEqual(t, most(100*time.Millisecond), 3*10+1, "requests in any 100ms")
}

// captured is what a capturing server saw of one request.
type captured struct {
	method, uri string
	header      http.Header
	body        string
}

func newCapturing(t *testing.T, status int, reply string) (*httptest.Server, func() []captured) {
	t.Helper()
	var mu sync.Mutex
	var seen []captured
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, captured{r.Method, r.RequestURI, r.Header.Clone(), string(b)})
		mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, reply)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []captured {
		mu.Lock()
		defer mu.Unlock()
		return append([]captured(nil), seen...)
	}
}

func TestRequestsAreBuiltFromTheConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"TOKEN": "tok", "USER": "ann", "PASS": "pw", "KEY": "k-123"}
	lookup := func(name string) (string, bool) { v, ok := env[name]; return v, ok }

	tests := []struct {
		name   string
		auth   httptarget.Auth
		header string
		want   string
	}{
		{"bearer", httptarget.Auth{Type: "bearer", TokenEnv: "TOKEN"}, "Authorization", "Bearer tok"},
		{"basic", httptarget.Auth{Type: "basic", UsernameEnv: "USER", PasswordEnv: "PASS"}, "Authorization", "Basic YW5uOnB3"},
		{"header", httptarget.Auth{Type: "header", Header: "x-api-key", ValueEnv: "KEY"}, "X-Api-Key", "k-123"},
		{"none", httptarget.Auth{}, "Authorization", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, seen := newCapturing(t, http.StatusOK, `{"properties":{"hs_id":"77"}}`)
			target := newTarget(t, httptarget.Config{
				BaseURL: srv.URL + "/crm/v3",
				Auth:    tc.auth,
				Env:     lookup,
				Headers: map[string]string{"X-Api-Version": "2024-01"},
				Objects: map[string]httptarget.Object{"contacts": {
					Insert:  httptarget.Endpoint{Method: "put", Path: "/objects/contacts"},
					Update:  httptarget.Endpoint{Method: "POST", Path: "/objects/contacts/{id}/update"},
					IDPath:  "properties.hs_id",
					BodyKey: "properties",
				}},
			})
			res, err := target.Write(context.Background(), "contacts", []connector.Change{
				{Op: connector.OpInsert, SourceID: "warehouse-row-991", Payload: map[string]any{
					"amount": json.Number("12345678901234567890.123456789"), "at": time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC), "html": "<b>&</b>",
				}},
				{Op: connector.OpUpdate, SourceID: "warehouse-row-992", TargetID: "a/b c", Payload: map[string]any{"x": nil}},
			})
			require.NoError(t, err)
			require.Nil(t, res[0].Err)
			require.Equal(t, "77", res[0].TargetID)
			require.Nil(t, res[1].Err)

			reqs := seen()
			require.Len(t, reqs, 2)
			byMethod := map[string]captured{reqs[0].method: reqs[0], reqs[1].method: reqs[1]}
			put, post := byMethod["PUT"], byMethod["POST"]
			require.Equal(t, "/crm/v3/objects/contacts", put.uri)
			require.Equal(t, `{"properties":{"amount":12345678901234567890.123456789,"at":"2024-01-02T03:04:05.0000006Z","html":"<b>&</b>"}}`, put.body)
			require.Equal(t, "/crm/v3/objects/contacts/a%2Fb%20c/update", post.uri)
			require.Equal(t, `{"properties":{"x":null}}`, post.body)
			for _, r := range reqs {
				require.Equal(t, tc.want, r.header.Get(tc.header))
				require.Equal(t, "2024-01", r.header.Get("X-Api-Version"))
				require.Equal(t, "application/json", r.header.Get("Content-Type"))
				all := r.uri + r.body + fmt.Sprint(r.header)
				require.NotContains(t, all, "warehouse-row", "the source id is never sent")
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	objects := map[string]httptarget.Object{"contacts": {}}
	tests := []struct {
		name string
		cfg  httptarget.Config
		want string
	}{
		{"no base url", httptarget.Config{Objects: objects}, "base_url is required"},
		{"relative base url", httptarget.Config{BaseURL: "api.example.com", Objects: objects}, "absolute http(s) URL"},
		{"credentials in url", httptarget.Config{BaseURL: "https://u:p@api.example.com", Objects: objects}, "must not hold credentials"},
		{"no objects", httptarget.Config{BaseURL: "https://api.example.com"}, "at least one object"},
		{"token env unset", httptarget.Config{BaseURL: "https://api.example.com", Objects: objects,
			Auth: httptarget.Auth{Type: "bearer", TokenEnv: "FERRY_TEST_UNSET_TOKEN"}}, "auth.token_env: environment variable FERRY_TEST_UNSET_TOKEN is not set"},
		{"token env missing", httptarget.Config{BaseURL: "https://api.example.com", Objects: objects,
			Auth: httptarget.Auth{Type: "bearer"}}, "auth.token_env is required"},
		{"unknown auth", httptarget.Config{BaseURL: "https://api.example.com", Objects: objects,
			Auth: httptarget.Auth{Type: "oauth"}}, `auth.type "oauth"`},
		{"update without id", httptarget.Config{BaseURL: "https://api.example.com",
			Objects: map[string]httptarget.Object{"c": {Update: httptarget.Endpoint{Path: "/c"}}}}, "must contain {id}"},
		{"path without slash", httptarget.Config{BaseURL: "https://api.example.com",
			Objects: map[string]httptarget.Object{"c": {Insert: httptarget.Endpoint{Path: "c"}}}}, "must start with /"},
		{"lookup by PUT", httptarget.Config{BaseURL: "https://api.example.com",
			Objects: map[string]httptarget.Object{"c": {Lookup: &httptarget.Lookup{Method: "PUT", Path: "/c/search"}}}}, "objects.c.lookup.method: PUT: a lookup is a GET or a POST"},
		{"negative retries", httptarget.Config{BaseURL: "https://api.example.com", Objects: objects, Retries: retries(-1)}, "retries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Env = func(string) (string, bool) { return "", false }
			_, err := httptarget.New(context.Background(), tc.cfg)
			require.ErrorContains(t, err, tc.want)
			require.True(t, strings.HasPrefix(err.Error(), "http connection: "))
		})
	}
}

func TestConfigFromJSON(t *testing.T) {
	t.Parallel()
	srv := contactsCRM(t)
	raw := fmt.Sprintf(`{
		"base_url": %q,
		"auth": {"type": "bearer", "token_env": "CRM_TOKEN"},
		"timeout": "30s", "concurrency": 4, "rate_limit": 0, "retries": 0,
		"backoff_base": "1ms", "backoff_max": "2ms",
		"objects": {"people": {
			"insert": {"path": "/contacts"},
			"update": {"method": "PATCH", "path": "/contacts/{id}"},
			"id_path": "id",
			"lookup": {"path": "/contacts/search", "results_path": "results"}
		}}
	}`, srv.URL)
	var cfg httptarget.Config
	require.NoError(t, json.Unmarshal([]byte(raw), &cfg))
	require.Equal(t, httptarget.Duration(30*time.Second), cfg.Timeout)
	require.Equal(t, 0, *cfg.Retries)
	cfg.Env = func(string) (string, bool) { return token, true }
	target := newTarget(t, cfg)

	srv.FailNext(1, 500)
	res, err := target.Write(context.Background(), "people", []connector.Change{insertOf(map[string]any{"email": "a@example.com"})})
	require.NoError(t, err)
	require.Equal(t, connector.Retryable, res[0].Err.Class, "retries 0 means no retry")
	require.Equal(t, 1, srv.Requests())

	var bad httptarget.Config
	require.ErrorContains(t, json.Unmarshal([]byte(`{"timeout": "soon"}`), &bad), `bad duration "soon"`)
	require.ErrorContains(t, json.Unmarshal([]byte(`{"timeout": 30}`), &bad), "a duration is a string")
}

func TestFindWithWrappedRecords(t *testing.T) {
	t.Parallel()
	srv := crmtest.New(t, crmtest.Options{Objects: map[string]crmtest.Object{
		"deals": {NumericIDs: true, BodyKey: "properties", Unique: []string{"code"}},
	}})
	target := newTarget(t, httptarget.Config{
		BaseURL: srv.URL,
		Objects: map[string]httptarget.Object{"deals": {
			BodyKey: "properties",
			Lookup:  &httptarget.Lookup{Path: "/deals/search"},
		}},
	})
	ctx := context.Background()
	res, err := target.Write(ctx, "deals", []connector.Change{
		insertOf(map[string]any{"code": "D-1", "stage": "won", "amount": json.Number("10.50")}),
		insertOf(map[string]any{"code": "D-2", "stage": "won"}),
	})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"1", "2"}, []string{res[0].TargetID, res[1].TargetID}, "numeric ids come back as text")

	found, err := target.Find(ctx, "deals", map[string]any{"code": "D-1"})
	require.NoError(t, err)
	require.Len(t, found, 1)
	require.Equal(t, res[0].TargetID, found[0]["id"])
	require.Equal(t, json.Number("10.50"), found[0]["properties"].(map[string]any)["amount"])

	found, err = target.Find(ctx, "deals", map[string]any{"stage": "won"})
	require.NoError(t, err)
	require.Len(t, found, 2)

	_, err = target.Find(ctx, "deals", map[string]any{"stage": nil})
	require.ErrorContains(t, err, "cannot match on null")
	_, err = target.Find(ctx, "nope", map[string]any{"a": "b"})
	require.ErrorContains(t, err, `object "nope" is not configured`)
}

func TestUnknownObjectFailsTheCall(t *testing.T) {
	t.Parallel()
	srv := contactsCRM(t)
	target := newTarget(t, config(srv, token))
	res, err := target.Write(context.Background(), "companies", []connector.Change{insertOf(map[string]any{"a": 1})})
	require.ErrorContains(t, err, `object "companies" is not configured (configured: contacts)`)
	require.Len(t, res, 1)
	require.False(t, res[0].Done)
	require.Zero(t, srv.Requests())
}
