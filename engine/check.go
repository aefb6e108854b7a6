package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-sync/ferry/engine/internal/scope"
	"github.com/ferry-sync/ferry/engine/project"
)

// Check verifies every sync against the warehouse without reading rows or
// writing anything: the scope query parses and reads, and it has the id,
// bookmark, mapped and relation columns. It reports every problem at once.
func (e *Engine) Check(ctx context.Context) (warnings []string, err error) {
	p, err := e.Project(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, s := range p.Syncs {
		if err := e.checkSync(ctx, p, s); err != nil {
			errs = append(errs, err)
		}
	}
	if p.Warehouse.ScopeRole == "" {
		warnings = append(warnings, "scope queries run with every right of the warehouse login: they can read server files, end other sessions and see every schema. "+
			"Create a role that can only read your schemas (`ferry setup --scope-role ferry_scope --schemas crm,hubspot`) and set warehouse.scope_role: ferry_scope in "+project.ProjectFile)
	}
	return warnings, errors.Join(errs...)
}

func (e *Engine) checkSync(ctx context.Context, p *project.Project, s *project.Sync) error {
	tx, err := scope.BeginRead(ctx, e.db, p.Warehouse.ScopeRole, s.Source.Timeout.Duration)
	if err != nil {
		return fmt.Errorf("sync %s: %w", s.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	_, err = scope.Describe(ctx, tx, s, p.Warehouse.ScopeRole)
	return err
}
