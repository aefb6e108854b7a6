package scripting

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

const benchScript = `
def transform(source_record, target_record, pq, target_id=None):
    target_record["address"] = {
        "street": source_record["address_street"],
        "city": source_record["address_city"],
    }
    if target_id:
        target_record["id"] = target_id
    return target_record
`

// benchInput is a 10-field mapped record plus the source columns the
// transform reads.
func benchInput(i int) TransformInput {
	return TransformInput{
		SourceID: fmt.Sprint(i),
		Source: map[string]any{
			"id": int64(i), "address_street": "1 Somestreet", "address_city": "NY",
			"email": "john@doe.com", "updated_at": time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		},
		Target: map[string]any{
			"name": "John Doe", "email": "john@doe.com", "phone": "+1 555 6666",
			"company": "Acme", "title": "CTO", "age": int64(42), "score": 0.87,
			"active": true, "balance": json.Number("1234.50"), "tags": []any{"vip", "b2b"},
		},
	}
}

// BenchmarkTransform is one call in this process, conversions both ways
// included.
func BenchmarkTransform(b *testing.B) {
	s := compile(b, "contacts.star", benchScript, Options{Isolation: IsolationNone})
	ctx := context.Background()
	in := benchInput(1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Transform(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTransformWorker is the cost per record through a worker
// process, pages of 500 records.
func BenchmarkTransformWorker(b *testing.B) {
	pool := newTestPool(b, PoolOptions{})
	s := compile(b, "contacts.star", benchScript, Options{Pool: pool})
	ctx := context.Background()
	page := make([]TransformInput, 500)
	for i := range page {
		page[i] = benchInput(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	records := 0
	for b.Loop() {
		for _, r := range s.TransformBatch(ctx, page) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		records += len(page)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(records), "ns/record")
}

// BenchmarkTransformBatchInProcess is the same page without a worker.
func BenchmarkTransformBatchInProcess(b *testing.B) {
	s := compile(b, "contacts.star", benchScript, Options{Isolation: IsolationNone})
	ctx := context.Background()
	page := make([]TransformInput, 500)
	for i := range page {
		page[i] = benchInput(i)
	}
	b.ReportAllocs()
	records := 0
	for b.Loop() {
		for _, r := range s.TransformBatch(ctx, page) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		records += len(page)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(records), "ns/record")
}
