package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/scheduler"
)

type scheduleCmd struct {
	List scheduleListCmd `cmd:"" help:"List the schedules of syncs, groups and scripts with their next runs."`
}

func (scheduleCmd) Help() string {
	return `Schedules live in their sync files (schedule:), in ferry.yaml for groups
(groups.<name>.schedule) and data-sync scripts (scripts.<file>.schedule);
ferry serve runs them.

Example:

    ferry schedule list`
}

type scheduleListCmd struct{}

func (scheduleListCmd) Help() string {
	return `Reads the project folder only: no warehouse, no server.

Example:

    ferry schedule list`
}

func (scheduleListCmd) Run(_ context.Context, c *cli) error {
	p, err := project.Load(c.projectDir, connectors())
	if err != nil {
		return err
	}
	entries := scheduler.List(p, time.Now())
	if len(entries) == 0 {
		fmt.Fprintln(c.stdout, "no schedules: add schedule: {every: 15m} to a sync file (or cron:, daily:)")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "what\tname\tschedule\tnext run")
	for _, e := range entries {
		next := "paused"
		if e.Next != nil {
			next = e.Next.Local().Format("2006-01-02 15:04:05 MST")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.What, e.Name, e.Spec, next)
	}
	return tw.Flush()
}
