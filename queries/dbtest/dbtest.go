// Package dbtest gives every test its own PostgreSQL database, cheaply: a
// template database is migrated once per migration hash, and each test gets a
// CREATE DATABASE … TEMPLATE copy that is dropped when the test ends.
//
// The server is DATABASE_URL, or postgres://postgres@127.0.0.1:5432/postgres.
// When it cannot be reached the test is skipped, except under CI=true, where
// it fails: CI must never pass by skipping.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-sync/ferry/queries"
)

// DefaultURL is used when DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL returns the admin URL of the test server.
func ServerURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

var templateOnce sync.Map // template name -> *sync.Once-like result

type templateResult struct {
	once sync.Once
	err  error
}

// NewURL creates a fresh, migrated database for t and returns its URL. The
// database is dropped when t ends.
func NewURL(t testing.TB) string {
	t.Helper()
	return newDatabase(t, true)
}

// NewEmptyURL creates a fresh database without Ferry's schema (a stand-in for
// a target application's database) and returns its URL.
func NewEmptyURL(t testing.TB) string {
	t.Helper()
	return newDatabase(t, false)
}

// NewPool opens a pool on a fresh, migrated database, closed when t ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return Open(t, NewURL(t))
}

// NewPoolSized is NewPool with room for maxConns connections (a server
// with run workers needs more than the default).
func NewPoolSized(t testing.TB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	return open(t, NewURL(t), maxConns)
}

// Open opens a pool on url, closed when t ends.
func Open(t testing.TB, dbURL string) *pgxpool.Pool {
	t.Helper()
	return open(t, dbURL, 0)
}

func open(t testing.TB, dbURL string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatalf("dbtest: parsing %s: %v", redact(dbURL), err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("dbtest: opening %s: %v", redact(dbURL), err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func newDatabase(t testing.TB, migrated bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		unreachable(t, err)
		return ""
	}
	defer admin.Close(ctx)

	template := "template0"
	if migrated {
		template, err = migratedTemplate(ctx, admin)
		if err != nil {
			t.Fatalf("dbtest: %v", err)
		}
	}
	name := "ferry_test_" + randomSuffix()
	if err := createFrom(ctx, admin, name, template); err != nil {
		t.Fatalf("dbtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, ServerURL())
		if err != nil {
			t.Logf("dbtest: dropping %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("dbtest: dropping %s: %v", name, err)
		}
	})
	return withDatabase(ServerURL(), name)
}

// migratedTemplate makes sure a template database with the current migrations
// exists and returns its name. Concurrent test packages race to create it, so
// creation happens under an advisory lock on the server.
func migratedTemplate(ctx context.Context, admin *pgx.Conn) (string, error) {
	hash, err := queries.MigrationsHash()
	if err != nil {
		return "", err
	}
	name := "ferry_template_" + hash
	v, _ := templateOnce.LoadOrStore(name, &templateResult{})
	res := v.(*templateResult)
	res.once.Do(func() { res.err = ensureTemplate(ctx, admin, name) })
	return name, res.err
}

func ensureTemplate(ctx context.Context, admin *pgx.Conn, name string) error {
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(7240001)"); err != nil {
		return fmt.Errorf("locking template creation: %w", err)
	}
	defer admin.Exec(context.Background(), "SELECT pg_advisory_unlock(7240001)")

	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("looking for template %s: %w", name, err)
	}
	if exists {
		return nil
	}
	building := name + "_building"
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{building}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping stale %s: %w", building, err)
	}
	if err := createFrom(ctx, admin, building, "template0"); err != nil {
		return fmt.Errorf("creating %s: %w", building, err)
	}
	conn, err := pgx.Connect(ctx, withDatabase(ServerURL(), building))
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", building, err)
	}
	_, err = queries.Migrate(ctx, conn)
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("migrating %s: %w", building, err)
	}
	// Renaming last means a half-built template is never used.
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{building}.Sanitize()+" RENAME TO "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("renaming template: %w", err)
	}
	return nil
}

func createFrom(ctx context.Context, admin *pgx.Conn, name, template string) error {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{template}.Sanitize())
		// 55006: the template is briefly in use by another CREATE DATABASE.
		if err == nil || !isSQLState(err, "55006") {
			return err
		}
		time.Sleep(time.Duration(50+attempt*25) * time.Millisecond)
	}
	return err
}

func unreachable(t testing.TB, err error) {
	t.Helper()
	msg := fmt.Sprintf("dbtest: PostgreSQL at %s is not reachable: %v (start it, or set DATABASE_URL)", redact(ServerURL()), err)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func withDatabase(serverURL, name string) string {
	u, err := url.Parse(serverURL)
	if err != nil {
		return serverURL
	}
	u.Path = "/" + name
	return u.String()
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
