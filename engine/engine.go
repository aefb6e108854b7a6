package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/internal/lease"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
	"github.com/ferry-sync/ferry/scripting"
)

// Opener opens the target of a connection.
type Opener func(ctx context.Context, c project.Connection) (connector.Target, error)

// Projects gives the engine the project it works on. It is asked at the
// start of every call, so that a sync edited while Ferry runs (through the
// API, or a re-imported folder) is used by the next run without a restart.
type Projects interface {
	Project(ctx context.Context) (*project.Project, error)
}

// StaticProject is a project that does not change while the engine runs
// (the CLI's, loaded from a folder once).
func StaticProject(p *project.Project) Projects { return static{p} }

type static struct{ p *project.Project }

func (s static) Project(context.Context) (*project.Project, error) { return s.p, nil }

// Engine runs syncs against one warehouse: one entry point per thing a user
// does (run, plan, test, explain, check, status), shared by the CLI, the
// REST API and the scheduler.
type Engine struct {
	db        *pgxpool.Pool
	q         *queries.Queries
	projects  Projects
	open      Opener
	log       *slog.Logger
	pool      *scripting.Pool
	isolation scripting.Isolation
	holder    string
	leaseTTL  time.Duration
	onRequest func(connection string, status int, took time.Duration)
	failpoint func(point string)
	// redact holds the secrets of every connection opened: they are removed
	// from everything the engine stores or returns (a target may echo its
	// credentials in an error body).
	redact *connector.Redactor
	// env resolves the "env:NAME" header values of HTTP hooks (the server's
	// secrets, or the process environment).
	env connector.LookupEnv
}

// Options configure an Engine.
type Options struct {
	// Connectors opens targets by their connection's kind; the program
	// registers the kinds it ships (the engine names none).
	Connectors *connector.Registry
	// Env looks up the secrets connections and HTTP hooks' "env:NAME"
	// headers name (os.LookupEnv when nil).
	Env connector.LookupEnv
	// Open, when set, opens every target instead of Connectors (tests).
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
	// OnRequest, when set, is told of every request a run's target makes,
	// with the connection's name (a server's metrics).
	OnRequest func(connection string, status int, took time.Duration)
	// LeaseTTL is how long a run's claim on its sync lasts without renewal
	// (renewed every third of it): a run paused for longer loses the sync
	// to the next run and writes nothing more. Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Failpoint, when set, is called at each named point of a run where a
	// crash must lose and duplicate nothing (see Failpoints): crash tests
	// kill the process there. Nil in production.
	Failpoint func(point string)
}

// Failpoints are the points of a run Options.Failpoint is called at, in
// the order a record meets them.
func Failpoints() []string {
	return []string{
		"after-scope-read",       // the first page came back from the warehouse
		"after-intent-commit",    // a chunk's inserts are noted, not sent yet
		"after-target-answered",  // the target answered a chunk, nothing recorded
		"before-link-commit",     // a chunk's link rows are written, not committed
		"after-link-commit",      // a chunk's link rows are committed
		"before-bookmark-commit", // a page's bookmark is written, not committed
	}
}

// DefaultLeaseTTL is how long a run's claim lasts without renewal.
const DefaultLeaseTTL = lease.DefaultTTL

// New returns an engine. db is the warehouse, which also holds Ferry's state
// (schema ferry) and the link tables; it must be migrated.
func New(db *pgxpool.Pool, projects Projects, opts Options) *Engine {
	if opts.Env == nil {
		opts.Env = os.LookupEnv
	}
	if opts.Open == nil {
		opts.Open = registryOpener(opts.Connectors, opts.Env)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Engine{db: db, q: queries.New(db), projects: projects, open: opts.Open, log: opts.Logger, pool: opts.ScriptPool,
		isolation: opts.ScriptIsolation, holder: lease.Holder(), leaseTTL: opts.LeaseTTL, onRequest: opts.OnRequest, failpoint: opts.Failpoint, redact: connector.NewRedactor(),
		env: opts.Env}
}

// registryOpener opens targets through the registered kinds; a connection
// whose settings or secrets are wrong is a *project.ConfigError.
func registryOpener(kinds *connector.Registry, env connector.LookupEnv) Opener {
	if env == nil {
		env = os.LookupEnv
	}
	return func(ctx context.Context, c project.Connection) (connector.Target, error) {
		if kinds == nil {
			return nil, errors.New("no connection kinds are registered")
		}
		t, err := kinds.Open(ctx, c.Kind, c.Settings, env)
		var se *connector.SettingsError
		if errors.As(err, &se) {
			return nil, &project.ConfigError{File: project.ProjectFile, Field: "connections." + c.Name, Message: se.Error()}
		}
		return t, err
	}
}

// fail calls the failpoint hook, if any.
func (e *Engine) fail(point string) {
	if e.failpoint != nil {
		e.failpoint(point)
	}
}

// Redact removes every secret of the connections the engine opened from s.
func (e *Engine) Redact(s string) string { return e.redact.Redact(s) }

// ScriptWorkersReplaced is how many script workers died or broke (out of
// memory, a runaway builtin) and were replaced; 0 without a worker pool.
func (e *Engine) ScriptWorkersReplaced() int64 {
	if e.pool == nil {
		return 0
	}
	return e.pool.Replaced()
}

// Project returns the project as it is now.
func (e *Engine) Project(ctx context.Context) (*project.Project, error) {
	p, err := e.projects.Project(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading the project: %w", err)
	}
	return p, nil
}

// sync returns the project as it is now and one of its syncs.
func (e *Engine) sync(ctx context.Context, name string) (*project.Project, *project.Sync, error) {
	p, err := e.Project(ctx)
	if err != nil {
		return nil, nil, err
	}
	s, ok := p.Sync(name)
	if !ok {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownSync, name)
	}
	return p, s, nil
}

// ErrUnknownSync and ErrUnknownGroup are returned for a sync or group the
// project does not define.
var (
	ErrUnknownSync  = project.ErrUnknownSync
	ErrUnknownGroup = project.ErrUnknownGroup
)

// openTarget opens the target of a connection for one run. Each run gets
// its own, so that it starts unproven: bad credentials cost one call, and a
// run never inherits another's state.
func (e *Engine) openTarget(ctx context.Context, p *project.Project, name string) (connector.Target, error) {
	c, ok := p.Connections[name]
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
	// Tokens a login or OAuth2 flow obtains later are redacted too.
	if w, ok := t.(connector.SecretWatcher); ok {
		w.WatchSecrets(e.redact.Add)
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
// and keeps it renewed; onClaim (see lease.Acquire) records the run in the
// same transaction. The returned context ends when the lease is lost, and
// it gates every write to a target on the lease. Release it when the run is
// done.
func (e *Engine) claim(ctx context.Context, what, name string, onClaim func(context.Context, pgx.Tx) (int64, error)) (context.Context, *lease.Lease, error) {
	l, err := lease.Acquire(ctx, e.db, name, e.holder, e.leaseTTL, onClaim)
	var held *lease.HeldError
	if errors.As(err, &held) {
		return nil, nil, &BusyError{What: what, RunID: held.RunID, Holder: held.Holder}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	return connector.WithGate(l.Keep(ctx), l.Valid), l, nil
}

// brokenWarehouse says what to do when a run ended because its warehouse
// connection died (a restart, a failover, a terminated backend), wherever
// in the run that happened.
func brokenWarehouse(err error) error {
	if err == nil || !queries.BrokenConn(err) || strings.Contains(err.Error(), "run the sync again") {
		return err
	}
	return fmt.Errorf("%w; the warehouse connection was lost: run the sync again (what this run sent but could not record is settled then, not sent twice)", err)
}

// lostClaim turns a run's error into the lease's story when the run ended
// because it lost its claim.
func lostClaim(ctx context.Context, what string, err error) error {
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, lease.ErrLost) {
		return fmt.Errorf("%s: %w; it stopped at once and wrote nothing more (records it sent but could not record are reconciled by the run that holds it now)", what, cause)
	}
	return err
}
