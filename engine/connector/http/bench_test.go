package httptarget_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
)

// BenchmarkWrite drives inserts through the target into crmtest with 5ms of
// latency per request, as a remote API would add. It reports records/s and
// the client's CPU per record: the server runs in a child process
// (crmtest.StartChild), so this process's CPU is the target's alone.
//
//	go test -run '^$' -bench BenchmarkWrite -benchtime 20000x ./engine/connector/http/
func BenchmarkWrite(b *testing.B) {
	for _, c := range []struct {
		concurrency int
		rateLimit   float64
	}{{16, 0}, {64, 0}, {16, 200}} {
		concurrency := c.concurrency
		name := fmt.Sprintf("concurrency=%d", concurrency)
		if c.rateLimit > 0 {
			// The limiter's own cost: client CPU per record against the
			// unlimited run above (aim: within 1.5×). BenchmarkPacedBare
			// shows what pacing one request at a time costs any client.
			name += fmt.Sprintf("/rate_limit=%v", c.rateLimit)
		}
		b.Run(name, func(b *testing.B) {
			srv := crmtest.StartChild(b, crmtest.Options{Token: token, Latency: 5 * time.Millisecond})
			cfg := configAt(srv.URL, token)
			cfg.Concurrency = concurrency
			cfg.RateLimit = c.rateLimit
			cfg.Objects = map[string]httptarget.Object{"contacts": {}}
			target := newTarget(b, cfg)

			const batch = 1000
			changes := make([]connector.Change, batch)
			for i := range changes {
				changes[i] = connector.Change{Op: connector.OpInsert, SourceID: fmt.Sprint(i), Payload: map[string]any{
					"email":  fmt.Sprintf("person%d@example.com", i),
					"name":   "Ada Lovelace",
					"amount": json.Number("1234.56"),
					"active": true,
					"tags":   []any{"a", "b"},
					"at":     time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
				}}
			}
			ctx := context.Background()
			cpuBefore, cpuOK := processCPU()
			b.ResetTimer()
			start := time.Now()
			for done := 0; done < b.N; done += batch {
				res, err := target.Write(ctx, "contacts", changes[:min(batch, b.N-done)])
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
			if cpuAfter, ok := processCPU(); ok && cpuOK {
				b.ReportMetric(float64((cpuAfter-cpuBefore).Microseconds())/float64(b.N), "cpu-µs/record")
			}
			b.ReportMetric(0, "ns/op") // per record figures above say more than per-op time
		})
	}
}

// BenchmarkBatchWrite writes 100,000 records in batches of 100, 16 batches
// in flight, into crmtest's batch endpoint with 5ms of latency per request,
// through the target (as the engine calls it: chunks of 4 × InFlight, two
// in flight) and, in the same run, through a bare net/http client sending
// the same batches (encoding/json, 16 goroutines). It reports both rates and
// their ratio.
//
//	go test -run '^$' -bench BenchmarkBatchWrite -benchtime 1x ./engine/connector/http/
func BenchmarkBatchWrite(b *testing.B) {
	const records, size, inFlight = 100_000, 100, 16
	payloads := make([]map[string]any, records)
	for i := range payloads {
		payloads[i] = map[string]any{
			"email":  fmt.Sprintf("person%d@example.com", i),
			"name":   "Ada Lovelace",
			"amount": json.Number("1234.56"),
			"active": true,
			"tags":   []any{"a", "b"},
		}
	}
	var ferryRate, bareRate float64
	for b.Loop() {
		bareRate = timedRate(b, records, func(url string) { bareBatches(b, url, payloads, size, inFlight) })
		ferryRate = timedRate(b, records, func(url string) { ferryBatches(b, url, payloads, size, inFlight) })
	}
	b.ReportMetric(ferryRate, "records/s")
	b.ReportMetric(bareRate, "bare-records/s")
	b.ReportMetric(ferryRate/bareRate, "ratio")
	b.ReportMetric(0, "ns/op")
}

// timedRate runs write against a fresh crmtest with 5ms of latency and
// returns records per second, checking that the server holds them all.
func timedRate(b *testing.B, records int, write func(url string)) float64 {
	b.Helper()
	srv, err := crmtest.NewServer(crmtest.Options{Token: token, Latency: 5 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	start := time.Now()
	write(srv.URL)
	rate := float64(records) / time.Since(start).Seconds()
	if n := srv.Count("contacts"); n != records {
		b.Fatalf("the server holds %d records, not %d", n, records)
	}
	return rate
}

func ferryBatches(b *testing.B, url string, payloads []map[string]any, size, inFlight int) {
	cfg := httptarget.Config{
		BaseURL:     url,
		Auth:        httptarget.Auth{Type: "bearer", TokenEnv: "CRM_TOKEN"},
		Env:         func(string) (string, bool) { return token, true },
		Concurrency: inFlight,
		Objects: map[string]httptarget.Object{"contacts": {Batch: &httptarget.Batch{
			Size:   size,
			Insert: &httptarget.BatchEndpoint{Path: "/contacts/batch/create", Body: map[string]any{"inputs": "{{items}}"}},
		}}},
	}
	target, err := httptarget.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer target.Close()
	changes := make([]connector.Change, len(payloads))
	for i, p := range payloads {
		changes[i] = connector.Change{Op: connector.OpInsert, SourceID: fmt.Sprint(i), Payload: p}
	}
	chunk := 4 * target.InFlight()
	sem := make(chan struct{}, 2) // the engine keeps two chunks in flight
	var wg sync.WaitGroup
	for start := 0; start < len(changes); start += chunk {
		sem <- struct{}{}
		wg.Add(1)
		go func(part []connector.Change) {
			defer func() { <-sem; wg.Done() }()
			res, err := target.Write(context.Background(), "contacts", part)
			if err != nil {
				b.Error(err)
				return
			}
			for _, r := range res {
				if r.Err != nil || r.TargetID == "" {
					b.Error(r.Err)
					return
				}
			}
		}(changes[start:min(start+chunk, len(changes))])
	}
	wg.Wait()
}

// bareBatches is what a program would do by hand: encode each batch with
// encoding/json, POST it, and read the ids back.
func bareBatches(b *testing.B, url string, payloads []map[string]any, size, inFlight int) {
	transport := &http.Transport{MaxIdleConnsPerHost: inFlight, MaxConnsPerHost: inFlight}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	ids := make([]string, len(payloads))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				start := int(next.Add(int64(size))) - size
				if start >= len(payloads) {
					return
				}
				end := min(start+size, len(payloads))
				body, err := json.Marshal(map[string]any{"inputs": payloads[start:end]})
				if err != nil {
					b.Error(err)
					return
				}
				req, _ := http.NewRequest(http.MethodPost, url+"/contacts/batch/create", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				res, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				var answer struct {
					Results []struct {
						ID string `json:"id"`
					} `json:"results"`
				}
				err = json.NewDecoder(res.Body).Decode(&answer)
				res.Body.Close()
				if err != nil || res.StatusCode != http.StatusCreated || len(answer.Results) != end-start {
					b.Errorf("HTTP %d: %v", res.StatusCode, err)
					return
				}
				for i, r := range answer.Results {
					ids[start+i] = r.ID
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkRateLimited sends single inserts against crmtest limited to 100
// requests in any second, answering 429 without Retry-After: requests/s
// sustained and records that failed, for a connection that does not know
// the limit (it backs off on 429) and for one that declares it
// (rate_window).
//
//	go test -run '^$' -bench BenchmarkRateLimited -benchtime 1x ./engine/connector/http/
func BenchmarkRateLimited(b *testing.B) {
	const records = 1000
	for _, declared := range []bool{false, true} {
		b.Run(fmt.Sprintf("declared=%v", declared), func(b *testing.B) {
			var rate float64
			var failed, refused int
			for b.Loop() {
				srv, err := crmtest.NewServer(crmtest.Options{Token: token, RateWindow: &crmtest.RateWindow{Requests: 100, Per: time.Second}})
				if err != nil {
					b.Fatal(err)
				}
				cfg := config(srv, token)
				cfg.Objects = map[string]httptarget.Object{"contacts": {}}
				cfg.BackoffBase, cfg.BackoffMax = 0, 0 // the defaults
				if declared {
					cfg.RateWindow = &httptarget.RateWindow{Requests: 100, Per: httptarget.Duration(time.Second)}
				}
				target, err := httptarget.New(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				res, err := target.Write(context.Background(), "contacts", contacts(records, 0))
				elapsed := time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				failed = 0
				for _, r := range res {
					if r.Err != nil {
						failed++
					}
				}
				rate = float64(records-failed) / elapsed.Seconds()
				refused, _ = srv.Refused()
				target.Close()
				srv.Close()
			}
			b.ReportMetric(rate, "requests/s")
			b.ReportMetric(float64(failed), "failed")
			b.ReportMetric(float64(refused), "429s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
