// Package runqueue is ferry serve's run queue: the runs schedule ticks,
// the API and `ferry run --via-server` ask for, kept in PostgreSQL and
// shared by every replica on the warehouse, and the workers that run them
// through the engine.
//
// The queue is River's (transactional inserts, unique jobs, retries,
// rescue of jobs whose process died); this package decides what a job is
// and what working one means for Ferry. One sync never runs twice at once
// because the engine's claim (a lease with a fencing token) says so, not
// the queue: a job that finds its sync busy is snoozed and runs right
// after. A replica that dies mid-run stops renewing its claim; the
// sweeper of any other replica then queues the run again, and the engine's
// write intents and link table make that resumed run duplicate-free.
package runqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
)

// Schema is where River's tables live (migrated by queries.Migrate).
const Schema = "ferry"

// queueName is the River queue runs go to.
const queueName = "ferry_runs"

// What a job runs.
const (
	WhatSync   = "sync"
	WhatGroup  = "group"
	WhatScript = "script"
)

// Triggers, as run rows record them.
const (
	TriggerAPI      = "api"
	TriggerCLI      = "cli"
	TriggerSchedule = "schedule"
	TriggerCatchUp  = "catchup"
	TriggerRescue   = "rescue"
)

// Args is one queued run. The fields marked unique make a job's identity:
// one job per schedule tick whichever replicas tick, one rescue per dead
// job, and (see Enqueue) one waiting manual run per sync.
type Args struct {
	What string `json:"what" river:"unique"`
	Name string `json:"name" river:"unique"`
	// Tick is the schedule time the run stands for (zero for manual runs).
	Tick time.Time `json:"tick,omitzero" river:"unique"`
	// ResumeOf is the job whose replica died mid-run.
	ResumeOf  int64  `json:"resume_of,omitempty" river:"unique"`
	Trigger   string `json:"trigger"`
	Full      bool   `json:"full,omitempty"`
	Reconcile bool   `json:"reconcile,omitempty"`
}

// Kind is River's name for Ferry's jobs.
func (Args) Kind() string { return "ferry_run" }

// Ended is what a worker reports once a job's run is over: metrics and
// alerts are fed from it.
type Ended struct {
	Args    Args
	JobID   int64
	Results []*engine.RunResult // one per sync run (several for a group)
	Err     error               // the run as a whole could not be done
}

// ConnsPerRun is how many warehouse connections one run may hold at once
// (its read transaction, its recorder, its claim's heartbeat, lookups): a
// pool smaller than the workers need would leave runs waiting on each
// other for ever.
const ConnsPerRun = 4

// PoolSize is the warehouse pool a replica with workers needs: its runs,
// the queue's own work and the API's requests.
func PoolSize(workers int) int32 { return int32(workers*ConnsPerRun + 8) }

// Options configure a queue.
type Options struct {
	DB     *pgxpool.Pool
	Engine *engine.Engine
	// Replica names this process in run rows (default: host and pid).
	Replica string
	// Workers is how many runs this replica works at once (default 4);
	// 0 with InsertOnly.
	Workers int
	// InsertOnly makes a queue that only enqueues (ferry run --via-server).
	InsertOnly bool
	// SweepEvery is how often dead replicas' runs are looked for (default
	// 5s); a run is dead once its claim expired unreleased.
	SweepEvery time.Duration
	// RescueAfter is when River itself gives a job still marked running to
	// another worker (default 1h). The sweeper resumes dead runs long
	// before; this only closes the job row of the dead attempt.
	RescueAfter time.Duration
	Logger      *slog.Logger
	// OnStarted and OnEnded are called around each run (alerts, metrics).
	OnStarted func(ctx context.Context, a Args, runID int64)
	OnEnded   func(ctx context.Context, e Ended)
}

// Queue enqueues runs and, unless insert-only, works them.
type Queue struct {
	opts   Options
	client *river.Client[pgx.Tx]
	q      *queries.Queries
	log    *slog.Logger
	stop   context.CancelFunc
	swept  chan struct{}
}

// New makes a queue; Start starts its workers.
func New(opts Options) (*Queue, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Replica == "" {
		host, _ := os.Hostname()
		opts.Replica = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.SweepEvery <= 0 {
		opts.SweepEvery = 5 * time.Second
	}
	if need := PoolSize(opts.Workers); !opts.InsertOnly && opts.DB.Config().MaxConns < need {
		return nil, fmt.Errorf("run queue: the warehouse pool has %d connections and %d workers need %d: add pool_max_conns=%d to the warehouse URL, or run fewer workers",
			opts.DB.Config().MaxConns, opts.Workers, need, need)
	}
	q := &Queue{opts: opts, q: queries.New(opts.DB), log: opts.Logger}
	cfg := &river.Config{
		Schema: Schema,
		ID:     sanitizeID(opts.Replica),
		// River's own logs are about its machinery; warnings and errors
		// are worth an operator's eye, the rest is noise.
		Logger:               slog.New(minLevel{opts.Logger.Handler(), slog.LevelWarn}).With("component", "queue"),
		RescueStuckJobsAfter: opts.RescueAfter,
		// A sync runs as long as it needs: its claim, not a timeout, says
		// whether it is alive.
		JobTimeout: -1,
		// A run that fails is a failed run, recorded as such; the next tick
		// runs it again. Retries are for a job that could not run at all.
		MaxAttempts: 5,
	}
	if !opts.InsertOnly {
		workers := river.NewWorkers()
		if err := river.AddWorkerSafely(workers, &worker{q: q}); err != nil {
			return nil, fmt.Errorf("run queue: %w", err)
		}
		cfg.Workers = workers
		cfg.Queues = map[string]river.QueueConfig{queueName: {MaxWorkers: opts.Workers}}
		cfg.FetchPollInterval = 200 * time.Millisecond
	}
	client, err := river.NewClient(riverpgxv5.New(opts.DB), cfg)
	if err != nil {
		return nil, fmt.Errorf("run queue: %w", err)
	}
	q.client = client
	return q, nil
}

// sanitizeID makes a replica name a River client id.
func sanitizeID(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ':' || r == '/' || r == ' ' {
			return '_'
		}
		return r
	}, s)
}

// Replica is the name this queue's runs record.
func (q *Queue) Replica() string { return q.opts.Replica }

// Start starts the workers and the sweeper; Stop stops them.
func (q *Queue) Start(ctx context.Context) error {
	if q.opts.InsertOnly {
		return nil
	}
	if err := q.client.Start(ctx); err != nil {
		return fmt.Errorf("run queue: starting: %w", err)
	}
	ctx, q.stop = context.WithCancel(context.WithoutCancel(ctx))
	q.swept = make(chan struct{})
	go q.sweep(ctx)
	return nil
}

// Stop stops taking jobs and cancels the runs in progress: their claims are
// released, so another replica can take the syncs at once, and their jobs
// are put back in the queue (snoozed) to run there.
func (q *Queue) Stop(ctx context.Context) error {
	if q.opts.InsertOnly || q.stop == nil {
		return nil
	}
	q.stop()
	<-q.swept
	// StopAndCancel: a run that waited for the end of a long sync would
	// keep a replica from restarting for its whole length.
	return q.client.StopAndCancel(ctx)
}

// ErrQueued says a run of the same sync is already waiting in the queue,
// or starting or running from it (RunID, once its run row exists).
type ErrQueued struct {
	JobID int64
	RunID int64
}

func (e *ErrQueued) Error() string {
	if e.RunID != 0 {
		return fmt.Sprintf("a run of it is running (run %d, job %d)", e.RunID, e.JobID)
	}
	return fmt.Sprintf("a run is already queued (job %d): it starts as soon as a worker is free", e.JobID)
}

// Enqueue queues a run. A manual run (no tick) while another run of the
// same thing waits in the queue is an *ErrQueued: asking twice gives one
// run. Ticks are unique per tick, across every replica: the second insert
// of a tick returns the first job and dup true.
func (q *Queue) Enqueue(ctx context.Context, a Args) (job *rivertype.JobRow, dup bool, err error) {
	opts := &river.InsertOpts{Queue: queueName}
	if !a.Tick.IsZero() || a.ResumeOf != 0 {
		opts.UniqueOpts = river.UniqueOpts{ByArgs: true}
		res, err := q.client.Insert(ctx, a, opts)
		if err != nil {
			return nil, false, fmt.Errorf("queueing a run of %s %s: %w", a.What, a.Name, err)
		}
		return res.Job, res.UniqueSkippedAsDuplicate, nil
	}
	// A manual run is refused while one waits; River's unique states would
	// also refuse it while the previous job is still marked running after
	// its run ended, so the check is ours, under a lock per sync so that
	// two triggers at once (on any replicas) give one job.
	tx, err := q.opts.DB.Begin(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("queueing a run of %s %s: %w", a.What, a.Name, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "ferry_run:"+a.What+":"+a.Name); err != nil {
		return nil, false, fmt.Errorf("queueing a run of %s %s: %w", a.What, a.Name, err)
	}
	waiting, err := q.client.JobListTx(ctx, tx, waitingParams(a.What, a.Name).
		States(rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStateRetryable, rivertype.JobStatePending, rivertype.JobStateRunning).
		First(10))
	if err != nil {
		return nil, false, fmt.Errorf("looking for a queued run of %s %s: %w", a.What, a.Name, err)
	}
	for _, job := range waiting.Jobs {
		if job.State != rivertype.JobStateRunning {
			return job, true, &ErrQueued{JobID: job.ID}
		}
		// A job a worker took: it counts until its run is over (River marks
		// it completed a little later, which must not refuse the next run),
		// including the moment before its run row exists.
		run, err := queries.New(tx).RunByJob(ctx, &job.ID)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && run.Status == "running") {
			return job, true, &ErrQueued{JobID: job.ID, RunID: run.ID}
		}
		if err != nil {
			return nil, false, fmt.Errorf("looking for the run of job %d: %w", job.ID, err)
		}
	}
	res, err := q.client.InsertTx(ctx, tx, a, opts)
	if err != nil {
		return nil, false, fmt.Errorf("queueing a run of %s %s: %w", a.What, a.Name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, false, fmt.Errorf("queueing a run of %s %s: %w", a.What, a.Name, err)
	}
	return res.Job, false, nil
}

// waitingParams finds the runs of a thing waiting in the queue.
func waitingParams(what, name string) *river.JobListParams {
	return river.NewJobListParams().
		Kinds(Args{}.Kind()).
		States(rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStateRetryable, rivertype.JobStatePending).
		Where("args->>'what' = @what AND args->>'name' = @name", river.NamedArgs{"what": what, "name": name}).
		First(1)
}

// Waiting reports whether a run of this thing waits in the queue (not yet
// started): a tick that finds one adds nothing, so a burst of ticks while
// a sync runs gives one run right after it, not one per tick.
func (q *Queue) Waiting(ctx context.Context, what, name string) (bool, error) {
	res, err := q.client.JobList(ctx, waitingParams(what, name))
	if err != nil {
		return false, fmt.Errorf("looking for a queued run of %s %s: %w", what, name, err)
	}
	return len(res.Jobs) > 0, nil
}

// Depth is how many runs wait in the queue (available or snoozed).
func (q *Queue) Depth(ctx context.Context) (int, error) {
	res, err := q.client.JobList(ctx, river.NewJobListParams().Kinds(Args{}.Kind()).
		States(rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStateRetryable).First(10_000))
	if err != nil {
		return 0, fmt.Errorf("counting queued runs: %w", err)
	}
	return len(res.Jobs), nil
}

// Cancel cancels a job: a waiting one never runs; a running one has its
// context cancelled on whichever replica works it, so its run stops.
func (q *Queue) Cancel(ctx context.Context, jobID int64) error {
	if _, err := q.client.JobCancel(ctx, jobID); err != nil {
		return fmt.Errorf("cancelling job %d: %w", jobID, err)
	}
	return nil
}

// Done reports whether a job is over: completed, cancelled or given up.
func (q *Queue) Done(ctx context.Context, jobID int64) (bool, error) {
	job, err := q.client.JobGet(ctx, jobID)
	if err != nil {
		return false, fmt.Errorf("reading job %d: %w", jobID, err)
	}
	switch job.State {
	case rivertype.JobStateCompleted, rivertype.JobStateCancelled, rivertype.JobStateDiscarded:
		return true, nil
	}
	return false, nil
}

// RunOf waits up to wait for the run a job started and returns its id (0
// when it has not started by then).
func (q *Queue) RunOf(ctx context.Context, jobID int64, wait time.Duration) (int64, error) {
	deadline := time.Now().Add(wait)
	for {
		run, err := q.q.RunByJob(ctx, &jobID)
		if err == nil {
			return run.ID, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("looking for the run of job %d: %w", jobID, err)
		}
		if time.Now().After(deadline) {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sweep looks for runs whose replica died (their claim expired without
// being released) and queues each again, once.
func (q *Queue) sweep(ctx context.Context) {
	defer close(q.swept)
	t := time.NewTicker(q.opts.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := q.sweepOnce(ctx); err != nil && ctx.Err() == nil {
			q.log.Warn("run queue: looking for runs of dead replicas", "err", err)
		}
	}
}

func (q *Queue) sweepOnce(ctx context.Context) error {
	orphans, err := q.q.RunsOrphaned(ctx)
	if err != nil {
		return err
	}
	for _, o := range orphans {
		job, err := q.client.JobGet(ctx, o.JobID)
		if errors.Is(err, river.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		a, err := argsOf(job)
		if err != nil {
			return err
		}
		a.Trigger, a.ResumeOf, a.Tick = TriggerRescue, job.ID, time.Time{}
		if _, dup, err := q.Enqueue(ctx, a); err != nil {
			return err
		} else if !dup {
			q.log.Warn("run queue: a run's replica stopped renewing its claim; queued again", "sync", o.Sync, "run", o.ID, "job", job.ID)
		}
	}
	return nil
}

// worker works ferry_run jobs.
type worker struct {
	river.WorkerDefaults[Args]
	q *Queue
}

// Timeout: none; see Config.JobTimeout.
func (w *worker) Timeout(*river.Job[Args]) time.Duration { return -1 }

func (w *worker) Work(ctx context.Context, job *river.Job[Args]) error {
	q, a := w.q, job.Args
	done, err := q.alreadyDone(ctx, job)
	if err != nil || done {
		return err
	}
	origin := engine.Origin{Trigger: a.Trigger, Replica: q.opts.Replica, JobID: job.ID, Tick: a.Tick, QueuedAt: job.CreatedAt}
	opts := engine.RunOptions{Full: a.Full, Reconcile: a.Reconcile, Origin: origin}
	ended := Ended{Args: a, JobID: job.ID}
	switch a.What {
	case WhatSync:
		st, err := q.opts.Engine.Start(ctx, a.Name, opts)
		if err != nil {
			return q.notStarted(ctx, job, err)
		}
		q.started(ctx, a, st.RunID)
		res, err := st.Wait()
		ended.Results, ended.Err = []*engine.RunResult{res}, err
	case WhatGroup:
		res, err := q.opts.Engine.RunMany(ctx, engine.Selection{Group: a.Name}, opts)
		if err != nil {
			return q.notStarted(ctx, job, err)
		}
		ended.Results = res
	case WhatScript:
		p, err := q.opts.Engine.Project(ctx)
		if err != nil {
			return err
		}
		src, err := os.ReadFile(filepath.Join(p.Dir, a.Name))
		if err != nil {
			return q.notStarted(ctx, job, fmt.Errorf("script %s: %w", a.Name, err))
		}
		st, err := q.opts.Engine.StartScript(ctx, a.Name, filepath.Base(a.Name), src, filepath.Dir(filepath.Join(p.Dir, a.Name)), origin)
		if err != nil {
			return q.notStarted(ctx, job, err)
		}
		q.started(ctx, a, st.RunID)
		res, err := st.Wait()
		ended.Results, ended.Err = []*engine.RunResult{res}, err
	default:
		return river.JobCancel(fmt.Errorf("unknown kind of run %q", a.What))
	}
	if ctx.Err() != nil {
		// This replica is stopping: the run was cancelled and its claim
		// released; put the job back so another replica runs it now (no
		// alert: it is not over).
		return river.JobSnooze(0)
	}
	if q.opts.OnEnded != nil {
		q.opts.OnEnded(context.WithoutCancel(ctx), ended)
	}
	// A run that failed is recorded as failed; the job is done either way.
	return nil
}

func (q *Queue) started(ctx context.Context, a Args, runID int64) {
	if q.opts.OnStarted != nil {
		q.opts.OnStarted(ctx, a, runID)
	}
}

// notStarted decides what a job whose run could not start becomes: a busy
// sync runs right after the run that holds it; a sync, group or script
// that no longer exists is cancelled; anything else is retried by River.
func (q *Queue) notStarted(ctx context.Context, job *river.Job[Args], err error) error {
	var busy *engine.BusyError
	switch {
	case errors.As(err, &busy):
		return river.JobSnooze(time.Second)
	case errors.Is(err, project.ErrUnknownSync), errors.Is(err, project.ErrUnknownGroup), errors.Is(err, os.ErrNotExist):
		q.log.Warn("run queue: dropping a run of something that no longer exists", "what", job.Args.What, "name", job.Args.Name, "err", err)
		return river.JobCancel(err)
	case ctx.Err() != nil:
		return river.JobSnooze(0)
	}
	if q.opts.OnEnded != nil {
		q.opts.OnEnded(context.WithoutCancel(ctx), Ended{Args: job.Args, JobID: job.ID, Err: err})
	}
	return err
}

// alreadyDone says whether a job that is being worked again (River
// rescued it, or it is the rescue of a dead run) has nothing left to do:
// the run it stands for finished, or another run of the sync took over.
func (q *Queue) alreadyDone(ctx context.Context, job *river.Job[Args]) (bool, error) {
	ids := []int64{}
	if job.Attempt > 1 {
		ids = append(ids, job.ID)
	}
	if job.Args.ResumeOf != 0 {
		ids = append(ids, job.Args.ResumeOf)
	}
	for _, id := range ids {
		run, err := q.q.RunByJob(ctx, &id)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("looking for the run of job %d: %w", id, err)
		}
		if run.Status != "running" {
			// It ended: finished, or marked interrupted when a later
			// run took its claim over.
			return true, nil
		}
		later, err := q.q.RunStartedAfter(ctx, queries.RunStartedAfterParams{Sync: run.Sync, ID: run.ID})
		if err != nil {
			return false, fmt.Errorf("looking for later runs of %s: %w", run.Sync, err)
		}
		if later {
			return true, nil
		}
	}
	return false, nil
}

// argsOf decodes a job's args.
func argsOf(job *rivertype.JobRow) (Args, error) {
	var a Args
	if err := json.Unmarshal(job.EncodedArgs, &a); err != nil {
		return a, fmt.Errorf("reading job %d: %w", job.ID, err)
	}
	return a, nil
}

// minLevel drops records below a level.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}
func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }
