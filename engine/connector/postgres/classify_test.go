package postgres

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	pg := func(code string) error { return &pgconn.PgError{Code: code, Message: "m"} }
	lost := io.ErrUnexpectedEOF // a connection that broke while the statement ran

	tests := []struct {
		name   string
		ctx    context.Context
		err    error
		sent   bool
		op     connector.Op
		class  connector.Class // "" when undone
		retry  bool
		undone bool
	}{
		{"not null", live, pg("23502"), true, connector.OpInsert, connector.Rejected, false, false},
		{"unique", live, pg("23505"), true, connector.OpInsert, connector.Rejected, false, false},
		{"bad input", live, pg("22P02"), true, connector.OpUpdate, connector.Rejected, false, false},
		{"login refused", live, pg("28P01"), false, connector.OpInsert, connector.Auth, false, false},
		{"permission", live, pg("42501"), true, connector.OpInsert, connector.Auth, false, false},
		{"serialization", live, pg("40001"), true, connector.OpInsert, connector.Retryable, true, false},
		{"deadlock", live, pg("40P01"), true, connector.OpUpdate, connector.Retryable, true, false},
		{"too many connections", live, pg("53300"), false, connector.OpInsert, connector.Retryable, true, false},
		{"admin shutdown", live, pg("57P01"), true, connector.OpInsert, connector.Retryable, true, false},
		{"statement timeout", live, pg("57014"), true, connector.OpInsert, connector.Retryable, false, false},
		{"cancelled statement", cancelled, pg("57014"), true, connector.OpInsert, "", false, true},
		{"dropped column", live, pg("42703"), true, connector.OpInsert, connector.Rejected, false, false},
		{"other", live, pg("XX000"), true, connector.OpInsert, connector.Rejected, false, false},
		{"no row", live, pgx.ErrNoRows, true, connector.OpUpdate, connector.NotFound, false, false},
		{"no connection", live, errors.New("dial tcp: connection refused"), false, connector.OpInsert, connector.Retryable, true, false},
		{"lost after sending insert", live, lost, true, connector.OpInsert, connector.Ambiguous, false, false},
		{"lost after sending update", live, lost, true, connector.OpUpdate, connector.Retryable, true, false},
		{"cancelled before sending", cancelled, context.Canceled, false, connector.OpInsert, "", false, true},
		{"cancelled insert in flight", cancelled, lost, true, connector.OpInsert, connector.Ambiguous, false, false},
		{"cancelled update in flight", cancelled, lost, true, connector.OpUpdate, connector.Retryable, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := classify(tc.ctx, tc.err, tc.sent, tc.op, "insert into public.t")
			require.Equal(t, tc.undone, o.undone)
			require.Equal(t, tc.retry, o.retry)
			if tc.undone {
				return
			}
			require.Equal(t, tc.class, o.err.Class)
			require.Contains(t, o.err.Message, "insert into public.t")
		})
	}
}
