//go:build unix

package engine_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
)

// The REST benchmarks run the CRM-like server in a child process (this test
// binary again, told so by crmServeEnv), so that the CPU this process uses
// is the client's alone: engine and http connector, not the server.
const (
	crmServeEnv   = "FERRY_CRMTEST_SERVE"
	crmLatencyEnv = "FERRY_CRMTEST_LATENCY"
	crmToken      = "bench-token"
	crmLatency    = 5 * time.Millisecond
)

// TestMain only intercepts crmServeEnv: then this process is the benchmarks'
// CRM server and never runs a test.
func TestMain(m *testing.M) {
	if os.Getenv(crmServeEnv) == "1" {
		serveCRM()
		return
	}
	os.Exit(m.Run())
}

// crmStats is what the child server reports on its control address.
type crmStats struct {
	Records  int           `json:"records"`  // partners held
	Requests int           `json:"requests"` // requests received
	CPU      time.Duration `json:"cpu"`      // the server process's CPU so far
}

// serveCRM runs crmtest until stdin closes (the parent closes it, or dies).
// It prints "<api url> <control url>" as its first line on stdout.
func serveCRM() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crmtest child:", err)
		os.Exit(2)
	}
	latency, err := time.ParseDuration(os.Getenv(crmLatencyEnv))
	if err != nil {
		fail(err)
	}
	srv, err := crmtest.NewServer(crmtest.Options{
		Token:   crmToken,
		Latency: latency,
		Objects: map[string]crmtest.Object{"partners": {Required: []string{"name"}, Unique: []string{"vat"}}},
	})
	if err != nil {
		fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	control := http.NewServeMux()
	control.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(crmStats{Records: srv.Count("partners"), Requests: srv.Requests(), CPU: processCPU()})
	})
	go func() { _ = http.Serve(ln, control) }()
	fmt.Printf("%s http://%s\n", srv.URL, ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	srv.Close()
	os.Exit(0)
}

// crmProcess is a crmtest server running in a child process.
type crmProcess struct {
	URL     string
	control string
}

// startCRM starts the child server; it is stopped when b ends.
func startCRM(b *testing.B, latency time.Duration) *crmProcess {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), crmServeEnv+"=1", crmLatencyEnv+"="+latency.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(b, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	b.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(b, err, "the crmtest child did not print its address")
	api, control, ok := strings.Cut(strings.TrimSpace(line), " ")
	require.True(b, ok, "crmtest child printed %q", line)
	return &crmProcess{URL: api, control: control}
}

func (p *crmProcess) stats(b *testing.B) crmStats {
	b.Helper()
	resp, err := http.Get(p.control + "/stats")
	require.NoError(b, err)
	defer resp.Body.Close()
	var s crmStats
	require.NoError(b, json.NewDecoder(resp.Body).Decode(&s))
	return s
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
// 5ms to every request. The latency ceiling is concurrency/5ms records/s.
//
//	go test -run '^$' -bench HTTP -benchtime 1x ./engine/
func BenchmarkFullSyncHTTP(b *testing.B) {
	for _, c := range []struct{ concurrency, rows, pageSize int }{
		{16, 20_000, 0},
		{64, 50_000, 0},
	} {
		name := fmt.Sprintf("concurrency=%d", c.concurrency)
		if c.pageSize != 0 {
			name += fmt.Sprintf("/page_size=%d", c.pageSize)
		}
		b.Run(name, func(b *testing.B) { benchHTTP(b, c.concurrency, c.rows, c.pageSize) })
	}
}

func benchHTTP(b *testing.B, concurrency, rows, pageSize int) {
	crm := startCRM(b, crmLatency)
	target, err := httptarget.New(context.Background(), httptarget.Config{
		BaseURL:     crm.URL,
		Auth:        httptarget.Auth{Type: "bearer", TokenEnv: "CRM_TOKEN"},
		Env:         func(string) (string, bool) { return crmToken, true },
		Concurrency: concurrency,
		Objects:     map[string]httptarget.Object{"partners": {}},
	})
	require.NoError(b, err)
	s := benchSync()
	if pageSize != 0 {
		s.Source.PageSize = pageSize
	}
	bb := setupBench(b, rows, target, s)

	var elapsed, clientCPU, serverCPU time.Duration
	var requests int
	var mb float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		resetSync(b, bb)
		runtime.GC()
		before := crm.stats(b)
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
		after := crm.stats(b)
		require.Equal(b, rows, after.Records-before.Records, "records the server holds")
		requests += after.Requests - before.Requests
		serverCPU += after.CPU - before.CPU
		b.StartTimer()
	}
	n := float64(rows * b.N)
	perSec := n / elapsed.Seconds()
	ceiling := float64(concurrency) / crmLatency.Seconds()
	b.ReportMetric(perSec, "records/s")
	b.ReportMetric(100*perSec/ceiling, "pct-of-ceiling")
	b.ReportMetric(float64(clientCPU.Microseconds())/n, "client-cpu-µs/record")
	b.ReportMetric(float64(serverCPU.Microseconds())/n, "server-cpu-µs/record")
	b.ReportMetric(float64(requests)/n, "requests/record")
	b.ReportMetric(mb, "peak-MB")
}
