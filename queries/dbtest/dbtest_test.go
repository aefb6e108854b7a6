package dbtest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/queries/dbtest"
)

func TestNewPoolIsMigratedAndPrivate(t *testing.T) {
	t.Parallel()
	a := dbtest.NewPool(t)
	b := dbtest.NewPool(t)
	ctx := context.Background()

	_, err := a.Exec(ctx, "CREATE TABLE public.only_in_a (id int)")
	require.NoError(t, err)

	var n int
	require.NoError(t, a.QueryRow(ctx, "SELECT count(*) FROM ferry.schema_migrations").Scan(&n))
	require.Positive(t, n)

	var exists bool
	require.NoError(t, b.QueryRow(ctx, "SELECT to_regclass('public.only_in_a') IS NOT NULL").Scan(&exists))
	require.False(t, exists, "databases of two tests must not share tables")
}
