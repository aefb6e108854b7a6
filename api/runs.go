package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/internal/runqueue"
	"github.com/ferry-sync/ferry/queries"
)

// RunQueue is the run queue the API puts runs in (internal/runqueue): any
// replica's workers take them.
type RunQueue interface {
	Enqueue(ctx context.Context, a runqueue.Args) (*rivertype.JobRow, bool, error)
	RunOf(ctx context.Context, jobID int64, wait time.Duration) (int64, error)
	Cancel(ctx context.Context, jobID int64) error
	Depth(ctx context.Context) (int, error)
}

// startWait is how long a trigger waits for a worker to start the run, so
// that its answer names the run; a busy queue answers with the job only.
const startWait = 3 * time.Second

// enqueue queues a run of what it names, refusing one whose sync (or
// script) runs already: 409 with the run that holds it.
func (s *Server) enqueue(ctx context.Context, a runqueue.Args, lease string) (*startedOut, error) {
	if lease != "" {
		what, name, _ := strings.Cut(lease, ":")
		runID, err := s.opts.Engine.Running(ctx, what, name)
		if err != nil {
			return nil, fail(err)
		}
		if runID != 0 {
			return nil, fail(&engine.BusyError{What: what + " " + name, RunID: runID})
		}
	}
	job, _, err := s.opts.Queue.Enqueue(ctx, a)
	if err != nil {
		return nil, fail(err)
	}
	runID, err := s.opts.Queue.RunOf(ctx, job.ID, startWait)
	if err != nil {
		return nil, fail(err)
	}
	return started(runID, job.ID, a), nil
}

type startSyncInput struct {
	Name string `path:"name"`
	Body *struct {
		Full      bool `json:"full,omitempty" doc:"Read the whole scope, ignoring the bookmark."`
		Reconcile bool `json:"reconcile,omitempty" doc:"Read the whole scope and count what incremental runs missed."`
	}
}

func (s *Server) startSyncRun(ctx context.Context, in *startSyncInput) (*startedOut, error) {
	p, err := s.opts.Engine.Project(ctx)
	if err != nil {
		return nil, fail(err)
	}
	if _, ok := p.Sync(in.Name); !ok {
		return nil, fail(notFound("no sync %q", in.Name))
	}
	a := runqueue.Args{What: runqueue.WhatSync, Name: in.Name, Trigger: runqueue.TriggerAPI}
	if in.Body != nil {
		a.Full, a.Reconcile = in.Body.Full, in.Body.Reconcile
	}
	return s.enqueue(ctx, a, "sync:"+in.Name)
}

type groupStartedOut struct {
	Status int
	Body   struct {
		Group string   `json:"group"`
		Syncs []string `json:"syncs" doc:"The syncs the group runs, in order, parents first; GET /runs?sync=… follows each."`
		JobID int64    `json:"job_id" doc:"The queued run of the group."`
		RunID int64    `json:"run_id,omitempty" doc:"The first sync's run, once started."`
	}
}

// startGroupRun queues the group: one worker runs its syncs one after
// another, parents first; a sync whose parent failed is not started.
func (s *Server) startGroupRun(ctx context.Context, in *nameInput) (*groupStartedOut, error) {
	p, err := s.opts.Engine.Project(ctx)
	if err != nil {
		return nil, fail(err)
	}
	syncs, err := p.GroupOrder(in.Name)
	if err != nil {
		return nil, fail(err)
	}
	names := make([]string, len(syncs))
	for i, sy := range syncs {
		names[i] = sy.Name
	}
	st, err := s.enqueue(ctx, runqueue.Args{What: runqueue.WhatGroup, Name: in.Name, Trigger: runqueue.TriggerAPI}, "sync:"+names[0])
	if err != nil {
		return nil, err
	}
	out := &groupStartedOut{Status: 202}
	out.Body.Group, out.Body.Syncs, out.Body.JobID, out.Body.RunID = in.Name, names, st.Body.JobID, st.Body.RunID
	return out, nil
}

type listRunsInput struct {
	Sync   string `query:"sync" doc:"Only this sync's runs (script:<name> for a data-sync script)."`
	Status string `query:"status" enum:"running,succeeded,succeeded_with_errors,failed,stopped,interrupted" doc:"Only runs that ended so."`
	Before int64  `query:"before" doc:"The cursor: runs older than this run id (the last id of the previous page)."`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50"`
}

type runList struct {
	Body struct {
		Runs []queries.FerryRun `json:"runs"`
		Next int64              `json:"next,omitempty" doc:"The cursor of the next page (before=…), absent on the last."`
	}
}

func (s *Server) listRuns(ctx context.Context, in *listRunsInput) (*runList, error) {
	limit := in.Limit
	if limit == 0 {
		limit = 50
	}
	rows, err := s.q.RunList(ctx, queries.RunListParams{Sync: in.Sync, Status: in.Status, BeforeID: in.Before, MaxRows: int32(limit)})
	if err != nil {
		return nil, fail(err)
	}
	out := &runList{}
	out.Body.Runs = append([]queries.FerryRun{}, rows...)
	if len(rows) == limit {
		out.Body.Next = rows[len(rows)-1].ID
	}
	return out, nil
}

type runInput struct {
	ID int64 `path:"id"`
}

// RunDetail is one run and its log: the errors it recorded.
type RunDetail struct {
	queries.FerryRun
	Log []queries.FerryRunError `json:"log"`
}

type runOut struct{ Body RunDetail }

func (s *Server) getRun(ctx context.Context, in *runInput) (*runOut, error) {
	run, err := s.q.RunGet(ctx, in.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fail(notFound("no run %d", in.ID))
	}
	if err != nil {
		return nil, fail(err)
	}
	log, err := s.q.RunErrorList(ctx, queries.RunErrorListParams{RunID: in.ID, MaxRows: 1000})
	if err != nil {
		return nil, fail(err)
	}
	return &runOut{Body: RunDetail{FerryRun: run, Log: append([]queries.FerryRunError{}, log...)}}, nil
}

// cancelRun cancels a queued run wherever it runs: its job is cancelled,
// the replica working it stops it, and the run ends failed as cancelled.
func (s *Server) cancelRun(ctx context.Context, in *runInput) (*struct{}, error) {
	run, err := s.q.RunGet(ctx, in.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fail(notFound("no run %d", in.ID))
	}
	if err != nil {
		return nil, fail(err)
	}
	if run.Status != "running" {
		return nil, huma.Error409Conflict(fmt.Sprintf("run %d is over (%s)", in.ID, run.Status))
	}
	if run.JobID == nil {
		return nil, huma.Error409Conflict(fmt.Sprintf("run %d was started by ferry run, not by a server: stop that process", in.ID))
	}
	if err := s.opts.Queue.Cancel(ctx, *run.JobID); err != nil {
		return nil, fail(err)
	}
	return nil, nil
}
