package httptarget_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
)

// BenchmarkWrite drives inserts through the target into crmtest with 5ms of
// latency per request, as a remote API would add. It reports records/s and
// the process CPU per record; the server runs in the same process, so that
// CPU is client and server together.
//
//	go test -run '^$' -bench BenchmarkWrite -benchtime 20000x ./engine/connector/http/
func BenchmarkWrite(b *testing.B) {
	for _, concurrency := range []int{16, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", concurrency), func(b *testing.B) {
			srv, err := crmtest.NewServer(crmtest.Options{Token: token, Latency: 5 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			cfg := config(srv, token)
			cfg.Concurrency = concurrency
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
