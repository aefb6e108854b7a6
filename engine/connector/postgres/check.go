package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferry-sync/ferry/engine/connector"
)

// Check verifies that the object's table exists and has the fields as
// columns (connector.Checker). Reaching the database was checked by New.
func (t *Target) Check(ctx context.Context, use connector.Use) error {
	if use.Object == "" {
		return nil // New connected already
	}
	tbl, err := t.table(ctx, use.Object, true)
	if err != nil {
		return t.redactor.RedactError(err)
	}
	var errs []error
	payload := make(map[string]any, len(use.Fields))
	for _, f := range use.Fields {
		payload[f] = nil
	}
	if unknown := tbl.unknownColumns(payload); len(unknown) > 0 {
		errs = append(errs, fmt.Errorf("table %s has no column %s (columns: %s)", tbl.name, strings.Join(unknown, ", "), strings.Join(tbl.columnNames(), ", ")))
	}
	return errors.Join(errs...)
}
