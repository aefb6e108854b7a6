package main

import (
	"context"

	"github.com/alecthomas/kong"
)

// CLI is ferry's command line, declared for kong
// (github.com/alecthomas/kong) rather than parsed by hand with package flag:
// many subcommands are coming (serve, link, template, import, export), and
// kong gives each of them help (ferry help run, ferry run --help), flags in
// any position (ferry run contacts --full) and validation (unknown commands
// and flags, missing arguments) from the struct below. Each command is a
// struct whose Run method calls one engine entry point and prints its
// result; its Help method holds the examples.
type CLI struct {
	Project string           `help:"Project folder: ferry.yaml and syncs/ (default: the current folder)." env:"FERRY_PROJECT" default:"." placeholder:"DIR"`
	DB      string           `name:"db" help:"Warehouse URL (default: the project's warehouse.url_env, else DATABASE_URL)." placeholder:"URL"`
	Verbose bool             `short:"v" help:"Log debug detail."`
	Version kong.VersionFlag `help:"Print the version and exit."`

	Run        runCmd      `cmd:"" help:"Run syncs, parents first, and say what each did."`
	Plan       planCmd     `cmd:"" help:"Show what runs would do, with sample payloads; write nothing."`
	Test       testCmd     `cmd:"" help:"Show what a run does with one record, step by step."`
	Status     statusCmd   `cmd:"" help:"Show link rows by status, the latest errors and runs."`
	Explain    explainCmd  `cmd:"" help:"Explain why a record did or did not sync."`
	Check      checkCmd    `cmd:"" help:"Check syncs against the warehouse and targets; read no rows."`
	Link       linkCmd     `cmd:"" help:"Create and seed link tables."`
	Rollback   rollbackCmd `cmd:"" help:"Delete from the target what a sync inserted."`
	Setup      setupCmd    `cmd:"" help:"Create the restricted role that scope queries run as."`
	Migrate    migrateCmd  `cmd:"" help:"Create or upgrade Ferry's state schema in the warehouse."`
	Script     scriptCmd   `cmd:"" help:"Run data-sync scripts and the tests of transforms."`
	Demo       demoCmd     `cmd:"" help:"Sync a demo CRM into a demo ERP, change it, sync again."`
	Serve      serveCmd    `cmd:"" help:"Run the REST API, the scheduler and the run queue's workers."`
	Schedule   scheduleCmd `cmd:"" help:"List the schedules and their next runs."`
	Import     importCmd   `cmd:"" help:"Make a server's stored configuration a project folder's files (diff first)."`
	Export     exportCmd   `cmd:"" help:"Write a server's stored configuration into a project folder."`
	Token      tokenCmd    `cmd:"" help:"Create, list and revoke API tokens."`
	Secrets    secretsCmd  `cmd:"" help:"Store, list and rotate the secrets connections name."`
	Template   templateCmd `cmd:"" help:"List, show and instantiate templates of syncs; compare a project with them."`
	VersionCmd versionCmd  `cmd:"" name:"version" help:"Print the version."`
	Help       helpCmd     `cmd:"" help:"Show the help of ferry or of a command."`
}

type helpCmd struct {
	Command []string `arg:"" optional:"" help:"The command, for example run or link seed."`
}

func (helpCmd) Help() string {
	return `Examples:

    ferry help
    ferry help run
    ferry help link seed`
}

func (h *helpCmd) Run(ctx context.Context, c *cli) error {
	return c.help(ctx, c.stdout, h.Command)
}

type versionCmd struct{}

func (versionCmd) Help() string {
	return `Example:

    ferry version`
}

func (versionCmd) Run(c *cli) error {
	_, err := c.stdout.Write([]byte("ferry " + version() + "\n"))
	return err
}
