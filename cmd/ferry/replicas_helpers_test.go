package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/queries/dbtest"
)

// serveReplica is one `ferry serve` process a test started (the test
// binary run as the CLI, as ferryProcess does), on a port of its own.
type serveReplica struct {
	name  string
	url   string // http://127.0.0.1:port
	token string
	log   string // the process's stdout and stderr
	cmd   *exec.Cmd
	done  chan struct{} // closed once the process exited and was reaped
	err   error         // cmd.Wait's, once done is closed
}

// startServeReplica starts `ferry serve` on the warehouse wh as replica
// name, with env added to the test's environment, and waits until it
// answers /readyz. The process is killed when the test ends, and its log
// shown when the test failed.
func startServeReplica(t *testing.T, wh, name, token string, env []string, args ...string) *serveReplica {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	addr := freeAddr(t)
	r := &serveReplica{name: name, url: "http://" + addr, token: token, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	logFile, err := os.Create(r.log)
	require.NoError(t, err)
	defer logFile.Close()
	r.cmd = exec.Command(exe, append([]string{cliCommand, "--db", wh, "serve", "--addr", addr, "--replica", name}, args...)...)
	r.cmd.Env = append(os.Environ(), env...)
	// A file, not a buffer: the process writes it itself, and the test may
	// read it at any time.
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	require.NoError(t, r.cmd.Start())
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		if r.running() {
			_ = r.cmd.Process.Signal(syscall.SIGCONT)
			_ = r.cmd.Process.Kill()
			<-r.done
		}
		if t.Failed() {
			t.Logf("log of replica %s:\n%s", r.name, r.logTail(200))
		}
	})
	ready := func() bool {
		res, err := http.Get(r.url + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
	deadline := time.Now().Add(60 * time.Second)
	for !ready() {
		if !r.running() {
			require.FailNowf(t, "ferry serve exited", "replica %s: %v\n%s", name, r.err, r.logTail(50))
		}
		if time.Now().After(deadline) {
			require.FailNowf(t, "ferry serve is not ready", "replica %s after 60s\n%s", name, r.logTail(50))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return r
}

// freeAddr is a free port on 127.0.0.1.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func (r *serveReplica) running() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// logTail is the last n lines of the replica's log.
func (r *serveReplica) logTail(n int) string {
	b, err := os.ReadFile(r.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop sends SIGTERM and waits for a clean exit.
func (r *serveReplica) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-r.done:
	case <-time.After(45 * time.Second):
		require.FailNowf(t, "ferry serve did not stop", "replica %s, 45s after SIGTERM\n%s", r.name, r.logTail(50))
	}
	require.NoError(t, r.err, "replica %s exits 0 on SIGTERM\n%s", r.name, r.logTail(50))
}

// kill kills the process (SIGKILL: nothing runs on its way out) and reaps
// it, so that its pid is gone, as a crashed replica's is.
func (r *serveReplica) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, r.cmd.Process.Kill())
	<-r.done
}

// call sends a request to the replica's API with its token and returns the
// status and the body.
func (r *serveReplica) call(t require.TestingT, method, path string, body any) (int, []byte) {
	helper(t)
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.url+"/api/v1"+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+r.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 30 * time.Second}
	res, err := client.Do(req)
	require.NoError(t, err, "%s %s on replica %s", method, path, r.name)
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, out
}

// schedules is GET /schedules on this replica: what its scheduler holds.
func (r *serveReplica) schedules(t require.TestingT) []scheduleEntry {
	helper(t)
	status, body := r.call(t, http.MethodGet, "/schedules", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var out struct {
		Schedules []scheduleEntry `json:"schedules"`
	}
	require.NoError(t, json.Unmarshal(body, &out), string(body))
	return out.Schedules
}

// scheduleEntry is one schedule as GET /schedules shows it.
type scheduleEntry struct {
	What     string `json:"what"`
	Name     string `json:"name"`
	Spec     string `json:"spec"`
	Schedule struct {
		Every  string `json:"every"`
		Paused bool   `json:"paused"`
	} `json:"schedule"`
	Next *time.Time `json:"next"`
}

// importAndToken stores the project folder dir in the warehouse (ferry
// import) and returns a new admin token (ferry token create), as an
// operator sets up a server.
func importAndToken(t *testing.T, wh, dir string) string {
	t.Helper()
	importProject(t, wh, dir)
	code, out, errOut := ferry(t, "--db", wh, "token", "create", "--name", "replicas-test", "--role", "admin")
	require.Equal(t, exitOK, code, errOut)
	token := strings.TrimSpace(out)
	require.NotEmpty(t, token)
	return token
}

// importProject runs ferry import dir on the warehouse wh.
func importProject(t *testing.T, wh, dir string) {
	t.Helper()
	code, out, errOut := ferry(t, "--db", wh, "import", dir)
	require.Equal(t, exitOK, code, out+errOut)
}

// whDB is the warehouse as the test reads it.
type whDB struct {
	pool *pgxpool.Pool
}

func openWarehouse(t *testing.T, wh string) *whDB {
	t.Helper()
	return &whDB{pool: dbtest.Open(t, wh)}
}

// int runs a query that returns one integer.
func (w *whDB) int(t require.TestingT, sql string, args ...any) int {
	helper(t)
	var n int
	require.NoError(t, w.pool.QueryRow(context.Background(), sql, args...).Scan(&n), sql)
	return n
}

// quiet reports whether nothing runs and nothing waits in the run queue
// (River's jobs live in the ferry schema).
func (w *whDB) quiet(t require.TestingT) bool {
	helper(t)
	return w.int(t, `SELECT (SELECT count(*) FROM ferry.runs WHERE status = 'running')
		+ (SELECT count(*) FROM ferry.river_job WHERE state IN ('available', 'scheduled', 'running', 'retryable', 'pending'))`) == 0
}

// runRow is a row of ferry.runs, as the tests look at it.
type runRow struct {
	ID          int64
	Sync        string
	Status      string
	TriggeredBy string
	Replica     *string
	JobID       *int64
	Tick        *time.Time
	StartedAt   time.Time
	FinishedAt  *time.Time
	Error       *string
}

func (r runRow) String() string {
	s := fmt.Sprintf("run %d %s %s by %s", r.ID, r.Sync, r.Status, r.TriggeredBy)
	if r.Replica != nil {
		s += " on " + *r.Replica
	}
	if r.Tick != nil {
		s += " tick " + r.Tick.UTC().Format("15:04:05")
	}
	if r.Error != nil {
		s += ": " + *r.Error
	}
	return s
}

// runs lists the runs of a sync ("" for every sync) in id order.
func (w *whDB) runs(t require.TestingT, sync string) []runRow {
	helper(t)
	rows, err := w.pool.Query(context.Background(), `SELECT id, sync, status, triggered_by, replica, job_id, tick, started_at, finished_at, error
		FROM ferry.runs WHERE $1 = '' OR sync = $1 ORDER BY id`, sync)
	require.NoError(t, err)
	defer rows.Close()
	var out []runRow
	for rows.Next() {
		var r runRow
		require.NoError(t, rows.Scan(&r.ID, &r.Sync, &r.Status, &r.TriggeredBy, &r.Replica, &r.JobID, &r.Tick, &r.StartedAt, &r.FinishedAt, &r.Error))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

// helper marks the caller a helper when t is a *testing.T (the helpers
// above also take the *assert.CollectT of require.EventuallyWithT).
func helper(t require.TestingT) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
}
