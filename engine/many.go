package engine

import (
	"context"
	"fmt"

	"github.com/ferry-sync/ferry/engine/project"
)

// Selection names the syncs a call works on: Names (run parents first), or
// a Group of ferry.yaml; every sync when both are empty.
type Selection struct {
	Names []string `json:"syncs,omitempty"`
	Group string   `json:"group,omitempty"`
}

// order returns the selected syncs in the order they run.
func (sel Selection) order(p *project.Project) ([]*project.Sync, error) {
	if sel.Group != "" {
		if len(sel.Names) > 0 {
			return nil, fmt.Errorf("name syncs or a group, not both")
		}
		return p.GroupOrder(sel.Group)
	}
	return p.Order(sel.Names)
}

// RunMany runs the selected syncs one after another, parents first. A sync
// whose parent in the selection failed or stopped is not started (its
// result says so, with status not_started): its records would only fail.
// Other syncs go on. It returns one result per sync, in order; the error
// is about the selection (an unknown sync or group).
//
// A group's hooks run once around it: its before hooks before the first
// sync (one that fails starts none, and every result says why), its after
// hooks inside the last sync's run, after that sync's own, when every sync
// synced (see runner.afterHooks for what a failing one does).
func (e *Engine) RunMany(ctx context.Context, sel Selection, opts RunOptions) ([]*RunResult, error) {
	p, err := e.Project(ctx)
	if err != nil {
		return nil, err
	}
	syncs, err := sel.order(p)
	if err != nil {
		return nil, err
	}
	group := groupHooksOf(p, sel, opts)
	if group != nil && len(group.hooks.Before) > 0 {
		if err := e.runHooks(ctx, "before", group.hooks.Before, project.ProjectFile, "groups."+group.name+".hooks"); err != nil {
			// What the group's syncs read was not refreshed: none starts.
			msg := fmt.Sprintf("not started: group %s: %v", group.name, err)
			e.log.Error("a group's before hook failed; none of its syncs started", "group", group.name, "err", err)
			out := make([]*RunResult, 0, len(syncs))
			for _, s := range syncs {
				out = append(out, &RunResult{Sync: s.Name, Status: RunNotStarted, Error: msg})
			}
			return out, nil
		}
	}
	failed := map[string]string{}
	var out []*RunResult
	for i, s := range syncs {
		if parent := failedParent(s, failed); parent != "" {
			msg := fmt.Sprintf("not started: its parent %s %s", parent, failed[parent])
			out = append(out, &RunResult{Sync: s.Name, Status: RunNotStarted, Error: msg})
			failed[s.Name] = "was not started"
			continue
		}
		runOpts := opts
		if group != nil && len(group.hooks.After) > 0 && i == len(syncs)-1 && allSynced(out) {
			runOpts.groupAfter = group
		}
		res, err := e.Run(ctx, s.Name, runOpts)
		if res == nil {
			res = &RunResult{Sync: s.Name}
		}
		if err != nil && res.Status != RunStopped {
			// Failed before or during its run (a broken scope, a secret not
			// set, a busy sync): its children would only fail.
			res.Status, res.Err, res.Error = RunFailed, err, err.Error()
		}
		switch res.Status {
		case RunFailed:
			failed[s.Name] = "failed"
		case RunStopped:
			failed[s.Name] = "stopped"
		}
		out = append(out, res)
		if ctx.Err() != nil {
			break
		}
	}
	return out, nil
}

// groupHooksOf returns the hooks of the group a selection runs, or nil: a
// selection of syncs runs no group's hooks, nor does a dry run.
func groupHooksOf(p *project.Project, sel Selection, opts RunOptions) *groupHooks {
	if sel.Group == "" || opts.DryRun || opts.IDs != nil {
		return nil
	}
	g, ok := p.Groups[sel.Group]
	if !ok || g.Hooks == nil {
		return nil
	}
	return &groupHooks{name: sel.Group, hooks: g.Hooks}
}

// allSynced says whether every run so far synced its scope (succeeded, with
// or without record errors). A group's after hooks run only then, like a
// sync's: they would publish a group that is partly stale.
func allSynced(results []*RunResult) bool {
	for _, r := range results {
		if r.Status != RunSucceeded && r.Status != RunSucceededWithErrors {
			return false
		}
	}
	return true
}

func failedParent(s *project.Sync, failed map[string]string) string {
	for _, r := range s.Relations {
		if _, ok := failed[r.Sync]; ok {
			return r.Sync
		}
	}
	return ""
}

// PlanOptions change what Plan shows.
type PlanOptions struct {
	Full    bool // plan a full read, ignoring the bookmark
	Samples int  // example records per decision
	Lookups bool // let transforms look records up in the targets
}

// Plan says what runs of the selected syncs would do, in the order they
// would run, writing nothing and (unless asked) calling no target. A
// child whose parent the same plan would sync first waits for it.
func (e *Engine) Plan(ctx context.Context, sel Selection, opts PlanOptions) ([]*RunResult, error) {
	p, err := e.Project(ctx)
	if err != nil {
		return nil, err
	}
	syncs, err := sel.order(p)
	if err != nil {
		return nil, err
	}
	planned := map[string]bool{}
	var out []*RunResult
	for _, s := range syncs {
		res, err := e.Run(ctx, s.Name, RunOptions{DryRun: true, Full: opts.Full, Samples: opts.Samples, Lookups: opts.Lookups, planned: planned})
		if err != nil {
			return out, err
		}
		out = append(out, res)
		planned[s.Name] = true
	}
	return out, nil
}

// TestRecord shows what a run would do with one record: its source row,
// the mapped record, the payload and the decision. It writes only when
// write is set (then the record is really synced, link row and all).
func (e *Engine) TestRecord(ctx context.Context, sync, sourceID string, write bool) (*RunResult, error) {
	return e.Run(ctx, sync, RunOptions{DryRun: !write, IDs: []string{sourceID}, Samples: 1, Lookups: true})
}
