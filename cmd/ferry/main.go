// Command ferry is Ferry's one binary: it migrates the state schema, runs,
// plans and tests syncs, reports their status, runs the demo and (later)
// serves the REST API.
//
// Exit codes a script can rely on:
//
//	0  everything ran and every record synced
//	1  a run failed or stopped (broken scope query, refused credentials, on_error: stop …)
//	2  bad usage or a bad project file
//	3  the runs finished but some records failed or were invalid (see ferry status)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

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

// cli carries what every command shares.
type cli struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	projectDir     string
	dbURL          string
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, c *cli, args []string) int
}

func commands() []command {
	return []command{
		{"demo", "sync a demo CRM warehouse into a demo ERP database, change it, sync again", cmdDemo},
		{"run", "run syncs: ferry run [--full] [--group G] [sync …] (all syncs when none named)", cmdRun},
		{"plan", "dry run: what would be inserted, updated, skipped; writes nothing", cmdPlan},
		{"test", "one record: ferry test <sync> --id <source id> [--write]", cmdTest},
		{"status", "a sync's link table by status, its latest errors and runs", cmdStatus},
		{"explain", "why a record did or did not sync: ferry explain <sync> <source id>", cmdExplain},
		{"check", "load the project and check every sync against the warehouse", cmdCheck},
		{"script", "ferry script run <file.star> (a data-sync script) | ferry script test [folder] (*_test.star)", cmdScript},
		{"migrate", "create or upgrade Ferry's state schema in the warehouse", cmdMigrate},
		{"setup", "create the restricted role scope queries run as: ferry setup --scope-role ferry_scope --schemas crm,hubspot", cmdSetup},
		{"version", "print the version", cmdVersion},
	}
}

// usageError is a mistake in how ferry was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr}
	if len(args) > 0 && args[0] == scripting.WorkerCommand {
		return cmdWorker(ctx, c, args[1:])
	}
	global := flag.NewFlagSet("ferry", flag.ContinueOnError)
	global.SetOutput(stderr)
	global.StringVar(&c.projectDir, "project", envOr("FERRY_PROJECT", "."), "project folder (ferry.yaml and syncs/); env FERRY_PROJECT")
	global.StringVar(&c.dbURL, "db", "", "warehouse URL (default: the project's warehouse.url_env, else DATABASE_URL)")
	verbose := global.Bool("v", false, "log debug detail")
	global.Usage = func() { usage(stderr, global) }
	if err := global.Parse(args); err != nil {
		return exitUsage
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	c.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	rest := global.Args()
	if len(rest) == 0 {
		usage(stderr, global)
		return exitUsage
	}
	for _, cmd := range commands() {
		if cmd.name == rest[0] {
			return cmd.run(ctx, c, rest[1:])
		}
	}
	fmt.Fprintf(stderr, "ferry: unknown command %q\n\n", rest[0])
	usage(stderr, global)
	return exitUsage
}

func usage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprintln(w, "Ferry keeps business applications in sync with your PostgreSQL warehouse.")
	fmt.Fprintln(w, "\nUsage: ferry [global flags] <command> [flags]\n\nCommands:")
	cmds := commands()
	for _, cmd := range cmds {
		fmt.Fprintf(w, "  %-9s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintln(w, "\nGlobal flags:")
	global.PrintDefaults()
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// fail prints err for a person and returns the exit code it deserves.
func (c *cli) fail(err error) int {
	var ue usageError
	msg := err.Error()
	// Joined errors (every problem in a project) read best one per line.
	msg = strings.ReplaceAll(msg, "\n", "\n  ")
	fmt.Fprintf(c.stderr, "ferry: %s\n", msg)
	if errors.As(err, &ue) || isConfigError(err) {
		return exitUsage
	}
	return exitFailed
}

func cmdVersion(_ context.Context, c *cli, _ []string) int {
	fmt.Fprintln(c.stdout, "ferry", version())
	return exitOK
}
