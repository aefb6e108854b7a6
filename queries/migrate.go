package queries

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrateLockKey is the advisory lock that serialises migrations, so that two
// processes starting at once never apply the same migration twice.
const migrateLockKey = 0x66657272796d6967 // "ferrymig"

// Migration is one embedded schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("reading embedded migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s: name must start with a number and an underscore", name)
		}
		body, err := fs.ReadFile(migrationFiles, "migrations/"+name)
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", name, err)
		}
		out = append(out, Migration{Version: version, Name: name, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Checksum identifies the SQL of m. Migrate records it when it applies m and
// compares it on every later run, so that an applied migration edited
// afterwards is refused instead of silently skipped. Line endings are
// normalised first: a checkout that turned LF into CRLF (Windows, autocrlf)
// has not edited anything, and must not be refused for it.
func (m Migration) Checksum() string {
	sum := sha256.Sum256([]byte(strings.ReplaceAll(m.SQL, "\r\n", "\n")))
	return hex.EncodeToString(sum[:])
}

// bootstrapSQL creates the table that records applied migrations. It cannot
// be a migration itself, since it is what says which migrations ran. The
// checksum column came later: databases migrated by earlier versions of
// Ferry get it (their rows start with NULL), only then, since ALTER TABLE
// takes an exclusive lock and needs the table's owner.
const bootstrapSQL = `CREATE SCHEMA IF NOT EXISTS ferry;
CREATE TABLE IF NOT EXISTS ferry.schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now());
DO $$ BEGIN
	IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'ferry.schema_migrations'::regclass AND attname = 'checksum' AND NOT attisdropped) THEN
		ALTER TABLE ferry.schema_migrations ADD COLUMN checksum text;
	END IF;
END $$`

// MigrationsHash identifies the current set of migrations; test helpers key
// their template databases by it. The bootstrap DDL is part of it, so that a
// template built before schema_migrations changed shape is not reused.
func MigrationsHash() (string, error) {
	ms, err := Migrations()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", bootstrapSQL)
	river, err := riverMigrator()
	if err != nil {
		return "", err
	}
	for _, m := range river.AllVersions() {
		fmt.Fprintf(h, "river %d\x00%s\x00", m.Version, m.SQLUp)
	}
	for _, m := range ms {
		fmt.Fprintf(h, "%d\x00%s\x00", m.Version, m.SQL)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Migrate applies every migration the database does not have yet, in one
// transaction under an advisory lock. It returns how many it applied. It
// refuses a database whose applied migrations differ from the embedded ones:
// one edited after it was applied, or one this binary does not have.
func Migrate(ctx context.Context, conn interface {
	Begin(context.Context) (pgx.Tx, error)
}) (int, error) {
	ms, err := Migrations()
	if err != nil {
		return 0, err
	}
	return migrate(ctx, conn, ms)
}

// appliedMigration is a row of ferry.schema_migrations.
type appliedMigration struct {
	Version  int32
	Name     string
	Checksum *string // NULL when applied before checksums were recorded
}

// migrate is Migrate with the migrations passed in, so that tests can stand
// in an edited or a shorter list for the embedded one. ms must be in version
// order.
func migrate(ctx context.Context, conn interface {
	Begin(context.Context) (pgx.Tx, error)
}, ms []Migration) (int, error) {
	byVersion := make(map[int]Migration, len(ms))
	for _, m := range ms {
		if prev, ok := byVersion[m.Version]; ok {
			return 0, fmt.Errorf("migrate: migrations %s and %s have the same version %d", prev.Name, m.Name, m.Version)
		}
		byVersion[m.Version] = m
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: starting transaction: %w", err)
	}
	defer tx.Rollback(ctx) // a no-op after Commit

	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLockKey)); err != nil {
		return 0, fmt.Errorf("migrate: taking the migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, bootstrapSQL); err != nil {
		return 0, fmt.Errorf("migrate: creating ferry.schema_migrations: %w", err)
	}
	rows, err := tx.Query(ctx, "SELECT version, name, checksum FROM ferry.schema_migrations ORDER BY version")
	if err != nil {
		return 0, fmt.Errorf("migrate: reading applied migrations: %w", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowToStructByPos[appliedMigration])
	if err != nil {
		return 0, fmt.Errorf("migrate: reading applied migrations: %w", err)
	}

	// Check what the database already has before applying anything: a
	// migration applied here and edited since, or one this binary lacks,
	// means the schema is not what the code expects, and skipping it would
	// hide that until some query failed.
	done := make(map[int]bool, len(applied))
	for _, a := range applied {
		m, ok := byVersion[int(a.Version)]
		if !ok {
			return 0, fmt.Errorf("migrate: this database has migration %s (version %d) applied, which this Ferry binary does not know: "+
				"the database was migrated by a newer Ferry; upgrade Ferry to use it", a.Name, a.Version)
		}
		want := m.Checksum()
		switch {
		case a.Checksum == nil:
			// Applied by a Ferry that did not record checksums: there is
			// nothing to compare with, so trust it and record the checksum
			// from now on.
			if _, err := tx.Exec(ctx, "UPDATE ferry.schema_migrations SET checksum = $1 WHERE version = $2", want, a.Version); err != nil {
				return 0, fmt.Errorf("migrate: recording the checksum of %s: %w", m.Name, err)
			}
		case *a.Checksum != want:
			return 0, fmt.Errorf("migrate: migration %s was edited after it was applied to this database (its sha256 starts %.12s now, %.12s when applied): "+
				"put the file back as it was and write a new migration for the change", m.Name, want, *a.Checksum)
		}
		done[m.Version] = true
	}

	n := 0
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return 0, fmt.Errorf("migrate: applying %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO ferry.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", m.Version, m.Name, m.Checksum()); err != nil {
			return 0, fmt.Errorf("migrate: recording %s: %w", m.Name, err)
		}
		n++
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("migrate: committing: %w", err)
	}
	// n counts Ferry's own migrations: River's are its business.
	if _, err := migrateQueue(ctx, conn); err != nil {
		return n, err
	}
	return n, nil
}

// migrateQueue migrates the run queue's tables (River's, in the ferry
// schema), one River version per transaction under the migration lock:
// some of them add an enum value a later one uses, which PostgreSQL allows
// only once the first has committed.
func migrateQueue(ctx context.Context, conn interface {
	Begin(context.Context) (pgx.Tx, error)
}) (int, error) {
	river, err := riverMigrator()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range river.AllVersions() {
		applied, err := func() (int, error) {
			tx, err := conn.Begin(ctx)
			if err != nil {
				return 0, fmt.Errorf("migrate: starting transaction: %w", err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLockKey)); err != nil {
				return 0, fmt.Errorf("migrate: taking the migration lock: %w", err)
			}
			//lint:ignore SA1019 one version per transaction (what Migrate does) but under Ferry's migration lock, which Migrate cannot take
			res, err := river.MigrateTx(ctx, tx, rivermigrate.DirectionUp, &rivermigrate.MigrateOpts{TargetVersion: v.Version})
			if err != nil {
				return 0, fmt.Errorf("migrate: applying the run queue's migration %d: %w", v.Version, err)
			}
			return len(res.Versions), tx.Commit(ctx)
		}()
		if err != nil {
			return n, err
		}
		n += applied
	}
	return n, nil
}

// riverMigrator migrates the run queue's tables (River's) in the ferry
// schema.
func riverMigrator() (*rivermigrate.Migrator[pgx.Tx], error) {
	m, err := rivermigrate.New(riverpgxv5.New(nil), &rivermigrate.Config{Schema: "ferry", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("migrate: the run queue's migrations: %w", err)
	}
	return m, nil
}

// CheckMigrated reports whether the database has every migration this
// binary knows (readiness: a server must not serve a schema it expects but
// that is not there yet).
func CheckMigrated(ctx context.Context, db DBTX) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	var applied int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM ferry.schema_migrations").Scan(&applied); err != nil {
		return fmt.Errorf("reading applied migrations: %w", err)
	}
	if applied < len(ms) {
		return fmt.Errorf("the warehouse has %d of %d migrations applied: run ferry migrate", applied, len(ms))
	}
	return nil
}
