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

	"golang.org/x/time/rate"

	"github.com/ferry-sync/ferry/engine/connector/crmtest"
)

// BenchmarkPacedBare is the yardstick of BenchmarkWrite's rate-limited
// case: a bare net/http client (encoding/json, 16 goroutines) sending the
// same single inserts into the same server, paced at the same 200 requests
// per second by the same limiter (x/time/rate). The server runs in a child
// process, as BenchmarkWrite's does: the CPU measured is the client's. A process that sends 200
// requests a second sleeps between them, and every wake-up costs the
// kernel and the Go scheduler time that a busy process does not pay: that
// cost belongs to the pace, and this measures it without Ferry.
//
//	go test -run '^$' -bench 'BenchmarkWrite/concurrency=16|BenchmarkPacedBare' -benchtime 3000x ./engine/connector/http/
func BenchmarkPacedBare(b *testing.B) {
	for _, limit := range []float64{0, 200} {
		b.Run(fmt.Sprintf("rate_limit=%v", limit), func(b *testing.B) {
			srv := crmtest.StartChild(b, crmtest.Options{Token: token, Latency: 5 * time.Millisecond})
			const inFlight = 16
			transport := &http.Transport{MaxIdleConnsPerHost: inFlight, MaxConnsPerHost: inFlight}
			defer transport.CloseIdleConnections()
			client := &http.Client{Transport: transport}
			var limiter *rate.Limiter
			if limit > 0 {
				limiter = rate.NewLimiter(rate.Limit(limit), 1)
			}
			cpuBefore, cpuOK := processCPU()
			b.ResetTimer()
			start := time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range inFlight {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						if limiter != nil {
							if err := limiter.Wait(context.Background()); err != nil {
								b.Error(err)
								return
							}
						}
						body, _ := json.Marshal(map[string]any{
							"email": fmt.Sprintf("person%d@example.com", i), "name": "Ada Lovelace",
							"amount": json.Number("1234.56"), "active": true, "tags": []any{"a", "b"},
							"at": time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
						})
						req, _ := http.NewRequest(http.MethodPost, srv.URL+"/contacts", bytes.NewReader(body))
						req.Header.Set("Authorization", "Bearer "+token)
						req.Header.Set("Content-Type", "application/json")
						res, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						var answer struct {
							ID string `json:"id"`
						}
						err = json.NewDecoder(res.Body).Decode(&answer)
						res.Body.Close()
						if err != nil || res.StatusCode/100 != 2 || answer.ID == "" {
							b.Errorf("HTTP %d: %v", res.StatusCode, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
			if cpuAfter, ok := processCPU(); ok && cpuOK {
				b.ReportMetric(float64((cpuAfter-cpuBefore).Microseconds())/float64(b.N), "cpu-µs/record")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}
