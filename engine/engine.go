package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/internal/lease"
	"github.com/ferry-sync/ferry/queries"
	"github.com/ferry-sync/ferry/scripting"
)

// Opener opens the target of a connection.
type Opener func(ctx context.Context, c Connection) (connector.Target, error)

// Engine runs the syncs of one project against one warehouse.
type Engine struct {
	db        *pgxpool.Pool
	q         *queries.Queries
	project   *Project
	open      Opener
	log       *slog.Logger
	pool      *scripting.Pool
	isolation scripting.Isolation
	holder    string
	leaseTTL  time.Duration
	// redact holds the secrets of every connection opened: they are removed
	// from everything the engine stores or returns (a target may echo its
	// credentials in an error body).
	redact *connector.Redactor
}

// Options configure an Engine.
type Options struct {
	// Open opens targets; OpenTarget (the built-in kinds) when nil.
	Open Opener
	// Logger gets run progress and warnings; slog.Default() when nil.
	Logger *slog.Logger
	// ScriptPool runs transforms in worker processes with a memory limit.
	// When nil, each run starts a private one-worker pool.
	ScriptPool *scripting.Pool
	// ScriptIsolation is "process" (the default: a script that runs out of
	// memory fails its record, never Ferry) or "none" (in-process: faster,
	// for tests and trusted scripts).
	ScriptIsolation scripting.Isolation
	// LeaseTTL is how long a run's claim on its sync lasts without renewal
	// (renewed every third of it): a run paused for longer loses the sync
	// to the next run and writes nothing more. Default 30s.
	LeaseTTL time.Duration
}

// New returns an engine. db is the warehouse, which also holds Ferry's state
// (schema ferry) and the link tables; it must be migrated.
func New(db *pgxpool.Pool, p *Project, opts Options) *Engine {
	if opts.Open == nil {
		opts.Open = OpenTarget
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Engine{db: db, q: queries.New(db), project: p, open: opts.Open, log: opts.Logger, pool: opts.ScriptPool,
		isolation: opts.ScriptIsolation, holder: lease.Holder(), leaseTTL: opts.LeaseTTL, redact: connector.NewRedactor()}
}

// Redact removes every secret of the connections the engine opened from s.
func (e *Engine) Redact(s string) string { return e.redact.Redact(s) }

// Project returns the engine's project.
func (e *Engine) Project() *Project { return e.project }

// openTarget opens the target of a connection for one run. Each run gets
// its own, so that it starts unproven: bad credentials cost one call, and a
// run never inherits another's state.
func (e *Engine) openTarget(ctx context.Context, name string) (connector.Target, error) {
	c, ok := e.project.Connections[name]
	if !ok {
		return nil, fmt.Errorf("unknown connection %q", name)
	}
	t, err := e.open(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("opening connection %s: %w", name, err)
	}
	if sh, ok := t.(connector.SecretHolder); ok {
		e.redact.Add(sh.Secrets()...)
	}
	return t, nil
}

// ErrBusy is returned (wrapped in a *BusyError) when another run holds the
// sync or script.
var ErrBusy = errors.New("sync is already running")

// BusyError says which run holds a sync (or a standalone script).
type BusyError struct {
	What   string // "sync contacts", "script cleanup"
	RunID  int64  // 0 when not known yet
	Holder string // the process holding it
}

func (e *BusyError) Error() string {
	msg := e.What + " is already running"
	if e.RunID != 0 {
		msg += fmt.Sprintf(" (run %d)", e.RunID)
	}
	return msg + " in " + e.Holder + "; wait for that run to finish"
}

// Is makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// claim takes the lease called name (one run at a time across processes)
// and keeps it renewed. The returned context ends when the lease is lost,
// and it gates every write to a target on the lease. Call release when the
// run is done.
func (e *Engine) claim(ctx context.Context, what, name string) (context.Context, *lease.Lease, error) {
	l, err := lease.Acquire(ctx, e.db, name, e.holder, e.leaseTTL)
	var held *lease.HeldError
	if errors.As(err, &held) {
		return nil, nil, &BusyError{What: what, RunID: held.RunID, Holder: held.Holder}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	return connector.WithGate(l.Keep(ctx), l.Valid), l, nil
}

// lostClaim turns a run's error into the lease's story when the run ended
// because it lost its claim.
func lostClaim(ctx context.Context, what string, err error) error {
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, lease.ErrLost) {
		return fmt.Errorf("%s: %w; it stopped at once and wrote nothing more (records it sent but could not record are reconciled by the run that holds it now)", what, cause)
	}
	return err
}
