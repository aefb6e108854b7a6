package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
)

// selection is how run and plan name their syncs.
type selection struct {
	Syncs []string `arg:"" optional:"" name:"sync" help:"Syncs to work on, parents first; every sync when none is named."`
	Group string   `help:"The syncs of this group of ferry.yaml, in its order." placeholder:"G"`
}

// Validate is called by kong once the command line is parsed.
func (s *selection) Validate() error {
	if s.Group != "" && len(s.Syncs) > 0 {
		return fmt.Errorf("name syncs or a --group, not both")
	}
	return nil
}

// check refuses a group the project does not have, as a usage error.
func (s *selection) check(p *project.Project) error {
	if s.Group == "" {
		return nil
	}
	if _, ok := p.Groups[s.Group]; !ok {
		names := make([]string, 0, len(p.Groups))
		for n := range p.Groups {
			names = append(names, n)
		}
		sort.Strings(names)
		defined := "none are defined"
		if len(names) > 0 {
			defined = "defined: " + strings.Join(names, ", ")
		}
		return usageError{fmt.Sprintf("unknown group %q (groups are in %s; %s)", s.Group, project.ProjectFile, defined)}
	}
	return nil
}

func (s *selection) engine() engine.Selection {
	return engine.Selection{Names: s.Syncs, Group: s.Group}
}

// ---- run

type runCmd struct {
	selection
	Full      bool `help:"Read the whole scope, ignoring the bookmark (unchanged records are still skipped by hash)."`
	Reconcile bool `help:"Read the whole scope of incremental syncs and count the records incremental reads missed."`
	ViaServer bool `name:"via-server" help:"Queue the runs for ferry serve (any replica) instead of running them here, and follow them: the syncs are those stored in the warehouse."`
}

func (runCmd) Help() string {
	return `A sync whose parent failed, stopped or was not started is not started (its records would only fail); the others go on. Each sync prints one line: records read, inserted, updated, unchanged, skipped, invalid and failed. Long runs show their progress on stderr.

Exit status: 0 every record synced; 1 a run failed, stopped or was not started; 2 bad usage, a bad project file or a secret not set; 3 the runs finished but records failed (ferry status lists them).

Examples:

    ferry run                          # every sync, parents first
    ferry run contacts --full          # one sync, ignoring its bookmark
    ferry run --group crm_to_erp
    ferry run contacts --via-server    # a server's workers run it
    ferry --project ./my-project run companies contacts`
}

func (r *runCmd) Run(ctx context.Context, c *cli) error {
	if r.ViaServer {
		return c.runViaServer(ctx, r)
	}
	ss, err := c.start(ctx)
	if err != nil {
		return err
	}
	defer ss.close()
	if err := r.check(ss.project); err != nil {
		return err
	}
	return c.runMany(ctx, ss.eng, r.engine(), engine.RunOptions{Full: r.Full, Reconcile: r.Reconcile})
}

// runMany runs the selected syncs (engine.RunMany: parents first, children
// of a failed parent not started), prints one line each and returns the
// exit code they deserve.
func (c *cli) runMany(ctx context.Context, eng *engine.Engine, sel engine.Selection, opts engine.RunOptions) error {
	prog := newProgress(c.stderr)
	opts.Progress = prog.update
	results, err := eng.RunMany(ctx, sel, opts)
	prog.done()
	if err != nil {
		// RunMany's own error is about the selection: an unknown sync or group.
		return usageError{err.Error()}
	}
	code := exitOK
	worse := func(c int) {
		rank := map[int]int{exitOK: 0, exitRecords: 1, exitFailed: 2, exitUsage: 3}
		if rank[c] > rank[code] {
			code = c
		}
	}
	recordsFailed := false
	for _, r := range results {
		c.printRun(r)
		switch runStatus(r) {
		case engine.RunSucceeded:
		case engine.RunSucceededWithErrors:
			recordsFailed = true
			worse(exitRecords)
		case engine.RunNotStarted:
			worse(exitFailed)
		case engine.RunStopped:
			recordsFailed = recordsFailed || r.Counts.Failed > 0 || r.Counts.Invalid > 0
			worse(exitFailed)
			c.printRunError(r)
		default: // failed
			if r.Err != nil {
				worse(codeOf(r.Err))
			} else {
				worse(exitFailed)
			}
			c.printRunError(r)
		}
	}
	if recordsFailed {
		fmt.Fprintln(c.stderr, "ferry: some records failed; `ferry status <sync>` lists them with their errors")
	}
	if code == exitOK {
		return nil
	}
	return exitCode(code)
}

// runStatus is how a run ended; a run that failed before it was recorded
// (busy, a broken scope query, a secret not set) has no status but an error.
func runStatus(r *engine.RunResult) engine.RunStatus {
	if r.Status == "" || r.Status == engine.RunRunning {
		if r.Err != nil || r.Error != "" {
			return engine.RunFailed
		}
		return engine.RunSucceeded
	}
	return r.Status
}

func (c *cli) printRunError(r *engine.RunResult) {
	// Err says more than Error when they differ (a run that lost its claim).
	msg := r.Error
	if r.Err != nil {
		msg = r.Err.Error()
	}
	if msg == "" {
		msg = fmt.Sprintf("sync %s %s", r.Sync, runStatus(r))
	}
	fmt.Fprintf(c.stderr, "ferry: %s\n", strings.ReplaceAll(msg, "\n", "\n  "))
}

func (c *cli) printRun(r *engine.RunResult) {
	status := runStatus(r)
	if status == engine.RunNotStarted {
		fmt.Fprintf(c.stdout, "%-12s %s\n", r.Sync, r.Error)
		return
	}
	k := r.Counts
	rate := ""
	if secs := r.Duration.Seconds(); secs > 0 && k.Read > 0 {
		rate = fmt.Sprintf(", %.0f records/s", float64(k.Read)/secs)
	}
	caught := ""
	if k.Caught > 0 {
		caught = fmt.Sprintf("  caught %d", k.Caught)
	}
	if k.Deleted > 0 {
		caught += fmt.Sprintf("  deleted %d", k.Deleted)
	}
	fmt.Fprintf(c.stdout, "%-12s %-9s read %d  inserted %d  updated %d  unchanged %d  skipped %d  invalid %d  failed %d%s  (%s%s)\n",
		r.Sync, status, k.Read, k.Inserted, k.Updated, k.Unchanged, k.Skipped, k.Invalid, k.Failed, caught, r.Duration.Round(time.Millisecond), rate)
}

// ---- plan

type planCmd struct {
	selection
	Full    bool `help:"Plan a full read, ignoring the bookmark."`
	Samples int  `help:"Example records to show per decision (default: ${default})." default:"3" placeholder:"N"`
	Lookups bool `help:"Let transforms and pending inserts look records up in the targets (read-only calls)."`
}

func (planCmd) Help() string {
	return `Nothing is written and, unless --lookups is given, no target is called. A child whose parent the same plan syncs first waits for it. Inserts show their payload; updates show the fields they change.

Examples:

    ferry plan
    ferry plan contacts --samples 10
    ferry plan --group crm_to_erp --full`
}

func (pc *planCmd) Run(ctx context.Context, c *cli) error {
	ss, err := c.start(ctx)
	if err != nil {
		return err
	}
	defer ss.close()
	if err := pc.check(ss.project); err != nil {
		return err
	}
	results, err := ss.eng.Plan(ctx, pc.engine(), engine.PlanOptions{Full: pc.Full, Samples: pc.Samples, Lookups: pc.Lookups})
	fmt.Fprintln(c.stdout, "Plan (dry run: nothing is written).")
	for _, r := range results {
		printPlan(c.stdout, r)
	}
	return err
}

func printPlan(w io.Writer, r *engine.RunResult) {
	k := r.Counts
	fmt.Fprintf(w, "\n%s: would insert %d, update %d; %d unchanged, %d skipped, %d invalid, %d would fail, %d waiting for a parent, %d need a lookup (of %d read)\n",
		r.Sync, k.Inserted, k.Updated, k.Unchanged, k.Skipped, k.Invalid, k.Failed, k.Waiting, k.Unknown, k.Read)
	if k.Deleted > 0 {
		fmt.Fprintf(w, "  and delete %d target records whose source records left the scope (delete:)\n", k.Deleted)
	}
	if r.Status == engine.RunStopped && r.Error != "" {
		fmt.Fprintf(w, "  %s\n", r.Error)
	}
	for _, rec := range r.Records {
		switch rec.Decision {
		case engine.DecideInsert:
			fmt.Fprintf(w, "  %-6s source id %s: %s\n", rec.Decision, rec.SourceID, compactJSON(rec.Payload))
		case engine.DecideUpdate:
			what := changesText(rec.Changes)
			if what == "" {
				what = compactJSON(rec.Payload)
			}
			target := ""
			if rec.TargetID != "" {
				target = " (target id " + rec.TargetID + ")"
			}
			fmt.Fprintf(w, "  %-6s source id %s%s: %s\n", rec.Decision, rec.SourceID, target, what)
		case engine.DecideFail, engine.DecideInvalid, engine.DecideSkip, engine.DecideWait, engine.DecideUnknown:
			fmt.Fprintf(w, "  %-6s source id %s: %s\n", rec.Decision, rec.SourceID, rec.Reason)
		}
	}
	if k.Unknown > 0 {
		fmt.Fprintf(w, "  (%d records need a lookup in the target to decide: add --lookups)\n", k.Unknown)
	}
}

// changesText says what an update changes: `name: "Acme" → "Acme Corp", city: …`.
func changesText(changes []engine.FieldChange) string {
	parts := make([]string, 0, len(changes))
	for _, ch := range changes {
		parts = append(parts, fmt.Sprintf("%s: %s → %s", ch.Field, compactJSON(ch.Old), compactJSON(ch.New)))
	}
	return strings.Join(parts, ", ")
}

// ---- test

type testCmd struct {
	Sync  string   `arg:"" help:"The sync."`
	ID    []string `name:"id" required:"" sep:"none" help:"Source id of the record (repeat for more)." placeholder:"ID"`
	Write bool     `help:"Really write the record to the target and record it in the link table."`
}

func (testCmd) Help() string {
	return `Shows the source row, the mapped record, the payload, what the transform printed, the link row's status and the decision (for an update, the fields it changes). Nothing is written unless --write is given.

Examples:

    ferry test contacts --id 42
    ferry test contacts --id 42 --id 43
    ferry test --write contacts --id 42`
}

func (tc *testCmd) Run(ctx context.Context, c *cli) error {
	ss, err := c.start(ctx)
	if err != nil {
		return err
	}
	defer ss.close()
	code := exitOK
	for _, id := range tc.ID {
		res, err := ss.eng.TestRecord(ctx, tc.Sync, id, tc.Write)
		if err != nil {
			return err
		}
		if len(res.Records) == 0 {
			fmt.Fprintf(c.stdout, "source id %s: not in the scope of %s (check the scope query's WHERE clause)\n", id, tc.Sync)
		}
		for _, rec := range res.Records {
			c.printTest(rec, tc.Write)
		}
		if res.Counts.Failed > 0 || res.Counts.Invalid > 0 {
			code = exitRecords
		}
	}
	if code != exitOK {
		return exitCode(code)
	}
	return nil
}

func (c *cli) printTest(rec engine.RecordReport, write bool) {
	w := c.stdout
	fmt.Fprintf(w, "source id %s\n", rec.SourceID)
	fmt.Fprintf(w, "  source record:  %s\n", compactJSON(rec.Source))
	fmt.Fprintf(w, "  mapped record:  %s\n", compactJSON(rec.Mapped))
	if rec.Payload != nil {
		fmt.Fprintf(w, "  payload:        %s\n", compactJSON(rec.Payload))
	}
	for _, line := range rec.Printed {
		fmt.Fprintf(w, "  script printed: %s\n", line)
	}
	status := string(rec.LinkState)
	if status == "" {
		status = "(no link row)"
	}
	fmt.Fprintf(w, "  link status:    %s\n", status)
	decision := string(rec.Decision)
	if rec.TargetID != "" {
		decision += " target id " + rec.TargetID
	}
	if rec.Reason != "" {
		decision += ": " + rec.Reason
	}
	fmt.Fprintf(w, "  decision:       %s\n", decision)
	for _, ch := range rec.Changes {
		fmt.Fprintf(w, "  changes:        %s: %s → %s\n", ch.Field, compactJSON(ch.Old), compactJSON(ch.New))
	}
	if !write && (rec.Decision == engine.DecideInsert || rec.Decision == engine.DecideUpdate) {
		fmt.Fprintln(w, "  (nothing written: add --write to send it)")
	}
}

// ---- status

type statusCmd struct {
	Syncs  []string `arg:"" optional:"" name:"sync" help:"Syncs to report on; every sync when none is named."`
	Errors int      `help:"How many of the latest errors and runs to list (default: ${default})." default:"10" placeholder:"N"`
}

func (statusCmd) Help() string {
	return `Examples:

    ferry status
    ferry status contacts --errors 50`
}

func (sc *statusCmd) Run(ctx context.Context, c *cli) error {
	ss, err := c.start(ctx)
	if err != nil {
		return err
	}
	defer ss.close()
	statuses, err := ss.eng.Status(ctx, sc.Syncs, sc.Errors)
	if err != nil {
		return err
	}
	for _, st := range statuses {
		printStatus(c.stdout, st)
	}
	return nil
}

func printStatus(w io.Writer, st engine.SyncStatus) {
	fmt.Fprintf(w, "%s (link_tables.%s)\n", st.Sync, st.Sync)
	if len(st.Links) == 0 {
		fmt.Fprintln(w, "  no link rows yet: the sync has not run")
	}
	for _, s := range engine.LinkStatuses() {
		if st.Links[s] > 0 {
			fmt.Fprintf(w, "  %-8s %d\n", s, st.Links[s])
		}
	}
	for _, r := range st.Failing {
		msg := ""
		if r.Error != nil {
			msg = *r.Error
		}
		fmt.Fprintf(w, "  %s source id %s (attempts %d): %s\n", r.Status, r.SourceID, r.Attempts, msg)
	}
	if st.Schedule != "" {
		fmt.Fprintf(w, "  schedule %s", st.Schedule)
		if st.NextRun != nil {
			fmt.Fprintf(w, "; next run %s (when ferry serve runs)", st.NextRun.Local().Format("2006-01-02 15:04:05"))
		}
		fmt.Fprintln(w)
	}
	if st.Bookmark != "" {
		fmt.Fprintf(w, "  bookmark %s", st.Bookmark)
		if st.NextReconcile != nil {
			fmt.Fprintf(w, "; next reconciling run after %s", st.NextReconcile.Local().Format("2006-01-02 15:04"))
		}
		fmt.Fprintln(w)
	}
	if len(st.Runs) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  run\tstarted\tby\tstatus\tread\tins\tupd\tunch\tfailed\tbookmark")
		for _, r := range st.Runs {
			bm := ""
			if r.BookmarkAfter != nil {
				bm = *r.BookmarkAfter
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", r.ID, r.StartedAt.Local().Format("2006-01-02 15:04:05"), r.TriggeredBy, r.Status, r.Read, r.Inserted, r.Updated, r.Unchanged, r.Failed, bm)
		}
		tw.Flush()
	}
}

// ---- explain

type explainCmd struct {
	Sync string `arg:"" help:"The sync."`
	ID   string `arg:"" name:"id" help:"The record's source id."`
}

func (explainCmd) Help() string {
	return `Is the record in the scope? Behind the bookmark? What does its link row say, and what would a run do with it now? Nothing is written.

Example:

    ferry explain contacts 42`
}

func (ec *explainCmd) Run(ctx context.Context, c *cli) error {
	ss, err := c.start(ctx)
	if err != nil {
		return err
	}
	defer ss.close()
	ex, err := ss.eng.Explain(ctx, ec.Sync, ec.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s, source id %s\n", ex.Sync, ex.SourceID)
	for _, f := range ex.Findings {
		fmt.Fprintf(c.stdout, "  - %s\n", f)
	}
	if ex.Next != nil {
		if ex.Next.Decision == engine.DecideUpdate && len(ex.Next.Changes) > 0 {
			fmt.Fprintf(c.stdout, "  an update would change: %s\n", changesText(ex.Next.Changes))
		}
		if ex.Next.Payload != nil {
			fmt.Fprintf(c.stdout, "  payload it would send: %s\n", compactJSON(ex.Next.Payload))
		}
	}
	return nil
}

// ---- check

type checkCmd struct {
	Syncs []string `arg:"" optional:"" name:"sync" help:"Syncs to check; every sync when none is named."`
}

func (checkCmd) Help() string {
	return `Against the warehouse: each scope query parses and reads, and has the id, bookmark, mapped and relation columns. Against each target: the connection opens (its secrets are set), answers, and has the objects and fields the syncs write, where its kind can tell. Every problem is reported at once.

Examples:

    ferry check
    ferry check contacts`
}

func (cc *checkCmd) Run(ctx context.Context, c *cli) error {
	ss, err := c.start(ctx)
	if err != nil {
		return err
	}
	defer ss.close()
	warnings, err := ss.eng.Check(ctx, cc.Syncs...)
	for _, w := range warnings {
		fmt.Fprintf(c.stderr, "ferry: WARNING: %s\n", w)
	}
	if err != nil {
		return err
	}
	n := len(cc.Syncs)
	if n == 0 {
		n = len(ss.project.Syncs)
	}
	fmt.Fprintf(c.stdout, "%d syncs checked: scope queries, columns, relations and targets are fine\n", n)
	return nil
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
