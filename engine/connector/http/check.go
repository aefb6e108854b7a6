package httptarget

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/engine/connector"
)

// Check verifies, without writing, that the object is declared, that it
// has a lookup when the sync needs one, and that the API answers at its
// base URL (connector.Checker). Any HTTP answer counts as reachable: many
// APIs answer their root with 404 or 401.
func (t *Target) Check(ctx context.Context, use connector.Use) error {
	var errs []error
	obj, ok := t.s.objects[use.Object]
	if use.Object == "" {
		// Only whether the API answers.
	} else if !ok {
		errs = append(errs, fmt.Errorf("object %q is not declared in this connection's settings (objects: %s)",
			use.Object, strings.Join(slices.Sorted(maps.Keys(t.s.objects)), ", ")))
	} else if use.Lookup && obj.lookup == nil {
		errs = append(errs, fmt.Errorf("object %q has no lookup: match_on needs one to find a record whose insert answer was lost (objects.%s.lookup: {path: …})", use.Object, use.Object))
	}
	if err := t.reachable(ctx); err != nil {
		errs = append(errs, err)
	}
	return t.redactor.RedactError(errors.Join(errs...))
}

// reachable asks the API's base URL once: only a network failure (no
// connection, no such host, no answer) is a problem.
func (t *Target) reachable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(t.s.timeout, 15*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.s.baseURL, nil)
	if err != nil {
		return fmt.Errorf("cannot build a request to %s: %w", t.s.baseURL, err)
	}
	req.Header = t.header.Clone()
	res, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %s", t.s.baseURL, t.describe(err))
	}
	res.Body.Close()
	return nil
}
