package httptarget

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/ferry-sync/ferry/engine/connector"
)

// Delete deletes records by target id through the object's delete
// endpoint, up to the connection's concurrency at once. A record already
// gone (404) counts as deleted.
func (t *Target) Delete(ctx context.Context, objectName string, ids []string) ([]connector.Result, error) {
	results := make([]connector.Result, len(ids))
	obj, ok := t.s.objects[objectName]
	if !ok {
		return results, fmt.Errorf("http target: object %q is not configured", objectName)
	}
	if obj.delete == nil {
		return results, fmt.Errorf("http target: object %s has no delete endpoint: declare objects.%s.delete (e.g. {} for DELETE /%s/{id})", objectName, objectName, objectName)
	}
	c := &call{}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(t.s.concurrency, len(ids)) {
		wg.Go(func() {
			for i := range next {
				if c.Stopped() || ctx.Err() != nil || !t.budget.acquire(ctx) {
					continue
				}
				rq := request{method: obj.delete.Method, path: strings.ReplaceAll(obj.delete.Path, "{id}", url.PathEscape(ids[i])),
					notFound: true, write: true, safe: true, obj: &obj}
				_, cerr, done := t.send(ctx, c, rq)
				t.budget.release()
				switch {
				case !done:
				case cerr != nil && cerr.Class == connector.NotFound:
					results[i] = connector.Result{Done: true, TargetID: ids[i]}
				default:
					results[i] = connector.Result{Done: true, TargetID: ids[i], Err: cerr}
				}
			}
		})
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := c.Err(); err != nil {
		return results, t.redactor.RedactError(err)
	}
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("deleting %d records of %s: %w", len(ids), objectName, err)
	}
	return results, nil
}
