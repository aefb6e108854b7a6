package api

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/internal/runqueue"
)

// metrics are what /metrics exposes, in a registry of the server's own.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.HistogramVec
	runs     *prometheus.CounterVec
	records  *prometheus.CounterVec
	calls    *prometheus.CounterVec
	target   *prometheus.HistogramVec
	limited  *prometheus.CounterVec
	delay    *prometheus.HistogramVec
}

func newMetrics(eng *engine.Engine, queue RunQueue) *metrics {
	m := &metrics{registry: prometheus.NewRegistry()}
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ferry_api_request_seconds", Help: "API requests by method, route and status.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
	}, []string{"method", "route", "status"})
	m.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_runs_total", Help: "Runs this server ran, by sync and how they ended."}, []string{"sync", "status"})
	m.records = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_records_total", Help: "Records of those runs by outcome."}, []string{"sync", "outcome"})
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_target_calls_total", Help: "Calls to targets (writes and lookups) by connection."}, []string{"connection"})
	m.target = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ferry_target_request_seconds", Help: "Requests to targets by connection and status.",
		Buckets: prometheus.ExponentialBuckets(0.002, 2.5, 10),
	}, []string{"connection", "status"})
	m.limited = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_target_rate_limited_total", Help: "429 answers from targets, by connection."}, []string{"connection"})
	replaced := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ferry_script_workers_replaced_total", Help: "Script workers that died or broke (out of memory, a runaway builtin) and were replaced.",
	}, func() float64 { return float64(eng.ScriptWorkersReplaced()) })
	m.delay = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ferry_tick_to_start_seconds", Help: "From a schedule's tick to the start of its run, by trigger (schedule, catchup).",
		Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10),
	}, []string{"trigger"})
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ferry_queue_depth", Help: "Runs waiting in the queue (every replica's).",
	}, func() float64 {
		if queue == nil {
			return 0
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := queue.Depth(ctx)
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	})
	m.registry.MustRegister(m.requests, m.runs, m.records, m.calls, m.target, m.limited, replaced, m.delay, depth,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) request(method, route string, status int, d time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Observe(d.Seconds())
}

// RunStarted is the run queue's start hook: it observes how long after its
// tick a scheduled run started.
func (s *Server) RunStarted(a runqueue.Args, started time.Time) {
	if !a.Tick.IsZero() {
		s.metrics.delay.WithLabelValues(a.Trigger).Observe(started.Sub(a.Tick).Seconds())
	}
}

// RunEnded is the run queue's end hook: it counts the runs and records.
func (s *Server) RunEnded(e runqueue.Ended) {
	for _, res := range e.Results {
		s.metrics.runEnded(res)
	}
}

// runEnded counts a run and what its records became.
func (m *metrics) runEnded(res *engine.RunResult) {
	if res == nil {
		return
	}
	m.runs.WithLabelValues(res.Sync, string(res.Status)).Inc()
	c := res.Counts
	for outcome, n := range map[string]int64{"inserted": c.Inserted, "updated": c.Updated, "unchanged": c.Unchanged,
		"skipped": c.Skipped, "invalid": c.Invalid, "failed": c.Failed} {
		if n > 0 {
			m.records.WithLabelValues(res.Sync, outcome).Add(float64(n))
		}
	}
}

// targetRequest observes one request a connector made (the engine's
// request hook).
func (m *metrics) targetRequest(connection string, status int, d time.Duration) {
	m.calls.WithLabelValues(connection).Inc()
	m.target.WithLabelValues(connection, strconv.Itoa(status)).Observe(d.Seconds())
	if status == 429 {
		m.limited.WithLabelValues(connection).Inc()
	}
}

// TargetRequest is the engine's request hook (engine.Options.OnRequest):
// it feeds /metrics.
func (s *Server) TargetRequest(connection string, status int, took time.Duration) {
	s.metrics.targetRequest(connection, status, took)
}
