package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/scripting"
)

// scriptCmd runs standalone data-sync scripts and the offline tests of
// transforms.
type scriptCmd struct {
	Run  scriptRunCmd  `cmd:"" help:"Run a data-sync script's main(pq)."`
	Test scriptTestCmd `cmd:"" help:"Run the *_test.star tests of transforms, offline."`
}

func (scriptCmd) Help() string {
	return `Scripts are Starlark: transforms beside sync files, tested offline by *_test.star files, and standalone data syncs with a main(pq).

Examples:

    ferry script test
    ferry script run scripts/cleanup.star`
}

type scriptRunCmd struct {
	File string `arg:"" help:"The script (a .star file defining main(pq))." placeholder:"FILE.star"`
	Name string `help:"The script's name for its state and link tables (default: the file name)." placeholder:"N"`
}

func (scriptRunCmd) Help() string {
	return `Its writes keyed by source_id= are recorded in link_tables.script_<name>_<object>, so a rerun never writes twice; pq.set_state keeps its state for the next run.

Examples:

    ferry script run scripts/cleanup.star
    ferry script run --name nightly_cleanup scripts/cleanup.star`
}

func (sr *scriptRunCmd) Run(ctx context.Context, c *cli) error {
	src, err := os.ReadFile(sr.File)
	if err != nil {
		return usageError{fmt.Sprintf("reading the script: %v", err)}
	}
	name := sr.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(sr.File), ".star")
	}
	ss, err := c.start(ctx)
	if err != nil {
		return err
	}
	defer ss.close()
	printed, err := ss.eng.RunScript(ctx, name, filepath.Base(sr.File), src, filepath.Dir(sr.File), engine.Origin{})
	for _, line := range printed {
		fmt.Fprintln(c.stdout, line)
	}
	return err
}

type scriptTestCmd struct {
	Paths []string `arg:"" optional:"" name:"folder" help:"Folders of *_test.star files (default: the project's syncs folder)."`
}

func (scriptTestCmd) Help() string {
	return `Tests call transforms on fixture records and assert on the output. The command fails (exit 1) when a test fails.

Examples:

    ferry script test
    ferry script test syncs/`
}

func (st *scriptTestCmd) Run(ctx context.Context, c *cli) error {
	dirs := st.Paths
	if len(dirs) == 0 {
		// Scripts load() relative to their own folder: the syncs folder,
		// where sync files and their scripts live.
		dirs = []string{c.projectDir}
		if fi, err := os.Stat(filepath.Join(c.projectDir, "syncs")); err == nil && fi.IsDir() {
			dirs = []string{filepath.Join(c.projectDir, "syncs")}
		}
	}
	ok := true
	for _, dir := range dirs {
		report, err := scripting.RunTests(ctx, dir)
		if err != nil {
			return err
		}
		if _, err := report.WriteTo(c.stdout); err != nil {
			return err
		}
		ok = ok && report.OK()
	}
	if !ok {
		return exitCode(exitFailed)
	}
	return nil
}

// cmdWorker is the hidden subcommand a script pool starts: it serves
// script calls on stdin/stdout under the memory limit the parent set.
func cmdWorker(ctx context.Context, c *cli) int {
	if err := scripting.ServeWorker(ctx, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(c.stderr, "ferry script worker: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// memoryLimitEnv sets the script workers' memory limit in MB (default 256).
const memoryLimitEnv = "FERRY_SCRIPT_MEMORY_MB"

// scriptPool starts the process's pool of script workers when a project has
// scripts; the pool re-executes this binary with the worker subcommand.
func scriptPool(p *project.Project) (*scripting.Pool, error) {
	has := false
	for _, s := range p.Syncs {
		has = has || len(s.TransformSource) > 0
	}
	if !has {
		return nil, nil
	}
	opts := scripting.PoolOptions{Workers: 1}
	if v := os.Getenv(memoryLimitEnv); v != "" {
		mb, err := strconv.Atoi(v)
		if err != nil || mb < 64 {
			return nil, usageError{fmt.Sprintf("%s=%q: give the script workers' memory limit in MB, at least 64", memoryLimitEnv, v)}
		}
		opts.MemoryLimit = int64(mb) << 20
	}
	pool, err := scripting.NewPool(opts)
	if err != nil {
		return nil, fmt.Errorf("starting the script workers: %w", err)
	}
	return pool, nil
}
