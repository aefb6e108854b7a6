package api_test

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/api/auth"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

// The API benchmark measures one scenario once:
//
//	go test -run '^$' -bench API -benchtime 1x ./api/
//
// (make bench does). A warehouse holds 20 syncs, one with 100,000 link
// rows (2% in error). It reports, per endpoint, requests/s and p50/p99
// latency with 4 clients as fast as they go, /healthz being the floor a bare
// echo handler gives on this machine; then the same endpoints and a
// trigger of the running sync (409) at 200 requests/s in all while a
// 100,000-record sync runs, and that sync's records/s against an equal
// sync run alone just before.

const (
	benchLinkRows = 100_000
	benchBulkRows = 100_000
)

func BenchmarkAPI(b *testing.B) {
	ts := newServer(b, secretKey(b))
	exec(b, ts.db, fmt.Sprintf(`
CREATE SCHEMA crm;
CREATE TABLE crm.small (id int PRIMARY KEY, name text, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
INSERT INTO crm.small SELECT g, 'row ' || g FROM generate_series(1, 10) g;
CREATE TABLE crm.bulk_a (id int PRIMARY KEY, name text, vat text, _sdc_batched_at timestamptz NOT NULL DEFAULT now());
INSERT INTO crm.bulk_a SELECT g, 'Company ' || g, 'BE0' || (400000000 + g) FROM generate_series(1, %[1]d) g;
CREATE TABLE crm.bulk_b (LIKE crm.bulk_a INCLUDING ALL);
INSERT INTO crm.bulk_b SELECT * FROM crm.bulk_a;
ANALYZE;`, benchBulkRows))
	erpURL := dbtest.NewEmptyURL(b)
	erp := dbtest.Open(b, erpURL)
	exec(b, erp, `
CREATE TABLE small (id serial PRIMARY KEY, name text);
CREATE TABLE bulk_a (id serial PRIMARY KEY, name text, vat text);
CREATE TABLE bulk_b (id serial PRIMARY KEY, name text, vat text);`)
	ts.ok(auth.Admin, http.MethodPut, "/api/v1/connections/erp", map[string]any{
		"kind": "postgres", "settings": map[string]any{"url_env": "ERP_URL"}, "secrets": map[string]string{"ERP_URL": erpURL}})
	syncDef := func(table string) map[string]any {
		return map[string]any{"source": map[string]any{"table": "crm." + table},
			"target":  map[string]any{"connection": "erp", "object": table},
			"mapping": []any{map[string]any{"source": "name", "target": "name"}}}
	}
	for i := 1; i <= 18; i++ {
		ts.ok(auth.Editor, http.MethodPut, fmt.Sprintf("/api/v1/syncs/s%02d", i), syncDef("small"))
	}
	bulk := syncDef("bulk_a")
	bulk["mapping"] = append(bulk["mapping"].([]any), map[string]any{"source": "vat", "target": "vat"})
	ts.ok(auth.Editor, http.MethodPut, "/api/v1/syncs/bulk_a", bulk)
	bulk = syncDef("bulk_b")
	bulk["mapping"] = append(bulk["mapping"].([]any), map[string]any{"source": "vat", "target": "vat"})
	ts.ok(auth.Editor, http.MethodPut, "/api/v1/syncs/bulk_b", bulk)

	// s01's link table: 100,000 rows, every 50th in error.
	runID := ts.waitRun(ts.ok(auth.Editor, http.MethodPost, "/api/v1/syncs/s01/runs", nil)["run_id"])["id"]
	exec(b, ts.db, fmt.Sprintf(`
INSERT INTO link_tables.s01 (source_id, target_id, status, hash, error, error_class)
SELECT g, g, CASE WHEN g %% 50 = 0 THEN 'error' ELSE 'success' END, md5(g::text),
       CASE WHEN g %% 50 = 0 THEN 'HTTP 422: name: must be unique' END, CASE WHEN g %% 50 = 0 THEN 'rejected' END
FROM generate_series(100, 99 + %d) g;
ANALYZE link_tables.s01;`, benchLinkRows))
	require.Equal(b, benchLinkRows+10, count(b, ts.db, "SELECT count(*) FROM link_tables.s01"))

	reads := []endpoint{
		{name: "healthz", method: http.MethodGet, path: "/healthz"},
		{name: "syncs", method: http.MethodGet, path: "/api/v1/syncs"},
		{name: "links_error", method: http.MethodGet, path: "/api/v1/syncs/s01/links?status=error"},
		{name: "run", method: http.MethodGet, path: fmt.Sprintf("/api/v1/runs/%v", runID)},
	}
	b.ResetTimer()
	for _, e := range reads {
		l := ts.closedLoop(e, 4, 2*time.Second)
		b.ReportMetric(l.perSecond, e.name+"_req/s")
		b.ReportMetric(l.p(50), e.name+"_p50_ms")
		b.ReportMetric(l.p(99), e.name+"_p99_ms")
	}

	alone := ts.timedRun("bulk_a")
	b.ReportMetric(alone, "alone_rec/s")

	// The same reads and a trigger of the running sync (409; 202 once it
	// ended and before the load stops), 50 requests/s each,
	// sent on a clock (not after the previous answer) so a slow answer
	// cannot hide the ones queued behind it.
	loaded := append(reads[1:], endpoint{name: "trigger", method: http.MethodPost, path: "/api/v1/syncs/bulk_b/runs", want: http.StatusConflict})
	started := ts.ok(auth.Editor, http.MethodPost, "/api/v1/syncs/bulk_b/runs", nil)
	lat := ts.openLoop(loaded, 200, func() bool {
		_, run, _ := ts.call(auth.Viewer, http.MethodGet, fmt.Sprintf("/api/v1/runs/%v", started["run_id"]), nil)
		return run["status"] != "running"
	})
	underLoad := runRate(b, ts.waitRun(started["run_id"]))
	for _, e := range loaded {
		b.ReportMetric(lat[e.name].p(50), "load_"+e.name+"_p50_ms")
		b.ReportMetric(lat[e.name].p(99), "load_"+e.name+"_p99_ms")
	}
	b.ReportMetric(underLoad, "loaded_rec/s")
	b.ReportMetric(100*(1-underLoad/alone), "throughput_drop_%")
}

type endpoint struct {
	name, method, path string
	want               int // expected status besides 2xx
}

type latencies struct {
	ms        []float64
	perSecond float64
}

func (l latencies) p(q int) float64 {
	if len(l.ms) == 0 {
		return 0
	}
	s := slices.Clone(l.ms)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*q/100)]
}

// hit makes one request as a viewer (an editor for POST) and returns how
// long the answer took in ms, the whole body read.
func (ts *testServer) hit(c *http.Client, e endpoint) float64 {
	role := auth.Viewer
	if e.method != http.MethodGet {
		role = auth.Editor
	}
	req, err := http.NewRequest(e.method, ts.srv.URL+e.path, nil)
	if err != nil {
		ts.t.Error(err)
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+ts.tokens[role])
	start := time.Now()
	res, err := c.Do(req)
	if err != nil {
		ts.t.Error(err)
		return 0
	}
	buf := make([]byte, 32<<10)
	for {
		if _, err := res.Body.Read(buf); err != nil {
			break
		}
	}
	res.Body.Close()
	took := float64(time.Since(start).Microseconds()) / 1000
	// Called from many goroutines: Error, never FailNow.
	if res.StatusCode >= 300 && res.StatusCode != e.want {
		ts.t.Errorf("%s %s: status %d", e.method, e.path, res.StatusCode)
	}
	return took
}

// closedLoop sends requests from clients goroutines, each as soon as its
// previous one is answered, for d.
func (ts *testServer) closedLoop(e endpoint, clients int, d time.Duration) latencies {
	var mu sync.Mutex
	var all []float64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range clients {
		wg.Go(func() {
			c := &http.Client{}
			var mine []float64
			for time.Now().Before(end) {
				mine = append(mine, ts.hit(c, e))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return latencies{ms: all, perSecond: float64(len(all)) / d.Seconds()}
}

// openLoop sends rate requests a second in all, round-robin over the
// endpoints, each on its own goroutine, until done says so.
func (ts *testServer) openLoop(es []endpoint, rate int, done func() bool) map[string]latencies {
	var mu sync.Mutex
	out := map[string]latencies{}
	var wg sync.WaitGroup
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		<-tick.C
		if i%(rate/10) == 0 && done() {
			break
		}
		e := es[i%len(es)]
		wg.Go(func() {
			took := ts.hit(c, e)
			mu.Lock()
			l := out[e.name]
			l.ms = append(l.ms, took)
			out[e.name] = l
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// timedRun runs a sync through the API and returns its records/s.
func (ts *testServer) timedRun(sync string) float64 {
	return runRate(ts.t, ts.waitRun(ts.ok(auth.Editor, http.MethodPost, "/api/v1/syncs/"+sync+"/runs", nil)["run_id"]))
}

// runRate is a finished run's records/s, from its own start and end.
func runRate(t testing.TB, run map[string]any) float64 {
	require.Equal(t, "succeeded", run["status"], "%v", run)
	start, err := time.Parse(time.RFC3339Nano, run["started_at"].(string))
	require.NoError(t, err)
	end, err := time.Parse(time.RFC3339Nano, run["finished_at"].(string))
	require.NoError(t, err)
	return run["inserted"].(float64) / end.Sub(start).Seconds()
}
