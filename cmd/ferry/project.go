package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
	"github.com/ferry-sync/ferry/scripting"
)

const defaultURLEnv = "DATABASE_URL"

// session is what a command that works on syncs holds open: the project,
// the warehouse, the engine and its script workers.
type session struct {
	project *project.Project
	pool    *pgxpool.Pool
	eng     *engine.Engine
	scripts *scripting.Pool
}

// start loads the project, connects to the warehouse (migrating it) and
// starts an engine.
func (c *cli) start(ctx context.Context) (*session, error) {
	p, err := project.Load(c.projectDir, connectors())
	if err != nil {
		return nil, err
	}
	pool, err := c.connect(ctx, p.Warehouse.URLEnv)
	if err != nil {
		return nil, err
	}
	return c.startWith(p, pool)
}

// startWith starts an engine on a project and warehouse already open; the
// session owns pool from then on.
func (c *cli) startWith(p *project.Project, pool *pgxpool.Pool) (*session, error) {
	ttl, err := leaseTTL()
	if err != nil {
		pool.Close()
		return nil, err
	}
	scripts, err := scriptPool(p)
	if err != nil {
		pool.Close()
		return nil, err
	}
	eng := engine.New(pool, engine.StaticProject(p), engine.Options{
		Connectors: connectors(), Env: c.env, Logger: c.log, ScriptPool: scripts, LeaseTTL: ttl, Failpoint: failpoint(),
	})
	return &session{project: p, pool: pool, eng: eng, scripts: scripts}, nil
}

func (ss *session) close() {
	if ss.scripts != nil {
		ss.scripts.Close()
	}
	ss.pool.Close()
}

// connect connects to the warehouse and applies pending migrations, which
// every command that touches state needs.
func (c *cli) connect(ctx context.Context, urlEnv string) (*pgxpool.Pool, error) {
	pool, err := c.connectNoMigrate(ctx, urlEnv)
	if err != nil {
		return nil, err
	}
	if _, err := queries.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// connectNoMigrate connects to the warehouse: --db, else the variable
// urlEnv names (the project's warehouse.url_env), else DATABASE_URL.
func (c *cli) connectNoMigrate(ctx context.Context, urlEnv string) (*pgxpool.Pool, error) {
	url := c.dbURL
	if url == "" {
		if urlEnv == "" {
			urlEnv = defaultURLEnv
		}
		url, _ = c.env(urlEnv)
		if url == "" {
			return nil, usageError{fmt.Sprintf("no warehouse URL: set %s (or pass --db)", urlEnv)}
		}
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("warehouse URL: %w", err)
	}
	if c.poolSize > cfg.MaxConns && !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = c.poolSize
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("warehouse URL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot reach the warehouse: %w", err)
	}
	return pool, nil
}

// warehouseURLEnv is the project's warehouse.url_env when the project
// loads, for commands that work without a project (migrate, setup).
func (c *cli) warehouseURLEnv() string {
	if p, err := project.Load(c.projectDir, connectors()); err == nil && p.Warehouse.URLEnv != "" {
		return p.Warehouse.URLEnv
	}
	return defaultURLEnv
}

// leaseTTLEnv sets how long a run's claim on its sync lasts unrenewed
// (default 30s): a process paused longer loses the sync to the next run.
const leaseTTLEnv = "FERRY_LEASE_TTL"

func leaseTTL() (time.Duration, error) {
	v := os.Getenv(leaseTTLEnv)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 300*time.Millisecond {
		return 0, usageError{fmt.Sprintf("%s=%q: give a duration of at least 300ms, like 30s", leaseTTLEnv, v)}
	}
	return d, nil
}

// ---- migrate

type migrateCmd struct {
	URLEnv string `name:"url-env" help:"Environment variable holding the warehouse URL (default: the project's warehouse.url_env, else DATABASE_URL)." placeholder:"NAME"`
}

func (migrateCmd) Help() string {
	return `Other commands migrate on demand; run it on its own to upgrade a warehouse before a deploy.

Examples:

    ferry migrate
    ferry --db postgres://ferry@warehouse/analytics migrate`
}

func (m *migrateCmd) Run(ctx context.Context, c *cli) error {
	urlEnv := m.URLEnv
	if urlEnv == "" {
		urlEnv = c.warehouseURLEnv()
	}
	pool, err := c.connectNoMigrate(ctx, urlEnv)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := queries.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "migrations applied: %d\n", n)
	return nil
}

// ---- setup

type setupCmd struct {
	ScopeRole string   `help:"The role to create: it may only read the schemas named and link_tables (default: ${default})." default:"ferry_scope" placeholder:"NAME"`
	Schemas   []string `required:"" help:"Schemas scope queries may read, comma-separated." placeholder:"a,b"`
}

func (setupCmd) Help() string {
	return `Scope queries then run as this role once ferry.yaml says warehouse.scope_role: NAME, so they cannot read server files, end other sessions or see other schemas.

Example:

    ferry setup --scope-role ferry_scope --schemas crm,hubspot`
}

func (s *setupCmd) Run(ctx context.Context, c *cli) error {
	if !project.ValidName(s.ScopeRole) {
		return usageError{fmt.Sprintf("--scope-role %q: use lower-case letters, digits and _", s.ScopeRole)}
	}
	var names []string
	for _, n := range s.Schemas {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return usageError{"name the schemas scope queries may read (--schemas crm,hubspot)"}
	}
	pool, err := c.connectNoMigrate(ctx, c.warehouseURLEnv())
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := engine.SetupScopeRole(ctx, pool, s.ScopeRole, names); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "role %s can read %s (and link_tables); scope queries run as it once %s says:\n\nwarehouse:\n  scope_role: %s\n",
		s.ScopeRole, strings.Join(names, ", "), project.ProjectFile, s.ScopeRole)
	return nil
}
