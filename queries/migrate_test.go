package queries_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/queries"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

func embeddedMigrations(t *testing.T) []queries.Migration {
	t.Helper()
	ms, err := queries.Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	return ms
}

// schemaState is everything a rerun of Migrate must leave alone: the rows of
// ferry.schema_migrations (applied_at included) and the tables and columns of
// schema ferry.
func schemaState(t *testing.T, pool *pgxpool.Pool) (migrations, columns []string) {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT format('%s|%s|%s|%s', version, name, checksum, applied_at)
		FROM ferry.schema_migrations ORDER BY version`)
	require.NoError(t, err)
	migrations, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	rows, err = pool.Query(ctx, `SELECT format('%s.%s %s %s', table_name, column_name, data_type, is_nullable)
		FROM information_schema.columns WHERE table_schema = 'ferry'
		ORDER BY table_name, ordinal_position`)
	require.NoError(t, err)
	columns, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return migrations, columns
}

// appliedChecksums returns version -> checksum as recorded in the database.
func appliedChecksums(t *testing.T, pool *pgxpool.Pool) map[int]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT version, coalesce(checksum, '') FROM ferry.schema_migrations")
	require.NoError(t, err)
	out := map[int]string{}
	var version int
	var checksum string
	_, err = pgx.ForEachRow(rows, []any{&version, &checksum}, func() error {
		out[version] = checksum
		return nil
	})
	require.NoError(t, err)
	return out
}

func wantChecksums(ms []queries.Migration) map[int]string {
	out := map[int]string{}
	for _, m := range ms {
		out[m.Version] = m.Checksum()
	}
	return out
}

func TestMigrateAppliesEverythingOnceThenNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := embeddedMigrations(t)
	pool := dbtest.Open(t, dbtest.NewEmptyURL(t))

	n, err := queries.Migrate(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, len(ms), n, "a first Migrate applies every migration")
	require.Equal(t, wantChecksums(ms), appliedChecksums(t, pool))
	migrationsBefore, columnsBefore := schemaState(t, pool)
	require.Len(t, migrationsBefore, len(ms))
	require.Contains(t, columnsBefore, "schema_migrations.checksum text YES")

	n, err = queries.Migrate(ctx, pool)
	require.NoError(t, err)
	require.Zero(t, n, "a rerun applies nothing")
	migrationsAfter, columnsAfter := schemaState(t, pool)
	require.Equal(t, migrationsBefore, migrationsAfter)
	require.Equal(t, columnsBefore, columnsAfter)
}

func TestMigrateAppliesOnlyWhatIsMissing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := embeddedMigrations(t)
	require.Greater(t, len(ms), 2)
	pool := dbtest.Open(t, dbtest.NewEmptyURL(t))

	// A database migrated by an older binary, which had fewer migrations.
	n, err := queries.MigrateWith(ctx, pool, ms[:2])
	require.NoError(t, err)
	require.Equal(t, 2, n)

	n, err = queries.Migrate(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, len(ms)-2, n)
	require.Equal(t, wantChecksums(ms), appliedChecksums(t, pool))
}

func TestMigrateConcurrentProcessesApplyEachMigrationOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := embeddedMigrations(t)
	url := dbtest.NewEmptyURL(t)

	// One pool each, as separate processes would have; opened here because
	// dbtest fails the test, which a goroutine must not do.
	const processes = 4
	pools := make([]*pgxpool.Pool, processes)
	for i := range pools {
		pools[i] = dbtest.Open(t, url)
		require.NoError(t, pools[i].Ping(ctx))
	}
	applied := make([]int, processes)
	errs := make([]error, processes)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			applied[i], errs[i] = queries.Migrate(ctx, pools[i])
		}()
	}
	close(start)
	wg.Wait()

	total := 0
	for i := range pools {
		require.NoError(t, errs[i], "process %d", i)
		total += applied[i]
	}
	require.Equal(t, len(ms), total, "between them the processes apply each migration once")

	var rows, versions int
	require.NoError(t, pools[0].QueryRow(ctx,
		"SELECT count(*), count(DISTINCT version) FROM ferry.schema_migrations").Scan(&rows, &versions))
	require.Equal(t, len(ms), rows)
	require.Equal(t, len(ms), versions)
	require.Equal(t, wantChecksums(ms), appliedChecksums(t, pools[0]))
}

func TestMigrateRefusesAnEditedMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := embeddedMigrations(t)
	require.Greater(t, len(ms), 3)
	pool := dbtest.Open(t, dbtest.NewEmptyURL(t))

	// Applied up to the third; the binary then has the second edited and
	// more to apply. Nothing may be applied: the schema is not what the
	// edited file says.
	_, err := queries.MigrateWith(ctx, pool, ms[:3])
	require.NoError(t, err)
	before, _ := schemaState(t, pool)

	edited := append([]queries.Migration(nil), ms...)
	edited[1].SQL += "\nCREATE TABLE ferry.sneaked_in (id int);\n"
	n, err := queries.MigrateWith(ctx, pool, edited)
	require.Error(t, err)
	require.Zero(t, n)
	require.ErrorContains(t, err, ms[1].Name)
	require.ErrorContains(t, err, "was edited after it was applied to this database")
	require.ErrorContains(t, err, "put the file back as it was and write a new migration for the change")

	after, _ := schemaState(t, pool)
	require.Equal(t, before, after, "a refused Migrate applies nothing")
}

func TestMigrateRefusesAChecksumThatDoesNotMatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := embeddedMigrations(t)
	pool := dbtest.NewPool(t)

	// The same refusal, seen from the database: the recorded checksum is not
	// the embedded file's.
	_, err := pool.Exec(ctx, "UPDATE ferry.schema_migrations SET checksum = $1 WHERE version = $2",
		strings.Repeat("0", 64), ms[0].Version)
	require.NoError(t, err)
	_, err = queries.Migrate(ctx, pool)
	require.ErrorContains(t, err, ms[0].Name+" was edited after it was applied to this database")
}

func TestMigrateLineEndingsAreNotAnEdit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := embeddedMigrations(t)
	pool := dbtest.NewPool(t)

	crlf := append([]queries.Migration(nil), ms...)
	for i := range crlf {
		crlf[i].SQL = strings.ReplaceAll(crlf[i].SQL, "\n", "\r\n")
	}
	n, err := queries.MigrateWith(ctx, pool, crlf)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestMigrateRefusesADatabaseNewerThanTheBinary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := embeddedMigrations(t)

	t.Run("a version the binary never had", func(t *testing.T) {
		t.Parallel()
		pool := dbtest.NewPool(t)
		_, err := pool.Exec(ctx, "INSERT INTO ferry.schema_migrations (version, name, checksum) VALUES (9999, '9999_future.sql', 'x')")
		require.NoError(t, err)
		_, err = queries.Migrate(ctx, pool)
		require.ErrorContains(t, err, "9999_future.sql")
		require.ErrorContains(t, err, "migrated by a newer Ferry")
		require.ErrorContains(t, err, "upgrade Ferry")
	})

	t.Run("an older binary on a migrated database", func(t *testing.T) {
		t.Parallel()
		pool := dbtest.NewPool(t)
		last := ms[len(ms)-1]
		_, err := queries.MigrateWith(ctx, pool, ms[:len(ms)-1])
		require.ErrorContains(t, err, fmt.Sprintf("migration %s (version %d)", last.Name, last.Version))
		require.ErrorContains(t, err, "upgrade Ferry")
	})
}

func TestMigrateRecordsChecksumsForDatabasesMigratedBeforeThem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := embeddedMigrations(t)
	pool := dbtest.NewPool(t)

	// A database migrated by a Ferry that had no checksum column: its rows
	// are trusted, and get the embedded checksums.
	_, err := pool.Exec(ctx, "ALTER TABLE ferry.schema_migrations DROP COLUMN checksum")
	require.NoError(t, err)
	n, err := queries.Migrate(ctx, pool)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, wantChecksums(ms), appliedChecksums(t, pool))

	// From then on an edit is caught.
	edited := append([]queries.Migration(nil), ms...)
	edited[0].SQL += "\n-- edited\n"
	_, err = queries.MigrateWith(ctx, pool, edited)
	require.ErrorContains(t, err, "was edited after it was applied")
}

func TestMigrateRefusesDuplicateVersions(t *testing.T) {
	t.Parallel()
	ms := embeddedMigrations(t)
	dup := append([]queries.Migration(nil), ms[0], ms[0])
	dup[1].Name = "0001_other.sql"
	// Refused before touching the database, so no connection is needed.
	_, err := queries.MigrateWith(context.Background(), nil, dup)
	require.ErrorContains(t, err, "have the same version 1")
}
