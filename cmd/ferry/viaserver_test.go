package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/internal/notify"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loopbackAddr is a loopback address nothing listens on.
func loopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// ferry run --via-server queues the run for a server's workers, follows it
// and prints it like a run of its own; the server's webhook gets the
// signed event; ferry status then shows who ran it, and ferry schedule
// list the schedule it has.
func TestRunViaServer(t *testing.T) {
	dir, wh := testProject(t)
	const hookSecret = "whsec-test-1234"
	events := make(chan notify.Payload, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := notify.Verify([]byte(hookSecret), r.Header.Get(notify.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var p notify.Payload
		_ = json.Unmarshal(body, &p)
		events <- p
	}))
	defer hook.Close()
	t.Setenv("FERRY_TEST_HOOK_SECRET", hookSecret)
	yaml, err := os.ReadFile(filepath.Join(dir, "ferry.yaml"))
	require.NoError(t, err)
	yaml = append(yaml, fmt.Sprintf("alerts:\n  webhooks:\n    - {url: %q, secret_env: FERRY_TEST_HOOK_SECRET}\n", hook.URL+"/ferry")...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ferry.yaml"), yaml, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "syncs", "companies.yaml"), []byte(`
source: {table: crm.companies}
target: {connection: erp, object: partners}
mapping: [{source: name, target: name}]
schedule: {daily: "06:30", timezone: Europe/Brussels}
`), 0o644))
	code, out, errOut := ferry(t, "--project", dir, "--db", wh, "import", dir)
	require.Equal(t, exitOK, code, out+errOut)
	server, _, serverErr := ferryProcess(t, nil, "--db", wh, "serve", "--addr", loopbackAddr(t), "--replica", "r1", "--workers", "1")
	defer server.Process.Kill()

	code, out, errOut = ferry(t, "--db", wh, "run", "companies", "--via-server")
	require.Equal(t, exitRecords, code, "the company without a name fails: %s%s%s", out, errOut, serverErr)
	assert.Regexp(t, `companies\s+succeeded_with_errors read 3  inserted 2 .* failed 1`, out)
	assert.Contains(t, errOut, "companies queued (job ")

	select {
	case ev := <-events:
		assert.Equal(t, "run.succeeded_with_errors", ev.Event)
		assert.Equal(t, "companies", ev.Run.Sync)
		assert.EqualValues(t, 2, ev.Run.Inserted)
		assert.Equal(t, "cli", ev.Run.Trigger)
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook got no event")
	}

	code, out, _ = ferry(t, "--project", dir, "--db", wh, "status", "companies")
	require.Equal(t, exitOK, code)
	assert.Regexp(t, `schedule daily at 06:30 Europe/Brussels; next run \d{4}-`, out)
	assert.Regexp(t, `\d+\s+\S+ \S+\s+cli\s+succeeded_with_errors`, out)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, wh)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var replica, trigger string
	require.NoError(t, conn.QueryRow(ctx, `SELECT replica, triggered_by FROM ferry.runs`).Scan(&replica, &trigger))
	assert.Equal(t, []string{"r1", "cli"}, []string{replica, trigger}, "the server ran it")

	code, out, _ = ferry(t, "--project", dir, "schedule", "list")
	require.Equal(t, exitOK, code)
	assert.Regexp(t, `sync\s+companies\s+daily at 06:30 Europe/Brussels\s+\d{4}-\d\d-\d\d \d\d:\d\d:00`, out)

	code, out, errOut = ferry(t, "--db", wh, "run", "nope", "--via-server")
	assert.Equal(t, exitUsage, code, out+errOut)
	assert.Contains(t, errOut, `unknown sync "nope"`)
}
