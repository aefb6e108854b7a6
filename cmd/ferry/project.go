package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
)

const defaultURLEnv = "DATABASE_URL"

// open loads the project, connects to the warehouse and applies pending
// migrations, which every command that touches state needs.
func (c *cli) open(ctx context.Context) (*project.Project, *pgxpool.Pool, error) {
	p, err := project.Load(c.projectDir, connectors())
	if err != nil {
		return nil, nil, err
	}
	pool, err := c.connect(ctx, p.Warehouse.URLEnv)
	if err != nil {
		return nil, nil, err
	}
	return p, pool, nil
}

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

func (c *cli) connectNoMigrate(ctx context.Context, urlEnv string) (*pgxpool.Pool, error) {
	url := c.dbURL
	if url == "" {
		if urlEnv == "" {
			urlEnv = defaultURLEnv
		}
		url = os.Getenv(urlEnv)
		if url == "" {
			return nil, usageError{fmt.Sprintf("no warehouse URL: set %s (or pass --db)", urlEnv)}
		}
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("warehouse URL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot reach the warehouse: %w", err)
	}
	return pool, nil
}

func isConfigError(err error) bool {
	var ce *project.ConfigError
	return errors.As(err, &ce)
}

func version() string { return "0.1.0-dev" }
