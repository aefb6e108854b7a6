package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/jackc/pgx/v5"
)

// RollbackOptions narrow a rollback.
type RollbackOptions struct {
	// Since deletes only what was inserted at or after it (zero: all).
	Since time.Time
	// DryRun counts what would be deleted and deletes nothing.
	DryRun bool
	// Origin says what started it (the run row records it).
	Origin Origin
}

// Rollback deletes the target records a sync inserted (the spec's use of
// link tables to undo a sync): the link rows that say Ferry inserted them
// (inserted_at), since a time. Records the sync found in the target or was
// given (seeded, looked up) are never deleted. It claims the sync like a
// run, so no run writes meanwhile, and is recorded as a run that counts
// what it deleted; the link rows become deleted, so the next run of the
// sync would insert those records again (stop its schedule first).
func (e *Engine) Rollback(ctx context.Context, name string, opts RollbackOptions) (*RunResult, error) {
	r, err := e.newRunner(ctx, name, RunOptions{DryRun: opts.DryRun, Origin: opts.Origin})
	if err != nil {
		return nil, err
	}
	s := r.s
	lt, err := linktable.Open(ctx, e.db, s.Name)
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.Name, err)
	}
	if lt == nil {
		return nil, fmt.Errorf("sync %s has no link table: it never ran, so it inserted nothing", s.Name)
	}
	runCtx := ctx
	if !opts.DryRun {
		if runCtx, err = r.begin(ctx); err != nil {
			_, err = r.result(err)
			return nil, err
		}
	}
	err = r.rollback(runCtx, opts)
	if !opts.DryRun {
		err = lostClaim(runCtx, "sync "+s.Name, err)
		r.finish(context.WithoutCancel(runCtx), err)
		r.lease.Release(runCtx)
	}
	return r.result(err)
}

func (r *runner) rollback(ctx context.Context, opts RollbackOptions) error {
	s := r.s
	// A link table made before inserted_at existed gets it (NULL: nothing
	// it holds counts as inserted by Ferry).
	lt, err := linktable.Ensure(ctx, r.e.db, s.Name, "text", "text")
	if err != nil {
		return fmt.Errorf("sync %s: %w", s.Name, err)
	}
	r.lt = lt
	since := opts.Since
	if since.IsZero() {
		since = time.Unix(0, 0)
	}
	sources, targets, err := lt.Inserted(ctx, r.e.db, since)
	if err != nil {
		return fmt.Errorf("sync %s: %w", s.Name, err)
	}
	if opts.DryRun {
		r.count(func(c *Counts) { c.Deleted = int64(len(sources)) })
		return nil
	}
	if len(sources) == 0 {
		return nil
	}
	// The records it deletes are to be inserted again by the next run: it
	// must read the window behind the bookmark, not skip it as unchanged.
	err = r.fenced(ctx, func(tx pgx.Tx) error { return r.e.q.WithTx(tx).BookmarkForgetWindow(ctx, s.Name) })
	if err != nil {
		return fmt.Errorf("sync %s: forgetting the window behind the bookmark: %w", s.Name, err)
	}
	if r.target, err = r.e.openTarget(ctx, r.p, s.Target.Connection); err != nil {
		return fmt.Errorf("sync %s: %w", s.Name, err)
	}
	defer r.target.Close()
	victims := make([]doomed, len(sources))
	for i := range sources {
		victims[i] = doomed{sourceID: sources[i], targetID: targets[i]}
	}
	var errs []error
	for start := 0; start < len(victims); start += deleteChunk {
		if err := r.deleteChunk(ctx, victims[start:min(start+deleteChunk, len(victims))]); err != nil {
			errs = append(errs, err)
			break
		}
	}
	if failed := int64(len(victims)) - r.counts().Deleted; failed > 0 {
		r.count(func(c *Counts) { c.Failed += failed })
	}
	return errors.Join(errs...)
}
