package queries

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// RetryBroken runs an idempotent statement again when it failed on a
// connection that had died under it (terminated by an administrator, a
// failover, the server restarting): a pool hands out such a connection once
// before it notices. Bookkeeping that must not be lost (giving a claim up,
// closing a run row) goes through it; anything else fails as it did.
func RetryBroken(ctx context.Context, fn func(context.Context) error) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if err = fn(ctx); err == nil || !BrokenConn(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		}
	}
	return err
}

// BrokenConn says whether err is about the connection, not the statement.
func BrokenConn(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// 08: connection exception; 57P01-03: admin shutdown, crash
		// shutdown, cannot connect now.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	// Closed connections, EOF, reset: errors of the network, not of SQL.
	var connErr *pgconn.ConnectError
	return errors.As(err, &connErr) || pgconn.SafeToRetry(err) || strings.Contains(err.Error(), "conn closed") ||
		strings.Contains(err.Error(), "unexpected EOF") || strings.Contains(err.Error(), "connection reset")
}
