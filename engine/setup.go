package engine

import (
	"context"
	"fmt"

	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/sqlident"
	"github.com/jackc/pgx/v5"
)

// SetupScopeRole creates (or completes) the role scope queries run as: it
// can log in nowhere, and may only read the tables of schemas (and the link
// tables, which reads join), now and as they are created by this login.
// The warehouse login is made a member so that it can SET ROLE to it. Set
// warehouse.scope_role to its name to use it.
func SetupScopeRole(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, role string, schemas []string) error {
	if !project.ValidName(role) {
		return fmt.Errorf("scope role %q: use lower-case letters, digits and _", role)
	}
	if len(schemas) == 0 {
		return fmt.Errorf("name the schemas scope queries may read (--schemas crm,hubspot)")
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("setting up scope role %s: %w", role, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		return fmt.Errorf("setting up scope role %s: %w", role, err)
	}
	r := sqlident.Ident(role)
	stmts := []string{}
	if !exists {
		stmts = append(stmts, "CREATE ROLE "+r+" NOLOGIN NOINHERIT")
	}
	stmts = append(stmts, "GRANT "+r+" TO CURRENT_USER", "CREATE SCHEMA IF NOT EXISTS "+sqlident.Ident(linktable.Schema))
	for _, schema := range append(schemas, linktable.Schema) {
		sc := sqlident.Ident(schema)
		stmts = append(stmts,
			"GRANT USAGE ON SCHEMA "+sc+" TO "+r,
			"GRANT SELECT ON ALL TABLES IN SCHEMA "+sc+" TO "+r,
			"ALTER DEFAULT PRIVILEGES IN SCHEMA "+sc+" GRANT SELECT ON TABLES TO "+r)
	}
	for _, stmt := range stmts {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("setting up scope role %s: %s: %w", role, stmt, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("setting up scope role %s: %w", role, err)
	}
	return nil
}
