package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/scripting"
)

// cmdScript runs standalone data-sync scripts and the offline tests of
// transforms.
func cmdScript(ctx context.Context, c *cli, args []string) int {
	if len(args) == 0 {
		return c.fail(usageError{"usage: ferry script run <file.star> | ferry script test [folder or file …]"})
	}
	switch args[0] {
	case "run":
		return cmdScriptRun(ctx, c, args[1:])
	case "test":
		return cmdScriptTest(ctx, c, args[1:])
	}
	return c.fail(usageError{fmt.Sprintf("unknown script command %q: use run or test", args[0])})
}

// cmdScriptRun runs a script's main(pq) against the project's warehouse and
// connections; its writes keyed by source_id are recorded in link tables,
// and pq.set_state keeps its state for the next run.
func cmdScriptRun(ctx context.Context, c *cli, args []string) int {
	fs := flag.NewFlagSet("script run", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	name := fs.String("name", "", "the script's name for its state and link tables (default: the file name)")
	if fs.Parse(args) != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		return c.fail(usageError{"usage: ferry script run [--name N] <file.star>"})
	}
	file := fs.Arg(0)
	src, err := os.ReadFile(file)
	if err != nil {
		return c.fail(usageError{fmt.Sprintf("reading the script: %v", err)})
	}
	if *name == "" {
		*name = strings.TrimSuffix(filepath.Base(file), ".star")
	}
	ss, err := c.start(ctx)
	if err != nil {
		return c.fail(err)
	}
	defer ss.close()
	eng := ss.eng
	printed, err := eng.RunScript(ctx, *name, filepath.Base(file), src, filepath.Dir(file))
	for _, line := range printed {
		fmt.Fprintln(c.stdout, line)
	}
	if err != nil {
		return c.fail(err)
	}
	return exitOK
}

// cmdScriptTest runs *_test.star files: tests that call transforms on
// fixture records and assert on the output, with no target and no warehouse.
func cmdScriptTest(ctx context.Context, c *cli, args []string) int {
	dirs := args
	if len(dirs) == 0 {
		// Scripts load() relative to their own folder: the syncs folder,
		// where sync files and their scripts live.
		dirs = []string{c.projectDir}
		if st, err := os.Stat(filepath.Join(c.projectDir, "syncs")); err == nil && st.IsDir() {
			dirs = []string{filepath.Join(c.projectDir, "syncs")}
		}
	}
	ok := true
	for _, dir := range dirs {
		report, err := scripting.RunTests(ctx, dir)
		if err != nil {
			return c.fail(err)
		}
		if _, err := report.WriteTo(c.stdout); err != nil {
			return c.fail(err)
		}
		ok = ok && report.OK()
	}
	if !ok {
		return exitFailed
	}
	return exitOK
}

// cmdWorker is the hidden subcommand a script pool starts: it serves
// script calls on stdin/stdout under the memory limit the parent set.
func cmdWorker(ctx context.Context, c *cli, _ []string) int {
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
