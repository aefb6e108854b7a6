//go:build chaos && failpoints && unix

package main

// The chaos loop (make chaos): seeds × a random mix of faults over a
// 2,000-record scope synced to a CRM-like server through the http kind,
// then healthy runs until nothing is left to do, then the invariants a user
// would check. A failing seed prints the command that replays it:
//
//	go test -tags 'chaos failpoints' -run TestChaos -chaos.seed S ./cmd/ferry/
//
// A seed fixes everything the loop chooses: the sync's settings (page size,
// concurrency, batches, unique emails, lookups before inserts), the fault
// rates, which runs are killed and where or when, the source edits between
// runs, and the fault each request meets (a hash of the seed, the run, the
// request's method, path, query and body, and how many times that same
// request was sent in the run), so that a replay meets the same faults
// whatever order the requests arrive in. Only the timing of kills "at a
// random time" and the interleaving of requests differ between replays.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

var (
	chaosSeeds   = flag.Int("chaos.seeds", 20, "how many seeds TestChaos runs")
	chaosSeed    = flag.Uint64("chaos.seed", 0, "replay this one seed (0: run -chaos.seeds seeds from -chaos.start)")
	chaosStart   = flag.Uint64("chaos.start", 0, "the first seed of the loop (0: one chosen from the clock, printed)")
	chaosRecords = flag.Int("chaos.records", 2000, "records in each seed's scope")
)

const (
	chaosToken    = "chaos-token"
	chaosTokenEnv = "FERRY_CHAOS_CRM_TOKEN"
	// chaosRunTimeout bounds one ferry process: a run that outlives it hangs.
	chaosRunTimeout = 90 * time.Second
	// chaosHealthyRuns bounds the healthy runs that must leave nothing to do.
	chaosHealthyRuns = 5
)

func TestChaos(t *testing.T) {
	seeds := []uint64{*chaosSeed}
	if *chaosSeed == 0 {
		start := *chaosStart
		if start == 0 {
			start = uint64(time.Now().UnixNano()%1_000_000_000) + 1
		}
		seeds = seeds[:0]
		for i := range *chaosSeeds {
			seeds = append(seeds, start+uint64(i))
		}
		t.Logf("chaos: %d seeds from %d (-chaos.start %d reruns this loop)", len(seeds), start, start)
	}
	var failed []uint64
	var took []time.Duration
	for _, seed := range seeds {
		began := time.Now()
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("chaos: seed %d failed; replay it with:\n\tgo test -tags 'chaos failpoints' -run TestChaos -chaos.seed %d -chaos.records %d ./cmd/ferry/", seed, seed, *chaosRecords)
				}
			}()
			chaosSeedRun(t, seed, *chaosRecords)
		})
		took = append(took, time.Since(began))
		if !ok {
			failed = append(failed, seed)
		}
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	var total time.Duration
	for _, d := range took {
		total += d
	}
	t.Logf("chaos: %d seeds run, %d with invariant violations %v; per seed: mean %s, median %s, max %s",
		len(seeds), len(failed), failed, (total / time.Duration(len(took))).Round(time.Millisecond),
		took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
	for _, seed := range failed {
		t.Errorf("chaos: seed %d violated an invariant; replay: go test -tags 'chaos failpoints' -run TestChaos -chaos.seed %d -chaos.records %d ./cmd/ferry/", seed, seed, *chaosRecords)
	}
}

// chaosPlan is what a seed chooses before anything runs.
type chaosPlan struct {
	pageSize, concurrency, batch int
	batchUpdates                 bool
	unique                       bool // the CRM refuses a second contact with the same email (409)
	lookupBefore                 bool // target.lookup_before_insert
	mix                          faultMix
	faultyRuns                   int
}

func newChaosPlan(rng *rand.Rand) chaosPlan {
	p := chaosPlan{
		pageSize:    []int{200, 500, 1000}[rng.IntN(3)],
		concurrency: []int{2, 4, 8}[rng.IntN(3)],
		unique:      rng.IntN(3) == 0,
		faultyRuns:  2 + rng.IntN(3),
	}
	if rng.IntN(3) == 0 {
		p.batch = []int{10, 25, 100}[rng.IntN(3)]
		p.batchUpdates = rng.IntN(2) == 0
	}
	p.lookupBefore = rng.IntN(5) == 0
	p.mix = faultMix{
		status5xx:    rng.Float64() * 0.06,
		limited:      rng.Float64() * 0.04,
		retryAfter:   rng.Float64(),
		lostAfter:    rng.Float64() * 0.02,
		resetBefore:  rng.Float64() * 0.02,
		gatewayAfter: rng.Float64() * 0.01,
	}
	return p
}

func (p chaosPlan) String() string {
	return fmt.Sprintf("page_size %d, concurrency %d, batch %d (updates %v), unique emails %v, lookup_before_insert %v, %d faulty runs, faults: %s",
		p.pageSize, p.concurrency, p.batch, p.batchUpdates, p.unique, p.lookupBefore, p.faultyRuns, p.mix)
}

// faultMix is the share of requests that meet each fault.
type faultMix struct {
	status5xx    float64 // 500, 502 or 503, not applied
	limited      float64 // 429, not applied
	retryAfter   float64 // the share of 429s with a Retry-After
	lostAfter    float64 // applied, then the connection is closed without an answer
	resetBefore  float64 // the connection is reset before the server reads the request
	gatewayAfter float64 // applied, then 504 (a gateway that gave up)
}

func (m faultMix) String() string {
	return fmt.Sprintf("5xx %.1f%%, 429 %.1f%% (%.0f%% with Retry-After), lost after apply %.1f%%, reset before apply %.1f%%, 504 after apply %.1f%%",
		100*m.status5xx, 100*m.limited, 100*m.retryAfter, 100*m.lostAfter, 100*m.resetBefore, 100*m.gatewayAfter)
}

type fault int

const (
	faultNone fault = iota
	fault5xx
	fault429
	fault429RetryAfter
	faultLostAfter
	faultResetBefore
	faultGatewayAfter
)

var faultNames = []string{"none", "5xx", "429", "429+Retry-After", "lost-after-apply", "reset-before-apply", "504-after-apply"}

// chaosProxy serves the CRM through faults: it decides each request's
// fault from the seed and the request, then answers, applies or drops it.
type chaosProxy struct {
	crm  *crmtest.Server
	seed uint64

	mu     sync.Mutex
	on     bool
	run    int
	mix    faultMix
	seen   map[uint64]int // request signature → times sent in this run
	counts [7]int         // faults met, over the seed
}

func (p *chaosProxy) setRun(run int, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.run, p.on, p.seen = run, on, map[uint64]int{}
}

func (p *chaosProxy) pick(r *http.Request, body []byte) (fault, float64) {
	h := fnv.New64a()
	_, _ = io.WriteString(h, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+"\n")
	_, _ = h.Write(body)
	sig := h.Sum64()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on {
		return faultNone, 0
	}
	nth := p.seen[sig]
	p.seen[sig]++
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], p.seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(p.run))
	binary.LittleEndian.PutUint64(key[16:], sig)
	binary.LittleEndian.PutUint64(key[24:], uint64(nth))
	h2 := fnv.New64a()
	_, _ = h2.Write(key[:])
	rng := rand.New(rand.NewPCG(h2.Sum64(), sig))
	u, v := rng.Float64(), rng.Float64()
	m := p.mix
	f := faultNone
	switch {
	case u < m.status5xx:
		f = fault5xx
	case u < m.status5xx+m.limited:
		f = fault429
		if v < m.retryAfter {
			f = fault429RetryAfter
		}
	case u < m.status5xx+m.limited+m.lostAfter:
		f = faultLostAfter
	case u < m.status5xx+m.limited+m.lostAfter+m.resetBefore:
		f = faultResetBefore
	case u < m.status5xx+m.limited+m.lostAfter+m.resetBefore+m.gatewayAfter:
		f = faultGatewayAfter
	}
	p.counts[f]++
	return f, v
}

func (p *chaosProxy) faultCounts() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var parts []string
	for f := fault5xx; f <= faultGatewayAfter; f++ {
		parts = append(parts, fmt.Sprintf("%s %d", faultNames[f], p.counts[f]))
	}
	return strings.Join(parts, ", ")
}

func (p *chaosProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	f, v := p.pick(r, body)
	answer := func(status int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, `{"message":%q}`, msg)
	}
	drop := func(reset bool) {
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("chaos proxy: cannot hijack")
		}
		conn, _, err := hj.Hijack()
		if err != nil {
			return
		}
		if tcp, ok := conn.(*net.TCPConn); ok && reset {
			_ = tcp.SetLinger(0) // RST, not FIN
		}
		_ = conn.Close()
	}
	switch f {
	case faultNone:
		p.crm.ServeHTTP(w, r)
	case fault5xx:
		answer([]int{500, 502, 503}[int(v*3)%3], "injected server error")
	case fault429:
		answer(http.StatusTooManyRequests, "rate limit exceeded")
	case fault429RetryAfter:
		w.Header().Set("Retry-After", []string{"0", "0.02", "0.05", "0.1"}[int(v*4)%4])
		answer(http.StatusTooManyRequests, "rate limit exceeded")
	case faultResetBefore:
		drop(true)
	case faultLostAfter:
		p.crm.ServeHTTP(httptest.NewRecorder(), r)
		drop(false)
	case faultGatewayAfter:
		p.crm.ServeHTTP(httptest.NewRecorder(), r)
		answer(http.StatusGatewayTimeout, "gateway timeout")
	}
}

// chaosInvocation is how one ferry process ended.
type chaosInvocation struct {
	run     int
	healthy bool
	kill    string // "" or the failpoint spec, or "after <duration>"
	killed  bool
	code    int
	out     string
}

func (c chaosInvocation) String() string {
	s := fmt.Sprintf("run %d", c.run)
	if c.healthy {
		s += " (healthy)"
	}
	if c.kill != "" {
		s += " kill " + c.kill
	}
	if c.killed {
		return s + ": killed"
	}
	return s + fmt.Sprintf(": exit %d", c.code)
}

func chaosSeedRun(t *testing.T, seed uint64, n int) {
	began := time.Now()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	plan := newChaosPlan(rng)
	t.Logf("seed %d: %s", seed, plan)

	objects := map[string]crmtest.Object{"contacts": {Required: []string{"email"}}}
	if plan.unique {
		objects["contacts"] = crmtest.Object{Required: []string{"email"}, Unique: []string{"email"}}
	}
	crm := crmtest.New(t, crmtest.Options{Token: chaosToken, Objects: objects})
	proxy := &chaosProxy{crm: crm, seed: seed, mix: plan.mix, seen: map[uint64]int{}}
	front := httptest.NewUnstartedServer(proxy)
	front.Config.ErrorLog = log.New(io.Discard, "", 0)
	front.Start()
	t.Cleanup(front.Close)

	wh := dbtest.NewURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, wh)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	_, err = conn.Exec(ctx, fmt.Sprintf(`CREATE SCHEMA crm;
		CREATE TABLE crm.contacts (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO crm.contacts (id, name, email) SELECT g, 'Contact ' || g, 'c' || g || '@example.com' FROM generate_series(1, %d) g;
		CREATE INDEX ON crm.contacts (_sdc_batched_at);`, n))
	require.NoError(t, err)
	dir := chaosProjectDir(t, front.URL, plan)

	var history []chaosInvocation
	report := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "seed %d: %s\nfaults met: %s\n", seed, plan, proxy.faultCounts())
		for _, h := range history {
			fmt.Fprintf(&b, "  %s\n", h)
		}
		return b.String()
	}
	env := []string{chaosTokenEnv + "=" + chaosToken}
	invoke := func(run int, healthy bool) chaosInvocation {
		inv := chaosInvocation{run: run, healthy: healthy}
		procEnv := env
		var killAfter time.Duration
		if !healthy {
			// The first run writes every record: its pages and chunks
			// are many; later runs write what failed and was edited.
			pages, chunks, span := 1, 1, 400
			if run == 1 {
				pages = max(1, n/plan.pageSize)
				chunks = max(1, n/max(100, 4*plan.concurrency))
				span = 1500
			}
			switch k := rng.IntN(10); {
			case k < 4: // at a failpoint, its n-th time
				points := engine.Failpoints()
				point := points[rng.IntN(len(points))]
				hits := chunks
				if point == "after-scope-read" || point == "before-bookmark-commit" {
					hits = pages
				}
				inv.kill = fmt.Sprintf("%s:%d", point, 1+rng.IntN(hits))
				procEnv = append(procEnv[:len(procEnv):len(procEnv)], failpointEnv+"="+inv.kill)
			case k < 6: // at a random time
				killAfter = time.Duration(50+rng.IntN(span)) * time.Millisecond
				inv.kill = "after " + killAfter.String()
			}
		}
		proxy.setRun(run, !healthy)
		cmd, out, errOut := ferryProcess(t, procEnv, "--project", dir, "--db", wh, "run", "contacts")
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		var timer <-chan time.Time
		if killAfter > 0 {
			timer = time.After(killAfter)
		}
		select {
		case err = <-done:
		case <-timer:
			_ = cmd.Process.Kill()
			err = <-done
		case <-time.After(chaosRunTimeout):
			_ = cmd.Process.Kill()
			<-done
			history = append(history, inv)
			require.Failf(t, "a ferry run hung", "%s\nrun %d did not end within %s\nstdout:\n%s\nstderr:\n%s", report(), run, chaosRunTimeout, out, errOut)
		}
		inv.out = out.String() + errOut.String()
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit):
			if st, ok := exit.Sys().(syscall.WaitStatus); ok && st.Signaled() && st.Signal() == syscall.SIGKILL {
				inv.killed = true
			} else {
				inv.code = exit.ExitCode()
			}
		default:
			require.NoError(t, err)
		}
		history = append(history, inv)
		if !inv.killed {
			chaosCheckRunRow(t, conn, inv, report)
		}
		return inv
	}

	// Faulty runs, with edits to the source between them.
	run := 0
	for range plan.faultyRuns {
		run++
		invoke(run, false)
		chaosEdit(t, conn, rng, n, run)
	}
	// Healthy runs until one has nothing left to do.
	proxy.setRun(run+1, false)
	settled := false
	for range chaosHealthyRuns {
		run++
		inv := invoke(run, true)
		if inv.code != exitOK {
			continue
		}
		var inserted, updated, failed int64
		require.NoError(t, conn.QueryRow(ctx, `SELECT inserted, updated, failed FROM ferry.runs WHERE sync = 'contacts' ORDER BY id DESC LIMIT 1`).Scan(&inserted, &updated, &failed))
		if inserted == 0 && updated == 0 && failed == 0 {
			settled = true
			break
		}
	}
	if !settled {
		require.Failf(t, "healthy runs never had nothing left to do", "%s\nlast output:\n%s", report(), history[len(history)-1].out)
	}
	chaosInvariants(t, conn, crm, n, report)
	outcomes := make([]string, len(history))
	for i, h := range history {
		outcomes[i] = h.String()
		if !h.killed && h.code != exitOK && h.code != exitRecords {
			// A run that failed as a whole under faults: say why.
			outcomes[i] += " (" + lastLines(h.out, 3) + ")"
		}
	}
	t.Logf("seed %d: %d runs (%d killed): %s; faults met: %s; %s", seed, len(history), countKilled(history),
		strings.Join(outcomes, "; "), proxy.faultCounts(), time.Since(began).Round(time.Millisecond))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

func countKilled(h []chaosInvocation) int {
	k := 0
	for _, c := range h {
		if c.killed {
			k++
		}
	}
	return k
}

func chaosProjectDir(t *testing.T, baseURL string, plan chaosPlan) string {
	object := map[string]any{"lookup": map[string]any{"path": "/contacts/search"}}
	if plan.batch > 0 {
		batch := map[string]any{"size": plan.batch,
			"insert": map[string]any{"path": "/contacts/batch/create", "body": map[string]any{"inputs": "{{items}}"}}}
		if plan.batchUpdates {
			batch["update"] = map[string]any{"path": "/contacts/batch/update", "body": map[string]any{"inputs": "{{items}}"},
				"item": map[string]any{"id": "{{id}}", "fields": "{{record}}"}}
		}
		object["batch"] = batch
	}
	settings, err := json.Marshal(map[string]any{
		"base_url": baseURL, "concurrency": plan.concurrency,
		"auth":         map[string]any{"type": "bearer", "token_env": chaosTokenEnv},
		"timeout":      "10s",
		"backoff_base": "5ms", "backoff_max": "100ms", "retry_budget": "20s",
		"objects": map[string]any{"contacts": object},
	})
	require.NoError(t, err)
	sync := fmt.Sprintf(`
source: {table: crm.contacts, page_size: %d}
target: {connection: crm, object: contacts, match_on: [email], lookup_before_insert: %v}
mapping: [{source: name, target: name}, {source: email, target: email}]
`, plan.pageSize, plan.lookupBefore)
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "syncs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ferry.yaml"), fmt.Appendf(nil, "connections:\n  crm:\n    kind: http\n    settings: %s\n", settings), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "syncs", "contacts.yaml"), []byte(sync), 0o644))
	return dir
}

// chaosEdit renames up to a quarter of the contacts between runs (re-stamped, so that
// incremental runs read them): their updates meet the faults too.
func chaosEdit(t *testing.T, conn *pgx.Conn, rng *rand.Rand, n, run int) {
	k := rng.IntN(n/4 + 1)
	ids := make([]int32, k)
	for i := range ids {
		ids[i] = int32(1 + rng.IntN(n))
	}
	_, err := conn.Exec(context.Background(), `UPDATE crm.contacts SET name = 'Contact ' || id || ' edit ' || $2::int, _sdc_batched_at = now() WHERE id = ANY($1)`, ids, run)
	require.NoError(t, err)
}

// chaosCheckRunRow: a ferry process that ended by itself left its run row
// finished, with the status its exit code says.
func chaosCheckRunRow(t *testing.T, conn *pgx.Conn, inv chaosInvocation, report func() string) {
	var status string
	var finished bool
	var failed, inserted, updated, read int64
	err := conn.QueryRow(context.Background(), `SELECT status, finished_at IS NOT NULL AND finished_at >= started_at, failed, inserted, updated, read
		FROM ferry.runs WHERE sync = 'contacts' ORDER BY id DESC LIMIT 1`).Scan(&status, &finished, &failed, &inserted, &updated, &read)
	if errors.Is(err, pgx.ErrNoRows) {
		require.Failf(t, "no run row", "%s\n%s ended without a run row:\n%s", report(), inv, inv.out)
	}
	require.NoError(t, err)
	want := map[int][]string{
		exitOK:      {"succeeded"},
		exitRecords: {"succeeded_with_errors"},
		exitFailed:  {"failed", "stopped"},
	}[inv.code]
	require.Containsf(t, want, status, "%s\n%s: run row says %s\noutput:\n%s", report(), inv, status, inv.out)
	require.Truef(t, finished, "%s\n%s: its run row is not finished (or finished before it started)", report(), inv)
	if status == "succeeded" {
		require.Zerof(t, failed, "%s\n%s: a succeeded run counts %d failed records", report(), inv, failed)
	}
	if status == "succeeded_with_errors" {
		require.Positivef(t, failed, "%s\n%s: succeeded_with_errors without a failed record\noutput:\n%s", report(), inv, inv.out)
	}
	require.LessOrEqualf(t, inserted+updated+failed, read, "%s\n%s: wrote or failed more records than it read", report(), inv)
}

// chaosInvariants: what a user checks after the dust settles.
func chaosInvariants(t *testing.T, conn *pgx.Conn, crm *crmtest.Server, n int, report func() string) {
	ctx := context.Background()
	var violations []string
	bad := func(format string, args ...any) {
		if len(violations) < 40 {
			violations = append(violations, fmt.Sprintf(format, args...))
		}
	}

	// The scope.
	type contact struct{ name, email string }
	source := map[string]contact{}
	rows, err := conn.Query(ctx, `SELECT id::text, name, email FROM crm.contacts`)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		var c contact
		require.NoError(t, rows.Scan(&id, &c.name, &c.email))
		source[id] = c
	}
	require.NoError(t, rows.Err())
	require.Len(t, source, n)

	// The target: every in-scope contact exactly once, nothing else.
	byEmail := map[string][]map[string]any{}
	byID := map[string]map[string]any{}
	for _, r := range crm.Records("contacts") {
		email := fmt.Sprint(r["email"])
		byEmail[email] = append(byEmail[email], r)
		byID[fmt.Sprint(r["id"])] = r
	}
	wanted := map[string]bool{}
	for id, c := range source {
		wanted[c.email] = true
		switch got := byEmail[c.email]; len(got) {
		case 0:
			bad("missing: source id %s (%s) is not in the target", id, c.email)
		case 1:
		default:
			ids := make([]string, len(got))
			for i, r := range got {
				ids[i] = fmt.Sprint(r["id"])
			}
			bad("duplicate: source id %s (%s) is in the target %d times: %v", id, c.email, len(got), ids)
		}
	}
	for email, got := range byEmail {
		if !wanted[email] {
			bad("stray: the target holds %d record(s) with email %s, which is in no source row", len(got), email)
		}
	}

	// The link table: one row per contact, success, pointing to its record.
	links := 0
	linkedTo := map[string]string{}
	rows, err = conn.Query(ctx, `SELECT source_id::text, status, coalesce(target_id::text, ''), coalesce(error, '') FROM link_tables.contacts`)
	require.NoError(t, err)
	for rows.Next() {
		var id, status, tid, msg string
		require.NoError(t, rows.Scan(&id, &status, &tid, &msg))
		links++
		c, inScope := source[id]
		if !inScope {
			bad("link row for source id %s, which is not in the scope", id)
			continue
		}
		if status != "success" {
			bad("link row of source id %s is %s (target id %q): %s", id, status, tid, msg)
		}
		if tid == "" {
			bad("link row of source id %s has no target id", id)
			continue
		}
		if other, dup := linkedTo[tid]; dup {
			bad("source ids %s and %s both link to target record %s", other, id, tid)
		}
		linkedTo[tid] = id
		r, ok := byID[tid]
		switch {
		case !ok:
			bad("link row of source id %s points to target record %s, which does not exist", id, tid)
		case fmt.Sprint(r["email"]) != c.email || fmt.Sprint(r["name"]) != c.name:
			bad("source id %s links to target record %s holding %v/%v, not the source's %s/%s", id, tid, r["name"], r["email"], c.name, c.email)
		}
	}
	require.NoError(t, rows.Err())
	if links != n {
		bad("%d link rows for %d contacts", links, n)
	}

	// Ferry's state: no intent left, no run left running, runs consistent.
	var intents, running, unfinished, negative int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM ferry.write_intents`).Scan(&intents))
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'running'),
			count(*) FILTER (WHERE finished_at IS NULL OR finished_at < started_at),
			count(*) FILTER (WHERE least(read, inserted, updated, unchanged, skipped, invalid, failed, target_calls, lookups) < 0)
		FROM ferry.runs`).Scan(&running, &unfinished, &negative))
	if intents > 0 {
		bad("%d write intents left", intents)
	}
	if running > 0 || unfinished > 0 || negative > 0 {
		bad("runs: %d still running, %d not finished (or finished before they started), %d with negative counts", running, unfinished, negative)
	}
	var lastStatus string
	require.NoError(t, conn.QueryRow(ctx, `SELECT status FROM ferry.runs ORDER BY id DESC LIMIT 1`).Scan(&lastStatus))
	if lastStatus != "succeeded" {
		bad("the last run is %s, not succeeded", lastStatus)
	}
	if len(violations) > 0 {
		require.Failf(t, "invariant violated", "%s\n%s", report(), strings.Join(violations, "\n"))
	}
}
