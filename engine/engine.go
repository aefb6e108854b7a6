package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-sync/ferry/engine/connector"
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
	return &Engine{db: db, q: queries.New(db), project: p, open: opts.Open, log: opts.Logger, pool: opts.ScriptPool, isolation: opts.ScriptIsolation}
}

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
	return t, nil
}

// ErrBusy is returned when another process is running the same sync.
var ErrBusy = errors.New("sync is already running")

// lockKey is the advisory lock key of a sync: one run at a time per sync,
// across every process that shares the warehouse.
func lockKey(sync string) int64 {
	h := fnv.New64a()
	h.Write([]byte("ferry.sync." + sync))
	return int64(h.Sum64())
}
