// Command ferry is Ferry's one binary: it migrates the state schema, runs,
// plans and tests syncs, seeds link tables, reports their status, runs the
// demo and (later) serves the REST API.
//
// It keeps only flags and printing: every command calls one entry point of
// package engine (engine.RunMany, Plan, TestRecord, Explain, Check, Status,
// LinkInit, LinkSeed, RunScript, SetupScopeRole) and prints its result.
//
// Exit codes a script can rely on:
//
//	0  everything ran and every record synced
//	1  a run failed, stopped or was not started (broken scope query, refused credentials, on_error: stop, a failed parent …)
//	2  bad usage, a bad project file or a connection's secret not set
//	3  the runs finished but some records failed or were invalid (see ferry status)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/scripting"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitRecords = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli carries what every command shares: where to print, the global flags
// and where secrets come from.
type cli struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	projectDir     string
	dbURL          string
	// env looks up the environment variables a project names (the
	// warehouse URL, connections' URLs and tokens). It is the process
	// environment, except in the demo, which adds its databases' URLs
	// without touching the process environment.
	env connector.LookupEnv
	// poolSize, when set, is the warehouse pool a command needs (ferry
	// serve: its run workers'), unless the URL sets pool_max_conns.
	poolSize int32
}

// usageError is a mistake in how ferry was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitCode ends a command whose output already said what went wrong.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// exitRequest is how kong's Exit (after --help, --version) unwinds out of
// the parser without ending the process: run recovers it. Tests call run
// in-process, so nothing here may call os.Exit.
type exitRequest struct{ code int }

// run is the whole CLI: it parses args, runs the command and returns the
// exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	c := &cli{stdout: stdout, stderr: stderr, env: os.LookupEnv, log: newLogger(stderr, false)}
	// The script pool re-executes this binary as a worker: no flags, no
	// parser, exactly this argument first.
	if len(args) > 0 && args[0] == scripting.WorkerCommand {
		return cmdWorker(ctx, c)
	}
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(exitRequest)
			if !ok {
				panic(r)
			}
			code = e.code
		}
	}()
	if len(args) == 0 {
		// No command is a usage error: the help goes where errors go.
		_ = c.help(ctx, stderr, nil)
		return exitUsage
	}
	var root CLI
	parser, err := newParser(ctx, &root, c, stdout, stderr)
	if err != nil {
		panic(err) // the grammar is wrong: a programming error
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		return c.usage(err)
	}
	c.projectDir, c.dbURL = root.Project, root.DB
	c.log = newLogger(stderr, root.Verbose)
	return c.exit(kctx.Run())
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// newParser builds the command line's grammar (see CLI). Help and version
// go to stdout; kong's Exit unwinds to run instead of ending the process.
func newParser(ctx context.Context, root *CLI, c *cli, stdout, stderr io.Writer) (*kong.Kong, error) {
	return kong.New(root,
		kong.Name("ferry"),
		kong.Description("Ferry keeps business applications (CRMs, ERPs, accounting) in sync with your PostgreSQL warehouse."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitRequest{code}) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, WrapUpperBound: 100}),
		kong.Vars{"version": "ferry " + version(), "demo_dir": filepath.Join(os.TempDir(), "ferry-demo")},
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.Bind(c),
	)
}

// help prints the help of the command named by path (the whole CLI's when
// empty) to w.
func (c *cli) help(ctx context.Context, w io.Writer, path []string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(exitRequest); !ok {
				panic(r)
			}
		}
	}()
	var root CLI
	parser, err := newParser(ctx, &root, c, w, c.stderr)
	if err != nil {
		return err
	}
	_, err = parser.Parse(append(append([]string{}, path...), "--help"))
	return err // only when path names no command: --help unwinds
}

// usage reports a command line kong refused, and returns exit 2.
func (c *cli) usage(err error) int {
	msg := err.Error()
	hint := "ferry --help"
	var pe *kong.ParseError
	if errors.As(err, &pe) && pe.Context != nil {
		node := pe.Context.Selected()
		if node != nil {
			hint = node.FullPath() + " --help"
		} else {
			node = pe.Context.Model.Node
		}
		arg, unexpected := strings.CutPrefix(msg, "unexpected argument ")
		switch {
		case unexpected && hasCommands(node):
			name, suggestion, _ := strings.Cut(arg, ", did you mean")
			msg = fmt.Sprintf("unknown command %q", strings.TrimSpace(node.Path()+" "+name))
			if suggestion != "" {
				msg += ", did you mean" + suggestion
			}
		case unexpected && listOf(node) != "":
			// kong reads a list argument in one go: "run a --full b" ends it at --full.
			msg = fmt.Sprintf("unexpected argument %q: give every <%s> together, before or after the flags", arg, listOf(node))
		case strings.HasPrefix(msg, "expected one of ") && hasCommands(node):
			msg = strings.TrimSpace(node.FullPath()) + " needs a command: " + strings.TrimPrefix(msg, "expected one of ")
		}
	}
	fmt.Fprintf(c.stderr, "ferry: %s\n", msg)
	fmt.Fprintf(c.stderr, "Run `%s` for usage.\n", hint)
	return exitUsage
}

// listOf names the list of arguments n takes (run's syncs), if any.
func listOf(n *kong.Node) string {
	for _, p := range n.Positional {
		if p.IsSlice() {
			return p.Name
		}
	}
	return ""
}

func hasCommands(n *kong.Node) bool {
	for _, child := range n.Children {
		if child.Type == kong.CommandNode && !child.Hidden {
			return true
		}
	}
	return false
}

// exit turns what a command returned into its exit code, printing errors.
func (c *cli) exit(err error) int {
	var code exitCode
	var pe *kong.ParseError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &pe):
		return c.usage(err) // ferry help <unknown command>
	}
	return c.fail(err)
}

// fail prints err for a person and returns the exit code it deserves.
func (c *cli) fail(err error) int {
	// Joined errors (every problem in a project) read best one per line.
	msg := strings.ReplaceAll(err.Error(), "\n", "\n  ")
	fmt.Fprintf(c.stderr, "ferry: %s\n", msg)
	return codeOf(err)
}

// codeOf is the exit code an error deserves: 2 for a mistake in the
// command line or the project's files (a connection's secret not set
// included), 1 for anything else.
func codeOf(err error) int {
	var ue usageError
	if errors.As(err, &ue) || isConfigError(err) || errors.Is(err, engine.ErrUnknownSync) {
		return exitUsage
	}
	return exitFailed
}

func isConfigError(err error) bool {
	var ce *project.ConfigError
	return errors.As(err, &ce)
}

func version() string { return "0.1.0-dev" }
