package api

import (
	"context"
	"errors"
	"strconv"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/queries"
)

// startRun starts a run under the server's context (not the request's),
// remembers how to cancel it, and counts it in the metrics when it ends.
func (s *Server) startRun(start func(ctx context.Context) (*engine.Started, error)) (*engine.Started, error) {
	ctx, cancel := context.WithCancel(s.runCtx)
	st, err := start(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s.mu.Lock()
	s.runs[st.RunID] = cancel
	s.mu.Unlock()
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		res, _ := st.Wait()
		s.mu.Lock()
		delete(s.runs, st.RunID)
		s.mu.Unlock()
		cancel()
		s.metrics.runEnded(res)
	}()
	return st, nil
}

type startSyncInput struct {
	Name string `path:"name"`
	Body *struct {
		Full      bool `json:"full,omitempty" doc:"Read the whole scope, ignoring the bookmark."`
		Reconcile bool `json:"reconcile,omitempty" doc:"Read the whole scope and count what incremental runs missed."`
	}
}

func (s *Server) startSyncRun(ctx context.Context, in *startSyncInput) (*startedOut, error) {
	var opts engine.RunOptions
	if in.Body != nil {
		opts.Full, opts.Reconcile = in.Body.Full, in.Body.Reconcile
	}
	st, err := s.startRun(func(runCtx context.Context) (*engine.Started, error) {
		return s.opts.Engine.Start(runCtx, in.Name, opts)
	})
	if err != nil {
		return nil, fail(err)
	}
	return started(st.RunID, in.Name), nil
}

type groupStartedOut struct {
	Status int
	Body   struct {
		Group string   `json:"group"`
		Syncs []string `json:"syncs" doc:"The syncs the group runs, in order; GET /runs?sync=… follows each."`
		RunID int64    `json:"run_id" doc:"The first sync's run."`
	}
}

// startGroupRun starts the group's first sync at once (so that a busy sync
// is a 409 now), then the others one after another, parents first; a sync
// whose parent failed is not started.
func (s *Server) startGroupRun(ctx context.Context, in *nameInput) (*groupStartedOut, error) {
	p, err := s.opts.Engine.Project(ctx)
	if err != nil {
		return nil, fail(err)
	}
	syncs, err := p.GroupOrder(in.Name)
	if err != nil {
		return nil, fail(err)
	}
	names := make([]string, len(syncs))
	for i, sy := range syncs {
		names[i] = sy.Name
	}
	first, err := s.startRun(func(runCtx context.Context) (*engine.Started, error) {
		return s.opts.Engine.Start(runCtx, names[0], engine.RunOptions{})
	})
	if err != nil {
		return nil, fail(err)
	}
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		res, _ := first.Wait()
		failed := map[string]bool{}
		if res == nil || res.Status == engine.RunFailed || res.Status == engine.RunStopped {
			failed[names[0]] = true
		}
		for _, sy := range syncs[1:] {
			skip := false
			for _, r := range sy.Relations {
				skip = skip || failed[r.Sync]
			}
			if skip || s.runCtx.Err() != nil {
				failed[sy.Name] = true
				continue
			}
			st, err := s.startRun(func(runCtx context.Context) (*engine.Started, error) {
				return s.opts.Engine.Start(runCtx, sy.Name, engine.RunOptions{})
			})
			if err != nil {
				s.log.Warn("a group's sync did not start", "group", in.Name, "sync", sy.Name, "err", err)
				failed[sy.Name] = true
				continue
			}
			if res, _ := st.Wait(); res == nil || res.Status == engine.RunFailed || res.Status == engine.RunStopped {
				failed[sy.Name] = true
			}
		}
	}()
	out := &groupStartedOut{Status: 202}
	out.Body.Group, out.Body.Syncs, out.Body.RunID = in.Name, names, first.RunID
	return out, nil
}

type listRunsInput struct {
	Sync   string `query:"sync" doc:"Only this sync's runs (script:<name> for a data-sync script)."`
	Status string `query:"status" enum:"running,succeeded,succeeded_with_errors,failed,stopped" doc:"Only runs that ended so."`
	Before int64  `query:"before" doc:"The cursor: runs older than this run id (the last id of the previous page)."`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50"`
}

type runList struct {
	Body struct {
		Runs []queries.FerryRun `json:"runs"`
		Next int64              `json:"next,omitempty" doc:"The cursor of the next page (before=…), absent on the last."`
	}
}

func (s *Server) listRuns(ctx context.Context, in *listRunsInput) (*runList, error) {
	limit := in.Limit
	if limit == 0 {
		limit = 50
	}
	rows, err := s.q.RunList(ctx, queries.RunListParams{Sync: in.Sync, Status: in.Status, BeforeID: in.Before, MaxRows: int32(limit)})
	if err != nil {
		return nil, fail(err)
	}
	out := &runList{}
	out.Body.Runs = append([]queries.FerryRun{}, rows...)
	if len(rows) == limit {
		out.Body.Next = rows[len(rows)-1].ID
	}
	return out, nil
}

type runInput struct {
	ID int64 `path:"id"`
}

// RunDetail is one run and its log: the errors it recorded.
type RunDetail struct {
	queries.FerryRun
	Log []queries.FerryRunError `json:"log"`
}

type runOut struct{ Body RunDetail }

func (s *Server) getRun(ctx context.Context, in *runInput) (*runOut, error) {
	run, err := s.q.RunGet(ctx, in.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fail(notFound("no run %d", in.ID))
	}
	if err != nil {
		return nil, fail(err)
	}
	log, err := s.q.RunErrorList(ctx, queries.RunErrorListParams{RunID: in.ID, MaxRows: 1000})
	if err != nil {
		return nil, fail(err)
	}
	return &runOut{Body: RunDetail{FerryRun: run, Log: append([]queries.FerryRunError{}, log...)}}, nil
}

func (s *Server) cancelRun(ctx context.Context, in *runInput) (*struct{}, error) {
	s.mu.Lock()
	cancel, ok := s.runs[in.ID]
	s.mu.Unlock()
	if !ok {
		if _, err := s.q.RunGet(ctx, in.ID); errors.Is(err, pgx.ErrNoRows) {
			return nil, fail(notFound("no run %d", in.ID))
		}
		return nil, huma.Error409Conflict("run " + strconv.FormatInt(in.ID, 10) + " is not running in this server (it ended, or another replica runs it)")
	}
	cancel()
	return nil, nil
}
