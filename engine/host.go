package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/internal/lease"
	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/engine/internal/scope"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
	"github.com/ferry-sync/ferry/scripting"
)

// noLookups is what a lookup answers in a plan that may not call targets;
// the decider recognises it in a script's error (the error may have
// crossed from a worker process as text).
const noLookups = "this plan makes no calls to the target: run ferry plan --lookups to let the transform look records up"

// queryTimeout bounds one pq warehouse query.
const queryTimeout = 30 * time.Second

// host is the engine's side of a script's pq helper: warehouse queries,
// lookups and writes through the project's connections, other syncs' link
// tables, and (for standalone scripts) state kept between runs.
type host struct {
	e      *Engine
	p      *project.Project
	r      *runner      // the sync run, nil for a standalone script
	script string       // the standalone script's name, "" in a sync
	lease  *lease.Lease // the standalone script's claim; a sync's is its runner's

	mu      sync.Mutex
	targets map[string]connector.Target // opened by this host, closed with it
	links   map[string]*linktable.Table // link tables by name (scripts' own, other syncs'), looked up once
}

var _ scripting.Host = (*host)(nil)

func newHost(e *Engine, p *project.Project, r *runner, script string) *host {
	return &host{e: e, p: p, r: r, script: script, targets: map[string]connector.Target{}, links: map[string]*linktable.Table{}}
}

func (h *host) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, t := range h.targets {
		if err := t.Close(); err != nil {
			h.e.log.Warn("closing a script's connection", "connection", name, "err", err)
		}
	}
	h.targets = map[string]connector.Target{}
}

// target returns the target of a connection: the sync's own for "".
func (h *host) target(ctx context.Context, connection string) (connector.Target, string, error) {
	if h.r != nil && (connection == "" || connection == h.r.s.Target.Connection) {
		return h.r.target, h.r.s.Target.Connection, nil
	}
	if connection == "" {
		return nil, "", errors.New("a standalone script must name its connection: pq.connect(\"name\")")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if t, ok := h.targets[connection]; ok {
		return t, connection, nil
	}
	t, err := h.e.openTarget(ctx, h.p, connection)
	if err != nil {
		return nil, "", err
	}
	h.targets[connection] = t
	return t, connection, nil
}

func (h *host) object(object string) string {
	if object == "" && h.r != nil {
		return h.r.s.Target.Object
	}
	return object
}

// Query runs a read-only query on the warehouse.
func (h *host) Query(ctx context.Context, sql string, args []any) ([]map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	tx, err := scope.BeginRead(ctx, h.e.db, h.p.Warehouse.ScopeRole, queryTimeout)
	if err != nil {
		return nil, fmt.Errorf("pq query: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	m := tx.Conn().TypeMap()
	rows, err := tx.Query(ctx, sql, append([]any{scope.ValueFormats(m)}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("pq query: %w", err)
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	dec := scope.NewRowDecoder(m, fields)
	var out []map[string]any
	for rows.Next() {
		raw := rows.RawValues()
		row := make(map[string]any, len(fields))
		for i, f := range fields {
			v, err := dec.Value(i, raw[i])
			if err != nil {
				return nil, fmt.Errorf("pq query: column %s: %w", f.Name, err)
			}
			row[f.Name] = v
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pq query: %w", err)
	}
	return out, nil
}

// Find looks records up in a target.
func (h *host) Find(ctx context.Context, connection, object string, match map[string]any) ([]map[string]any, error) {
	if h.r != nil && !h.r.mayCallTarget() {
		return nil, errors.New(noLookups)
	}
	t, name, err := h.target(ctx, connection)
	if err != nil {
		return nil, err
	}
	finder, ok := t.(connector.Finder)
	if !ok {
		return nil, fmt.Errorf("connection %s cannot look records up (configure a lookup for %s)", name, h.object(object))
	}
	found, err := finder.Find(ctx, h.object(object), match)
	if err != nil {
		return nil, err
	}
	return connector.Matching(h.object(object), found, match)
}

// Write adds, updates or deletes one record. A write keyed by a source id is
// recorded in the script's link table, so a rerun updates instead of adding
// again.
func (h *host) Write(ctx context.Context, w scripting.Write) (string, error) {
	t, conn, err := h.target(ctx, w.Connection)
	if err != nil {
		return "", err
	}
	object := h.object(w.Object)
	var lt *linktable.Table
	if w.SourceID != "" {
		if lt, err = h.scriptLinks(ctx, t, conn, object); err != nil {
			return "", err
		}
		linked, err := lt.TargetIDs(ctx, h.e.db, []string{w.SourceID})
		if err != nil {
			return "", err
		}
		if id, ok := linked[w.SourceID]; ok && w.Op == scripting.OpAdd {
			w.Op, w.ID = scripting.OpUpdate, id
		}
	}
	var change connector.Change
	switch w.Op {
	case scripting.OpAdd:
		change = connector.Change{Op: connector.OpInsert, SourceID: w.SourceID, Payload: w.Record}
	case scripting.OpUpdate:
		change = connector.Change{Op: connector.OpUpdate, SourceID: w.SourceID, TargetID: w.ID, Payload: w.Record}
	default:
		return "", fmt.Errorf("connection %s: %s is not supported by this connector yet", conn, w.Op)
	}
	scope := h.script
	if scope == "" && h.r != nil {
		scope = h.r.s.Name
	}
	results, callErr := t.Write(connector.WithIdempotencyScope(ctx, "script:"+scope), object, []connector.Change{change})
	var res connector.Result
	if len(results) > 0 {
		res = results[0]
	}
	if callErr == nil && res.Err != nil {
		callErr = res.Err
	}
	if lt != nil && res.Done {
		lw := linktable.Write{SourceID: w.SourceID, Status: linktable.StatusSuccess, Synced: true}
		if callErr != nil {
			msg, class := h.e.redact.Redact(callErr.Error()), string(connector.ClassOf(callErr))
			lw = linktable.Write{SourceID: w.SourceID, Status: linktable.StatusError, Error: &msg, ErrorClass: &class, FailedOnce: true}
			if connector.ClassOf(callErr) == connector.Ambiguous && change.Op == connector.OpInsert {
				lw.Status = linktable.StatusPending
			}
		} else {
			id := res.TargetID
			lw.TargetID = &id
			lw.Payload = w.Record
		}
		if err := h.record(ctx, lt, lw); err != nil {
			return "", err
		}
	}
	if callErr != nil {
		return "", fmt.Errorf("%s %s on connection %s: %w", change.Op, object, conn, callErr)
	}
	return res.TargetID, nil
}

// record writes a script's link row, in a transaction fenced by the
// claim of the run or script it belongs to.
func (h *host) record(ctx context.Context, lt *linktable.Table, lw linktable.Write) error {
	l := h.lease
	if h.r != nil {
		l = h.r.lease
	}
	if l == nil {
		return lt.Upsert(ctx, h.e.db, []linktable.Write{lw})
	}
	tx, err := h.e.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("recording a script write: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // a no-op after Commit
	if err := l.Fence(ctx, tx); err != nil {
		return err
	}
	if err := lt.Upsert(ctx, tx, []linktable.Write{lw}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// scriptLinks returns the link table of a standalone script's writes to one
// object: link_tables.script_<script>_<object>.
func (h *host) scriptLinks(ctx context.Context, t connector.Target, conn, object string) (*linktable.Table, error) {
	owner := h.script
	if h.r != nil {
		owner = h.r.s.Name
	}
	name := unsafeName.ReplaceAllString(strings.ToLower("script_"+owner+"_"+object), "_")
	if len(name) > 63 {
		name = name[:63]
	}
	h.mu.Lock()
	lt, ok := h.links[name]
	h.mu.Unlock()
	if ok {
		return lt, nil
	}
	targetType := "text"
	if typer, ok := t.(connector.IDTyper); ok {
		if tt, err := typer.IDType(ctx, object); err == nil {
			targetType = tt
		}
	}
	lt, err := linktable.Ensure(ctx, h.e.db, name, "text", targetType)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.links[name] = lt
	h.mu.Unlock()
	return lt, nil
}

// Link returns the target id another sync's link table holds for sourceID.
func (h *host) Link(ctx context.Context, sync, sourceID string) (string, bool, error) {
	if _, ok := h.p.Sync(sync); !ok {
		return "", false, fmt.Errorf("pq.link: unknown sync %q", sync)
	}
	h.mu.Lock()
	lt, ok := h.links[sync]
	h.mu.Unlock()
	if !ok {
		var err error
		if lt, err = linktable.Open(ctx, h.e.db, sync); err != nil || lt == nil {
			return "", false, err // a sync that has not run yet: look again next time
		}
		h.mu.Lock()
		h.links[sync] = lt
		h.mu.Unlock()
	}
	ids, err := lt.TargetIDs(ctx, h.e.db, []string{sourceID})
	if err != nil {
		return "", false, err
	}
	id, ok := ids[sourceID]
	return id, ok, nil
}

// GetState returns what a standalone script stored on its last run.
func (h *host) GetState(ctx context.Context) (any, error) {
	if h.script == "" {
		return nil, errors.New("pq.get_state is for standalone scripts; a transform keeps no state between records")
	}
	raw, err := h.e.q.ScriptStateGet(ctx, h.script)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the state of script %s: %w", h.script, err)
	}
	return scope.DecodeJSON(raw)
}

// SetState stores a standalone script's state for its next run.
func (h *host) SetState(ctx context.Context, value any) error {
	if h.script == "" {
		return errors.New("pq.set_state is for standalone scripts; a transform keeps no state between records")
	}
	raw, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("pq.set_state: the value cannot be stored as JSON: %w", err)
	}
	if err := h.e.q.ScriptStateSet(ctx, queries.ScriptStateSetParams{Script: h.script, State: raw}); err != nil {
		return fmt.Errorf("storing the state of script %s: %w", h.script, err)
	}
	return nil
}

// Log receives what the script prints, as it prints it: debug output
// (ferry -v streams it). ferry test shows a transform's lines per record,
// and ferry script run prints a script's lines when it ends.
func (h *host) Log(msg string) {
	if h.r != nil {
		h.e.log.Debug(msg, "sync", h.r.s.Name, "script", h.r.s.Transform)
		return
	}
	h.e.log.Debug(msg, "script", h.script)
}

// RunScript runs a standalone data-sync script (def main(pq)) and returns
// what it printed. name keys its state and link tables; file names it in
// error messages. One run at a time per script, across processes; the run
// is recorded in ferry.runs as sync "script:<name>", with what it printed
// as its log.
func (e *Engine) RunScript(ctx context.Context, name, file string, src []byte, loadDir string, origin Origin) ([]string, error) {
	runCtx, sr, err := e.beginScript(ctx, name, origin)
	if err != nil {
		return nil, err
	}
	return sr.run(runCtx, file, src, loadDir)
}

// StartScript is RunScript in the background, like Start.
func (e *Engine) StartScript(ctx context.Context, name, file string, src []byte, loadDir string, origin Origin) (*Started, error) {
	runCtx, sr, err := e.beginScript(ctx, name, origin)
	if err != nil {
		return nil, err
	}
	st := &Started{RunID: sr.runID, done: make(chan struct{})}
	go func() {
		defer close(st.done)
		printed, err := sr.run(runCtx, file, src, loadDir)
		st.res = &RunResult{RunID: sr.runID, Sync: "script:" + name, Status: RunSucceeded, Err: err}
		if err != nil {
			st.res.Status, st.res.Error = RunFailed, err.Error()
		}
		st.res.Counts.Read = int64(len(printed))
		st.err = err
	}()
	return st, nil
}

// scriptRun is one run of a standalone script.
type scriptRun struct {
	e     *Engine
	name  string
	lease *lease.Lease
	runID int64
}

// beginScript claims a script and records its run.
func (e *Engine) beginScript(ctx context.Context, name string, origin Origin) (context.Context, *scriptRun, error) {
	what := "script " + name
	var runID int64
	ctx, l, err := e.claim(ctx, what, "script:"+name, func(ctx context.Context, tx pgx.Tx) (int64, error) {
		row, err := e.q.WithTx(tx).RunStart(ctx, origin.params("script:"+name))
		if err != nil {
			return 0, fmt.Errorf("%s: recording the run: %w", what, err)
		}
		runID = row.ID
		return row.ID, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return ctx, &scriptRun{e: e, name: name, lease: l, runID: runID}, nil
}

func (sr *scriptRun) run(ctx context.Context, file string, src []byte, loadDir string) (printed []string, err error) {
	e, name, what := sr.e, sr.name, "script "+sr.name
	defer sr.lease.Release(ctx)
	defer func() {
		status, msg := RunSucceeded, (*string)(nil)
		if err != nil {
			text := e.redact.Redact(err.Error())
			status, msg = RunFailed, &text
		}
		fin := context.WithoutCancel(ctx)
		for i, line := range printed {
			if i == maxRunErrors {
				break
			}
			_ = e.q.RunErrorAdd(fin, queries.RunErrorAddParams{RunID: sr.runID, Class: "print", Message: e.redact.Redact(line)})
		}
		if ferr := e.q.RunFinishScript(fin, queries.RunFinishScriptParams{ID: sr.runID, Status: string(status), Error: msg}); ferr != nil {
			e.log.Error("recording the end of a script run", "script", name, "err", ferr)
		}
	}()
	script, err := scripting.Compile(ctx, file, src, scripting.Options{Entry: "main", LoadDir: loadDir, Isolation: e.isolation, Pool: e.pool})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer script.Close()
	p, err := e.Project(ctx)
	if err != nil {
		return nil, err
	}
	h := newHost(e, p, nil, name)
	h.lease = sr.lease
	defer h.close()
	printed, err = script.RunMain(ctx, h)
	if err != nil {
		return printed, lostClaim(ctx, what, fmt.Errorf("%s: %w", what, err))
	}
	return printed, nil
}
