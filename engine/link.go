package engine

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/engine/internal/scope"
	"github.com/ferry-sync/ferry/engine/project"
)

// LinkInit creates a sync's link table, with the types its ids have in the
// scope and in the target, so that analysts can seed it before the first
// run. It reports whether it created it (false: it was there already).
func (e *Engine) LinkInit(ctx context.Context, sync string) (bool, error) {
	p, s, err := e.sync(ctx, sync)
	if err != nil {
		return false, err
	}
	existing, err := linktable.Open(ctx, e.db, s.Name)
	if err != nil || existing != nil {
		return false, err
	}
	_, err = e.linkTable(ctx, p, s)
	return err == nil, err
}

// linkTable opens or creates a sync's link table.
func (e *Engine) linkTable(ctx context.Context, p *project.Project, s *project.Sync) (*linktable.Table, error) {
	tx, err := scope.BeginRead(ctx, e.db, p.Warehouse.ScopeRole, s.Source.Timeout.Duration)
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.Name, err)
	}
	sc, err := scope.Describe(ctx, tx, s, p.Warehouse.ScopeRole)
	tx.Rollback(context.WithoutCancel(ctx)) // read only
	if err != nil {
		return nil, err
	}
	target, err := e.openTarget(ctx, p, s.Target.Connection)
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.Name, err)
	}
	defer target.Close()
	targetType := "text"
	if typer, ok := target.(connector.IDTyper); ok {
		if targetType, err = typer.IDType(ctx, s.Target.Object); err != nil {
			return nil, fmt.Errorf("sync %s: asking connection %s for the id type of %s: %w", s.Name, s.Target.Connection, s.Target.Object, err)
		}
	}
	lt, err := linktable.Ensure(ctx, e.db, s.Name, sc.ID.Type, targetType)
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.Name, err)
	}
	return lt, nil
}

// SeedReport says what a seed query links: its pairs of source and target
// ids, those written (or that would be, in a dry run), those left out
// because a source or target id appears in more than one pair, those whose
// source is linked already, and the records of the scope no pair names
// (runs insert them).
type SeedReport struct {
	Sync          string `json:"sync"`
	Pairs         int64  `json:"pairs"`
	Matched       int64  `json:"matched"`
	Ambiguous     int64  `json:"ambiguous"`
	AlreadyLinked int64  `json:"already_linked"`
	Unmatched     int64  `json:"unmatched"`
	Written       int64  `json:"written"`
	// Examples of ambiguous pairs, "source → target, target".
	AmbiguousExamples []string `json:"ambiguous_examples,omitempty"`
}

// LinkSeed links records that already exist in the target to their source
// records (the spec's "seed the link table"): query returns pairs
// (source_id, target_id), typically a JOIN of the source with the target's
// copy in the warehouse on a shared key (VAT, e-mail). It runs read-only
// under the scope role. A pair is written only when its source id and its
// target id each appear once; a dry run only counts. Writing takes the
// sync's claim, so it never races a run.
func (e *Engine) LinkSeed(ctx context.Context, sync, query string, dryRun bool) (*SeedReport, error) {
	p, s, err := e.sync(ctx, sync)
	if err != nil {
		return nil, err
	}
	lt, err := e.linkTable(ctx, p, s)
	if err != nil {
		return nil, err
	}
	rep := &SeedReport{Sync: s.Name}
	tx, err := scope.BeginRead(ctx, e.db, p.Warehouse.ScopeRole, s.Source.Timeout.Duration)
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // read only
	q := scope.Clean(query)
	rows, err := tx.Query(ctx, fmt.Sprintf(`
WITH pairs AS (SELECT DISTINCT (q.source_id)::text AS s, (q.target_id)::text AS t FROM (%s) q
               WHERE q.source_id IS NOT NULL AND q.target_id IS NOT NULL)
SELECT p.s, p.t, count(*) OVER (PARTITION BY p.s), count(*) OVER (PARTITION BY p.t),
       EXISTS (SELECT 1 FROM %s l WHERE l.source_id::text = p.s AND l.target_id IS NOT NULL)
FROM pairs p ORDER BY p.s, p.t`, q, lt.Ident))
	if err != nil {
		return nil, fmt.Errorf("sync %s: seed query (it must return source_id and target_id columns): %w", s.Name, err)
	}
	var sources, targets []string
	for rows.Next() {
		var src, tgt string
		var perSource, perTarget int64
		var linked bool
		if err := rows.Scan(&src, &tgt, &perSource, &perTarget, &linked); err != nil {
			return nil, fmt.Errorf("sync %s: reading the seed query: %w", s.Name, err)
		}
		rep.Pairs++
		switch {
		case linked:
			rep.AlreadyLinked++
		case perSource > 1 || perTarget > 1:
			rep.Ambiguous++
			if len(rep.AmbiguousExamples) < 5 {
				rep.AmbiguousExamples = append(rep.AmbiguousExamples, fmt.Sprintf("source %s → target %s (%d targets for this source, %d sources for this target)", src, tgt, perSource, perTarget))
			}
		default:
			rep.Matched++
			sources, targets = append(sources, src), append(targets, tgt)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sync %s: seed query (it must return source_id and target_id columns): %w", s.Name, err)
	}
	sc, err := scope.Describe(ctx, tx, s, p.Warehouse.ScopeRole)
	if err != nil {
		return nil, err
	}
	err = tx.QueryRow(ctx, fmt.Sprintf(`
SELECT count(*) FROM (%s) s
WHERE NOT EXISTS (SELECT 1 FROM %s l WHERE l.source_id::text = (s.%s)::text AND l.target_id IS NOT NULL)
  AND NOT ((s.%s)::text = ANY($1::text[]))`, sc.SQL(), lt.Ident, sc.ID.Quoted(), sc.ID.Quoted()), sources).Scan(&rep.Unmatched)
	if err != nil {
		return nil, fmt.Errorf("sync %s: counting the records no pair names: %w", s.Name, err)
	}
	if dryRun || len(sources) == 0 {
		return rep, nil
	}
	ctx, l, err := e.claim(ctx, "sync "+s.Name, "sync:"+s.Name, nil)
	if err != nil {
		return nil, err
	}
	defer l.Release(ctx)
	err = pgx.BeginFunc(ctx, e.db, func(wtx pgx.Tx) error {
		if err := l.Fence(ctx, wtx); err != nil {
			return err
		}
		rep.Written, err = lt.Seed(ctx, wtx, sources, targets)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.Name, err)
	}
	return rep, nil
}
