package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/internal/sqlident"
)

// lookupExisting looks the page's new records up in the target before
// they are inserted (target.lookup_before_insert, or target.lookup_in for
// the target's copy in the warehouse): a record the target already holds,
// matched on every match_on field, is linked and updated instead of
// inserted a second time. One that matches several is refused: which one
// is meant is for the analyst to say (a seeded link row).
func (r *runner) lookupExisting(ctx context.Context, items []*item, dp *decidedPage) error {
	t := r.s.Target
	if !t.LookupBeforeInsert && t.LookupIn == nil {
		return nil
	}
	var todo []*item
	for _, it := range items {
		if it.decision != DecideInsert {
			continue
		}
		if missing := r.matchMissing(it); missing != "" {
			// Nothing to look it up by: inserted, as without the setting.
			continue
		}
		todo = append(todo, it)
	}
	if len(todo) == 0 {
		return nil
	}
	var found [][]string // target ids per item
	var err error
	if t.LookupIn != nil {
		found, err = r.lookupInWarehouse(ctx, todo)
	} else {
		if !r.mayCallTarget() {
			for _, it := range todo {
				it.reason = "it may already be in the target: " + noLookups
			}
			return nil
		}
		found, err = r.lookupInTarget(ctx, todo, dp)
	}
	if err != nil {
		return err
	}
	for i, it := range todo {
		switch len(found[i]) {
		case 0:
		case 1:
			it.targetID = found[i][0]
			it.decision = DecideUpdate
			it.reason = "already in the target (matched on " + strings.Join(t.MatchOn, ", ") + "): linked and updated"
		default:
			it.fail(DecideFail, "ambiguous", fmt.Sprintf("source id %s matches %d records of %s on %s (ids %s): link the right one by seeding link_tables.%s (status matched), or make match_on identify one record",
				it.id, len(found[i]), t.Object, strings.Join(t.MatchOn, ", "), strings.Join(found[i], ", "), r.s.Name))
		}
	}
	return nil
}

// matchMissing names the first match_on field an item has no value for.
func (r *runner) matchMissing(it *item) string {
	for _, f := range r.s.Target.MatchOn {
		if it.mapped[f] == nil {
			return f
		}
	}
	return ""
}

// lookupInTarget asks the target, a few records at a time (its own
// concurrency: the connector's budget bounds the calls).
func (r *runner) lookupInTarget(ctx context.Context, todo []*item, dp *decidedPage) ([][]string, error) {
	finder, ok := r.target.(connector.Finder)
	if !ok {
		return nil, fmt.Errorf("sync %s: target.lookup_before_insert: connection %s cannot look records up; use target.lookup_in (its copy in the warehouse) instead", r.s.Name, r.s.Target.Connection)
	}
	matches := make([]map[string]any, len(todo))
	for i, it := range todo {
		matches[i] = r.matchOf(it)
	}
	recs, errs := r.findAll(ctx, finder, matches)
	found := make([][]string, len(todo))
	for i := range recs {
		for _, rec := range recs[i] {
			found[i] = append(found[i], fmt.Sprint(rec["id"]))
		}
	}
	dp.lookups += int64(len(todo))
	for i, err := range errs {
		if err == nil {
			continue
		}
		if c := connector.ClassOf(err); c == connector.Auth || c == connector.Unreachable {
			return nil, fmt.Errorf("sync %s: looking records up in %s before inserting them: %w", r.s.Name, r.s.Target.Connection, err)
		}
		// This record alone could not be looked up: not inserted blindly.
		todo[i].fail(DecideFail, string(connector.ClassOf(err)), fmt.Sprintf("source id %s: looking it up before inserting it failed: %v; retried on the next run", todo[i].id, err))
		found[i] = nil
	}
	return found, nil
}

// matchOf is an item's match_on fields and values.
func (r *runner) matchOf(it *item) map[string]any {
	match := make(map[string]any, len(r.s.Target.MatchOn))
	for _, f := range r.s.Target.MatchOn {
		match[f] = it.mapped[f]
	}
	return match
}

// findAll looks every match up in the target concurrently (the target's
// own concurrency: the connector's budget bounds the calls), and keeps
// only the records whose fields equal the match.
func (r *runner) findAll(ctx context.Context, finder connector.Finder, matches []map[string]any) ([][]map[string]any, []error) {
	workers := 4
	if p, ok := r.target.(connector.Pacer); ok {
		workers = max(p.InFlight(), 1)
	}
	found := make([][]map[string]any, len(matches))
	errs := make([]error, len(matches))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, len(matches)) {
		wg.Go(func() {
			for i := range next {
				recs, err := finder.Find(ctx, r.s.Target.Object, matches[i])
				if err == nil {
					recs, err = connector.Matching(r.s.Target.Object, recs, matches[i])
				}
				found[i], errs[i] = recs, err
			}
		})
	}
	for i := range matches {
		next <- i
	}
	close(next)
	wg.Wait()
	return found, errs
}

// lookupInWarehouse looks the records up in the target's copy in the
// warehouse, one query per page: match values compare as text.
func (r *runner) lookupInWarehouse(ctx context.Context, todo []*item) ([][]string, error) {
	li := r.s.Target.LookupIn
	idCol := li.ID
	if idCol == "" {
		idCol = "id"
	}
	fields := r.s.Target.MatchOn
	args := make([]any, len(fields))
	var cols, conds []string
	for j, f := range fields {
		vals := make([]string, len(todo))
		for i, it := range todo {
			vals[i] = fmt.Sprint(it.mapped[f])
		}
		args[j] = vals
		cols = append(cols, fmt.Sprintf("$%d::text[]", j+1))
		conds = append(conds, fmt.Sprintf("t.%s::text = u.f%d", sqlident.Ident(f), j))
	}
	names := make([]string, len(fields))
	for j := range fields {
		names[j] = fmt.Sprintf("f%d", j)
	}
	sql := fmt.Sprintf(`SELECT u.n, t.%s::text FROM unnest(%s) WITH ORDINALITY AS u(%s, n) JOIN %s t ON %s ORDER BY u.n, 2`,
		sqlident.Ident(idCol), strings.Join(cols, ", "), strings.Join(names, ", "), sqlident.Qualified(li.Table), strings.Join(conds, " AND "))
	rows, err := r.e.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("sync %s: looking records up in %s (target.lookup_in): %w", r.s.Name, li.Table, err)
	}
	found := make([][]string, len(todo))
	var n int64
	var id string
	_, err = pgx.ForEachRow(rows, []any{&n, &id}, func() error {
		found[n-1] = append(found[n-1], id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sync %s: looking records up in %s (target.lookup_in): %w", r.s.Name, li.Table, err)
	}
	return found, nil
}
