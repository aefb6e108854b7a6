package main

import (
	"context"
	"fmt"
	"time"

	"github.com/ferry-sync/ferry/engine"
)

type rollbackCmd struct {
	Sync  string `arg:"" help:"The sync whose inserts to undo."`
	Since string `help:"Only what it inserted since this time (RFC 3339, or a date), e.g. 2026-11-28 or 2026-11-28T14:00:00Z." placeholder:"T"`
	Yes   bool   `help:"Delete them; without it, only say how many would be deleted."`
}

func (rollbackCmd) Help() string {
	return `Deletes, from the sync's target, the records Ferry inserted (link rows
with inserted_at), never ones it found there or was given. Their link rows
become deleted, so the sync's next run would insert them again: pause its
schedule first. Without --yes it only counts them.

Examples:

    ferry rollback contacts --since 2026-11-28
    ferry rollback contacts --since 2026-11-28 --yes`
}

func (cmd *rollbackCmd) Run(ctx context.Context, c *cli) error {
	var since time.Time
	if cmd.Since != "" {
		var err error
		if since, err = time.Parse(time.RFC3339, cmd.Since); err != nil {
			if since, err = time.ParseInLocation(time.DateOnly, cmd.Since, time.Local); err != nil {
				return usageError{fmt.Sprintf("--since %q: give a time like 2026-11-28T14:00:00Z or a date like 2026-11-28", cmd.Since)}
			}
		}
	}
	ss, err := c.start(ctx)
	if err != nil {
		return err
	}
	defer ss.close()
	res, err := ss.eng.Rollback(ctx, cmd.Sync, engine.RollbackOptions{Since: since, DryRun: !cmd.Yes})
	if err != nil {
		return err
	}
	if !cmd.Yes {
		s, _ := ss.project.Sync(cmd.Sync)
		fmt.Fprintf(c.stdout, "%s: %d records Ferry inserted would be deleted from %s of connection %s; run again with --yes to delete them\n",
			cmd.Sync, res.Counts.Deleted, s.Target.Object, s.Target.Connection)
		return nil
	}
	fmt.Fprintf(c.stdout, "%s: %d records deleted (run %d)\n", cmd.Sync, res.Counts.Deleted, res.RunID)
	if res.Counts.Failed > 0 {
		fmt.Fprintf(c.stderr, "ferry: %d could not be deleted; `ferry status %s` lists why; run the rollback again to retry them\n", res.Counts.Failed, cmd.Sync)
		return exitCode(exitRecords)
	}
	return nil
}
