package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/internal/runqueue"
	"github.com/ferry-sync/ferry/queries"
)

// runViaServer queues runs for ferry serve's workers (any replica) and
// follows them: syncs one after another, parents first, so a child runs on
// its parent's fresh links; a group as one job. The syncs are those of the
// configuration stored in the warehouse, which the servers run.
func (c *cli) runViaServer(ctx context.Context, r *runCmd) error {
	srv, err := c.openServer(ctx)
	if err != nil {
		return err
	}
	defer srv.close()
	queue, err := runqueue.New(runqueue.Options{DB: srv.pool, InsertOnly: true, Logger: c.log})
	if err != nil {
		return err
	}
	p, err := srv.projects.Project(ctx)
	if err != nil {
		return err
	}
	var jobs []runqueue.Args
	if r.Group != "" {
		if _, ok := p.Groups[r.Group]; !ok {
			return usageError{fmt.Sprintf("the stored configuration has no group %q", r.Group)}
		}
		jobs = append(jobs, runqueue.Args{What: runqueue.WhatGroup, Name: r.Group})
	} else {
		syncs, err := p.Order(r.Syncs)
		if err != nil {
			return usageError{err.Error()}
		}
		for _, s := range syncs {
			jobs = append(jobs, runqueue.Args{What: runqueue.WhatSync, Name: s.Name})
		}
	}
	q := queries.New(srv.pool)
	code := exitOK
	for _, a := range jobs {
		a.Trigger, a.Full, a.Reconcile = runqueue.TriggerCLI, r.Full, r.Reconcile
		job, _, err := queue.Enqueue(ctx, a)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "ferry: %s %s queued (job %d); waiting for a server to run it\n", a.What, a.Name, job.ID)
		runs, err := followJob(ctx, q, queue, job.ID)
		if err != nil {
			return err
		}
		if len(runs) == 0 {
			fmt.Fprintf(c.stderr, "ferry: job %d ended without a run (the server dropped it: see its log)\n", job.ID)
			code = exitFailed
		}
		for _, run := range runs {
			res := resultOf(run)
			c.printRun(res)
			switch runStatus(res) {
			case engine.RunSucceeded:
			case engine.RunSucceededWithErrors:
				code = max(code, exitRecords)
			default:
				c.printRunError(res)
				code = exitFailed
			}
		}
	}
	if code != exitOK {
		return exitCode(code)
	}
	return nil
}

// followJob waits until every run a job started has ended (a group's job
// starts one run per sync) and the job is over, and returns the runs.
func followJob(ctx context.Context, q *queries.Queries, queue *runqueue.Queue, jobID int64) ([]queries.FerryRun, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		runs, err := q.RunListByJob(ctx, &jobID)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("following job %d: %w", jobID, err)
		}
		done, err := queue.Done(ctx, jobID)
		if err != nil {
			return nil, err
		}
		if done && (len(runs) == 0 || runs[len(runs)-1].Status != "running") {
			return runs, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped following job %d (it goes on in the server): %w", jobID, ctx.Err())
		case <-tick.C:
		}
	}
}

// resultOf is a run row as a run's result, to print it.
func resultOf(r queries.FerryRun) *engine.RunResult {
	res := &engine.RunResult{RunID: r.ID, Sync: r.Sync, Status: engine.RunStatus(r.Status), Counts: engine.Counts{
		Read: r.Read, Inserted: r.Inserted, Updated: r.Updated, Unchanged: r.Unchanged, Skipped: r.Skipped,
		Invalid: r.Invalid, Failed: r.Failed, Caught: r.Caught}}
	if r.FinishedAt != nil {
		res.Duration = r.FinishedAt.Sub(r.StartedAt)
	}
	if r.Error != nil {
		res.Error = *r.Error
	}
	return res
}
