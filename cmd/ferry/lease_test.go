package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

// ferryProcess starts the CLI as a real process (the test binary run as
// ferry), with env added to the test's environment.
func ferryProcess(t *testing.T, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, append([]string{cliCommand}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	return cmd, &out, &errOut
}

// crmProject writes a project that syncs crm.contacts (n rows) to a
// CRM-like server through the http connector, and returns its folder, the
// warehouse URL and the server.
func crmProject(t *testing.T, n int) (string, string, *crmtest.Server) {
	t.Helper()
	srv := crmtest.New(t, crmtest.Options{Token: "s3cret-token", Objects: map[string]crmtest.Object{
		"contacts": {Required: []string{"email"}, Unique: []string{"email"}},
	}})
	wh := dbtest.NewURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, wh)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, fmt.Sprintf(`CREATE SCHEMA crm;
		CREATE TABLE crm.contacts (id int PRIMARY KEY, name text, email text, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO crm.contacts (id, name, email) SELECT g, 'Contact ' || g, 'c' || g || '@example.com' FROM generate_series(1, %d) g;`, n))
	require.NoError(t, err)
	settings, err := json.Marshal(map[string]any{
		"base_url": srv.URL, "concurrency": 4,
		"auth": map[string]any{"type": "bearer", "token_env": "FERRY_TEST_CRM_TOKEN"},
		"objects": map[string]any{"contacts": map[string]any{
			"lookup": map[string]any{"path": "/contacts/search"},
		}},
	})
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "syncs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(fmt.Sprintf("connections:\n  crm:\n    kind: http\n    settings: %s\n", settings)), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "syncs", "contacts.yaml"), []byte(`
source: {table: crm.contacts, page_size: 25}
target: {connection: crm, object: contacts, match_on: [email]}
mapping: [{source: name, target: name}, {source: email, target: email}]
`), 0o644))
	return dir, wh, srv
}

// A ferry run stopped (SIGSTOP) mid-run loses its claim once its lease
// expires; a second run takes the sync over and finishes it; the first,
// continued, sends nothing more and says why. Every contact exists once.
func TestStoppedRunLosesItsClaimAndWritesNothingMore(t *testing.T) {
	const n = 400
	dir, wh, srv := crmProject(t, n)
	srv.SetLatency(15 * time.Millisecond)
	env := []string{"FERRY_TEST_CRM_TOKEN=s3cret-token", leaseTTLEnv + "=1s"}
	first, _, firstErr := ferryProcess(t, env, "--project", dir, "--db", wh, "run", "contacts")
	require.Eventually(t, func() bool { return srv.Count("contacts") >= 50 }, 20*time.Second, 5*time.Millisecond)
	require.NoError(t, first.Process.Signal(syscall.SIGSTOP))
	stoppedAt := srv.Count("contacts")

	time.Sleep(1500 * time.Millisecond) // past the first run's lease
	srv.SetLatency(0)
	second, secondOut, secondErr := ferryProcess(t, env, "--project", dir, "--db", wh, "run", "contacts")
	require.NoError(t, second.Wait(), "second run: %s%s", secondOut, secondErr)

	require.NoError(t, first.Process.Signal(syscall.SIGCONT))
	err := first.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, exitFailed, exit.ExitCode())
	assert.Contains(t, firstErr.String(), "lost its claim on the sync")

	emails := map[string]int{}
	for _, r := range srv.Records("contacts") {
		emails[fmt.Sprint(r["email"])]++
	}
	assert.Len(t, emails, n, "every contact is in the CRM")
	for email, count := range emails {
		assert.Equal(t, 1, count, "%s exists once", email)
	}
	t.Logf("stopped after %d contacts; the CRM holds %d", stoppedAt, srv.Count("contacts"))
}

// A ferry run killed mid-write (kill -9) leaves its inserts in flight to be
// settled, not a page of them: the intents of chunks not sent yet are never
// written. Without match_on those stay pending for the analyst; every
// other record syncs on the next run, once.
func TestKilledRunLeavesOnlyItsInFlightInsertsPending(t *testing.T) {
	const n = 1200
	dir, wh, srv := crmProject(t, n)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "syncs", "contacts.yaml"), []byte(`
source: {table: crm.contacts}
target: {connection: crm, object: contacts}
mapping: [{source: name, target: name}, {source: email, target: email}]
`), 0o644))
	srv.SetLatency(20 * time.Millisecond)
	env := []string{"FERRY_TEST_CRM_TOKEN=s3cret-token"}
	first, _, _ := ferryProcess(t, env, "--project", dir, "--db", wh, "run", "contacts")
	require.Eventually(t, func() bool { return srv.Count("contacts") >= 250 }, 20*time.Second, 2*time.Millisecond)
	require.NoError(t, first.Process.Kill())
	_, _ = first.Process.Wait()
	killedAt := srv.Count("contacts")
	srv.SetLatency(0)

	t.Setenv("FERRY_TEST_CRM_TOKEN", "s3cret-token")
	code, out, errOut := ferry(t, "--project", dir, "--db", wh, "run", "contacts")
	require.Equal(t, exitRecords, code, out+errOut)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, wh)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var pending, success int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'success') FROM link_tables.contacts`).Scan(&pending, &success))
	assert.LessOrEqual(t, pending, 200, "at most the two chunks in flight (2 × 100 inserts) are left to settle, not the page (1000)")
	assert.Positive(t, pending)
	assert.Equal(t, n, pending+success)
	emails := map[string]int{}
	for _, r := range srv.Records("contacts") {
		emails[fmt.Sprint(r["email"])]++
	}
	for email, count := range emails {
		assert.Equal(t, 1, count, "%s exists once", email)
	}
	t.Logf("killed with %d contacts in the CRM; then %d pending, %d synced", killedAt, pending, success)
}
