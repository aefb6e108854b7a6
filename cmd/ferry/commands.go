package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
	"github.com/ferry-sync/ferry/scripting"
)

func cmdMigrate(ctx context.Context, c *cli, args []string) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	urlEnv := fs.String("url-env", defaultURLEnv, "environment variable holding the warehouse URL")
	if fs.Parse(args) != nil {
		return exitUsage
	}
	if p, err := project.Load(c.projectDir, connectors()); err == nil && p.Warehouse.URLEnv != "" {
		*urlEnv = p.Warehouse.URLEnv
	}
	pool, err := c.connectNoMigrate(ctx, *urlEnv)
	if err != nil {
		return c.fail(err)
	}
	defer pool.Close()
	n, err := queries.Migrate(ctx, pool)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, "migrations applied: %d\n", n)
	return exitOK
}

// runFlags are shared by run and plan.
type runFlags struct {
	group string
	full  bool
}

func (c *cli) syncsToRun(p *project.Project, f runFlags, names []string) ([]*project.Sync, error) {
	if f.group != "" {
		if len(names) > 0 {
			return nil, usageError{"name syncs or a --group, not both"}
		}
		return p.GroupOrder(f.group)
	}
	syncs, err := p.Order(names)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return syncs, nil
}

func cmdRun(ctx context.Context, c *cli, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	var f runFlags
	fs.StringVar(&f.group, "group", "", "run the syncs of this group (from ferry.yaml), parents first")
	fs.BoolVar(&f.full, "full", false, "read the whole scope, ignoring the bookmark (unchanged records are still skipped by hash)")
	if fs.Parse(args) != nil {
		return exitUsage
	}
	ss, err := c.start(ctx)
	if err != nil {
		return c.fail(err)
	}
	defer ss.close()
	p, eng := ss.project, ss.eng
	syncs, err := c.syncsToRun(p, f, fs.Args())
	if err != nil {
		return c.fail(err)
	}
	return c.runSyncs(ctx, eng, syncs, engine.RunOptions{Full: f.full})
}

// runSyncs runs syncs in order and prints one line each. A sync that fails
// as a whole stops the ones after it, since children depend on parents.
func (c *cli) runSyncs(ctx context.Context, eng *engine.Engine, syncs []*project.Sync, opts engine.RunOptions) int {
	code := exitOK
	for _, s := range syncs {
		prog := newProgress(c.stderr, s.Name)
		opts.Progress = prog.update
		res, err := eng.Run(ctx, s.Name, opts)
		prog.done()
		if res != nil {
			c.printRun(res)
		}
		if err != nil {
			return c.fail(err)
		}
		if res.Status == engine.RunStopped {
			fmt.Fprintf(c.stderr, "ferry: %s\n", res.Error)
			return exitFailed
		}
		if res.Counts.Failed > 0 || res.Counts.Invalid > 0 {
			code = exitRecords
		}
	}
	if code == exitRecords {
		fmt.Fprintln(c.stderr, "ferry: some records failed; `ferry status <sync>` lists them with their errors")
	}
	return code
}

func (c *cli) printRun(r *engine.RunResult) {
	k := r.Counts
	rate := ""
	if secs := r.Duration.Seconds(); secs > 0 && k.Read > 0 {
		rate = fmt.Sprintf(", %.0f records/s", float64(k.Read)/secs)
	}
	fmt.Fprintf(c.stdout, "%-12s %-9s read %d  inserted %d  updated %d  unchanged %d  skipped %d  invalid %d  failed %d  (%s%s)\n",
		r.Sync, r.Status, k.Read, k.Inserted, k.Updated, k.Unchanged, k.Skipped, k.Invalid, k.Failed, r.Duration.Round(time.Millisecond), rate)
}

func cmdPlan(ctx context.Context, c *cli, args []string) int {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	var f runFlags
	fs.StringVar(&f.group, "group", "", "plan the syncs of this group")
	fs.BoolVar(&f.full, "full", false, "plan a full read, ignoring the bookmark")
	samples := fs.Int("samples", 3, "example payloads to show per decision")
	if fs.Parse(args) != nil {
		return exitUsage
	}
	ss, err := c.start(ctx)
	if err != nil {
		return c.fail(err)
	}
	defer ss.close()
	p, eng := ss.project, ss.eng
	syncs, err := c.syncsToRun(p, f, fs.Args())
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintln(c.stdout, "Plan (dry run: nothing is written). A child's parent ids resolve only once the parent has synced.")
	for _, s := range syncs {
		res, err := eng.Run(ctx, s.Name, engine.RunOptions{DryRun: true, Full: f.full, Samples: *samples})
		if err != nil {
			return c.fail(err)
		}
		k := res.Counts
		fmt.Fprintf(c.stdout, "\n%s: would insert %d, update %d; %d unchanged, %d skipped, %d invalid, %d would fail (of %d read)\n",
			s.Name, k.Inserted, k.Updated, k.Unchanged, k.Skipped, k.Invalid, k.Failed, k.Read)
		for _, rec := range res.Records {
			switch rec.Decision {
			case engine.DecideInsert, engine.DecideUpdate:
				fmt.Fprintf(c.stdout, "  %-6s source id %s: %s\n", rec.Decision, rec.SourceID, compactJSON(rec.Payload))
			case engine.DecideFail, engine.DecideInvalid, engine.DecideSkip:
				fmt.Fprintf(c.stdout, "  %-6s source id %s: %s\n", rec.Decision, rec.SourceID, rec.Reason)
			}
		}
	}
	return exitOK
}

func cmdTest(ctx context.Context, c *cli, args []string) int {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	var ids multiFlag
	fs.Var(&ids, "id", "source id to test (repeatable)")
	write := fs.Bool("write", false, "really write the record to the target and record it in the link table")
	// Go's flag package stops at the first positional argument; accept the
	// sync name before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if fs.Parse(args) != nil {
		return exitUsage
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	if name == "" || len(ids) == 0 {
		return c.fail(usageError{"usage: ferry test <sync> --id <source id> [--id …] [--write]"})
	}
	ss, err := c.start(ctx)
	if err != nil {
		return c.fail(err)
	}
	defer ss.close()
	eng := ss.eng
	res, err := eng.Run(ctx, name, engine.RunOptions{IDs: ids, DryRun: !*write, Samples: len(ids)})
	if err != nil {
		return c.fail(err)
	}
	found := map[string]bool{}
	for _, rec := range res.Records {
		found[rec.SourceID] = true
		fmt.Fprintf(c.stdout, "source id %s\n", rec.SourceID)
		fmt.Fprintf(c.stdout, "  source record:  %s\n", compactJSON(rec.Source))
		fmt.Fprintf(c.stdout, "  mapped record:  %s\n", compactJSON(rec.Mapped))
		if rec.Payload != nil {
			fmt.Fprintf(c.stdout, "  payload:        %s\n", compactJSON(rec.Payload))
		}
		for _, line := range rec.Printed {
			fmt.Fprintf(c.stdout, "  script printed: %s\n", line)
		}
		status := rec.LinkState
		if status == "" {
			status = "(no link row)"
		}
		fmt.Fprintf(c.stdout, "  link status:    %s\n", status)
		decision := string(rec.Decision)
		if rec.TargetID != "" {
			decision += " target id " + rec.TargetID
		}
		if rec.Reason != "" {
			decision += ": " + rec.Reason
		}
		fmt.Fprintf(c.stdout, "  decision:       %s\n", decision)
		if !*write && (rec.Decision == engine.DecideInsert || rec.Decision == engine.DecideUpdate) {
			fmt.Fprintln(c.stdout, "  (nothing written: add --write to send it)")
		}
	}
	for _, id := range ids {
		if !found[id] {
			fmt.Fprintf(c.stdout, "source id %s: not in the scope of %s (check the scope query's WHERE clause)\n", id, name)
		}
	}
	if res.Counts.Failed > 0 || res.Counts.Invalid > 0 {
		return exitRecords
	}
	return exitOK
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func cmdStatus(ctx context.Context, c *cli, args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	limit := fs.Int("errors", 10, "how many of the latest errors and runs to list")
	if fs.Parse(args) != nil {
		return exitUsage
	}
	ss, err := c.start(ctx)
	if err != nil {
		return c.fail(err)
	}
	defer ss.close()
	statuses, err := ss.eng.Status(ctx, fs.Args(), *limit)
	if err != nil {
		return c.fail(err)
	}
	for _, st := range statuses {
		printStatus(c.stdout, st)
	}
	return exitOK
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
	if st.Bookmark != "" {
		fmt.Fprintf(w, "  bookmark %s", st.Bookmark)
		if st.NextReconcile != nil {
			fmt.Fprintf(w, "; next reconciling run after %s", st.NextReconcile.Local().Format("2006-01-02 15:04"))
		}
		fmt.Fprintln(w)
	}
	if len(st.Runs) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  run\tstarted\tstatus\tread\tins\tupd\tunch\tfailed\tbookmark")
		for _, r := range st.Runs {
			bm := ""
			if r.BookmarkAfter != nil {
				bm = *r.BookmarkAfter
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", r.ID, r.StartedAt.Local().Format("2006-01-02 15:04:05"), r.Status, r.Read, r.Inserted, r.Updated, r.Unchanged, r.Failed, bm)
		}
		tw.Flush()
	}
}

func cmdCheck(ctx context.Context, c *cli, args []string) int {
	ss, err := c.start(ctx)
	if err != nil {
		return c.fail(err)
	}
	defer ss.close()
	p, eng := ss.project, ss.eng
	warnings, err := eng.Check(ctx)
	for _, w := range warnings {
		fmt.Fprintf(c.stderr, "ferry: WARNING: %s\n", w)
	}
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, "%d syncs checked: scope queries, columns, relations and connections are fine\n", len(p.Syncs))
	return exitOK
}

// session is what a command that runs syncs holds open: the project, the
// warehouse, the engine and its script workers.
type session struct {
	project *project.Project
	pool    *pgxpool.Pool
	eng     *engine.Engine
	scripts *scripting.Pool
}

// start loads the project, connects to the warehouse (migrating it) and
// starts an engine.
func (c *cli) start(ctx context.Context) (*session, error) {
	p, pool, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	return c.startWith(p, pool)
}

// startWith starts an engine on a project and warehouse already open.
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
	eng := engine.New(pool, engine.StaticProject(p), engine.Options{Connectors: connectors(), Logger: c.log, ScriptPool: scripts, LeaseTTL: ttl})
	return &session{project: p, pool: pool, eng: eng, scripts: scripts}, nil
}

func (ss *session) close() {
	if ss.scripts != nil {
		ss.scripts.Close()
	}
	ss.pool.Close()
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// cmdExplain answers "my record was not synced (or not updated): why?".
func cmdExplain(ctx context.Context, c *cli, args []string) int {
	if len(args) != 2 {
		return c.fail(usageError{"usage: ferry explain <sync> <source id>"})
	}
	ss, err := c.start(ctx)
	if err != nil {
		return c.fail(err)
	}
	defer ss.close()
	ex, err := ss.eng.Explain(ctx, args[0], args[1])
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, "%s, source id %s\n", ex.Sync, ex.SourceID)
	for _, f := range ex.Findings {
		fmt.Fprintf(c.stdout, "  - %s\n", f)
	}
	if ex.Next != nil && ex.Next.Payload != nil {
		fmt.Fprintf(c.stdout, "  payload it would send: %s\n", compactJSON(ex.Next.Payload))
	}
	return exitOK
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

func cmdSetup(ctx context.Context, c *cli, args []string) int {
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	role := fs.String("scope-role", "ferry_scope", "the role to create: it may only read the schemas named")
	schemas := fs.String("schemas", "", "comma-separated schemas scope queries may read, e.g. crm,hubspot")
	if fs.Parse(args) != nil {
		return exitUsage
	}
	urlEnv := defaultURLEnv
	if p, err := project.Load(c.projectDir, connectors()); err == nil && p.Warehouse.URLEnv != "" {
		urlEnv = p.Warehouse.URLEnv
	}
	pool, err := c.connectNoMigrate(ctx, urlEnv)
	if err != nil {
		return c.fail(err)
	}
	defer pool.Close()
	var names []string
	for _, n := range strings.Split(*schemas, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if err := engine.SetupScopeRole(ctx, pool, *role, names); err != nil {
		return c.fail(usageError{err.Error()})
	}
	fmt.Fprintf(c.stdout, "role %s can read %s (and link_tables); scope queries run as it once %s says:\n\nwarehouse:\n  scope_role: %s\n",
		*role, strings.Join(names, ", "), project.ProjectFile, *role)
	return exitOK
}
