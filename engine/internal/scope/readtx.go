package scope

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// BeginRead starts the transaction every user query runs in (scope reads,
// checks, pq.query): READ ONLY, bounded by timeout, and, when the project
// names a scope role (role), under that role, so that a scope query has only the
// rights an analyst granted it (SELECT on their schemas) and none of the
// warehouse login's: no server files, no other sessions, no writes. db is a
// pool or a connection.
//
// It is REPEATABLE READ: every statement sees one snapshot, so that what a
// run reads after its cursor (the highest stamp the bookmark may move to,
// the records to retry) is of the same moment as the cursor. Under READ
// COMMITTED the stamp query saw rows committed while the cursor was read,
// and the bookmark could move past rows no read had returned.
func BeginRead(ctx context.Context, db interface {
	BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
}, role string, timeout time.Duration) (pgx.Tx, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("starting a read-only transaction: %w", err)
	}
	_, err = tx.Exec(ctx, "SELECT set_config('statement_timeout', $1, true), CASE WHEN $2 <> '' THEN set_config('role', $2, true) END",
		strconv.FormatInt(timeout.Milliseconds(), 10), role)
	if err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		var pgErr *pgconn.PgError
		if role != "" && errors.As(err, &pgErr) && (pgErr.Code == "22023" || pgErr.Code == "42704" || pgErr.Code == "42501") {
			return nil, &project.ConfigError{File: project.ProjectFile, Field: "warehouse.scope_role",
				Message: fmt.Sprintf("cannot run queries as role %q: %s; create it with `ferry setup --scope-role %s --schemas <schemas>`", role, pgErr.Message, role)}
		}
		return nil, fmt.Errorf("setting up the read-only transaction: %w", err)
	}
	return tx, nil
}
