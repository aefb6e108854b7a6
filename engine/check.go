package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/internal/scope"
	"github.com/ferry-sync/ferry/engine/project"
)

// Check verifies every sync (or the syncs named) without reading rows or
// writing anything: against the warehouse, that the scope query parses and
// reads and has the id, bookmark, mapped and relation columns; against each
// target, that the connection opens (its secrets are set), answers, and
// has the objects and fields the syncs write where the kind can tell. It
// reports every problem at once; warnings are worth reading but not errors.
func (e *Engine) Check(ctx context.Context, names ...string) (warnings []string, err error) {
	p, err := e.Project(ctx)
	if err != nil {
		return nil, err
	}
	syncs, err := p.Order(names)
	if err != nil {
		return nil, err
	}
	targets := map[string]connector.Target{}
	defer func() {
		for _, t := range targets {
			t.Close()
		}
	}()
	var errs []error
	for _, s := range syncs {
		if err := e.checkSync(ctx, p, s, targets); err != nil {
			errs = append(errs, err)
		}
	}
	if p.Warehouse.ScopeRole == "" {
		warnings = append(warnings, "scope queries run with every right of the warehouse login: they can read server files, end other sessions and see every schema. "+
			"Create a role that can only read your schemas (`ferry setup --scope-role ferry_scope --schemas crm,hubspot`) and set warehouse.scope_role: ferry_scope in "+project.ProjectFile)
	}
	return warnings, e.redact.RedactError(errors.Join(errs...))
}

func (e *Engine) checkSync(ctx context.Context, p *project.Project, s *project.Sync, targets map[string]connector.Target) error {
	tx, err := scope.BeginRead(ctx, e.db, p.Warehouse.ScopeRole, s.Source.Timeout.Duration)
	if err != nil {
		return fmt.Errorf("sync %s: %w", s.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	sc, err := scope.Describe(ctx, tx, s, p.Warehouse.ScopeRole)
	if err != nil {
		return err
	}
	var errs []error
	if err := e.checkTarget(ctx, p, targets, s.Target.Connection, connector.Use{
		Object: s.Target.Object, Fields: writtenFields(s, sc), Lookup: len(s.Target.MatchOn) > 0,
	}); err != nil {
		errs = append(errs, fmt.Errorf("sync %s: target: %w", s.Name, err))
	}
	if wb := s.WriteBack; wb != nil {
		if err := e.checkTarget(ctx, p, targets, wb.Connection, connector.Use{Object: wb.Object, Fields: []string{wb.Field}}); err != nil {
			errs = append(errs, fmt.Errorf("sync %s: write_back: %w", s.Name, err))
		}
	}
	return errors.Join(errs...)
}

// checkTarget opens a connection (once per check) and asks it whether it
// can take what a sync writes.
func (e *Engine) checkTarget(ctx context.Context, p *project.Project, targets map[string]connector.Target, conn string, use connector.Use) error {
	t, ok := targets[conn]
	if !ok {
		var err error
		if t, err = e.openTarget(ctx, p, conn); err != nil {
			return err
		}
		targets[conn] = t
	}
	if c, ok := t.(connector.Checker); ok {
		if err := c.Check(ctx, use); err != nil {
			return fmt.Errorf("connection %s: %w", conn, err)
		}
	}
	return nil
}

// writtenFields lists the target fields a sync writes: its mapping and
// relations, or the scope's columns mapped by name. With a transform the
// payload is the script's to shape, so no field list can be promised.
func writtenFields(s *project.Sync, sc *scope.Scope) []string {
	if len(s.TransformSource) > 0 {
		return nil
	}
	var fields []string
	if len(s.Mapping) == 0 {
		fields, _ = sc.DerivedColumns(s)
	}
	for _, f := range s.Mapping {
		fields = append(fields, f.Target)
	}
	for _, r := range s.Relations {
		fields = append(fields, r.Target)
	}
	return fields
}
