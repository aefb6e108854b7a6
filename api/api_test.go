package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/api"
	"github.com/ferry-sync/ferry/api/auth"
	"github.com/ferry-sync/ferry/api/projects"
	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
	"github.com/ferry-sync/ferry/engine/connector/postgres"
	"github.com/ferry-sync/ferry/internal/runqueue"
	"github.com/ferry-sync/ferry/internal/secrets"
	"github.com/ferry-sync/ferry/queries/dbtest"
	"github.com/ferry-sync/ferry/scripting"
)

// testWorkers is how many runs a test server works at once.
const testWorkers = 2

// testServer is one API server on its own warehouse, with a token per role.
type testServer struct {
	t      testing.TB
	db     *pgxpool.Pool
	srv    *httptest.Server
	api    *api.Server
	tokens map[auth.Role]string
	logs   *syncBuffer
}

// syncBuffer is a log sink safe for the server's goroutines.
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

func secretKey(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(b)
}

func newServer(t testing.TB, key string) *testServer {
	t.Helper()
	ctx := context.Background()
	db := dbtest.NewPoolSized(t, runqueue.PoolSize(testWorkers))
	kinds, err := connector.NewRegistry(httptarget.Kind(), postgres.Kind())
	require.NoError(t, err)
	store, err := projects.NewStore(db, kinds, t.TempDir())
	require.NoError(t, err)
	keys, err := secrets.KeyringFromEnv(func(k string) (string, bool) { return key, k == secrets.KeyEnv })
	require.NoError(t, err)
	sec := secrets.NewStore(db, keys)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var a *api.Server
	eng := engine.New(db, store, engine.Options{Connectors: kinds, Env: sec.Env(ctx), Logger: logger, ScriptIsolation: scripting.IsolationNone,
		OnRequest: func(c string, s int, d time.Duration) { a.TargetRequest(c, s, d) }})
	queue, err := runqueue.New(runqueue.Options{DB: db, Engine: eng, Replica: "test", Workers: testWorkers, Logger: logger,
		OnStarted: func(_ context.Context, args runqueue.Args, _ int64) { a.RunStarted(args, time.Now()) },
		OnEnded:   func(_ context.Context, e runqueue.Ended) { a.RunEnded(e) }})
	require.NoError(t, err)
	tokens := auth.NewTokens(db)
	a = api.New(api.Options{DB: db, Engine: eng, Projects: store, Secrets: sec, Tokens: tokens, Kinds: kinds, Logger: logger, Version: "test", Queue: queue})
	require.NoError(t, queue.Start(ctx))
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		require.NoError(t, queue.Stop(context.Background()))
	})
	ts := &testServer{t: t, db: db, srv: srv, api: a, tokens: map[auth.Role]string{}, logs: logs}
	for _, role := range []auth.Role{auth.Viewer, auth.Editor, auth.Admin} {
		_, text, err := tokens.Create(ctx, "test "+string(role), role, time.Hour)
		require.NoError(t, err)
		ts.tokens[role] = text
	}
	return ts
}

// call makes a request as role ("" for none) and decodes a JSON answer.
func (ts *testServer) call(role auth.Role, method, path string, body any) (int, map[string]any, string) {
	ts.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(ts.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, ts.srv.URL+path, rd)
	require.NoError(ts.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+ts.tokens[role])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(ts.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(ts.t, err)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out, string(raw)
}

func (ts *testServer) ok(role auth.Role, method, path string, body any) map[string]any {
	ts.t.Helper()
	status, out, raw := ts.call(role, method, path, body)
	require.True(ts.t, status >= 200 && status < 300, "%s %s: %d %s", method, path, status, raw)
	return out
}

// waitRun polls a run until it ends and returns it.
func (ts *testServer) waitRun(id any) map[string]any {
	ts.t.Helper()
	var run map[string]any
	require.Eventually(ts.t, func() bool {
		run = ts.ok(auth.Viewer, http.MethodGet, fmt.Sprintf("/api/v1/runs/%v", id), nil)
		return run["status"] != "running"
	}, 30*time.Second, 20*time.Millisecond)
	return run
}
