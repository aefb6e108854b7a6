package crmtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// childEnv, when set, makes a test binary serve a Server instead of running
// its tests: it holds the server's Options as JSON.
const childEnv = "FERRY_CRMTEST_CHILD"

// Child is a Server running in a child process: the test binary started
// again. Benchmarks use it so that the CPU their own process uses is the
// client's alone, not the client's and the server's together.
type Child struct {
	// URL is the server's base URL, as Server.URL.
	URL     string
	control string
}

// ChildStats is what a Child reports of itself.
type ChildStats struct {
	Records  map[string]int `json:"records"`  // records held, by object
	Requests int            `json:"requests"` // requests received
	CPU      time.Duration  `json:"cpu"`      // the child process's CPU so far
	Waits    int            `json:"waits"`    // requests that waited for the latency
	Waited   time.Duration  `json:"waited"`   // how long they waited in all
}

// ServeChild serves a Server until standard input closes and exits, when
// this process was started by StartChild; otherwise it returns at once. A
// TestMain that starts children calls it first.
func ServeChild() {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crmtest child:", err)
		os.Exit(2)
	}
	var opts Options
	if err := json.Unmarshal([]byte(spec), &opts); err != nil {
		fail(fmt.Errorf("reading the options in %s: %w", childEnv, err))
	}
	srv, err := NewServer(opts)
	if err != nil {
		fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	control := http.NewServeMux()
	control.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		waits, waited := srv.Waited()
		records := map[string]int{}
		for name := range opts.Objects {
			records[name] = srv.Count(name)
		}
		_ = json.NewEncoder(w).Encode(ChildStats{
			Records: records, Requests: srv.Requests(), CPU: processCPU(), Waits: waits, Waited: waited,
		})
	})
	go func() { _ = http.Serve(ln, control) }()
	fmt.Printf("%s http://%s\n", srv.URL, ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	srv.Close()
	os.Exit(0)
}

// StartChild starts a Server with opts in a child process, stopped when tb
// ends. The test binary's TestMain must call ServeChild.
func StartChild(tb testing.TB, opts Options) *Child {
	tb.Helper()
	spec, err := json.Marshal(opts)
	if err != nil {
		tb.Fatalf("crmtest: encoding the child's options: %v", err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("crmtest: starting the child: %v", err)
	}
	tb.Cleanup(func() {
		_ = stdin.Close() // the child's signal to stop
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
	if err != nil {
		tb.Fatalf("crmtest: the child did not print its address: %v", err)
	}
	api, control, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok {
		tb.Fatalf("crmtest: the child printed %q, not its addresses", line)
	}
	return &Child{URL: api, control: control}
}

// Stats asks the child what it holds and has used so far.
func (c *Child) Stats(tb testing.TB) ChildStats {
	tb.Helper()
	resp, err := http.Get(c.control + "/stats")
	if err != nil {
		tb.Fatalf("crmtest: asking the child for its stats: %v", err)
	}
	defer resp.Body.Close()
	var s ChildStats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		tb.Fatalf("crmtest: reading the child's stats: %v", err)
	}
	return s
}
