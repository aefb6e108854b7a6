package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-sync/ferry/api"
	"github.com/ferry-sync/ferry/api/auth"
	"github.com/ferry-sync/ferry/api/projects"
	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/internal/notify"
	"github.com/ferry-sync/ferry/internal/runqueue"
	"github.com/ferry-sync/ferry/internal/scheduler"
	"github.com/ferry-sync/ferry/internal/secrets"
	"github.com/ferry-sync/ferry/scripting"
)

// server is what a command on the server's state holds open: the
// warehouse, and the stores of the project, secrets and tokens.
type server struct {
	pool     *pgxpool.Pool
	projects *projects.Store
	secrets  *secrets.Store
	tokens   *auth.Tokens
}

// openServer connects to the warehouse (DATABASE_URL or --db), migrates it
// and opens the stores. The project folder plays no part: the server's
// project is the one stored in the warehouse (ferry import puts it there).
func (c *cli) openServer(ctx context.Context) (*server, error) {
	pool, err := c.connect(ctx, defaultURLEnv)
	if err != nil {
		return nil, err
	}
	keys, err := secrets.KeyringFromEnv(c.env)
	if err != nil {
		pool.Close()
		return nil, usageError{err.Error()}
	}
	store, err := projects.NewStore(pool, connectors(), "")
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &server{pool: pool, projects: store, secrets: secrets.NewStore(pool, keys), tokens: auth.NewTokens(pool)}, nil
}

func (s *server) close() {
	s.projects.Close()
	s.pool.Close()
}

type serveCmd struct {
	Addr      string `help:"Address to listen on." default:"127.0.0.1:8080"`
	Workers   int    `help:"Runs this replica works at once." default:"4"`
	Scheduler bool   `help:"Tick the schedules (every replica may; each tick runs once)." default:"true" negatable:""`
	Replica   string `help:"This replica's name in run rows (default: host and pid)." placeholder:"NAME"`
}

func (serveCmd) Help() string {
	return `ferry serve runs the REST API (/api/v1, its OpenAPI document at
/api/v1/openapi.json), the scheduler and the run queue's workers, on the
warehouse DATABASE_URL (or --db) names, migrating Ferry's state first.
Several replicas may serve one warehouse: the run queue is shared, each
schedule tick runs once on one of them, and a run whose replica died is
resumed by another. The configuration served is the one stored in the
warehouse: put a project folder there with ferry import. Callers need an
API token (ferry token create). Secrets sent through the API are
encrypted with FERRY_SECRET_KEY (32 bytes, base64; see ferry secrets
rotate).

Examples:

    ferry import ./my-project
    ferry token create --name ci --role editor
    ferry serve --addr 0.0.0.0:8080 --workers 8`
}

func (cmd *serveCmd) Run(ctx context.Context, c *cli) error {
	if cmd.Workers < 1 {
		return usageError{"--workers: at least 1"}
	}
	c.poolSize = runqueue.PoolSize(cmd.Workers)
	srv, err := c.openServer(ctx)
	if err != nil {
		return err
	}
	defer srv.close()
	ttl, err := leaseTTL()
	if err != nil {
		return err
	}
	scripts, err := scripting.NewPool(scripting.PoolOptions{Workers: 2})
	if err != nil {
		return err
	}
	defer scripts.Close()
	env := srv.secrets.Env(ctx)
	// The engine reports its targets' requests, and the queue its runs, to
	// the API's metrics; the API is made before any run can start.
	var a *api.Server
	eng := engine.New(srv.pool, srv.projects, engine.Options{
		Connectors: connectors(), Env: env, Logger: c.log, ScriptPool: scripts, LeaseTTL: ttl, Failpoint: failpoint(),
		OnRequest: func(conn string, status int, took time.Duration) { a.TargetRequest(conn, status, took) },
	})
	alerts := notify.New(srv.pool, notify.Options{Env: env, Logger: c.log})
	defer alerts.Close()
	queue, err := runqueue.New(runqueue.Options{
		DB: srv.pool, Engine: eng, Replica: cmd.Replica, Workers: cmd.Workers, Logger: c.log,
		SweepEvery: sweepEvery(ttl), RescueAfter: rescueAfter(),
		OnStarted: func(ctx context.Context, args runqueue.Args, runID int64) {
			a.RunStarted(args, time.Now())
			if p, err := eng.Project(ctx); err == nil && p.Alerts != nil {
				alerts.RunStarted(ctx, p.Alerts, notify.Event{RunID: runID, Sync: args.Name, Kind: args.What, Status: "running", Trigger: args.Trigger, StartedAt: time.Now()})
			}
		},
		OnEnded: func(ctx context.Context, e runqueue.Ended) {
			a.RunEnded(e)
			if p, err := eng.Project(ctx); err == nil && p.Alerts != nil {
				for _, ev := range events(e, cmd.Replica) {
					alerts.RunEnded(ctx, p.Alerts, ev)
				}
			}
		},
	})
	if err != nil {
		return err
	}
	var sched *scheduler.Scheduler
	if cmd.Scheduler {
		sched, err = scheduler.New(scheduler.Options{DB: srv.pool, Project: eng.Project, Queue: queue, Logger: c.log})
		if err != nil {
			return err
		}
	}
	opts := api.Options{DB: srv.pool, Engine: eng, Projects: srv.projects, Secrets: srv.secrets, Tokens: srv.tokens,
		Kinds: connectors(), Logger: c.log, Version: version(), Queue: queue}
	if sched != nil {
		opts.Schedules = sched
	}
	a = api.New(opts)
	if err := queue.Start(ctx); err != nil {
		return err
	}
	defer func() {
		stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := queue.Stop(stop); err != nil {
			c.log.Warn("ferry serve: stopping the run queue", "err", err)
		}
	}()
	if sched != nil {
		if err := sched.Start(ctx); err != nil {
			return err
		}
		defer sched.Stop()
	}
	return a.Serve(ctx, cmd.Addr, func(addr net.Addr) {
		c.log.Info("ferry serve: listening", "addr", addr.String(), "api", "http://"+addr.String()+api.Prefix,
			"replica", queue.Replica(), "workers", cmd.Workers, "scheduler", cmd.Scheduler)
	})
}

// sweepEvery is how often a replica looks for runs whose replica died: a
// few times per claim's life, so that a dead run is resumed soon after
// its claim expires.
func sweepEvery(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		ttl = engine.DefaultLeaseTTL
	}
	return max(ttl/3, 200*time.Millisecond)
}

// rescueAfterEnv shortens when River closes the job of a dead attempt
// (tests).
const rescueAfterEnv = "FERRY_RESCUE_AFTER"

func rescueAfter() time.Duration {
	d, _ := time.ParseDuration(os.Getenv(rescueAfterEnv))
	return d
}

// events are the alerts a job's end makes: one per run it ran.
func events(e runqueue.Ended, replica string) []notify.Event {
	var out []notify.Event
	for _, res := range e.Results {
		if res == nil {
			continue
		}
		ev := notify.Event{RunID: res.RunID, Sync: strings.TrimPrefix(res.Sync, "script:"), Kind: e.Args.What, Status: string(res.Status),
			Trigger: e.Args.Trigger, Read: res.Counts.Read, Inserted: res.Counts.Inserted, Updated: res.Counts.Updated,
			Unchanged: res.Counts.Unchanged, Skipped: res.Counts.Skipped, Invalid: res.Counts.Invalid, Failed: res.Counts.Failed,
			Error: res.Error, FinishedAt: time.Now(), Replica: replica}
		if e.Args.What == runqueue.WhatGroup {
			ev.Kind = runqueue.WhatSync
		}
		out = append(out, ev)
	}
	if len(out) == 0 && e.Err != nil {
		out = append(out, notify.Event{Sync: e.Args.Name, Kind: e.Args.What, Status: "failed", Trigger: e.Args.Trigger,
			Error: e.Err.Error(), FinishedAt: time.Now(), Replica: replica})
	}
	return out
}

type tokenCmd struct {
	Create tokenCreateCmd `cmd:"" help:"Create an API token; its text is shown once."`
	List   tokenListCmd   `cmd:"" help:"List API tokens."`
	Revoke tokenRevokeCmd `cmd:"" help:"Revoke an API token at once."`
}

func (tokenCmd) Help() string {
	return `Tokens authenticate API callers; each has a role: viewer, editor or admin.

Example:

    ferry token create --name airflow --role editor
    ferry token list`
}

type tokenCreateCmd struct {
	Name    string        `required:"" help:"Who or what uses it."`
	Role    string        `required:"" enum:"viewer,editor,admin" help:"viewer reads; editor also changes syncs and scripts and runs them; admin also manages connections, secrets, tokens, imports."`
	Expires time.Duration `help:"How long it lasts (e.g. 720h); never expires when 0." default:"0"`
}

func (tokenCreateCmd) Help() string {
	return `Examples:

    ferry token create --name ci --role editor --expires 2160h
    ferry token create --name ops --role admin`
}

func (cmd *tokenCreateCmd) Run(ctx context.Context, c *cli) error {
	srv, err := c.openServer(ctx)
	if err != nil {
		return err
	}
	defer srv.close()
	tok, text, err := srv.tokens.Create(ctx, cmd.Name, auth.Role(cmd.Role), cmd.Expires)
	if err != nil {
		return usageError{err.Error()}
	}
	fmt.Fprintf(c.stderr, "token %s (%s, %s) created; it is shown this once:\n", tok.ID, tok.Name, tok.Role)
	fmt.Fprintln(c.stdout, text)
	return nil
}

type tokenListCmd struct{}

func (tokenListCmd) Help() string { return "Example:\n\n    ferry token list" }

func (tokenListCmd) Run(ctx context.Context, c *cli) error {
	srv, err := c.openServer(ctx)
	if err != nil {
		return err
	}
	defer srv.close()
	toks, err := srv.tokens.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "id\tname\trole\tcreated\texpires\trevoked\tlast used")
	for _, t := range toks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, t.CreatedAt.Local().Format("2006-01-02 15:04"), when(t.ExpiresAt), when(t.RevokedAt), when(t.LastUsedAt))
	}
	return tw.Flush()
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

type tokenRevokeCmd struct {
	ID string `arg:"" help:"The token's id (ferry token list)."`
}

func (tokenRevokeCmd) Help() string { return "Example:\n\n    ferry token revoke 1a2b3c4d5e6f" }

func (cmd *tokenRevokeCmd) Run(ctx context.Context, c *cli) error {
	srv, err := c.openServer(ctx)
	if err != nil {
		return err
	}
	defer srv.close()
	ok, err := srv.tokens.Revoke(ctx, cmd.ID)
	if err != nil {
		return err
	}
	if !ok {
		return usageError{fmt.Sprintf("no active token %q", cmd.ID)}
	}
	fmt.Fprintf(c.stdout, "token %s revoked\n", cmd.ID)
	return nil
}

type importCmd struct {
	Dir    string `arg:"" type:"existingdir" help:"The project folder."`
	DryRun bool   `help:"Show what would change; change nothing."`
}

func (importCmd) Help() string {
	return `ferry import makes the configuration a server keeps (in the warehouse)
exactly the project folder's files: ferry.yaml and the files under its
syncs folder. It shows the diff first; the whole project is checked, and
nothing changes when it does not load. ferry export writes it back.

Examples:

    ferry import ./my-project --dry-run
    ferry import ./my-project`
}

func (cmd *importCmd) Run(ctx context.Context, c *cli) error {
	files, err := projects.ReadDir(cmd.Dir)
	if err != nil {
		return err
	}
	srv, err := c.openServer(ctx)
	if err != nil {
		return err
	}
	defer srv.close()
	who := "cli " + os.Getenv("USER")
	cs, err := srv.projects.Replace(ctx, files, who, "import "+cmd.Dir, cmd.DryRun)
	if err != nil {
		return err
	}
	for _, f := range cs.Files {
		fmt.Fprintf(c.stdout, "%-8s %s\n", f.Op, f.Path)
		fmt.Fprint(c.stdout, f.Diff)
	}
	switch {
	case len(cs.Files) == 0:
		fmt.Fprintln(c.stdout, "nothing to change: the server's configuration is the folder's")
	case cmd.DryRun:
		fmt.Fprintf(c.stdout, "dry run: %d files would change; nothing changed\n", len(cs.Files))
	default:
		fmt.Fprintf(c.stdout, "%d files changed: version %d\n", len(cs.Files), cs.Version)
	}
	return nil
}

type exportCmd struct {
	Dir string `arg:"" help:"The folder to write (made when missing)."`
}

func (exportCmd) Help() string {
	return `ferry export writes the configuration a server keeps into a folder, as
the files ferry import read: a round trip gives the same bytes.

Example:

    ferry export ./my-project && git -C ./my-project diff`
}

func (cmd *exportCmd) Run(ctx context.Context, c *cli) error {
	srv, err := c.openServer(ctx)
	if err != nil {
		return err
	}
	defer srv.close()
	files, err := srv.projects.Files(ctx)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return usageError{"the server keeps no configuration yet: ferry import a project folder first"}
	}
	if err := projects.WriteDir(cmd.Dir, files); err != nil {
		return err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintln(c.stdout, p)
	}
	return nil
}

type secretsCmd struct {
	Set    secretsSetCmd    `cmd:"" help:"Store a secret, read from stdin (encrypted; write-only)."`
	List   secretsListCmd   `cmd:"" help:"List the stored secrets (never their values)."`
	Rotate secretsRotateCmd `cmd:"" help:"Re-encrypt every secret with the current key."`
}

func (secretsCmd) Help() string {
	return `A connection names a secret in a *_env setting (token_env: CRM_TOKEN); the
server reads it from the store, encrypted with FERRY_SECRET_KEYS, and never
shows it again.

Example:

    ferry secrets set CRM_TOKEN < token.txt
    ferry secrets list`
}

type secretsSetCmd struct {
	Name string `arg:"" help:"The name connections use for it, e.g. CRM_TOKEN."`
}

func (secretsSetCmd) Help() string {
	return `Example:

    ferry secrets set CRM_TOKEN < token.txt

The value is read from stdin so that it never lands in shell history.`
}

func (cmd *secretsSetCmd) Run(ctx context.Context, c *cli) error {
	value, err := readAllTrimmed(os.Stdin)
	if err != nil {
		return err
	}
	srv, err := c.openServer(ctx)
	if err != nil {
		return err
	}
	defer srv.close()
	if err := srv.secrets.Put(ctx, cmd.Name, value, "cli"); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "secret %s stored\n", cmd.Name)
	return nil
}

type secretsListCmd struct{}

func (secretsListCmd) Help() string { return "Example:\n\n    ferry secrets list" }

func (secretsListCmd) Run(ctx context.Context, c *cli) error {
	srv, err := c.openServer(ctx)
	if err != nil {
		return err
	}
	defer srv.close()
	infos, err := srv.secrets.List(ctx)
	if err != nil {
		return err
	}
	for _, i := range infos {
		fmt.Fprintf(c.stdout, "%s\tkey %s\tupdated %s by %s\n", i.Name, i.KeyID, i.UpdatedAt.Local().Format("2006-01-02 15:04"), i.UpdatedBy)
	}
	return nil
}

type secretsRotateCmd struct{}

func (secretsRotateCmd) Help() string {
	return `Put the new key first in FERRY_SECRET_KEYS ("new:<base64>,old:<base64>"),
run ferry secrets rotate, then drop the old key.

Example:

    export FERRY_SECRET_KEYS="k2:$NEW,k1:$OLD"
    ferry secrets rotate`
}

func (secretsRotateCmd) Run(ctx context.Context, c *cli) error {
	srv, err := c.openServer(ctx)
	if err != nil {
		return err
	}
	defer srv.close()
	n, err := srv.secrets.Rotate(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%d secrets re-encrypted with the current key\n", n)
	return nil
}

func readAllTrimmed(f *os.File) (string, error) {
	b, err := io.ReadAll(f)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
