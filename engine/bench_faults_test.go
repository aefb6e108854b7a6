//go:build unix

package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
	"github.com/ferry-sync/ferry/engine/enginetest"
	"github.com/ferry-sync/ferry/engine/project"
)

// The fault benchmarks measure what faults cost a run through the http
// kind, with its default retry and backoff settings, into a crmtest server
// (in this process: they count requests, not CPU) that adds crmLatency to
// every request, behind a handler that injects the faults:
//
//	go test -run '^$' -bench Faults -benchtime 1x ./engine/
//
// BenchmarkFaults500s: 1% of requests answered 500 at random (not applied).
// BenchmarkFaults429Storm: a storm of 429s (90% of requests, a third of
// them without Retry-After, the others Retry-After: 1) for three seconds.
// Both report requests/record (1 is a run without faults), records that
// failed and seconds (BenchmarkFaultsNone is the same run without faults). BenchmarkFaultsReconcilePending: the run that settles 1,000
// pending inserts (their answers were lost), half of which reached the
// target: seconds, and the lookups it made.

// faultyCRM is a crmtest server behind a handler whose fault function may
// answer a request itself (status, Retry-After) instead of the server.
type faultyCRM struct {
	srv   *crmtest.Server
	front *httptest.Server
	URL   string

	requests atomic.Int64 // every request received
	injected atomic.Int64 // answered by fault
	fault    func(n int64) (status int, retryAfter string)
}

func newFaultyCRM(b *testing.B, fault func(n int64) (int, string)) *faultyCRM {
	b.Helper()
	f := &faultyCRM{fault: fault}
	f.srv = crmtest.New(b, crmtest.Options{Token: crmToken, Latency: crmLatency, Objects: map[string]crmtest.Object{
		"partners": {Required: []string{"name"}},
	}})
	f.front = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.requests.Add(1)
		if f.fault != nil {
			if status, retryAfter := f.fault(n); status != 0 {
				f.injected.Add(1)
				if retryAfter != "" {
					w.Header().Set("Retry-After", retryAfter)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = fmt.Fprintf(w, `{"message":"injected %d"}`, status)
				return
			}
		}
		f.srv.ServeHTTP(w, r)
	}))
	f.front.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.front.Start()
	f.URL = f.front.URL
	b.Cleanup(f.front.Close)
	return f
}

// faultBundle is an engine that syncs s into crm through the http kind,
// with the connection's defaults but concurrency.
func faultBundle(b *testing.B, crm *faultyCRM, wh *testBundle, s *project.Sync, concurrency int) *testBundle {
	b.Helper()
	settings, err := json.Marshal(map[string]any{
		"base_url":    crm.URL,
		"auth":        map[string]any{"type": "bearer", "token_env": "FERRY_BENCH_CRM_TOKEN"},
		"concurrency": concurrency,
		"objects":     map[string]any{"partners": map[string]any{"lookup": map[string]any{"path": "/partners/search"}}},
	})
	require.NoError(b, err)
	p, err := project.New(nil, map[string]project.Connection{"erp": {Kind: "http", Settings: settings}}, s)
	require.NoError(b, err)
	open := func(ctx context.Context, c project.Connection) (connector.Target, error) {
		env := func(name string) (string, bool) { return crmToken, name == "FERRY_BENCH_CRM_TOKEN" }
		return httptarget.Kind().Open(ctx, c.Settings, env)
	}
	return &testBundle{db: wh.db, eng: engine.New(wh.db, engine.StaticProject(p), engine.Options{Open: open}), proj: p}
}

// lockedRand is a seeded source the server's handlers share.
type lockedRand struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func (l *lockedRand) float() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rng.Float64()
}

// measureFaults runs b.N first full syncs of rows records into a fresh
// faulty server each and reports requests/record, records failed and
// records/s.
func measureFaults(b *testing.B, rows int, fault func() func(n int64) (int, string)) {
	b.Helper()
	s := benchSync()
	wh := setupBench(b, rows, &enginetest.Discard{}, s)
	var requests, failed, injected int64
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		resetSync(b, wh)
		crm := newFaultyCRM(b, nil)
		crm.fault = fault()
		bb := faultBundle(b, crm, wh, s, 16)
		b.StartTimer()
		start := time.Now()
		res, err := bb.eng.Run(context.Background(), "companies", engine.RunOptions{})
		elapsed += time.Since(start)
		b.StopTimer()
		require.NoError(b, err)
		requests += crm.requests.Load()
		injected += crm.injected.Load()
		failed += res.Counts.Failed
		require.Equal(b, int64(rows), res.Counts.Inserted+res.Counts.Failed, "%+v", res.Counts)
		require.Equal(b, int(res.Counts.Inserted), crm.srv.Count("partners"), "records the server holds")
		b.StartTimer()
	}
	n := float64(rows * b.N)
	b.ReportMetric(float64(requests)/n, "requests/record")
	b.ReportMetric(float64(failed)/float64(b.N), "records-failed")
	b.ReportMetric(float64(injected)/float64(b.N), "faults-injected")
	b.ReportMetric(n/elapsed.Seconds(), "records/s")
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "seconds")
}

// BenchmarkFaultsNone is the baseline of the two below: 5,000 records
// without a fault.
func BenchmarkFaultsNone(b *testing.B) {
	measureFaults(b, 5_000, func() func(int64) (int, string) { return nil })
}

// BenchmarkFaults500s: a first full sync of 10,000 records, 1% of whose
// requests (at random) are answered 500 without being applied.
func BenchmarkFaults500s(b *testing.B) {
	const rows = 10_000
	measureFaults(b, rows, func() func(int64) (int, string) {
		rng := &lockedRand{rng: rand.New(rand.NewPCG(1, 2))}
		return func(int64) (int, string) {
			if rng.float() < 0.01 {
				return http.StatusInternalServerError, ""
			}
			return 0, ""
		}
	})
}

// BenchmarkFaults429Storm: a first full sync of 5,000 records; once 1,000
// requests came in, a storm of 429s blows for three seconds: 90% of the
// requests in it are refused, a third of those without Retry-After (the
// client backs off on its own), the others with Retry-After: 1.
func BenchmarkFaults429Storm(b *testing.B) {
	const (
		rows   = 5_000
		storm  = 3 * time.Second
		after  = 1_000
		refuse = 0.9
	)
	var stormRequests, stormRefused atomic.Int64
	measureFaults(b, rows, func() func(int64) (int, string) {
		rng := &lockedRand{rng: rand.New(rand.NewPCG(3, 4))}
		var mu sync.Mutex
		var began time.Time
		return func(n int64) (int, string) {
			if n < after {
				return 0, ""
			}
			mu.Lock()
			if began.IsZero() {
				began = time.Now()
			}
			in := time.Since(began) < storm
			mu.Unlock()
			if !in {
				return 0, ""
			}
			stormRequests.Add(1)
			u := rng.float()
			switch {
			case u >= refuse:
				return 0, ""
			case u < refuse/3:
				stormRefused.Add(1)
				return http.StatusTooManyRequests, ""
			default:
				stormRefused.Add(1)
				return http.StatusTooManyRequests, "1"
			}
		}
	})
	b.ReportMetric(float64(stormRequests.Load())/float64(b.N), "requests-in-storm")
	b.ReportMetric(float64(stormRefused.Load())/float64(b.N), "refused-429")
}

// BenchmarkFaultsReconcilePending: 1,000 link rows are pending (inserts
// whose answers were lost); the odd half reached the target, the even half
// did not. The measured run settles them by target.match_on (vat): it
// finds and updates the first half, inserts the second.
func BenchmarkFaultsReconcilePending(b *testing.B) {
	const rows = 1_000
	s := benchSync()
	s.Target.MatchOn = []string{"vat"}
	wh := setupBench(b, rows, &enginetest.Discard{}, s)
	ctx := context.Background()
	var elapsed time.Duration
	var lookups, searches, requests int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		resetSync(b, wh)
		crm := newFaultyCRM(b, nil)
		bb := faultBundle(b, crm, wh, s, 16)
		created, err := bb.eng.LinkInit(ctx, "companies")
		require.NoError(b, err)
		require.True(b, created)
		_, err = wh.db.Exec(ctx, `INSERT INTO link_tables.companies (source_id, status, error, error_class)
			SELECT id, 'pending', 'the answer was lost', 'ambiguous' FROM crm.companies`)
		require.NoError(b, err)
		for g := 1; g <= rows; g += 2 {
			crm.srv.Put(b, "partners", map[string]any{"name": fmt.Sprintf("Company %d", g), "vat": fmt.Sprintf("BE0%d", 400000000+g)})
		}
		crm.srv.ResetCounters()
		crm.requests.Store(0)
		b.StartTimer()
		start := time.Now()
		res, err := bb.eng.Run(ctx, "companies", engine.RunOptions{})
		elapsed += time.Since(start)
		b.StopTimer()
		require.NoError(b, err)
		require.Zero(b, res.Counts.Failed, "%+v", res.Counts)
		require.Equal(b, int64(rows/2), res.Counts.Inserted, "%+v", res.Counts)
		require.Equal(b, int64(rows/2), res.Counts.Updated, "%+v", res.Counts)
		require.Equal(b, rows, crm.srv.Count("partners"), "every record once")
		var left int
		require.NoError(b, wh.db.QueryRow(ctx, `SELECT count(*) FROM link_tables.companies WHERE status <> 'success'`).Scan(&left))
		require.Zero(b, left, "link rows not settled")
		lookups += res.Counts.Lookups
		searches += int64(crm.srv.RequestsFor(http.MethodGet, "partners"))
		requests += crm.requests.Load()
		b.StartTimer()
	}
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "seconds")
	b.ReportMetric(float64(lookups)/float64(b.N), "lookups")
	b.ReportMetric(float64(searches)/float64(b.N), "searches-received")
	b.ReportMetric(float64(requests)/float64(rows*b.N), "requests/record")
	b.ReportMetric(elapsed.Seconds()*1000/float64(max(1, lookups)), "ms/lookup")
}
