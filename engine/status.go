package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/queries"
)

// LinkStatus is what a link row says of its record
// (link_tables.<sync>.status).
type LinkStatus = linktable.Status

// Link statuses.
const (
	LinkSuccess = linktable.StatusSuccess
	LinkError   = linktable.StatusError
	LinkSkipped = linktable.StatusSkipped
	LinkMatched = linktable.StatusMatched
	LinkPending = linktable.StatusPending
)

// LinkStatuses lists the link statuses in the order reports show them.
func LinkStatuses() []LinkStatus {
	return []LinkStatus{LinkSuccess, LinkSkipped, LinkMatched, LinkPending, LinkError}
}

// LinkRow is one row of a link table.
type LinkRow = linktable.Row

// Run is one run as ferry.runs records it.
type Run = queries.FerryRun

// SyncStatus is the state of one sync: its link rows by status, the latest
// records in error or pending, its bookmark and its latest runs.
type SyncStatus struct {
	Sync          string               `json:"sync"`
	Links         map[LinkStatus]int64 `json:"links"`
	Failing       []LinkRow            `json:"failing"` // the latest rows in error or pending
	Bookmark      string               `json:"bookmark,omitempty"`
	ReconciledAt  *time.Time           `json:"reconciled_at,omitempty"`
	NextReconcile *time.Time           `json:"next_reconcile,omitempty"`
	// Schedule is the sync's schedule in words, NextRun its next tick
	// (none while paused): ferry serve runs it then.
	Schedule string     `json:"schedule,omitempty"`
	NextRun  *time.Time `json:"next_run,omitempty"`
	Runs     []Run      `json:"runs"`
}

// Status reports the state of syncs (every sync when names is empty),
// with up to limit failing rows and runs each.
func (e *Engine) Status(ctx context.Context, names []string, limit int) ([]SyncStatus, error) {
	p, err := e.Project(ctx)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		for _, s := range p.Syncs {
			names = append(names, s.Name)
		}
	}
	var out []SyncStatus
	for _, name := range names {
		s, ok := p.Sync(name)
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownSync, name)
		}
		st := SyncStatus{Sync: name}
		if sc := s.Schedule; sc != nil {
			st.Schedule = sc.String()
			if !sc.Paused {
				next := sc.Next(time.Now())
				st.NextRun = &next
			}
		}
		if st.Links, err = linktable.Counts(ctx, e.db, name); err != nil {
			return nil, err
		}
		for _, status := range []LinkStatus{LinkError, LinkPending} {
			rows, err := linktable.Rows(ctx, e.db, name, status, limit)
			if err != nil {
				return nil, err
			}
			st.Failing = append(st.Failing, rows...)
		}
		bm, err := e.q.BookmarkGet(ctx, name)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return nil, fmt.Errorf("reading the bookmark of %s: %w", name, err)
		default:
			st.Bookmark = bm
			rec, err := e.q.BookmarkReconciledAt(ctx, name)
			if err != nil {
				return nil, fmt.Errorf("reading when %s last reconciled: %w", name, err)
			}
			st.ReconciledAt = rec.ReconciledAt
			if every := s.Source.ReconcileEvery.Duration; every > 0 && s.IsIncremental() {
				next := rec.DbNow
				if rec.ReconciledAt != nil {
					next = rec.ReconciledAt.Add(every)
				}
				st.NextReconcile = &next
			}
		}
		if st.Runs, err = e.q.RunListBySync(ctx, queries.RunListBySyncParams{Sync: name, MaxRows: int32(limit)}); err != nil {
			return nil, fmt.Errorf("reading the runs of %s: %w", name, err)
		}
		out = append(out, st)
	}
	return out, nil
}
