//go:build unix

package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
	"github.com/ferry-sync/ferry/engine/enginetest"
	"github.com/ferry-sync/ferry/engine/project"
)

// The REST benchmarks run the CRM-like server in a child process (this test
// binary again: crmtest.StartChild), so that the CPU this process uses is
// the client's alone: engine and http connector, not the server.
const (
	crmToken   = "bench-token"
	crmLatency = 5 * time.Millisecond
)

// startCRM starts the benchmarks' server in a child process; it is stopped
// when b ends. The engine writes partners, the bare client its own object.
func startCRM(b *testing.B, latency time.Duration) *crmtest.Child {
	b.Helper()
	return crmtest.StartChild(b, crmtest.Options{
		Token:   crmToken,
		Latency: latency,
		Objects: map[string]crmtest.Object{
			"partners": {Required: []string{"name"}, Unique: []string{"vat"}},
			"bare":     {Required: []string{"name"}},
		},
	})
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFullSyncHTTP: a first full sync through the engine to the http
// target, on loopback, into a crmtest server (in a child process) that adds
// 5ms to every request. At concurrency c the ceiling is c/5ms records/s.
//
//	go test -run '^$' -bench HTTP -benchtime 1x ./engine/
//
// Besides records/s, pct-of-ceiling, client-cpu-µs/record (this process:
// engine and connector, from getrusage) and peak-MB, it reports what
// explains them: server-cpu-µs/record (the child's CPU: the 2 cores are
// shared), server-wait-ms (the latency the server really added per request:
// its timers fire late on a busy machine) and pct-in-write (the share of the
// run the target spent inside Write calls; the rest is the engine's work on
// each page between two calls, when no request is in flight).
func BenchmarkFullSyncHTTP(b *testing.B) {
	for _, c := range []struct{ concurrency, rows, batch int }{
		{16, 20_000, 0},
		{64, 50_000, 0},
		{16, 100_000, 100}, // batches of 100, 16 in flight
	} {
		name := fmt.Sprintf("concurrency=%d", c.concurrency)
		if c.batch > 0 {
			name += fmt.Sprintf("/batch=%d", c.batch)
		}
		b.Run(name, func(b *testing.B) {
			benchHTTP(b, c.concurrency, c.rows, c.batch)
		})
	}
}

// bareHTTP is the limit Ferry is measured against, in the same run: a bare
// client that reads the scope with pgx and POSTs each row as JSON with
// net/http at the same concurrency, into the same server (its own object):
// no link table, no bookmark, no intents, no retries. It returns how long
// it took and the CPU this process used.
func bareHTTP(b *testing.B, crm *crmtest.Child, db *pgxpool.Pool, concurrency, want, batch int) (time.Duration, time.Duration) {
	b.Helper()
	ctx := context.Background()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency}}
	bodies := make(chan []byte, 4*concurrency)
	var failed atomic.Int64
	cpu, start := processCPU(), time.Now()
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for body := range bodies {
				path := "/bare"
				if batch > 0 {
					path = "/bare/batch/create"
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, crm.URL+path, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+crmToken)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	rows, err := db.Query(ctx, `SELECT name, vat, city, employees, revenue::text, active, founded::text FROM crm.companies`)
	require.NoError(b, err)
	n := 0
	var pending []map[string]any
	flush := func() {
		if len(pending) == 0 {
			return
		}
		body, err := json.Marshal(map[string]any{"inputs": pending})
		require.NoError(b, err)
		bodies <- body
		pending = nil
	}
	for rows.Next() {
		var name, vat, city, revenue, founded string
		var employees int
		var active bool
		require.NoError(b, rows.Scan(&name, &vat, &city, &employees, &revenue, &active, &founded))
		rec := map[string]any{"name": name, "vat": vat, "city": city, "employees": employees,
			"revenue": json.Number(revenue), "active": active, "founded": founded, "origin": "CRM"}
		n++
		if batch > 0 {
			if pending = append(pending, rec); len(pending) == batch {
				flush()
			}
			continue
		}
		body, err := json.Marshal(rec)
		require.NoError(b, err)
		bodies <- body
	}
	flush()
	require.NoError(b, rows.Err())
	close(bodies)
	wg.Wait()
	took, used := time.Since(start), processCPU()-cpu
	require.Equal(b, want, n)
	require.Zero(b, failed.Load(), "the bare client's requests all succeed")
	client.CloseIdleConnections()
	return took, used
}

// timedTarget measures the time spent in Write calls.
type timedTarget struct {
	*httptarget.Target
	busy *atomic.Int64 // nanoseconds
}

func (t timedTarget) Write(ctx context.Context, object string, changes []connector.Change) ([]connector.Result, error) {
	start := time.Now()
	defer func() { t.busy.Add(int64(time.Since(start))) }()
	return t.Target.Write(ctx, object, changes)
}

// benchHTTP syncs rows into a crmtest child with the given concurrency
// (and batch size: 0 writes one record per request).
func benchHTTP(b *testing.B, concurrency, rows, batch int) {
	crm := startCRM(b, crmLatency)
	s := benchSync()
	wh := setupBench(b, rows, &enginetest.Discard{}, s)
	// The connection is declared as in a project and opened by its kind,
	// a new target for every run.
	object := map[string]any{}
	if batch > 0 {
		object["batch"] = map[string]any{"size": batch,
			"insert": map[string]any{"path": "/partners/batch/create", "body": map[string]any{"inputs": "{{items}}"}}}
	}
	settings, err := json.Marshal(map[string]any{
		"base_url":    crm.URL,
		"auth":        map[string]any{"type": "bearer", "token_env": "FERRY_BENCH_CRM_TOKEN"},
		"concurrency": concurrency,
		"objects":     map[string]any{"partners": object},
	})
	require.NoError(b, err)
	p, err := project.New(nil, map[string]project.Connection{"erp": {Kind: "http", Settings: settings}}, s)
	require.NoError(b, err)
	var busy atomic.Int64
	open := func(ctx context.Context, c project.Connection) (connector.Target, error) {
		env := func(name string) (string, bool) { return crmToken, name == "FERRY_BENCH_CRM_TOKEN" }
		t, err := httptarget.Kind().Open(ctx, c.Settings, env)
		if err != nil {
			return nil, err
		}
		return timedTarget{Target: t.(*httptarget.Target), busy: &busy}, nil
	}
	bb := &testBundle{db: wh.db, eng: engine.New(wh.db, engine.StaticProject(p), engine.Options{Open: open}), proj: p}

	var elapsed, clientCPU, bareElapsed, bareCPU time.Duration
	var total crmtest.ChildStats
	var mb float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		runtime.GC()
		e, c := bareHTTP(b, crm, wh.db, concurrency, rows, batch)
		bareElapsed += e
		bareCPU += c
		b.StopTimer()
		resetSync(b, bb)
		runtime.GC()
		before := crm.Stats(b)
		b.StartTimer()
		cpu := processCPU()
		start := time.Now()
		mb = max(mb, peakMemory(func() {
			res := runOnce(b, bb, engine.RunOptions{})
			require.Equal(b, int64(rows), res.Counts.Inserted)
		}))
		elapsed += time.Since(start)
		clientCPU += processCPU() - cpu
		b.StopTimer()
		after := crm.Stats(b)
		require.Equal(b, rows, after.Records["partners"]-before.Records["partners"], "records the server holds")
		total.Requests += after.Requests - before.Requests
		total.CPU += after.CPU - before.CPU
		total.Waits += after.Waits - before.Waits
		total.Waited += after.Waited - before.Waited
		b.StartTimer()
	}
	n := float64(rows * b.N)
	perSec := n / elapsed.Seconds()
	ceiling := float64(concurrency) / crmLatency.Seconds()
	b.ReportMetric(perSec, "records/s")
	b.ReportMetric(100*perSec/ceiling, "pct-of-ceiling")
	b.ReportMetric(float64(clientCPU.Microseconds())/n, "client-cpu-µs/record")
	b.ReportMetric(mb, "peak-MB")
	b.ReportMetric(float64(total.CPU.Microseconds())/n, "server-cpu-µs/record")
	b.ReportMetric(total.Waited.Seconds()*1000/float64(max(1, total.Waits)), "server-wait-ms")
	b.ReportMetric(100*float64(busy.Load())/float64(elapsed), "pct-in-write")
	bare := n / bareElapsed.Seconds()
	b.ReportMetric(bare, "bare-records/s")
	b.ReportMetric(perSec/bare, "x-bare-rate")
	b.ReportMetric(float64(clientCPU)/float64(bareCPU), "x-bare-cpu")
	b.ReportMetric(float64(total.Requests)/n, "requests/record")
	if batch > 0 {
		// The ceiling counts records, not requests.
		b.ReportMetric(100*perSec/(ceiling*float64(batch)), "pct-of-ceiling")
	}
}
