package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/internal/lease"
	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/engine/internal/scope"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
	"github.com/ferry-sync/ferry/scripting"
)

// RunOptions change what one run does.
type RunOptions struct {
	// DryRun decides what would happen and writes nothing: no target call,
	// no link row, no bookmark, no run row (ferry plan).
	DryRun bool
	// IDs limits the run to these source ids and leaves the bookmark alone
	// (ferry test).
	IDs []string
	// Full reads the whole scope, ignoring the bookmark (rows the warehouse
	// finds unchanged still stay there).
	Full bool
	// Reconcile reads the whole scope of an incremental sync and counts the
	// records it syncs that incremental reads missed (Counts.Caught). Runs
	// do it on their own every source.reconcile_every.
	Reconcile bool
	// Samples keeps this many example records per decision (plan, test).
	Samples int
	// Lookups lets a dry run call the target to look records up (the
	// transform's pq lookups, the settling of pending inserts). Without it a
	// dry run makes no target call and says which records it cannot tell.
	Lookups bool
	// planned names the syncs a plan runs before this one: a child whose
	// parent is not linked yet waits for it instead of failing.
	planned map[string]bool
	// groupAfter are the after hooks of the group whose last sync this
	// run is (RunMany): they run after the sync's own, inside its run, so
	// that their failure is recorded like any after hook's.
	groupAfter *groupHooks
	// Progress is called after every page.
	Progress func(Progress)
	// Origin says what started the run; its run row records it.
	Origin Origin
}

// Origin says what started a run: the run row keeps it, so an analyst can
// tell a scheduled run from a manual one and see how long it queued.
type Origin struct {
	// Trigger is cli (the default), api, schedule, catchup or rescue.
	Trigger string
	// Replica names the server process that ran it.
	Replica string
	// JobID is the queue job the run is the work of (0: not queued).
	JobID int64
	// Tick is the schedule time the run stands for.
	Tick time.Time
	// QueuedAt is when it was queued.
	QueuedAt time.Time
}

// params are the run row's fields for it.
func (o Origin) params(sync string) queries.RunStartParams {
	p := queries.RunStartParams{Sync: sync, TriggeredBy: o.Trigger}
	if p.TriggeredBy == "" {
		p.TriggeredBy = "cli"
	}
	if o.Replica != "" {
		p.Replica = &o.Replica
	}
	if o.JobID != 0 {
		p.JobID = &o.JobID
	}
	if !o.Tick.IsZero() {
		p.Tick = &o.Tick
	}
	if !o.QueuedAt.IsZero() {
		p.QueuedAt = &o.QueuedAt
	}
	return p
}

// Progress is reported after every page of a run.
type Progress struct {
	Sync    string
	Counts  Counts
	Elapsed time.Duration
}

// Counts are what a run did, record by record.
type Counts struct {
	Read        int64 `json:"read"`
	Inserted    int64 `json:"inserted"`
	Updated     int64 `json:"updated"`
	Unchanged   int64 `json:"unchanged"` // same hash as the last successful write
	Skipped     int64 `json:"skipped"`   // by the mode or the transform
	Invalid     int64 `json:"invalid"`   // null or duplicate source ids
	Failed      int64 `json:"failed"`
	TargetCalls int64 `json:"target_calls"`
	Lookups     int64 `json:"lookups"`      // the transform's lookups in the target (pq), after the cache
	WrittenBack int64 `json:"written_back"` // new target ids written back to the source application
	// Caught counts the records a reconciling run wrote that incremental
	// reads missed (stamped older than the bookmark minus the overlap).
	Caught int64 `json:"caught,omitempty"`
	// Deleted counts the target records deleted or archived (delete:), or
	// that a plan would delete.
	Deleted int64 `json:"deleted,omitempty"`
	// Plans only: children waiting for a parent the plan syncs first, and
	// records a plan cannot decide without calling the target.
	Waiting int64 `json:"waiting,omitempty"`
	Unknown int64 `json:"unknown,omitempty"`
}

// RunStatus is how a run ended, as ferry.runs.status says.
type RunStatus string

// add adds what a page's records became.
func (c *Counts) add(o Counts) {
	c.Inserted += o.Inserted
	c.Updated += o.Updated
	c.Unchanged += o.Unchanged
	c.Skipped += o.Skipped
	c.Invalid += o.Invalid
	c.Failed += o.Failed
	c.Caught += o.Caught
	c.Waiting += o.Waiting
	c.Unknown += o.Unknown
}

// Run statuses.
const (
	RunRunning             RunStatus = "running"
	RunSucceeded           RunStatus = "succeeded"             // every record read synced (or was unchanged or skipped)
	RunSucceededWithErrors RunStatus = "succeeded_with_errors" // the run finished, but records failed or were invalid
	RunFailed              RunStatus = "failed"                // the run as a whole failed: see its error
	RunStopped             RunStatus = "stopped"               // on_error: stop, or the error budget, ended it early
	RunInterrupted         RunStatus = "interrupted"           // its process stopped (shutdown, Ctrl-C, a crash): the next run resumes it
	RunNotStarted          RunStatus = "not_started"           // RunMany did not start it: a parent failed (no run row)
)

// Decision is what the engine decided for one record.
type Decision string

const (
	DecideInsert    Decision = "insert"
	DecideUpdate    Decision = "update"
	DecideUnchanged Decision = "unchanged"
	DecideSkip      Decision = "skip"
	DecideInvalid   Decision = "invalid"
	DecideFail      Decision = "fail"
	DecideNotSent   Decision = "not_sent" // the run stopped before it was written
	DecideWait      Decision = "wait"     // plans: its parent is synced first by the same plan
	DecideUnknown   Decision = "unknown"  // plans: cannot tell without calling the target (--lookups)
)

// RecordReport says what happened to one record (plan samples, ferry test).
type RecordReport struct {
	SourceID  string           `json:"source_id"`
	Source    map[string]any   `json:"source,omitempty"`
	Mapped    map[string]any   `json:"mapped,omitempty"`
	Payload   map[string]any   `json:"payload,omitempty"`
	Decision  Decision         `json:"decision"`
	TargetID  string           `json:"target_id,omitempty"`
	Reason    string           `json:"reason,omitempty"`
	Printed   []string         `json:"printed,omitempty"`
	LinkState linktable.Status `json:"link_status,omitempty"`
	// Behind: its stamp is older than the bookmark minus the overlap, so
	// incremental runs do not read it (only reconciling ones).
	Behind bool `json:"behind,omitempty"`
	// Kept: its stamp is in the window behind the bookmark, which
	// incremental runs skip while it is as the last run left it: an edit
	// that kept its stamp waits for a reconciling run.
	Kept bool `json:"kept,omitempty"`
	// Changes are what an update would change: each field whose new value
	// differs from the last payload written (plans and tests).
	Changes []FieldChange `json:"changes,omitempty"`
}

// FieldChange is one field an update changes.
type FieldChange struct {
	Field string `json:"field"`
	Old   any    `json:"old"`
	New   any    `json:"new"`
}

// RunResult is the outcome of a run.
type RunResult struct {
	RunID     int64  `json:"run_id,omitempty"`
	Sync      string `json:"sync"`
	Reconcile bool   `json:"reconcile,omitempty"` // the run read the whole scope to catch what incremental reads missed
	// WindowUnchanged: the rows behind the bookmark that incremental reads
	// look at again (its overlap, its ties) were as the last run left
	// them, so the run read only past the bookmark.
	WindowUnchanged bool           `json:"window_unchanged,omitempty"`
	Status          RunStatus      `json:"status"`
	Counts          Counts         `json:"counts"`
	BookmarkBefore  string         `json:"bookmark_before,omitempty"`
	BookmarkAfter   string         `json:"bookmark_after,omitempty"`
	Duration        time.Duration  `json:"duration"`
	Error           string         `json:"error,omitempty"`
	Records         []RecordReport `json:"records,omitempty"`
	// Err is the run's error as a value (Error is its text), for callers
	// that tell a configuration error from a busy sync from a failure.
	Err error `json:"-"`
}

// maxRunErrors bounds the error rows one run keeps in ferry.run_errors; the
// link table holds every record's error anyway.
const maxRunErrors = 1000

// Run runs one sync. The returned error is about the run as a whole (the
// sync is busy, the scope query is broken, the target refused the
// credentials); record failures are in the result's counts and link rows.
// A result is returned whenever a run row was written, even with an error.
func (e *Engine) Run(ctx context.Context, name string, opts RunOptions) (*RunResult, error) {
	r, err := e.newRunner(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	runCtx, err := r.begin(ctx)
	if err == nil {
		err = r.body(runCtx)
	}
	return r.result(err)
}

// Started is a run that was started in the background (Start).
type Started struct {
	RunID int64
	done  chan struct{}
	res   *RunResult
	err   error
}

// Done is closed once the run is over.
func (st *Started) Done() <-chan struct{} { return st.done }

// Wait waits for the run to end and returns what Run would.
func (st *Started) Wait() (*RunResult, error) {
	<-st.done
	return st.res, st.err
}

// Start claims a sync and records its run, then runs it in the background,
// under ctx (which should outlive the caller's request). A busy sync is a
// *BusyError naming the run that holds it, returned at once: a caller
// (the REST API) answers with the run it started or the one running.
func (e *Engine) Start(ctx context.Context, name string, opts RunOptions) (*Started, error) {
	if opts.DryRun {
		return nil, errors.New("a dry run is not started in the background: use Plan or Run")
	}
	r, err := e.newRunner(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	runCtx, err := r.begin(ctx)
	if err != nil {
		_, err = r.result(err)
		return nil, err
	}
	st := &Started{RunID: r.runID, done: make(chan struct{})}
	go func() {
		defer close(st.done)
		st.res, st.err = r.result(r.body(runCtx))
	}()
	return st, nil
}

func (e *Engine) newRunner(ctx context.Context, name string, opts RunOptions) (*runner, error) {
	p, s, err := e.sync(ctx, name)
	if err != nil {
		return nil, err
	}
	return &runner{e: e, p: p, s: s, opts: opts, res: &RunResult{Sync: s.Name}, started: time.Now()}, nil
}

// result is the run's result and its error, with secrets redacted.
func (r *runner) result(err error) (*RunResult, error) {
	if r.opts.DryRun {
		r.collect()
		r.res.Duration = time.Since(r.started)
	}
	err = r.e.redact.RedactError(err)
	r.res.Err = err
	if err != nil && r.res.Error == "" {
		r.res.Error = err.Error()
	}
	return r.res, err
}

// runner holds the state of one run.
type runner struct {
	e       *Engine
	p       *project.Project // the project as it was when the run started
	s       *project.Sync
	opts    RunOptions
	res     *RunResult
	started time.Time
	// countsMu guards res.Counts: the writer and the recorder both add.
	countsMu sync.Mutex
	budget   *budget   // nil when the sync has none
	rec      *recorder // the recorder of the stream running

	haltMu  sync.Mutex
	haltSet bool   // the run stops sending (budget, on_error: stop)
	haltWhy string // why, when the stage that halted says it itself

	sc      *scope.Scope
	lt      *linktable.Table
	parents []*linktable.Table
	target  connector.Target
	back    connector.Target // the write_back connection, if any
	xf      *scripting.Script
	host    *host
	static  map[string]any
	finger  string
	runID   int64
	// startedAt is the run row's start, by the database's clock.
	startedAt time.Time
	lease     *lease.Lease    // nil in dry runs
	pair      *pairSide       // the other direction of a two-way sync
	errRows   atomic.Int64    // run_errors written; the decider and the writer both add
	hashBuf   []byte          // reused by hashOf, on the decider goroutine
	byName    []string        // columns mapped by name when the sync has no mapping
	hashed    []string        // columns a transform sync's hash covers
	retry     map[string]bool // owned by the reader goroutine
	plan      scope.Plan
	// reconcile: this run reads the whole scope and syncs what incremental
	// reads missed.
	reconcile bool
	bookmark  *string
	// window is the fingerprint of the window behind the bookmark that the
	// last run to handle all of it noted ("" when none, or noted at
	// another bookmark); narrow says this run found the window so and
	// reads only past the bookmark; windowNext is the fingerprint of the
	// window behind the bookmark this run moves to, noted if it ends well.
	window     string
	narrow     bool
	windowNext *queries.BookmarkSetWindowParams
	// held: a record was not sent (the target would not take it for now),
	// so the bookmark stays before it for the rest of the run.
	held bool
	// recordedBookmark is written by the recorder goroutine and read once it
	// has stopped.
	recordedBookmark string
}

// begin claims the sync and records the run (a dry run does neither), and
// returns the run's context: it ends when the claim is lost.
func (r *runner) begin(ctx context.Context) (context.Context, error) {
	if r.opts.DryRun {
		return ctx, nil
	}
	s := r.s
	interrupted := int64(0)
	outer := ctx
	ctx, err := r.claimPartner(ctx)
	if err != nil {
		return nil, err
	}
	ctx, l, err := r.e.claim(ctx, "sync "+s.Name, "sync:"+s.Name, func(ctx context.Context, tx pgx.Tx) (int64, error) {
		q := r.e.q.WithTx(tx)
		// This run holds the sync's claim, so no other run of it is alive.
		n, err := q.RunCloseInterrupted(ctx, s.Name)
		if err != nil {
			return 0, fmt.Errorf("sync %s: closing interrupted runs: %w", s.Name, err)
		}
		interrupted = n
		row, err := q.RunStart(ctx, r.opts.Origin.params(s.Name))
		if err != nil {
			return 0, fmt.Errorf("sync %s: recording the run: %w", s.Name, err)
		}
		r.runID, r.res.RunID, r.startedAt = row.ID, row.ID, row.StartedAt
		return row.ID, nil
	})
	if err != nil {
		if r.pair != nil {
			r.pair.lease.Release(context.WithoutCancel(outer))
		}
		return nil, err
	}
	r.lease = l
	if r.pair != nil {
		// Both claims gate every write.
		mine, theirs := l, r.pair.lease
		ctx = connector.WithGate(ctx, func() error {
			if err := mine.Valid(); err != nil {
				return err
			}
			return theirs.Valid()
		})
	}
	if interrupted > 0 {
		r.e.log.Warn("an earlier run of this sync was interrupted (its process stopped); marked so, and this run resumes it", "sync", s.Name, "runs", interrupted)
	}
	return ctx, nil
}

// body is the run once begun: it reads, decides, writes and records, then
// finishes the run row and gives the claim up, whatever happened.
func (r *runner) body(ctx context.Context) (runErr error) {
	s := r.s
	if on := r.e.onRequest; on != nil {
		conn := s.Target.Connection
		ctx = connector.WithObserver(ctx, func(status int, took time.Duration) { on(conn, status, took) })
	}
	writes := !r.opts.DryRun
	if writes {
		what := "sync " + s.Name
		defer r.lease.Release(ctx)
		if r.pair != nil {
			defer r.pair.lease.Release(ctx)
		}
		defer func() { r.finish(context.WithoutCancel(ctx), runErr) }()
		defer func() {
			if runErr != nil && queries.BrokenConn(runErr) {
				// What broke this run's connection (a restart, a failover,
				// terminated backends) broke the idle ones too: the pool
				// makes new ones rather than hand a dead one to the next run.
				// Connections in use are closed when they come back.
				r.e.db.Reset()
			}
			runErr = brokenWarehouse(runErr)
		}()
		defer func() { runErr = lostClaim(ctx, what, runErr) }()
	}
	// Before hooks refresh what the scope reads, so they end before the
	// scope is even described; a failing one fails the run with nothing read.
	if err := r.beforeHooks(ctx); err != nil {
		return err
	}

	readConn, err := r.e.db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("sync %s: connecting to the warehouse: %w", s.Name, err)
	}
	defer readConn.Release()
	tx, err := scope.BeginRead(ctx, readConn, r.p.Warehouse.ScopeRole, s.Source.Timeout.Duration)
	if err != nil {
		return fmt.Errorf("sync %s: %w", s.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if r.sc, err = scope.Describe(ctx, tx, s, r.p.Warehouse.ScopeRole); err != nil {
		return err
	}
	defer func() {
		if r.xf != nil {
			r.xf.Close()
		}
		if r.host != nil {
			r.host.close()
		}
		if r.target != nil {
			r.target.Close()
		}
		if r.back != nil {
			r.back.Close()
		}
	}()
	if err := r.prepare(ctx); err != nil {
		return err
	}
	if err := r.preparePair(ctx, tx); err != nil {
		return err
	}
	r.res.Reconcile = r.reconcile

	if r.bookmark != nil {
		r.res.BookmarkBefore = *r.bookmark
		r.res.BookmarkAfter = *r.bookmark
	}

	err = r.stream(ctx, tx)
	if r.recordedBookmark != "" {
		r.res.BookmarkAfter = r.recordedBookmark
	}
	if err == nil && r.res.Status != RunStopped {
		err = r.deletes(ctx, tx)
	}
	if err == nil && writes && r.res.Status != RunStopped {
		err = r.noteWholeRead(ctx)
	}
	if err == nil && writes && r.res.Status != RunStopped && !r.halted() && !r.held {
		err = r.noteWindow(ctx)
	}
	if err == nil && writes {
		r.analyzeLinks(ctx)
	}
	// After hooks follow a run that synced its scope (succeeded, with or
	// without record errors), never a failed or stopped one; the run row is
	// finished after them, so the claim is held while they run.
	if err == nil && r.res.Status != RunStopped {
		r.afterHooks(ctx)
	}
	return err
}

// analyzeLinks refreshes the planner's statistics of the link table after
// a run that wrote many rows: the next run's read joins it, and a planner
// that still believes it empty scans all of it to join a few rows.
func (r *runner) analyzeLinks(ctx context.Context) {
	c := r.counts()
	if c.Inserted+c.Updated < analyzeAfter || r.lt == nil {
		return
	}
	if _, err := r.e.db.Exec(ctx, "ANALYZE "+r.lt.Ident); err != nil {
		r.e.log.Warn("refreshing the link table's statistics", "sync", r.s.Name, "err", err)
	}
}

// analyzeAfter is how many rows a run writes before it refreshes its link
// table's statistics.
const analyzeAfter = 10_000

// noteWholeRead remembers, after a run that read the whole scope of an
// incremental sync, when that read started: the next reconciling read is
// due reconcile_every later. It warns when a reconcile caught records.
func (r *runner) noteWholeRead(ctx context.Context) error {
	s := r.s
	if !s.IsIncremental() || (r.bookmark != nil && !r.reconcile) || r.opts.IDs != nil {
		return nil
	}
	if n := r.res.Counts.Caught; n > 0 {
		r.e.log.Warn("a reconciling run synced records that incremental runs missed: they were committed with a stamp older than the bookmark minus the overlap; raise source.overlap, or fix how the ELT stamps rows",
			"sync", s.Name, "records", n, "overlap", s.Source.Overlap.Duration)
	}
	return r.fenced(ctx, func(tx pgx.Tx) error {
		if err := r.e.q.WithTx(tx).BookmarkSetReconciled(ctx, queries.BookmarkSetReconciledParams{Sync: s.Name, At: &r.startedAt}); err != nil {
			return fmt.Errorf("sync %s: noting the reconciling read: %w", s.Name, err)
		}
		return nil
	})
}

// noteWindow notes the fingerprint of the window behind the bookmark the
// run moved to, taken in the run's snapshot: every row in it was read by
// this run or found unchanged, and handled (synced, or failed and so
// retried by id), so the next run need not read it again while it stays
// so. The bookmark must still be the one it was taken at.
func (r *runner) noteWindow(ctx context.Context) error {
	if r.windowNext == nil {
		return nil
	}
	return r.fenced(ctx, func(tx pgx.Tx) error {
		if err := r.e.q.WithTx(tx).BookmarkSetWindow(ctx, *r.windowNext); err != nil {
			return fmt.Errorf("sync %s: noting the window behind the bookmark: %w", r.s.Name, err)
		}
		return nil
	})
}

// prepare opens what a run needs besides the scope: the target, the link
// tables, the bookmark, the records to retry, the transform.
func (r *runner) prepare(ctx context.Context) error {
	s := r.s
	var err error
	if r.target, err = r.e.openTarget(ctx, r.p, s.Target.Connection); err != nil {
		return fmt.Errorf("sync %s: %w", s.Name, err)
	}
	if wb := s.WriteBack; wb != nil && !r.opts.DryRun {
		if r.back, err = r.e.openTarget(ctx, r.p, wb.Connection); err != nil {
			return fmt.Errorf("sync %s: write_back: %w", s.Name, err)
		}
	}
	if r.opts.DryRun {
		r.lt, err = linktable.Open(ctx, r.e.db, s.Name)
	} else {
		targetType := "text"
		if typer, ok := r.target.(connector.IDTyper); ok {
			if targetType, err = typer.IDType(ctx, s.Target.Object); err != nil {
				return fmt.Errorf("sync %s: asking connection %s for the id type of %s: %w", s.Name, s.Target.Connection, s.Target.Object, err)
			}
		}
		r.lt, err = linktable.Ensure(ctx, r.e.db, s.Name, r.sc.ID.Type, targetType)
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", s.Name, err)
	}
	for _, rel := range s.Relations {
		plt, err := linktable.Open(ctx, r.e.db, rel.Sync)
		if err != nil {
			return fmt.Errorf("sync %s: %w", s.Name, err)
		}
		r.parents = append(r.parents, plt)
	}
	r.static = map[string]any{}
	for _, f := range s.Mapping {
		if len(f.Value) == 0 {
			continue
		}
		v, err := scope.DecodeJSON(f.Value)
		if err != nil {
			return fmt.Errorf("sync %s: static value for %s: %w", s.Name, f.Target, err)
		}
		r.static[f.Target] = v
	}
	r.finger = fingerprint(s)
	r.byName, r.hashed = r.sc.DerivedColumns(s)
	r.plan = scope.Plan{Link: r.lt, Parents: r.parents, Finger: r.finger, Hashed: r.hashed}
	if !r.opts.DryRun {
		r.budget = newBudget(s.ErrorBudget)
	}
	if s.IsIncremental() && !r.opts.Full {
		v, err := r.e.q.BookmarkGet(ctx, s.Name)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return fmt.Errorf("sync %s: reading the bookmark: %w", s.Name, err)
		default:
			r.bookmark = &v
		}
		if r.bookmark != nil && r.opts.IDs == nil {
			if r.reconcile, err = r.reconcileDue(ctx); err != nil {
				return err
			}
		}
		if r.bookmark != nil && r.skipsWindow() {
			w, err := r.e.q.BookmarkWindow(ctx, s.Name)
			if err != nil {
				return fmt.Errorf("sync %s: reading the window behind the bookmark: %w", s.Name, err)
			}
			if w.WindowAt != nil && *w.WindowAt == *r.bookmark && w.WindowPrint != nil {
				r.window = *w.WindowPrint
			}
		}
	}
	if !r.opts.DryRun {
		if err := r.recoverIntents(ctx); err != nil {
			return err
		}
	}
	r.retry = map[string]bool{}
	if r.opts.IDs == nil {
		ids, err := r.lt.RetryIDs(ctx, r.e.db)
		if err != nil {
			return fmt.Errorf("sync %s: %w", s.Name, err)
		}
		for _, id := range ids {
			r.retry[id] = true
		}
	}
	if len(s.TransformSource) > 0 {
		r.host = newHost(r.e, r.p, r, "")
		if err := r.compileTransform(ctx); err != nil {
			return err
		}
	}
	return nil
}

// reconcileDue says whether this run reads the whole scope to catch what
// incremental reads missed: when asked, or reconcile_every after the last
// read of the whole scope.
func (r *runner) reconcileDue(ctx context.Context) (bool, error) {
	if r.opts.Reconcile {
		return true, nil
	}
	every := r.s.Source.ReconcileEvery.Duration
	if every <= 0 || r.opts.DryRun {
		return false, nil
	}
	row, err := r.e.q.BookmarkReconciledAt(ctx, r.s.Name)
	if err != nil {
		return false, fmt.Errorf("sync %s: reading when it last reconciled: %w", r.s.Name, err)
	}
	return row.ReconciledAt == nil || row.DbNow.Sub(*row.ReconciledAt) >= every, nil
}

// recoverIntents turns the write intents a dead run left behind into
// pending link rows: those inserts may have reached the target, so they are
// reconciled, never blindly sent again.
func (r *runner) recoverIntents(ctx context.Context) error {
	intents, err := r.e.q.IntentListBySync(ctx, r.s.Name)
	if err != nil {
		return fmt.Errorf("sync %s: reading write intents: %w", r.s.Name, err)
	}
	for _, in := range intents {
		msg := fmt.Sprintf("run %d stopped while inserting this record (%s) and its outcome is unknown", ptrOr(in.RunID, 0), in.CreatedAt.Format(time.RFC3339))
		err := r.fenced(ctx, func(tx pgx.Tx) error {
			if err := r.lt.MarkPending(ctx, tx, in.SourceIds, msg); err != nil {
				return err
			}
			if err := r.e.q.WithTx(tx).IntentDelete(ctx, in.ID); err != nil {
				return fmt.Errorf("clearing write intents: %w", err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("sync %s: %w", r.s.Name, err)
		}
		r.e.log.Warn("a previous run died mid-write: its inserts are pending until reconciled", "sync", r.s.Name, "records", len(in.SourceIds))
	}
	return nil
}

// fenced runs fn in a transaction that commits only while this run still
// holds its sync: a run that lost its claim records nothing.
func (r *runner) fenced(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := r.e.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // a no-op after Commit
	if r.lease != nil {
		if err := r.lease.Fence(ctx, tx); err != nil {
			return err
		}
	}
	if r.pair != nil && r.pair.lease != nil {
		if err := r.pair.lease.Fence(ctx, tx); err != nil {
			return err
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// fingerprint is the part of a sync's configuration that shapes what is
// written: editing it changes every record's hash, so everything re-syncs.
func fingerprint(s *project.Sync) string {
	b, _ := json.Marshal(struct {
		Object    string
		Mapping   []project.Field
		Relations []project.Relation
		Transform string
	}{s.Target.Object, s.Mapping, s.Relations, string(s.TransformSource)})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// halt asks the run to stop sending: the decider and the writer stop at
// their next record. why goes to the run's error ("": the writer words it).
func (r *runner) halt(why string) {
	r.haltMu.Lock()
	defer r.haltMu.Unlock()
	r.haltSet = true
	if r.haltWhy == "" {
		r.haltWhy = why
	}
}

func (r *runner) halted() bool {
	r.haltMu.Lock()
	defer r.haltMu.Unlock()
	return r.haltSet
}

func (r *runner) haltReason() string {
	r.haltMu.Lock()
	defer r.haltMu.Unlock()
	return r.haltWhy
}

// count changes the run's counts.
func (r *runner) count(f func(c *Counts)) {
	r.countsMu.Lock()
	f(&r.res.Counts)
	r.countsMu.Unlock()
}

// counts returns a copy of the run's counts.
func (r *runner) counts() Counts {
	r.countsMu.Lock()
	defer r.countsMu.Unlock()
	return r.res.Counts
}

// finish records the run's outcome.
func (r *runner) finish(ctx context.Context, runErr error) {
	r.collect()
	r.res.Duration = time.Since(r.started)
	switch {
	case runErr != nil && errors.Is(runErr, context.Canceled) && !errors.Is(runErr, lease.ErrLost):
		// Cancelled from outside (a server stopping, Ctrl-C): nothing
		// failed, and the run that takes the sync next resumes it.
		r.res.Status = RunInterrupted
		r.res.Error = r.e.redact.Redact(runErr.Error())
	case runErr != nil:
		r.res.Status = RunFailed
		r.res.Error = r.e.redact.Redact(runErr.Error())
	case r.res.Status == "" && (r.res.Counts.Failed > 0 || r.res.Counts.Invalid > 0):
		r.res.Status = RunSucceededWithErrors
	case r.res.Status == "":
		r.res.Status = RunSucceeded
	}
	c := r.res.Counts
	var after, msg *string
	if r.res.BookmarkAfter != "" {
		after = &r.res.BookmarkAfter
	}
	if r.res.Error != "" {
		msg = &r.res.Error
	}
	params := queries.RunFinishParams{
		ID: r.runID, Status: string(r.res.Status), Read: c.Read, Inserted: c.Inserted, Updated: c.Updated,
		Unchanged: c.Unchanged, Skipped: c.Skipped, Invalid: c.Invalid, Failed: c.Failed,
		TargetCalls: c.TargetCalls, Lookups: c.Lookups, Caught: c.Caught, Deleted: c.Deleted, BookmarkAfter: after, Error: msg,
		Reconcile: r.reconcile, BookmarkBefore: r.bookmark,
	}
	// A run row left "running" would read as a run still going.
	err := queries.RetryBroken(ctx, func(ctx context.Context) error { return r.e.q.RunFinish(ctx, params) })
	if err != nil {
		r.e.log.Error("recording the end of a run", "sync", r.s.Name, "run", r.runID, "err", err)
	}
}

// collect adds what the transform's pq helper did to the run's counts.
func (r *runner) collect() {
	if r.xf != nil {
		st := r.xf.Stats()
		r.res.Counts.Lookups = st.Finds
		r.res.Counts.TargetCalls += st.Finds + st.Writes
	}
}

// runError keeps a record's problem in ferry.run_errors (bounded per run).
func (r *runner) runError(ctx context.Context, sourceID *string, class, msg string) {
	if r.opts.DryRun || r.errRows.Add(1) > maxRunErrors {
		return
	}
	msg = r.e.redact.Redact(msg)
	if err := r.e.q.RunErrorAdd(ctx, queries.RunErrorAddParams{RunID: r.runID, SourceID: sourceID, Class: class, Message: msg}); err != nil {
		r.e.log.Warn("recording a record error", "sync", r.s.Name, "err", err)
	}
}
