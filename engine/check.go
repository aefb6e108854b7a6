package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Check verifies every sync against the warehouse without reading rows or
// writing anything: the scope query parses and reads, and it has the id,
// bookmark, mapped and relation columns. It reports every problem at once.
func (e *Engine) Check(ctx context.Context) error {
	var errs []error
	for _, s := range e.project.Syncs {
		if err := e.checkSync(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) checkSync(ctx context.Context, s *Sync) error {
	tx, err := e.db.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("sync %s: starting a read-only transaction: %w", s.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", s.Source.Timeout.Milliseconds())); err != nil {
		return fmt.Errorf("sync %s: %w", s.Name, err)
	}
	_, err = describeScope(ctx, tx, s)
	return err
}
